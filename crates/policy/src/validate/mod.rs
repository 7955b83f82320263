//! Semantic validation of each object, as the API server (and the CRD schemas) would check
//! it: names, selectors, CIDRs, ports, FQDN patterns, exclusive fields, ranges.

use crate::cidr::Cidr;
use crate::diag::Severity;
use crate::fqdn::FqdnPattern;
use crate::model::*;
use crate::yaml::FieldPath;

mod names;
mod palisade;

pub use names::{dns_label, dns_subdomain, label_key, label_value, port_name};
use palisade::{ai_gateway, cluster_security_policy, palisade_config, security_policy};
pub use palisade::{DLP_DETECTORS, DLP_PROVIDER_KEYS};

/// A problem at a field path of one object.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Stable code.
    pub code: &'static str,
    /// Field path.
    pub path: FieldPath,
    /// Message.
    pub message: String,
}

impl Finding {
    /// An error.
    pub fn error(path: FieldPath, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            code: "invalid-value",
            path,
            message: message.into(),
        }
    }
    /// A warning.
    pub fn warning(path: FieldPath, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            code: "suspicious-value",
            path,
            message: message.into(),
        }
    }
}

struct V {
    out: Vec<Finding>,
}

impl V {
    fn err(&mut self, p: &FieldPath, m: impl Into<String>) {
        self.out.push(Finding::error(p.clone(), m));
    }
    fn warn(&mut self, p: &FieldPath, m: impl Into<String>) {
        self.out.push(Finding::warning(p.clone(), m));
    }
}

/// An `ipBlock` CIDR: as [`cidr_field`], but IPv4 octets with leading zeros are read as
/// decimal with a warning, as the API server stores them (without strict IP validation).
fn legacy_cidr_field(v: &mut V, p: &FieldPath, text: &str) -> Option<Cidr> {
    match Cidr::parse_legacy(text) {
        Ok((c, true)) => {
            v.warn(
                p,
                format!(
                    "{text:?} has IPv4 octets with leading zeros: read as decimal {c} (as the \
                     API server reads it; strict IP validation refuses it); write that"
                ),
            );
            Some(c)
        }
        _ => cidr_field(v, p, text),
    }
}

/// Parses a CIDR field: an error when it is not one, a warning when it is not written
/// the canonical way (host bits set, an IPv4-mapped IPv6 block, leading zeros in IPv6),
/// which Kubernetes warns about too and, with strict IP validation (1.33+), refuses.
fn cidr_field(v: &mut V, p: &FieldPath, text: &str) -> Option<Cidr> {
    match text.parse::<Cidr>() {
        Err(e) => {
            v.err(p, e);
            None
        }
        Ok(c) => {
            let canonical = c.to_string();
            if canonical != text {
                v.warn(
                    p,
                    format!("non-canonical CIDR {text:?} is read as {canonical:?}; write that"),
                );
            }
            Some(c)
        }
    }
}

/// Validates one object.
pub fn validate_object(obj: &Object) -> Vec<Finding> {
    let mut v = V { out: Vec::new() };
    let meta = obj.meta();
    let mp = FieldPath::root().key("metadata");
    if meta.name.is_empty() {
        v.err(&mp.key("name"), "metadata.name is required");
    } else {
        let check = if matches!(obj, Object::Namespace(_)) {
            dns_label(&meta.name)
        } else {
            dns_subdomain(&meta.name)
        };
        if let Err(e) = check {
            v.err(&mp.key("name"), e);
        }
    }
    if let Some(ns) = &meta.namespace {
        if let Err(e) = dns_label(ns) {
            v.err(&mp.key("namespace"), e);
        }
    }
    for (k, val) in &meta.labels {
        label_pair(&mut v, &mp.key("labels").key(k), k, val);
    }
    let spec = FieldPath::root().key("spec");
    match obj {
        Object::Namespace(_) | Object::Node(_) | Object::Service(_) => {}
        Object::Pod(p) => pod(&mut v, p),
        Object::NetworkPolicy(np) => network_policy(&mut v, &spec, &np.spec),
        Object::AdminNetworkPolicy(anp) => {
            if !(0..=1000).contains(&anp.spec.priority) {
                v.err(
                    &spec.key("priority"),
                    format!("priority {} is outside 0..1000", anp.spec.priority),
                );
            }
            admin_body(
                &mut v,
                &spec,
                &anp.spec.subject,
                &anp.spec.ingress,
                &anp.spec.egress,
                false,
            );
        }
        Object::BaselineAdminNetworkPolicy(b) => {
            if !meta.name.is_empty() && meta.name != "default" {
                v.err(
                    &mp.key("name"),
                    "a BaselineAdminNetworkPolicy must be named \"default\" (it is a singleton)",
                );
            }
            admin_body(
                &mut v,
                &spec,
                &b.spec.subject,
                &b.spec.ingress,
                &b.spec.egress,
                true,
            );
        }
        Object::SecurityPolicy(sp) => security_policy(&mut v, &spec, &sp.spec),
        Object::ClusterSecurityPolicy(csp) => cluster_security_policy(&mut v, &spec, &csp.spec),
        Object::AIGateway(gw) => ai_gateway(&mut v, &spec, &gw.spec),
        Object::PalisadeConfig(cfg) => palisade_config(&mut v, &spec, &cfg.spec),
    }
    v.out
}

fn pod(v: &mut V, p: &Pod) {
    let sp = FieldPath::root().key("status");
    if let Some(ip) = &p.status.pod_ip {
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            v.err(&sp.key("podIP"), format!("{ip:?} is not an IP address"));
        }
    }
    for (i, ip) in p.status.pod_ips.iter().enumerate() {
        if ip.ip.parse::<std::net::IpAddr>().is_err() {
            v.err(
                &sp.key("podIPs").index(i).key("ip"),
                format!("{:?} is not an IP address", ip.ip),
            );
        }
    }
    let cp = FieldPath::root().key("spec").key("containers");
    for (ci, c) in p.spec.containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().enumerate() {
            let pp = cp.index(ci).key("ports").index(pi);
            if port.container_port == 0 {
                v.err(&pp.key("containerPort"), "containerPort must be 1..65535");
            }
            if let Some(name) = &port.name {
                if let Err(e) = port_name(name) {
                    v.err(&pp.key("name"), e);
                }
            }
        }
    }
}

fn network_policy(v: &mut V, spec: &FieldPath, s: &NetworkPolicySpec) {
    selector(v, &spec.key("podSelector"), &s.pod_selector);
    // The API server refuses more than two entries but accepts a repeated one
    // (`ValidateNetworkPolicySpec`): a duplicate is a warning, so a cluster's own objects load.
    if s.policy_types.len() > 2 {
        v.err(
            &spec.key("policyTypes"),
            "may not specify more than two policyTypes",
        );
    } else {
        let mut seen = Vec::new();
        for (i, t) in s.policy_types.iter().enumerate() {
            if seen.contains(t) {
                v.warn(
                    &spec.key("policyTypes").index(i),
                    format!("duplicate policy type {t:?}"),
                );
            }
            seen.push(*t);
        }
    }
    for (i, r) in s.ingress.iter().enumerate() {
        let rp = spec.key("ingress").index(i);
        for (j, p) in r.from.iter().enumerate() {
            np_peer(v, &rp.key("from").index(j), p);
        }
        for (j, p) in r.ports.iter().enumerate() {
            np_port(
                v,
                &rp.key("ports").index(j),
                p.protocol,
                &p.port,
                p.end_port,
            );
        }
    }
    for (i, r) in s.egress.iter().enumerate() {
        let rp = spec.key("egress").index(i);
        for (j, p) in r.to.iter().enumerate() {
            np_peer(v, &rp.key("to").index(j), p);
        }
        for (j, p) in r.ports.iter().enumerate() {
            np_port(
                v,
                &rp.key("ports").index(j),
                p.protocol,
                &p.port,
                p.end_port,
            );
        }
    }
    if !s.egress.is_empty()
        && !s.policy_types.is_empty()
        && !s.policy_types.contains(&PolicyType::Egress)
    {
        v.out.push(Finding::warning(
            spec.key("egress"),
            "egress rules are ignored: policyTypes does not include Egress",
        ));
    }
    if !s.ingress.is_empty()
        && !s.policy_types.is_empty()
        && !s.policy_types.contains(&PolicyType::Ingress)
    {
        v.out.push(Finding::warning(
            spec.key("ingress"),
            "ingress rules are ignored: policyTypes does not include Ingress",
        ));
    }
}

fn np_peer(v: &mut V, p: &FieldPath, peer: &NetworkPolicyPeer) {
    let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match (&peer.ip_block, selectors) {
        (Some(_), true) => v.err(
            p,
            "ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (None, false) => v.err(
            p,
            "a peer must set podSelector, namespaceSelector or ipBlock",
        ),
        _ => {}
    }
    if let Some(s) = &peer.pod_selector {
        selector(v, &p.key("podSelector"), s);
    }
    if let Some(s) = &peer.namespace_selector {
        selector(v, &p.key("namespaceSelector"), s);
    }
    if let Some(b) = &peer.ip_block {
        ip_block(v, &p.key("ipBlock"), b);
    }
}

/// Validates an ipBlock and returns the parsed CIDR.
fn ip_block(v: &mut V, p: &FieldPath, b: &IpBlock) {
    let cidr = legacy_cidr_field(v, &p.key("cidr"), &b.cidr);
    for (i, e) in b.except.iter().enumerate() {
        let ep = p.key("except").index(i);
        if let (Some(ec), Some(c)) = (legacy_cidr_field(v, &ep, e), cidr) {
            if !c.contains_cidr(&ec) || ec.prefix_len() <= c.prefix_len() {
                v.err(&ep, format!("{e} is not inside cidr {}", b.cidr));
            }
        }
    }
}

fn np_port(
    v: &mut V,
    p: &FieldPath,
    _proto: Option<Protocol>,
    port: &Option<IntOrString>,
    end: Option<i64>,
) {
    match port {
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                v.err(&p.key("port"), format!("port {n} is outside 1..65535"));
            }
            if let Some(e) = end {
                if !(1..=65535).contains(&e) {
                    v.err(
                        &p.key("endPort"),
                        format!("endPort {e} is outside 1..65535"),
                    );
                } else if e < *n {
                    v.err(&p.key("endPort"), format!("endPort {e} is below port {n}"));
                }
            }
        }
        Some(IntOrString::String(name)) => {
            if let Err(e) = port_name(name) {
                v.err(&p.key("port"), e);
            }
            if end.is_some() {
                v.err(
                    &p.key("endPort"),
                    "endPort needs a numeric port, not a named one",
                );
            }
        }
        None => {
            if end.is_some() {
                v.err(&p.key("endPort"), "endPort needs port to be set");
            }
        }
    }
}

fn admin_body(
    v: &mut V,
    spec: &FieldPath,
    subject: &AdminSubject,
    ingress: &[AdminIngressRule],
    egress: &[AdminEgressRule],
    baseline: bool,
) {
    let sp = spec.key("subject");
    match (&subject.namespaces, &subject.pods) {
        (Some(s), None) => selector(v, &sp.key("namespaces"), s),
        (None, Some(p)) => namespaced_pod(v, &sp.key("pods"), p),
        _ => v.err(&sp, "subject must set exactly one of namespaces or pods"),
    }
    if ingress.len() > 100 {
        v.err(&spec.key("ingress"), "at most 100 ingress rules");
    }
    if egress.len() > 100 {
        v.err(&spec.key("egress"), "at most 100 egress rules");
    }
    for (i, r) in ingress.iter().enumerate() {
        let rp = spec.key("ingress").index(i);
        admin_rule(v, &rp, r.name.as_deref(), r.action, baseline);
        admin_peers(v, &rp.key("from"), &r.from, false);
        admin_ports(v, &rp.key("ports"), r.ports.as_deref());
    }
    for (i, r) in egress.iter().enumerate() {
        let rp = spec.key("egress").index(i);
        admin_rule(v, &rp, r.name.as_deref(), r.action, baseline);
        admin_peers(v, &rp.key("to"), &r.to, true);
        admin_egress_rule(v, &rp, r, baseline);
        admin_ports(v, &rp.key("ports"), r.ports.as_deref());
    }
}

/// What the CRDs state about an egress rule as a whole: its CEL rule on named ports, the
/// BANP's peer type having no `domainNames`, and "DomainNames is only supported for ALLOW
/// rules" (a comment, not enforced by the API server: a warning).
fn admin_egress_rule(v: &mut V, rp: &FieldPath, r: &AdminEgressRule, baseline: bool) {
    let not_pods =
        r.to.iter()
            .any(|p| p.networks.is_some() || p.nodes.is_some() || p.domain_names.is_some());
    if not_pods && r.ports.iter().flatten().any(|p| p.named_port.is_some()) {
        v.err(
            &rp.key("ports"),
            "networks/nodes/domainNames peer cannot be set with namedPorts since there are no \
             namedPorts for networks/nodes/domainNames",
        );
    }
    for (j, p) in r.to.iter().enumerate() {
        if p.domain_names.is_none() {
            continue;
        }
        let pp = rp.key("to").index(j).key("domainNames");
        if baseline {
            v.err(
                &pp,
                "a BaselineAdminNetworkPolicy egress peer has no domainNames \
                 (namespaces, pods, nodes or networks)",
            );
        } else if r.action != AdminAction::Allow {
            v.warn(
                &pp,
                format!(
                    "domainNames is only supported for Allow rules; this {:?} rule is applied \
                     to the names as written, other implementations may ignore it",
                    r.action
                ),
            );
        }
    }
}

/// The CRD's pattern for a `DomainName`: an optional `*.` prefix, then at least two labels,
/// each starting and ending with a letter or digit (`-` and `_` inside), and an optional
/// final dot.
fn anp_domain_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix('.').unwrap_or(name);
    let body = body.strip_prefix("*.").unwrap_or(body);
    let labels: Vec<&str> = body.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{name:?} is not a domain name: at least two labels are needed (`*.` may only prefix them)"
        ));
    }
    for l in labels {
        let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_inner = l
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !(ok_end(l.chars().next()) && ok_end(l.chars().last()) && ok_inner) {
            return Err(format!(
                "{name:?}: label {l:?} must start and end with a letter or digit and hold only \
                 letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(())
}

fn admin_rule(v: &mut V, rp: &FieldPath, name: Option<&str>, action: AdminAction, baseline: bool) {
    if let Some(n) = name {
        if n.chars().count() > 100 {
            v.err(&rp.key("name"), "rule name is longer than 100 characters");
        }
    }
    if baseline && action == AdminAction::Pass {
        v.err(
            &rp.key("action"),
            "BaselineAdminNetworkPolicy rules allow only Allow or Deny",
        );
    }
}

fn namespaced_pod(v: &mut V, p: &FieldPath, np: &NamespacedPod) {
    selector(v, &p.key("namespaceSelector"), &np.namespace_selector);
    selector(v, &p.key("podSelector"), &np.pod_selector);
}

fn admin_peers(v: &mut V, p: &FieldPath, peers: &[AdminPeer], egress: bool) {
    if peers.is_empty() {
        v.err(p, "at least one peer is required");
    }
    if peers.len() > 100 {
        v.err(p, "at most 100 peers");
    }
    for (i, peer) in peers.iter().enumerate() {
        let pp = p.index(i);
        let set = [
            peer.namespaces.is_some(),
            peer.pods.is_some(),
            peer.nodes.is_some(),
            peer.networks.is_some(),
            peer.domain_names.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            v.err(
                &pp,
                "a peer must set exactly one of namespaces, pods, nodes, networks, domainNames",
            );
        }
        if !egress
            && (peer.nodes.is_some() || peer.networks.is_some() || peer.domain_names.is_some())
        {
            v.err(&pp, "nodes, networks and domainNames are egress peers only");
        }
        if let Some(s) = &peer.namespaces {
            selector(v, &pp.key("namespaces"), s);
        }
        if let Some(np) = &peer.pods {
            namespaced_pod(v, &pp.key("pods"), np);
        }
        if let Some(s) = &peer.nodes {
            selector(v, &pp.key("nodes"), s);
        }
        if let Some(nets) = &peer.networks {
            if nets.is_empty() || nets.len() > 25 {
                v.err(&pp.key("networks"), "networks must have 1 to 25 CIDRs");
            }
            for (j, n) in nets.iter().enumerate() {
                cidr_field(v, &pp.key("networks").index(j), n);
            }
        }
        if let Some(names) = &peer.domain_names {
            if names.is_empty() || names.len() > 25 {
                v.err(
                    &pp.key("domainNames"),
                    "domainNames must have 1 to 25 entries",
                );
            }
            for (j, n) in names.iter().enumerate() {
                if let Err(e) = FqdnPattern::parse_anp(n).and_then(|_| anp_domain_name(n)) {
                    v.err(&pp.key("domainNames").index(j), e);
                }
            }
        }
    }
}

fn admin_ports(v: &mut V, p: &FieldPath, ports: Option<&[AdminPort]>) {
    let Some(ports) = ports else { return };
    if ports.is_empty() || ports.len() > 100 {
        v.err(p, "ports must have 1 to 100 entries when set");
    }
    for (i, port) in ports.iter().enumerate() {
        let pp = p.index(i);
        let set = [
            port.port_number.is_some(),
            port.named_port.is_some(),
            port.port_range.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            v.err(
                &pp,
                "a port must set exactly one of portNumber, namedPort, portRange",
            );
        }
        if let Some(n) = &port.port_number {
            if !(1..=65535).contains(&n.port) {
                v.err(
                    &pp.key("portNumber").key("port"),
                    format!("port {} is outside 1..65535", n.port),
                );
            }
        }
        // The CRD types namedPort as a plain string: the API server stores any name. One
        // that is not an IANA_SVC_NAME can name no container port, so it matches none.
        if let Some(name) = &port.named_port {
            if let Err(e) = port_name(name) {
                v.warn(
                    &pp.key("namedPort"),
                    format!("{e}: no container port can have this name, so it matches none"),
                );
            }
        }
        if let Some(r) = &port.port_range {
            let rp = pp.key("portRange");
            if !(1..=65535).contains(&r.start) {
                v.err(
                    &rp.key("start"),
                    format!("start {} is outside 1..65535", r.start),
                );
            }
            if !(1..=65535).contains(&r.end) {
                v.err(&rp.key("end"), format!("end {} is outside 1..65535", r.end));
            } else if r.end < r.start {
                v.err(
                    &rp.key("end"),
                    format!("end {} is below start {}", r.end, r.start),
                );
            }
        }
    }
}

fn selector(v: &mut V, p: &FieldPath, s: &LabelSelector) {
    for (k, val) in &s.match_labels {
        label_pair(v, &p.key("matchLabels").key(k), k, val);
    }
    for (i, r) in s.match_expressions.iter().enumerate() {
        let rp = p.key("matchExpressions").index(i);
        if let Err(e) = label_key(&r.key) {
            v.err(&rp.key("key"), e);
        }
        match r.operator {
            SelectorOperator::In | SelectorOperator::NotIn => {
                if r.values.is_empty() {
                    v.err(
                        &rp.key("values"),
                        format!("operator {:?} needs at least one value", r.operator),
                    );
                }
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist => {
                if !r.values.is_empty() {
                    v.err(
                        &rp.key("values"),
                        format!("operator {:?} takes no values", r.operator),
                    );
                }
            }
        }
        for (j, val) in r.values.iter().enumerate() {
            if let Err(e) = label_value(val) {
                v.err(&rp.key("values").index(j), e);
            }
        }
    }
}

fn label_pair(v: &mut V, p: &FieldPath, k: &str, val: &str) {
    if let Err(e) = label_key(k) {
        v.err(p, e);
    }
    if let Err(e) = label_value(val) {
        v.err(p, e);
    }
}

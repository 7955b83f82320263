//! Palisade's kinds: SecurityPolicy, ClusterSecurityPolicy, AIGateway, PalisadeConfig.

use super::*;

pub(super) fn security_policy(v: &mut V, spec: &FieldPath, s: &SecurityPolicySpec) {
    selector(v, &spec.key("podSelector"), &s.pod_selector);
    if let Some(rules) = &s.ingress {
        for (i, r) in rules.iter().enumerate() {
            palisade_rule(
                v,
                &spec.key("ingress").index(i),
                r.from.as_deref(),
                r.to.as_deref(),
                false,
                &r.ports,
                &r.http,
            );
            let rp = spec.key("ingress").index(i);
            if r.inspect_tls
                || r.max_body_bytes.is_some()
                || r.dlp.is_some()
                || r.upload_budget.is_some()
            {
                v.err(
                    &rp,
                    "inspectTLS, maxBodyBytes, dlp and uploadBudget apply to egress rules only",
                );
            }
        }
    }
    if let Some(rules) = &s.egress {
        for (i, r) in rules.iter().enumerate() {
            palisade_rule(
                v,
                &spec.key("egress").index(i),
                r.from.as_deref(),
                r.to.as_deref(),
                true,
                &r.ports,
                &r.http,
            );
            if let Some(b) = &r.upload_budget {
                let bp = spec.key("egress").index(i).key("uploadBudget");
                if b.window_duration().is_none() {
                    v.err(
                        &bp.key("window"),
                        format!(
                            "window {:?} must be a positive number with a unit s, m, h or d (e.g. 1h)",
                            b.window
                        ),
                    );
                }
                if b.bytes == 0 {
                    v.err(
                        &bp.key("bytes"),
                        "bytes must be at least 1 (omit uploadBudget for no limit)",
                    );
                }
            }
            if let Some(d) = &r.dlp {
                let dp = spec.key("egress").index(i).key("dlp");
                for (j, name) in d.credential_headers.iter().flatten().enumerate() {
                    if !is_header_name(name) {
                        v.err(
                            &dp.key("credentialHeaders").index(j),
                            format!("{name:?} is not a valid header name"),
                        );
                    }
                }
                for (j, name) in d.forwarded_credentials.iter().flatten().enumerate() {
                    if !DLP_PROVIDER_KEYS.contains(&name.as_str()) {
                        v.err(
                            &dp.key("forwardedCredentials").index(j),
                            format!(
                                "{name:?} is not a provider's key detector (known: {})",
                                DLP_PROVIDER_KEYS.join(", ")
                            ),
                        );
                    }
                }
                for (j, name) in d.detectors.iter().enumerate() {
                    if !DLP_DETECTORS.contains(&name.as_str()) {
                        v.err(
                            &spec
                                .key("egress")
                                .index(i)
                                .key("dlp")
                                .key("detectors")
                                .index(j),
                            format!(
                                "unknown DLP detector {name:?} (known: {})",
                                DLP_DETECTORS.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    if s.ingress.is_none() && s.egress.is_none() {
        v.out.push(Finding::warning(
            spec.clone(),
            "neither ingress nor egress is set: the policy has no effect",
        ));
    }
}

/// An HTTP field name (RFC 9110 §5.1: a non-empty token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}

/// DLP detector names a policy may list.
pub const DLP_DETECTORS: &[&str] = &[
    "secrets",
    "pii",
    "aws-key",
    "github-token",
    "gitlab-token",
    "slack-token",
    "openai-key",
    "anthropic-key",
    "huggingface-token",
    "private-key",
    "jwt",
    "high-entropy",
    "email",
    "card",
    "ssn",
    "iban",
    "phone",
];

/// DLP detectors whose keys only one provider takes (`dlp.forwardedCredentials`).
pub const DLP_PROVIDER_KEYS: &[&str] = &[
    "aws-key",
    "github-token",
    "gitlab-token",
    "slack-token",
    "anthropic-key",
    "huggingface-token",
    "private-key",
];

pub(super) fn cluster_security_policy(v: &mut V, spec: &FieldPath, s: &ClusterSecurityPolicySpec) {
    if !(0..=1000).contains(&s.priority) {
        v.err(
            &spec.key("priority"),
            format!("priority {} is outside 0..1000", s.priority),
        );
    }
    if let Some(sel) = &s.subject.namespace_selector {
        selector(v, &spec.key("subject").key("namespaceSelector"), sel);
    }
    if let Some(sel) = &s.subject.pod_selector {
        selector(v, &spec.key("subject").key("podSelector"), sel);
    }
    if let Some(sel) = &s.clusters {
        selector(v, &spec.key("clusters"), sel);
    }
    for (i, r) in s.ingress.iter().enumerate() {
        palisade_rule(
            v,
            &spec.key("ingress").index(i),
            r.from.as_deref(),
            r.to.as_deref(),
            false,
            &r.ports,
            &r.http,
        );
    }
    for (i, r) in s.egress.iter().enumerate() {
        palisade_rule(
            v,
            &spec.key("egress").index(i),
            r.from.as_deref(),
            r.to.as_deref(),
            true,
            &r.ports,
            &r.http,
        );
    }
}

fn palisade_rule(
    v: &mut V,
    rp: &FieldPath,
    from: Option<&[Peer]>,
    to: Option<&[Peer]>,
    egress: bool,
    ports: &[PortSpec],
    http: &[HttpRule],
) {
    let (peers, field) = if egress { (to, "to") } else { (from, "from") };
    let wrong = if egress { from.is_some() } else { to.is_some() };
    if wrong {
        let other = if egress { "from" } else { "to" };
        v.err(
            &rp.key(other),
            format!(
                "{} rules list peers in `{field}`, not `{other}`",
                if egress { "egress" } else { "ingress" }
            ),
        );
    }
    for (j, p) in peers.unwrap_or(&[]).iter().enumerate() {
        let pp = rp.key(field).index(j);
        let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some();
        let set = [selectors, p.ip_block.is_some(), p.fqdn.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set != 1 {
            v.err(
                &pp,
                "a peer must set exactly one of podSelector/namespaceSelector, ipBlock, fqdn",
            );
        }
        if p.cluster.is_some() && !selectors {
            v.err(
                &pp.key("cluster"),
                "cluster goes with podSelector/namespaceSelector",
            );
        }
        if let Some(s) = &p.pod_selector {
            selector(v, &pp.key("podSelector"), s);
        }
        if let Some(s) = &p.namespace_selector {
            selector(v, &pp.key("namespaceSelector"), s);
        }
        if let Some(b) = &p.ip_block {
            ip_block(v, &pp.key("ipBlock"), b);
        }
        if let Some(f) = &p.fqdn {
            if !egress {
                v.err(&pp.key("fqdn"), "fqdn peers are for egress rules only");
            }
            if let Err(e) = FqdnPattern::parse(f) {
                v.err(&pp.key("fqdn"), e);
            }
        }
    }
    for (j, p) in ports.iter().enumerate() {
        np_port(
            v,
            &rp.key("ports").index(j),
            p.protocol,
            &p.port,
            p.end_port,
        );
    }
    for (j, h) in http.iter().enumerate() {
        let hp = rp.key("http").index(j);
        for (k, m) in h.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                v.err(
                    &hp.key("methods").index(k),
                    format!("{m:?} is not an HTTP method (upper case, e.g. GET)"),
                );
            }
        }
        if let Some(pm) = &h.path {
            let n = [pm.exact.is_some(), pm.prefix.is_some(), pm.regex.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if n != 1 {
                v.err(
                    &hp.key("path"),
                    "path must set exactly one of exact, prefix, regex",
                );
            }
            for (key, val) in [("exact", &pm.exact), ("prefix", &pm.prefix)] {
                if let Some(s) = val {
                    if !s.starts_with('/') {
                        v.err(
                            &hp.key("path").key(key),
                            format!("{s:?} must start with '/'"),
                        );
                    }
                }
            }
            if let Some(re) = &pm.regex {
                if let Err(e) = crate::http_regex::whole_value(re) {
                    v.err(&hp.key("path").key("regex"), format!("invalid regex: {e}"));
                }
            }
        }
        for (k, hm) in h.headers.iter().enumerate() {
            let hp2 = hp.key("headers").index(k);
            if !is_header_name(&hm.name) {
                v.err(
                    &hp2.key("name"),
                    format!("{:?} is not a valid header name", hm.name),
                );
            }
            if hm.value.is_some() && hm.regex.is_some() {
                v.err(&hp2, "set value or regex, not both");
            }
            if let Some(re) = &hm.regex {
                if let Err(e) = crate::http_regex::whole_value(re) {
                    v.err(&hp2.key("regex"), format!("invalid regex: {e}"));
                }
            }
        }
    }
}

pub(super) fn ai_gateway(v: &mut V, spec: &FieldPath, s: &AIGatewaySpec) {
    if s.routes.is_empty() {
        v.err(&spec.key("routes"), "at least one route is required");
    }
    if let Some(t) = &s.tls {
        let tp = spec.key("tls");
        if t.client_ca_file.is_none() {
            if !t.client_crl_files.is_empty() {
                v.err(
                    &tp.key("clientCrlFiles"),
                    "needs clientCaFile (revocation lists are checked for client certificates)",
                );
            }
            if t.client_auth.is_some() {
                v.err(
                    &tp.key("clientAuth"),
                    "needs clientCaFile (the CAs that verify client certificates)",
                );
            }
        }
        for (i, f) in t.client_crl_files.iter().enumerate() {
            if f.trim().is_empty() {
                v.err(&tp.key("clientCrlFiles").index(i), "empty file name");
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in s.routes.iter().enumerate() {
        let rp = spec.key("routes").index(i);
        if !names.insert(r.name.as_str()) {
            v.err(
                &rp.key("name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        if !(r.backend.starts_with("http://") || r.backend.starts_with("https://")) {
            v.err(
                &rp.key("backend"),
                format!("{:?} must be an http:// or https:// URL", r.backend),
            );
        }
        if let Some(p) = &r.path_prefix {
            if !p.starts_with('/') {
                v.err(&rp.key("pathPrefix"), "pathPrefix must start with '/'");
            }
        }
        for (j, e) in r.extra_endpoints.iter().enumerate() {
            if !e.starts_with('/') || e.contains(['?', '#']) || !crate::http_path::is_plain(e) {
                v.err(
                    &rp.key("extraEndpoints").index(j),
                    format!(
                        "{e:?} must be a path starting with '/', without a query, escapes, \
                         empty or dot segments"
                    ),
                );
            }
        }
        if r.timeout_seconds == Some(0) {
            v.err(
                &rp.key("timeoutSeconds"),
                "timeoutSeconds must be at least 1",
            );
        }
        if r.stream_idle_timeout_seconds
            .is_some_and(|n| !(1..=86_400).contains(&n))
        {
            v.err(
                &rp.key("streamIdleTimeoutSeconds"),
                "streamIdleTimeoutSeconds must be 1 to 86400",
            );
        }
        if let Some(m) = r.auth.as_ref().and_then(|a| a.mtls.as_ref()) {
            let client_ca = s.tls.as_ref().and_then(|t| t.client_ca_file.as_ref());
            if client_ca.is_none() {
                v.err(
                    &rp.key("auth").key("mtls"),
                    "needs spec.tls.clientCaFile (the CAs that verify client certificates)",
                );
            }
            if m.identities.is_empty() {
                v.err(
                    &rp.key("auth").key("mtls").key("identities"),
                    "name at least one certificate identity",
                );
            }
        }
        if let Some(l) = &r.limits {
            gateway_limits(v, &rp.key("limits"), l);
        }
        if let Some(j) = r.auth.as_ref().and_then(|a| a.jwt.as_ref()) {
            for (k, alg) in j.algorithms.iter().enumerate() {
                if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                    v.err(
                        &rp.key("auth").key("jwt").key("algorithms").index(k),
                        format!("unknown algorithm {alg:?} ({})", JWT_ALGORITHMS.join(", ")),
                    );
                }
            }
        }
        if let Some(w) = &r.waf {
            if let Some(pl) = w.paranoia_level {
                if !(1..=4).contains(&pl) {
                    v.err(
                        &rp.key("waf").key("paranoiaLevel"),
                        format!("paranoiaLevel {pl} is outside 1..4"),
                    );
                }
            }
        }
        if let Some(g) = &r.prompt_guard {
            if let Some(t) = g.threshold {
                if !(0.0..=1.0).contains(&t) {
                    v.err(
                        &rp.key("promptGuard").key("threshold"),
                        "threshold must be within 0..1",
                    );
                }
            }
        }
        for (j, f) in r.output_filters.iter().enumerate() {
            if !["secrets", "pii", "canary"].contains(&f.kind.as_str()) {
                v.err(
                    &rp.key("outputFilters").index(j).key("kind"),
                    format!("unknown output filter {:?} (secrets, pii, canary)", f.kind),
                );
            }
        }
    }
    let mut consumers = std::collections::HashSet::new();
    for (i, c) in s.consumers.iter().enumerate() {
        if !consumers.insert(c.name.as_str()) {
            v.err(
                &spec.key("consumers").index(i).key("name"),
                format!("duplicate consumer {:?}", c.name),
            );
        }
        if let Some(l) = &c.limits {
            gateway_limits(v, &spec.key("consumers").index(i).key("limits"), l);
        }
        for (j, r) in c.routes.iter().enumerate() {
            if !names.contains(r.as_str()) {
                v.err(
                    &spec.key("consumers").index(i).key("routes").index(j),
                    format!("no route named {r:?}"),
                );
            }
        }
    }
}

/// JWT signature algorithms an AIGateway accepts.
const JWT_ALGORITHMS: [&str; 9] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA",
];

fn gateway_limits(v: &mut V, lp: &FieldPath, l: &LimitsSpec) {
    if let Some(r) = l.requests_per_second {
        if !(r.is_finite() && r > 0.0) {
            v.err(
                &lp.key("requestsPerSecond"),
                "requestsPerSecond must be above 0",
            );
        }
    }
    if l.burst == Some(0) {
        v.err(&lp.key("burst"), "burst must be at least 1");
    }
    if l.tokens_per_minute == Some(0) {
        v.err(
            &lp.key("tokensPerMinute"),
            "tokensPerMinute must be at least 1",
        );
    }
}

pub(super) fn palisade_config(v: &mut V, spec: &FieldPath, s: &PalisadeConfigSpec) {
    for (i, c) in s.cluster_networks.iter().enumerate() {
        if c.parse::<crate::cidr::Cidr>().is_err() {
            v.err(
                &spec.key("clusterNetworks").index(i),
                format!("{c:?} is not a CIDR (e.g. 10.96.0.0/12)"),
            );
        }
    }
    let listeners = [
        ("admin", s.admin.as_ref().map(|l| &l.listen)),
        ("egress", s.egress.as_ref().map(|l| &l.listen)),
        ("ingress", s.ingress.as_ref().map(|l| &l.listen)),
        ("dns", s.dns.as_ref().map(|d| &d.listen)),
    ];
    for (name, addr) in listeners {
        if let Some(a) = addr {
            if a.parse::<std::net::SocketAddr>().is_err() {
                v.err(
                    &spec.key(name).key("listen"),
                    format!("{a:?} is not host:port (e.g. 127.0.0.1:9900)"),
                );
            }
        }
    }
    let idle = [
        (
            "egress",
            "idleTimeoutSeconds",
            s.egress.as_ref().and_then(|e| e.idle_timeout_seconds),
        ),
        (
            "egress",
            "upstreamIdleTimeoutSeconds",
            s.egress
                .as_ref()
                .and_then(|e| e.upstream_idle_timeout_seconds),
        ),
        (
            "egress",
            "sendTimeoutSeconds",
            s.egress.as_ref().and_then(|e| e.send_timeout_seconds),
        ),
        (
            "ingress",
            "idleTimeoutSeconds",
            s.ingress.as_ref().and_then(|i| i.idle_timeout_seconds),
        ),
        (
            "ingress",
            "sendTimeoutSeconds",
            s.ingress.as_ref().and_then(|i| i.send_timeout_seconds),
        ),
    ];
    for (name, field, secs) in idle {
        if secs.is_some_and(|n| !(1..=86_400).contains(&n)) {
            v.err(
                &spec.key(name).key(field),
                format!("{field} must be 1 to 86400"),
            );
        }
    }
    if s.events
        .as_ref()
        .and_then(|e| e.retention_days)
        .is_some_and(|d| !(1..=36_500).contains(&d))
    {
        v.err(
            &spec.key("events").key("retentionDays"),
            "retentionDays must be 1 to 36500",
        );
    }
    if let Some(a) = &s.agent {
        if !a.pod_interface_prefixes.is_empty() && s.default_posture == Posture::Allow {
            v.warn(
                &spec.key("agent").key("podInterfacePrefixes"),
                "podInterfacePrefixes holds pods the agent does not know yet only under \
                 defaultPosture: deny; under allow they pass until the agent knows them",
            );
        }
        for (i, p) in a.pod_interface_prefixes.iter().enumerate() {
            let ok = (1..=14).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                v.err(
                    &spec.key("agent").key("podInterfacePrefixes").index(i),
                    format!(
                        "{p:?} is not an interface-name prefix: 1 to 14 letters, digits, \
                         '-', '_', '.' (no wildcard: \"cali\" matches cali*)"
                    ),
                );
            }
        }
    }
    if let Some(d) = &s.dns {
        if d.upstream.parse::<std::net::SocketAddr>().is_err() {
            v.err(
                &spec.key("dns").key("upstream"),
                format!("{:?} is not host:port", d.upstream),
            );
        }
        if let Some(a) = &d.answers_listen {
            if a.parse::<std::net::SocketAddr>().is_err() {
                v.err(
                    &spec.key("dns").key("answersListen"),
                    format!("{a:?} is not host:port (e.g. 0.0.0.0:9054)"),
                );
            }
        }
        if d.max_records_per_pod
            .is_some_and(|n| !(1..=200_000).contains(&n))
        {
            v.err(
                &spec.key("dns").key("maxRecordsPerPod"),
                "maxRecordsPerPod must be 1 to 200000",
            );
        }
        let bounded: [(&str, Option<u32>, u32, u32); 4] = [
            (
                "queriesPerSecondPerClient",
                d.queries_per_second_per_client,
                0,
                1_000_000,
            ),
            (
                "queryBurstPerClient",
                d.query_burst_per_client,
                1,
                1_000_000,
            ),
            ("maxInFlightPerClient", d.max_in_flight_per_client, 1, 4096),
            ("maxTcpPerClient", d.max_tcp_per_client, 1, 4096),
        ];
        for (field, value, min, max) in bounded {
            if value.is_some_and(|n| !(min..=max).contains(&n)) {
                v.err(
                    &spec.key("dns").key(field),
                    format!("{field} must be {min} to {max}"),
                );
            }
        }
        if let Some(r) = &d.refuse_with {
            if r != "REFUSED" && r != "NXDOMAIN" {
                v.err(
                    &spec.key("dns").key("refuseWith"),
                    "refuseWith must be REFUSED or NXDOMAIN",
                );
            }
        }
    }
    if let Some(e) = &s.egress {
        for (i, url) in e.dns_answers.iter().enumerate() {
            if !is_http_host_port(url) {
                v.err(
                    &spec.key("egress").key("dnsAnswers").index(i),
                    format!("{url:?} is not http://host:port"),
                );
            }
        }
    }
}

/// `http://host:port`, optionally with a trailing `/`.
fn is_http_host_port(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', '@', '?', '#'])
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    })
}

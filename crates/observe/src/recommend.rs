//! Least-privilege policy from observed traffic: for every workload, a `NetworkPolicy` that
//! isolates it in both directions and allows exactly the pod and address peers it was seen
//! using, on the ports and protocols seen, and a `SecurityPolicy` that allows the domain
//! names it reached (with the HTTP methods and path prefixes seen, where the egress gateway
//! saw requests). Workloads are selected by the labels their pods share, not by pod name,
//! so the policies keep working as pods come and go.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::identity::Workload;
use crate::traffic::{EdgeStats, Peer, Traffic};
use crate::yaml::Yaml;

/// Options of [`recommend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Only workloads of this namespace get policies (peers may be anywhere).
    pub namespace: Option<String>,
    /// Path segments kept in recommended HTTP path prefixes (0: methods only).
    pub path_depth: usize,
    /// Prefix of the generated policy names.
    pub name_prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            path_depth: 1,
            name_prefix: "recommended".into(),
        }
    }
}

/// One YAML document with the comment lines written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Comment lines (without `# `).
    pub comment: Vec<String>,
    /// The object.
    pub body: Yaml,
}

/// The recommended policy set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recommendation {
    /// Policies, one document each.
    pub documents: Vec<Document>,
    /// What could not be recommended, and why.
    pub notes: Vec<String>,
}

impl Recommendation {
    /// Multi-document YAML that `palisade check` accepts.
    pub fn render(&self, header: &[String]) -> String {
        let mut out = String::new();
        for line in header.iter().chain(&self.notes) {
            out.push_str(&format!("# {}\n", comment_text(line)));
        }
        for d in &self.documents {
            out.push_str("---\n");
            for line in &d.comment {
                out.push_str(&format!("# {}\n", comment_text(line)));
            }
            out.push_str(&d.body.render());
        }
        out
    }
}

/// A comment line with every character that could end the comment (line breaks, and any
/// other control or line-separator character) escaped: names, paths and pod names come from
/// events, which a pod chooses, and a line break in one would put the rest of it into the
/// YAML itself (an extra key, rule or document).
fn comment_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `name` is a plain host name (lower-case letters, digits, `-` and `_` in labels of
/// 1 to 63 characters, at most 253 in all): the only names written as `fqdn` peers. Names
/// come from events (DNS queries, `Host` headers, SNI), which a pod chooses; written as a
/// pattern, `*.com` would allow every name under `.com`, and a name the FQDN pattern syntax
/// rejects would make the whole recommended file fail to load.
fn plain_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Whether `method` can be written in an `http` rule (the policy loader accepts upper-case
/// letters only).
fn plain_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())
}

/// A (protocol, port) pair in the order ports are written.
type PortKey = (u8, u16);

fn proto_rank(p: &str) -> u8 {
    match p {
        "TCP" => 0,
        "UDP" => 1,
        _ => 2,
    }
}

fn proto_name(rank: u8) -> &'static str {
    match rank {
        0 => "TCP",
        1 => "UDP",
        _ => "SCTP",
    }
}

/// A Kubernetes object name from `s` (lower case, `[a-z0-9-]`, at most 63 characters).
fn object_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let mut out: String = out.trim_matches('-').chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('w');
    }
    out
}

/// A name of `kind` in `namespace` no earlier document took: `object_name(base)`, or, when
/// two workloads map to that name (`a.b` and `a-b`, or long names cut at 63 characters),
/// the name cut shorter with a suffix from the workload key (a duplicate object would make
/// the whole file fail to load).
fn unique_name(
    used: &mut BTreeSet<(&'static str, String, String)>,
    kind: &'static str,
    namespace: &str,
    base: &str,
    key: &str,
) -> String {
    let mut name = object_name(base);
    let mut salt = 0u32;
    while used.contains(&(kind, namespace.to_string(), name.clone())) {
        // FNV-1a: stable from run to run, so the same traffic gives the same names.
        let h = format!("{key}#{salt}")
            .bytes()
            .fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        let mut short: String = object_name(base).chars().take(54).collect();
        while short.ends_with('-') {
            short.pop();
        }
        name = format!("{short}-{h:08x}");
        salt += 1;
    }
    used.insert((kind, namespace.to_string(), name.clone()));
    name
}

/// The member cluster a workload runs in when it is not this one: under federation the
/// engine names another cluster's workload `cluster/namespace/name` (this cluster's are
/// `namespace/owner`). A NetworkPolicy cannot select it (its selectors pick this cluster's
/// pods, never a remote one), and its own cluster enforces its side.
fn remote_cluster(w: &Workload) -> Option<&str> {
    let (cluster, rest) = w.key.split_once('/')?;
    rest.contains('/').then_some(cluster)
}

/// Why a workload cannot be written in a policy, if it cannot: its namespace and labels
/// come from events (an imported file, or a component that does not check them), and one
/// the policy language rejects would make the whole recommended file fail to load.
fn unwritable(w: &Workload) -> Option<String> {
    use palisade_policy::validate::{dns_label, label_key, label_value};
    if let Err(e) = dns_label(&w.namespace) {
        return Some(format!("namespace {e}"));
    }
    w.labels
        .iter()
        .find_map(|(k, v)| label_key(k).and_then(|()| label_value(v)).err())
}

fn labels_yaml(labels: &BTreeMap<String, String>) -> Yaml {
    Yaml::map(labels.iter().map(|(k, v)| (k.clone(), Yaml::str(v))))
}

fn selector(labels: &BTreeMap<String, String>) -> Yaml {
    if labels.is_empty() {
        Yaml::map::<&str>([])
    } else {
        Yaml::map([("matchLabels", labels_yaml(labels))])
    }
}

fn ports_yaml(ports: &BTreeSet<PortKey>) -> Yaml {
    Yaml::Seq(
        ports
            .iter()
            .map(|(p, n)| {
                Yaml::map([
                    ("protocol", Yaml::str(proto_name(*p))),
                    ("port", Yaml::Int(i64::from(*n))),
                ])
            })
            .collect(),
    )
}

fn cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// The HTTP path condition for a path kept to `depth` segments: a prefix on a segment
/// boundary, or the exact path `/`.
fn path_condition(path: &str, depth: usize) -> Option<(&'static str, String)> {
    if depth == 0 {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        return Some(("exact", "/".into()));
    }
    let kept = segs.len().min(depth);
    Some(("prefix", format!("/{}", segs[..kept].join("/"))))
}

/// Recommends policies for the workloads of `traffic`.
pub fn recommend(traffic: &Traffic, opts: &Options) -> Recommendation {
    let mut rec = Recommendation::default();
    let mut used = BTreeSet::new();
    let in_scope = |w: &Workload| opts.namespace.as_deref().is_none_or(|ns| w.namespace == ns);
    for w in traffic.workloads.values().filter(|w| in_scope(w)) {
        if let Some(c) = remote_cluster(w) {
            rec.notes.push(format!(
                "{}: not recommended: a workload of member cluster {c} (its cluster enforces its side)",
                w.key
            ));
            continue;
        }
        if w.labels.is_empty() {
            rec.notes.push(format!(
                "{}: not recommended: its pods carry no labels to select them by",
                w.key
            ));
            continue;
        }
        if let Some(why) = unwritable(w) {
            rec.notes.push(format!("{}: not recommended: {why}", w.key));
            continue;
        }
        let me = Peer::Workload(w.key.clone());
        let mut ingress: BTreeMap<Peer, BTreeSet<PortKey>> = BTreeMap::new();
        let mut egress: BTreeMap<Peer, BTreeSet<PortKey>> = BTreeMap::new();
        let mut names: BTreeMap<String, (BTreeSet<PortKey>, Vec<&EdgeStats>)> = BTreeMap::new();
        let mut seen = 0u64;
        for (k, s) in traffic.edges.iter().filter(|(_, s)| s.passed()) {
            let port = (proto_rank(k.protocol), k.port);
            if k.dst == me {
                seen += s.allow + s.audit;
                match &k.src {
                    // A NetworkPolicy has no name peers; a source is known by its address.
                    Peer::Fqdn(n) => rec.notes.push(format!(
                        "{}: ingress from {n:?} not recommended: a source is allowed by address, not by name",
                        w.key
                    )),
                    other => {
                        ingress.entry(other.clone()).or_default().insert(port);
                    }
                }
            }
            if k.src == me {
                seen += s.allow + s.audit;
                match &k.dst {
                    Peer::Fqdn(n) if !plain_host(n) => rec.notes.push(format!(
                        "{}: egress to {n:?} not recommended: not a plain host name (as a pattern, `*` would match other names)",
                        w.key
                    )),
                    Peer::Fqdn(n) => {
                        let e = names.entry(n.clone()).or_default();
                        e.0.insert(port);
                        e.1.push(s);
                    }
                    other => {
                        egress.entry(other.clone()).or_default().insert(port);
                    }
                }
            }
        }
        let mut comment = vec![format!(
            "{} (pods seen: {}): {} allowed connections or requests observed",
            w.key,
            w.pods.iter().cloned().collect::<Vec<_>>().join(", "),
            seen
        )];
        let base = format!("{}-{}", opts.name_prefix, w.short_name());
        let np_name = unique_name(&mut used, "NetworkPolicy", &w.namespace, &base, &w.key);
        // `None`: the peer cannot be written without selecting more than was seen.
        let peer_yaml = |p: &Peer, notes: &mut Vec<String>| -> Option<Yaml> {
            Some(match p {
                Peer::Workload(k) => {
                    let other = &traffic.workloads[k];
                    if let Some(c) = remote_cluster(other) {
                        // A selector here would pick this cluster's pods of the same
                        // namespace and labels, never the remote one.
                        notes.push(format!(
                            "{}: {k} not recommended as a peer: a workload of member cluster {c} (a NetworkPolicy cannot select it; a SecurityPolicy peer with `cluster: {c}` can)",
                            w.key
                        ));
                        return None;
                    }
                    if other.labels.is_empty() {
                        // `podSelector: {}` would select every pod of the namespace.
                        notes.push(format!(
                            "{}: {k} not recommended as a peer: its pods carry no labels to select them by (a selector would pick every pod of namespace {})",
                            w.key, other.namespace
                        ));
                        return None;
                    }
                    if let Some(why) = unwritable(other) {
                        notes.push(format!("{}: {k} not recommended as a peer: {why}", w.key));
                        return None;
                    }
                    let mut m = Vec::new();
                    if other.namespace != w.namespace {
                        let ns = BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_string(),
                            other.namespace.clone(),
                        )]);
                        m.push(("namespaceSelector".to_string(), selector(&ns)));
                    }
                    m.push(("podSelector".to_string(), selector(&other.labels)));
                    Yaml::Map(m)
                }
                Peer::Address(ip) => {
                    Yaml::map([("ipBlock", Yaml::map([("cidr", Yaml::str(cidr(*ip)))]))])
                }
                Peer::Fqdn(n) => Yaml::map([("fqdn", Yaml::str(n))]),
            })
        };
        // Peers with the same ports share a rule: a rule allows every listed peer on every
        // listed port, so this is exactly the observed pairs.
        let rules =
            |peers: &BTreeMap<Peer, BTreeSet<PortKey>>, field: &str, notes: &mut Vec<String>| {
                let mut by_ports: BTreeMap<&BTreeSet<PortKey>, Vec<&Peer>> = BTreeMap::new();
                for (p, ports) in peers {
                    by_ports.entry(ports).or_default().push(p);
                }
                Yaml::Seq(
                    by_ports
                        .into_iter()
                        .filter_map(|(ports, ps)| {
                            let peers: Vec<Yaml> =
                                ps.into_iter().filter_map(|p| peer_yaml(p, notes)).collect();
                            // A rule without peers would allow every peer: leave it out.
                            (!peers.is_empty()).then(|| {
                                Yaml::map([(field, Yaml::Seq(peers)), ("ports", ports_yaml(ports))])
                            })
                        })
                        .collect(),
                )
            };
        let mut notes = Vec::new();
        let ingress_rules = rules(&ingress, "from", &mut notes);
        let egress_rules = rules(&egress, "to", &mut notes);
        rec.notes.append(&mut notes);
        if ingress.is_empty() {
            comment.push("no allowed ingress observed: all ingress denied".into());
        }
        if egress.is_empty() && names.is_empty() {
            comment.push("no allowed egress observed: all egress denied".into());
        }
        rec.documents.push(Document {
            comment,
            body: Yaml::map([
                ("apiVersion", Yaml::str("networking.k8s.io/v1")),
                ("kind", Yaml::str("NetworkPolicy")),
                (
                    "metadata",
                    Yaml::map([
                        ("name", Yaml::str(np_name)),
                        ("namespace", Yaml::str(&w.namespace)),
                    ]),
                ),
                (
                    "spec",
                    Yaml::map([
                        ("podSelector", selector(&w.labels)),
                        (
                            "policyTypes",
                            Yaml::Seq(vec![Yaml::str("Ingress"), Yaml::str("Egress")]),
                        ),
                        ("ingress", ingress_rules),
                        ("egress", egress_rules),
                    ]),
                ),
            ]),
        });
        let egress: Vec<Yaml> = names
            .iter()
            .filter_map(|(n, (ports, edges))| {
                fqdn_rule(n, ports, edges, opts.path_depth, &mut rec.notes)
            })
            .collect();
        if !egress.is_empty() {
            let sp_name = unique_name(
                &mut used,
                "SecurityPolicy",
                &w.namespace,
                &format!("{base}-egress"),
                &w.key,
            );
            rec.documents.push(Document {
                comment: vec![format!(
                    "{}: egress by name to {}",
                    w.key,
                    names.keys().cloned().collect::<Vec<_>>().join(", ")
                )],
                body: Yaml::map([
                    ("apiVersion", Yaml::str("palisade.dev/v1alpha1")),
                    ("kind", Yaml::str("SecurityPolicy")),
                    (
                        "metadata",
                        Yaml::map([
                            ("name", Yaml::str(sp_name)),
                            ("namespace", Yaml::str(&w.namespace)),
                        ]),
                    ),
                    (
                        "spec",
                        Yaml::map([
                            ("podSelector", selector(&w.labels)),
                            ("egress", Yaml::Seq(egress)),
                        ]),
                    ),
                ]),
            });
        }
    }
    rec
}

/// The egress rule for one name: its ports, and HTTP rules when every request the gateway
/// saw to it had a visible method and path. `None` when requests were seen but none can be
/// written (a rule without `http` would allow any request).
fn fqdn_rule(
    name: &str,
    ports: &BTreeSet<PortKey>,
    edges: &[&EdgeStats],
    depth: usize,
    notes: &mut Vec<String>,
) -> Option<Yaml> {
    let mut rule = vec![
        (
            "to".to_string(),
            Yaml::Seq(vec![Yaml::map([("fqdn", Yaml::str(name))])]),
        ),
        ("ports".to_string(), ports_yaml(ports)),
    ];
    let opaque = edges.iter().any(|e| e.opaque_requests > 0);
    let requests: Vec<&(String, String)> = edges.iter().flat_map(|e| e.requests.keys()).collect();
    if !opaque && !requests.is_empty() {
        let mut by_path: BTreeMap<Option<(&str, String)>, BTreeSet<&str>> = BTreeMap::new();
        for (method, path) in requests {
            if !plain_method(method) {
                notes.push(format!(
                    "{name}: method {method:?} not recommended: not an HTTP method the policy language can name"
                ));
                continue;
            }
            by_path
                .entry(path_condition(path, depth))
                .or_default()
                .insert(method);
        }
        let http = by_path
            .into_iter()
            .map(|(cond, methods)| {
                let mut m = vec![(
                    "methods".to_string(),
                    Yaml::Seq(methods.into_iter().map(Yaml::str).collect()),
                )];
                if let Some((kind, p)) = cond {
                    m.push(("path".to_string(), Yaml::map([(kind, Yaml::str(p))])));
                }
                Yaml::Map(m)
            })
            .collect::<Vec<_>>();
        if http.is_empty() {
            notes.push(format!(
                "{name}: not recommended: no request to it can be written as an http rule"
            ));
            return None;
        }
        rule.push(("http".to_string(), Yaml::Seq(http)));
    }
    Some(Yaml::Map(rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            object_name("recommended-Trainer_0..x-"),
            "recommended-trainer-0-x"
        );
        assert_eq!(
            path_condition("/v1/chat/completions?x=1", 1),
            Some(("prefix", "/v1".into()))
        );
        assert_eq!(
            path_condition("/v1/chat/completions", 2),
            Some(("prefix", "/v1/chat".into()))
        );
        assert_eq!(path_condition("/", 1), Some(("exact", "/".into())));
        assert_eq!(path_condition("/x", 0), None);
    }
}

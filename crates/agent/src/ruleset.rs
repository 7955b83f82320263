//! Rendering the nftables ruleset.
//!
//! Layout of `table inet palisade`:
//! - `forward` (hook forward): anti-spoofing first ([`crate::antispoof`]: a pod's packets
//!   must carry its own address), then established/related accepted, invalid dropped; then the
//!   under the deny posture new traffic of pod interfaces the snapshot does not know yet
//!   dropped ([`crate::newpod`]), then the
//!   sender's egress via a verdict map keyed by source IP, then the receiver's ingress via a
//!   verdict map keyed by destination IP. Lookups are hashed: cost does not grow with the
//!   number of pods.
//! - `input` (hook input): the same anti-spoofing for what pods send to the node itself
//!   (the DNS proxy attributes queries by source address), then the sender's egress for new
//!   connections to the node, Palisade's own node services exempt ([`crate::hostfw`]).
//! - `output` (hook output): a new TCP flow from the node to a pod starts with a SYN, and
//!   no new flow re-opens a closed UDP/SCTP conversation (`forward` checks both too:
//!   [`crate::revoke::revoked_rules`]).
//! - per pod and direction, one chain per non-empty stage section, in evaluation order:
//!   security tier, AdminNetworkPolicy / admin tier, NetworkPolicy + SecurityPolicy,
//!   ClusterSecurityPolicy baseline tier, BaselineAdminNetworkPolicy; the last one ends in
//!   the default posture. Each section ends by going to the next; `Pass` goes to the next
//!   section. Chains are named by a hash of their content, so pods with the same rules share
//!   them (a namespace of identical replicas costs one set of chains), and a pod with no
//!   rules under an allowing posture needs no entry at all. Egress Allow `return`s to
//!   `forward` (the ingress check follows); ingress Allow `accept`s; Deny drops (logged to
//!   NFLOG group [`LOG_GROUP`] with the rule id).
//! - pod sets (`ps<N>_4`/`_6`) for selector peers, so pods joining or leaving change set
//!   elements; FQDN peers use sets of (pod IP . destination IP) with timeouts
//!   (`fq<rule>_<peer>_4`) that the DNS proxy fills.

use palisade_policy::engine::{PeerMatch, PortMatch};
use palisade_policy::fqdn::FqdnPattern;
use palisade_policy::model::AdminAction;
use palisade_policy::{Direction, Engine, PodId, Posture, Protocol};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

mod script;

/// The table's name (family inet).
pub const TABLE: &str = "palisade";
/// NFLOG group for denied first packets and new allowed connections.
pub const LOG_GROUP: u16 = 7;

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Pods enforced on this node (their egress and ingress).
    pub local_pods: Vec<PodId>,
    /// Log denied first packets to NFLOG.
    pub log_denied: bool,
    /// Log new allowed connections to NFLOG.
    pub log_allowed: bool,
    /// The interface the node routes each local pod address to (see [`crate::antispoof`]):
    /// packets from these interfaces must carry their pod's address, and these addresses
    /// are accepted only from their interface. Addresses missing here are not checked.
    pub pod_interfaces: BTreeMap<IpAddr, String>,
    /// Palisade's listeners on the node (DNS proxy, transparent egress listener) that local
    /// pods reach whatever their egress policy (see [`crate::hostfw`]).
    pub node_services: Vec<crate::hostfw::NodeService>,
    /// Interface-name prefixes of the node's pod interfaces (`spec.agent
    /// .podInterfacePrefixes`): under the deny posture, new traffic from or to such an
    /// interface whose address is no local pod of the snapshot is dropped
    /// ([`crate::newpod`]).
    pub pod_interface_prefixes: Vec<String>,
}

/// A named set or map and its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    /// `set` or `map`.
    pub keyword: &'static str,
    /// Type and flags, e.g. `type ipv4_addr;` or `type ipv4_addr : verdict;`.
    pub spec: String,
    /// Elements as nft writes them (`10.0.0.1`, `10.0.0.1 : jump x`).
    pub elements: BTreeSet<String>,
}

/// A rendered ruleset: sets, maps and chains by name, so that two rulesets can be
/// compared and the difference applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    /// Sets and maps.
    pub sets: BTreeMap<String, SetDef>,
    /// Chains and their rules in order (the `forward` base chain included).
    pub chains: BTreeMap<String, Vec<String>>,
    /// Number of rules rendered.
    pub rules: usize,
    /// FQDN sets: name → (rule id, pattern).
    pub fqdn_sets: BTreeMap<String, (u32, FqdnPattern)>,
}

fn proto_kw(p: Protocol) -> &'static str {
    match p {
        Protocol::TCP => "tcp",
        Protocol::UDP => "udp",
        Protocol::SCTP => "sctp",
    }
}

/// Address match strings for one side, per family: (v4 match, v6 match). `None` means no
/// address of that family can match.
type AddrAlt = (Option<String>, Option<String>);

struct Ctx<'e> {
    engine: &'e Engine,
    used_sets: BTreeSet<u32>,
    fqdn_sets: BTreeMap<String, (u32, FqdnPattern)>,
    chains: BTreeMap<String, Vec<String>>,
    entry_cache: HashMap<EntryKey, Option<String>>,
    set_cache: HashMap<u32, std::rc::Rc<SetInfo>>,
    lines_cache: HashMap<LinesKey, Vec<String>>,
    opts: &'e RenderOptions,
}

/// A pod set's members, computed once per render.
struct SetInfo {
    pods: Vec<PodId>,
    v4: Vec<String>,
    v6: Vec<String>,
}

type LinesKey = (u32, Direction, String, Vec<(Option<String>, Protocol, u16)>);

type EntryKey = (
    Direction,
    Vec<u32>,
    Vec<u32>,
    Vec<u32>,
    Vec<u32>,
    Vec<(Option<String>, Protocol, u16)>,
);

fn fnv64(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in lines {
        for b in l.bytes().chain(std::iter::once(b'\n')) {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn ip_list(ips: &[IpAddr], v6: bool) -> Vec<String> {
    ips.iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .map(|ip| ip.to_string())
        .collect()
}

impl Ctx<'_> {
    fn set_info(&mut self, set: u32) -> std::rc::Rc<SetInfo> {
        if let Some(i) = self.set_cache.get(&set) {
            return i.clone();
        }
        let pods: Vec<PodId> = self.engine.pod_set(set).iter().collect();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for &p in &pods {
            for ip in &self.engine.pods()[p as usize].ips {
                if ip.is_ipv6() {
                    v6.push(ip.to_string());
                } else {
                    v4.push(ip.to_string());
                }
            }
        }
        let info = std::rc::Rc::new(SetInfo { pods, v4, v6 });
        self.set_cache.insert(set, info.clone());
        info
    }

    /// Alternatives for a peer, as address matches on `field` (`saddr` or `daddr`).
    fn peer_alts(
        &mut self,
        peer: &PeerMatch,
        field: &str,
        rule: u32,
        peer_idx: usize,
        dir: Direction,
    ) -> Vec<AddrAlt> {
        match peer {
            PeerMatch::Pods(set) => {
                let info = self.set_info(*set);
                if info.v4.is_empty() && info.v6.is_empty() {
                    return Vec::new();
                }
                self.used_sets.insert(*set);
                let has4 = !info.v4.is_empty();
                let has6 = !info.v6.is_empty();
                vec![(
                    has4.then(|| format!("ip {field} @ps{set}_4")),
                    has6.then(|| format!("ip6 {field} @ps{set}_6")),
                )]
            }
            PeerMatch::Block(b) => {
                let fam = if b.cidr.is_ipv6() { "ip6" } else { "ip" };
                let mut m = format!("{fam} {field} {}", b.cidr);
                let ex: Vec<String> = b
                    .except
                    .iter()
                    .filter(|e| e.is_ipv6() == b.cidr.is_ipv6())
                    .map(|e| e.to_string())
                    .collect();
                if !ex.is_empty() {
                    let _ = write!(m, " {fam} {field} != {{ {} }}", ex.join(", "));
                }
                if b.cidr.is_ipv6() {
                    vec![(None, Some(m))]
                } else {
                    vec![(Some(m), None)]
                }
            }
            PeerMatch::Fqdn(f) => {
                if dir != Direction::Egress {
                    return Vec::new();
                }
                let name = format!("fq{rule}_{peer_idx}");
                self.fqdn_sets.insert(name.clone(), (rule, f.clone()));
                vec![(
                    Some(format!("ip saddr . ip daddr @{name}_4")),
                    Some(format!("ip6 saddr . ip6 daddr @{name}_6")),
                )]
            }
            PeerMatch::Nothing => Vec::new(),
        }
    }

    /// Alternatives for the ports of a rule: (protocol/port match, extra destination
    /// address restriction for named ports on egress).
    fn port_alts(
        &self,
        ports: Option<&[PortMatch]>,
        me: PodId,
        dir: Direction,
        peer_pods: Option<&[PodId]>,
    ) -> Vec<(String, Option<Vec<IpAddr>>)> {
        let Some(ports) = ports else {
            return vec![(String::new(), None)];
        };
        let mut by_proto: BTreeMap<Protocol, Vec<String>> = BTreeMap::new();
        let mut any_proto: BTreeSet<Protocol> = BTreeSet::new();
        let mut named: BTreeMap<(Protocol, u16), Vec<IpAddr>> = BTreeMap::new();
        let mut named_local: BTreeMap<Protocol, Vec<String>> = BTreeMap::new();
        for p in ports {
            match p {
                PortMatch::Proto(pr) => {
                    any_proto.insert(*pr);
                }
                PortMatch::Range(pr, lo, hi) => {
                    let v = if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    };
                    by_proto.entry(*pr).or_default().push(v);
                }
                PortMatch::Named(pr, name) => {
                    let resolve = |pod: PodId| -> Vec<(Protocol, u16)> {
                        self.engine.pods()[pod as usize]
                            .ports
                            .iter()
                            .filter(|(n, cp, _)| {
                                n.as_deref() == Some(name.as_str()) && pr.is_none_or(|x| x == *cp)
                            })
                            .map(|(_, cp, num)| (*cp, *num))
                            .collect()
                    };
                    match dir {
                        Direction::Ingress => {
                            for (cp, num) in resolve(me) {
                                named_local.entry(cp).or_default().push(num.to_string());
                            }
                        }
                        Direction::Egress => {
                            // Host-network pods are node traffic: the engine never resolves
                            // a named port at a node address, so neither does the kernel.
                            let candidates: Vec<PodId> = match peer_pods {
                                Some(p) => p.to_vec(),
                                None => (0..self.engine.pods().len() as PodId)
                                    .filter(|&p| !self.engine.pods()[p as usize].host_network)
                                    .collect(),
                            };
                            for pod in candidates {
                                for (cp, num) in resolve(pod) {
                                    named.entry((cp, num)).or_default().extend(
                                        self.engine.pods()[pod as usize].ips.iter().copied(),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        for (pr, v) in named_local {
            by_proto.entry(pr).or_default().extend(v);
        }
        let mut out = Vec::new();
        for pr in &any_proto {
            out.push((format!("meta l4proto {}", proto_kw(*pr)), None));
        }
        for (pr, v) in by_proto {
            if any_proto.contains(&pr) {
                continue;
            }
            out.push((
                format!("{} dport {{ {} }}", proto_kw(pr), v.join(", ")),
                None,
            ));
        }
        for ((pr, num), ips) in named {
            out.push((format!("{} dport {num}", proto_kw(pr)), Some(ips)));
        }
        out
    }

    fn rule_lines(&mut self, me: PodId, dir: Direction, rid: u32, verdict: &str) -> Vec<String> {
        let own = if dir == Direction::Ingress {
            self.engine.pods()[me as usize].ports.clone()
        } else {
            Vec::new()
        };
        let key = (rid, dir, verdict.to_string(), own);
        if let Some(l) = self.lines_cache.get(&key) {
            return l.clone();
        }
        let lines = self.render_rule_lines(me, dir, rid, verdict);
        self.lines_cache.insert(key, lines.clone());
        lines
    }

    fn render_rule_lines(
        &mut self,
        me: PodId,
        dir: Direction,
        rid: u32,
        verdict: &str,
    ) -> Vec<String> {
        let r = self.engine.rule(rid);
        let field = if dir == Direction::Egress {
            "daddr"
        } else {
            "saddr"
        };
        let mut lines = Vec::new();
        let peer_alts: Vec<(AddrAlt, Option<Vec<PodId>>)> = match r.peers {
            None => vec![((Some(String::new()), Some(String::new())), None)],
            Some(peers) => {
                let mut v = Vec::new();
                for (i, p) in peers.iter().enumerate() {
                    let pods = match p {
                        PeerMatch::Pods(s) => Some(self.set_info(*s).pods.clone()),
                        _ => None,
                    };
                    for alt in self.peer_alts(p, field, rid, i, dir) {
                        v.push((alt, pods.clone()));
                    }
                }
                v
            }
        };
        for ((m4, m6), pods) in peer_alts {
            for (port, restrict) in self.port_alts(r.ports, me, dir, pods.as_deref()) {
                for (fam_match, v6) in [(m4.clone(), false), (m6.clone(), true)] {
                    let Some(addr) = fam_match else { continue };
                    // An "any" peer renders both families once: skip the duplicate.
                    if addr.is_empty() && v6 && restrict.is_none() {
                        continue;
                    }
                    let mut parts: Vec<String> = Vec::new();
                    if !addr.is_empty() {
                        parts.push(addr);
                    }
                    if let Some(ips) = &restrict {
                        let l = ip_list(ips, v6);
                        if l.is_empty() {
                            continue;
                        }
                        let fam = if v6 { "ip6" } else { "ip" };
                        parts.push(format!("{fam} daddr {{ {} }}", l.join(", ")));
                    }
                    if !port.is_empty() {
                        parts.push(port.clone());
                    }
                    lines.push(
                        format!("{} {verdict} comment \"r{rid}\"", parts.join(" "))
                            .trim_start()
                            .to_string(),
                    );
                }
            }
        }
        lines
    }

    fn deny_stmt(&self, rid: Option<u32>) -> String {
        let tag = rid
            .map(|r| format!("r{r}"))
            .unwrap_or_else(|| "default".into());
        if self.opts.log_denied {
            format!("log group {LOG_GROUP} prefix \"D {tag}\" drop")
        } else {
            "drop".to_string()
        }
    }

    fn allow_stmt(&self, dir: Direction, rid: Option<u32>) -> String {
        let v = if dir == Direction::Egress {
            "return"
        } else {
            "accept"
        };
        if self.opts.log_allowed && dir == Direction::Ingress {
            let tag = rid
                .map(|r| format!("r{r}"))
                .unwrap_or_else(|| "default".into());
            format!("log group {LOG_GROUP} prefix \"A {tag}\" {v}")
        } else {
            v.to_string()
        }
    }

    /// Renders one pod's rules for one direction as content-addressed chains (pods with the
    /// same rules share them) and returns the entry chain; `None` when nothing needs checking
    /// (no rules and an allowing default posture).
    fn pod_direction(&mut self, pod: PodId, dir: Direction) -> Option<String> {
        let rules = self.engine.pod_rules(pod, dir);
        let enforce_ns: Vec<u32> = rules
            .ns_policies
            .iter()
            .copied()
            .filter(|&p| !self.engine.policy_is_audit(p))
            .collect();
        let own_ports = if dir == Direction::Ingress {
            self.engine.pods()[pod as usize].ports.clone()
        } else {
            Vec::new()
        };
        let key = (
            dir,
            rules.tiered.to_vec(),
            enforce_ns.clone(),
            rules.ns_rules.to_vec(),
            rules.baseline.to_vec(),
            own_ports,
        );
        if let Some(v) = self.entry_cache.get(&key) {
            return v.clone();
        }
        let mut tier_rules: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
        for &rid in rules.tiered.iter().chain(rules.baseline) {
            let r = self.engine.rule(rid);
            if !r.audit {
                tier_rules.entry(r.tier_rank).or_default().push(rid);
            }
        }
        let default_verdict = match self.engine.posture() {
            Posture::Allow => self.allow_stmt(dir, None),
            Posture::Deny => self.deny_stmt(None),
        };
        // Build from the last stage back, so each section knows where it continues.
        let mut next: Option<String> = None;
        let continue_stmt = |next: &Option<String>| match next {
            Some(n) => format!("goto {n}"),
            None => default_verdict.clone(),
        };
        for section in [3u8, 2, 9, 1, 0] {
            let mut body = Vec::new();
            if section == 9 {
                if enforce_ns.is_empty() {
                    continue;
                }
                for &rid in rules.ns_rules {
                    if self.engine.rule(rid).audit {
                        continue;
                    }
                    let v = self.allow_stmt(dir, Some(rid));
                    body.extend(self.rule_lines(pod, dir, rid, &v));
                }
                let tag = format!("p{}", enforce_ns[0]);
                body.push(if self.opts.log_denied {
                    format!("log group {LOG_GROUP} prefix \"D ns {tag}\" drop")
                } else {
                    "drop".into()
                });
            } else {
                let Some(ids) = tier_rules.get(&section) else {
                    continue;
                };
                for &rid in ids {
                    let r = self.engine.rule(rid);
                    // HTTP conditions: a connection is allowed pending per-request checks;
                    // it is never denied or passed on them.
                    if r.has_http && r.action != AdminAction::Allow {
                        continue;
                    }
                    let verdict = match r.action {
                        AdminAction::Allow => self.allow_stmt(dir, Some(rid)),
                        AdminAction::Deny => self.deny_stmt(Some(rid)),
                        AdminAction::Pass => continue_stmt(&next),
                    };
                    body.extend(self.rule_lines(pod, dir, rid, &verdict));
                }
                if body.is_empty() {
                    continue;
                }
                body.push(continue_stmt(&next));
            }
            let name = format!(
                "{}_{:016x}",
                if dir == Direction::Egress { "e" } else { "i" },
                fnv64(&body)
            );
            self.chains.entry(name.clone()).or_insert_with(|| body);
            next = Some(name);
        }
        let entry = match next {
            Some(n) => Some(n),
            None if self.engine.posture() == Posture::Allow => None,
            None => {
                let name = if dir == Direction::Egress {
                    "e_default_deny"
                } else {
                    "i_default_deny"
                };
                self.chains
                    .insert(name.to_string(), vec![default_verdict.clone()]);
                Some(name.to_string())
            }
        };
        self.entry_cache.insert(key, entry.clone());
        entry
    }
}

/// Renders the table for the local pods.
pub fn render(engine: &Engine, opts: &RenderOptions) -> Ruleset {
    let mut cx = Ctx {
        engine,
        used_sets: BTreeSet::new(),
        fqdn_sets: BTreeMap::new(),
        chains: BTreeMap::new(),
        entry_cache: HashMap::new(),
        set_cache: HashMap::new(),
        lines_cache: HashMap::new(),
        opts,
    };
    let local: Vec<PodId> = opts
        .local_pods
        .iter()
        .copied()
        .filter(|p| {
            !engine.pods()[*p as usize].host_network && !engine.pods()[*p as usize].ips.is_empty()
        })
        .collect();
    let mut entries: Vec<(PodId, Option<String>, Option<String>)> = Vec::new();
    for &p in &local {
        let e = cx.pod_direction(p, Direction::Egress);
        let i = cx.pod_direction(p, Direction::Ingress);
        entries.push((p, e, i));
    }
    let mut sets: BTreeMap<String, SetDef> = BTreeMap::new();
    let used: Vec<u32> = cx.used_sets.iter().copied().collect();
    for set in used {
        let info = cx.set_info(set);
        for (v6, ty) in [(false, "ipv4_addr"), (true, "ipv6_addr")] {
            let suffix = if v6 { 6 } else { 4 };
            let list = if v6 { &info.v6 } else { &info.v4 };
            sets.insert(
                format!("ps{set}_{suffix}"),
                SetDef {
                    keyword: "set",
                    spec: format!("type {ty};"),
                    elements: list.iter().cloned().collect(),
                },
            );
        }
    }
    for name in cx.fqdn_sets.keys() {
        for (suffix, ty) in [(4, "ipv4_addr . ipv4_addr"), (6, "ipv6_addr . ipv6_addr")] {
            sets.insert(
                format!("{name}_{suffix}"),
                SetDef {
                    keyword: "set",
                    spec: format!("type {ty}; flags timeout;"),
                    elements: BTreeSet::new(),
                },
            );
        }
    }
    // One map key per address. Two local pods can claim one address (a finished pod keeps
    // its IP in status while a new pod reuses it); duplicate keys would make nft reject the
    // whole update and leave the old ruleset, stale chains included, in force. The pod the
    // engine attributes the address to wins (so kernel and engine agree), else the first.
    let mut owner: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (idx, (p, _, _)) in entries.iter().enumerate() {
        for ip in &engine.pods()[*p as usize].ips {
            let e = owner.entry(*ip).or_insert(idx);
            if engine.pod_by_ip(*ip) == Some(*p) {
                *e = idx;
            }
        }
    }
    for (map, egress) in [("egress", true), ("ingress", false)] {
        for (v6, ty) in [(false, "ipv4_addr"), (true, "ipv6_addr")] {
            let suffix = if v6 { 6 } else { 4 };
            let elements: BTreeSet<String> = owner
                .iter()
                .filter(|(ip, _)| ip.is_ipv6() == v6)
                .filter_map(|(ip, &idx)| {
                    let (_, e, i) = &entries[idx];
                    let chain = if egress { e.as_ref() } else { i.as_ref() }?;
                    Some(format!("{ip} : jump {chain}"))
                })
                .collect();
            sets.insert(
                format!("{map}_{suffix}"),
                SetDef {
                    keyword: "map",
                    spec: format!("type {ty} : verdict;"),
                    elements,
                },
            );
        }
    }
    for (v6, ty) in [(false, "ipv4_addr"), (true, "ipv6_addr")] {
        sets.insert(
            format!("{}_{}", crate::hostfw::LOCAL_PODS, if v6 { 6 } else { 4 }),
            SetDef {
                keyword: "set",
                spec: format!("type {ty};"),
                elements: owner
                    .keys()
                    .filter(|ip| ip.is_ipv6() == v6)
                    .map(|ip| ip.to_string())
                    .collect(),
            },
        );
    }
    crate::antispoof::render_into(&mut sets, &opts.pod_interfaces);
    let mut forward = crate::antispoof::forward_rules();
    forward.extend([
        "ct state established,related accept".to_string(),
        "ct state invalid drop".into(),
        // A pod's TCP connection starts with a SYN. Conntrack otherwise picks a connection up
        // from any mid-stream packet ("loose" tracking): once the agent has deleted the entry
        // of a connection that policy now denies, the peer's next packet (an ACK, a reply)
        // would open a fresh entry in the allowed direction, and the denied side's packets
        // would pass again as its replies.
        // By address, not interface: pods whose interface the agent does not know (bridge
        // CNIs, a route not there yet) are covered too.
    ]);
    // A pod the snapshot does not hold yet is held to the deny posture (new packets only).
    forward.extend(crate::newpod::forward_rules(
        &opts.pod_interface_prefixes,
        engine.posture(),
        opts.log_denied,
    ));
    forward.extend(crate::hostfw::syn_only(&["saddr", "daddr"]));
    forward.extend(crate::revoke::revoked_rules(false));
    forward.extend([
        "ip saddr vmap @egress_4".into(),
        "ip6 saddr vmap @egress_6".into(),
        "ip daddr vmap @ingress_4".into(),
        "ip6 daddr vmap @ingress_6".into(),
    ]);
    if opts.log_allowed {
        // Allowed new connections to destinations that are not local pods.
        forward.push(format!(
            "ct state new log group {LOG_GROUP} prefix \"A egress\""
        ));
    }
    cx.chains.insert("forward".into(), forward);
    crate::hostfw::render_into(&mut sets, &opts.node_services);
    let mut input = crate::antispoof::input_rules();
    input.extend(crate::hostfw::input_rules(crate::newpod::input_rules(
        &opts.pod_interface_prefixes,
        engine.posture(),
        opts.log_denied,
    )));
    cx.chains.insert("input".into(), input);
    let mut output = crate::hostfw::output_rules();
    output.extend(crate::revoke::revoked_rules(true));
    cx.chains.insert("output".into(), output);
    crate::revoke::revoked_sets(&mut sets);
    cx.chains.insert(
        crate::antispoof::CHAIN.into(),
        crate::antispoof::chain_rules(),
    );
    let rules = cx.chains.values().map(Vec::len).sum();
    Ruleset {
        sets,
        chains: cx.chains,
        rules,
        fqdn_sets: cx.fqdn_sets,
    }
}

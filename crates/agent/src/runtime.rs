//! The agent's reconcile step: which pods are local, render, apply atomically, remember
//! what is in force. A rejected transaction leaves the previous ruleset in the kernel.

use crate::nfnetlink::{ElementError, NftSocket};
use crate::nft::{self, NftError};
use crate::ruleset::{render, RenderOptions, TABLE};
use palisade_policy::{Engine, PodId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

/// Which pods this agent enforces.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// This node's name (pods with `spec.nodeName` equal to it are local).
    pub node: String,
    /// Enforce for every pod regardless of node (standalone, one machine).
    pub all_nodes: bool,
    /// Apply inside this network namespace instead of the current one.
    pub netns: Option<String>,
    /// Log denied first packets and new allowed connections to NFLOG.
    pub log_flows: bool,
    /// Palisade's listeners on this node that local pods reach whatever their egress policy
    /// (the DNS proxy, the transparent egress listener; see [`crate::hostfw`]). Every other
    /// new connection from a pod to its node is held to the pod's egress policy.
    pub node_services: Vec<crate::hostfw::NodeService>,
}

/// What one reconcile did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyStats {
    /// Local pods enforced.
    pub pods: usize,
    /// Rules rendered.
    pub rules: usize,
    /// Chains rendered.
    pub chains: usize,
    /// Time to render (µs).
    pub render_us: u128,
    /// Time for `nft` to apply (µs).
    pub apply_us: u128,
    /// Whether the kernel already had exactly this ruleset (nothing applied).
    pub unchanged: bool,
    /// Whether only the difference was applied.
    pub incremental: bool,
}

/// The agent's state between reconciles.
#[derive(Debug, Default)]
pub struct Agent {
    settings: Option<AgentSettings>,
    applied: Option<crate::ruleset::Ruleset>,
    /// Netlink socket for element-only updates, opened on first use.
    netlink: Option<NftSocket>,
    /// Interface-name prefixes of pod interfaces (`spec.agent.podInterfacePrefixes`).
    pod_interface_prefixes: Vec<String>,
    /// Pod addresses bound to the bridge port they sit behind ([`crate::bridge::bind`]).
    bridge_ports: BTreeMap<IpAddr, String>,
    /// Pod addresses no bridge port may send from ([`crate::bridge::Binding::held`]).
    bridge_held: BTreeSet<IpAddr>,
    /// Bridge port → (its index, the pod, `namespace/name`, it serves).
    bridge_owners: BTreeMap<String, (u32, String)>,
    /// The rest of what `table bridge palisade` checks ([`crate::bridge::PortGuard`]).
    bridge_guard: crate::bridge::PortGuard,
    /// Bridge port → (its index, the MAC it is bound to) ([`crate::bridge::bind_macs`]).
    bridge_macs: BTreeMap<String, (u32, [u8; 6])>,
    /// Whether `table bridge palisade` in the kernel holds exactly `bridge_ports`,
    /// `bridge_held` and `bridge_guard` (false at start: a previous run's table is replaced
    /// or removed).
    bridge_applied: bool,
    /// When each unbound bridged address was last probed ([`crate::bridge::probe`]).
    bridge_probed: BTreeMap<IpAddr, Instant>,
    /// Closed UDP/SCTP conversations and until when they stay refused: carried over full
    /// rebuilds of the table, which would otherwise start their sets empty.
    revoked: BTreeMap<crate::revoke::Revoked, Instant>,
}

/// How often an address that did not answer is probed again.
const PROBE_AGAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The pods local to `settings.node` (all when `all_nodes`).
pub fn local_pods(engine: &Engine, settings: &AgentSettings) -> Vec<PodId> {
    engine
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| settings.all_nodes || p.node.as_deref() == Some(settings.node.as_str()))
        .map(|(i, _)| i as PodId)
        .collect()
}

/// The interface the node routes each address of `pods` to, for anti-spoofing (see
/// [`crate::antispoof`]). Addresses without a host route are reported and left unchecked.
pub fn pod_interfaces(
    engine: &Engine,
    pods: &[PodId],
    netns: Option<&str>,
) -> BTreeMap<IpAddr, String> {
    let ips: Vec<IpAddr> = pods
        .iter()
        .map(|&p| &engine.pods()[p as usize])
        .filter(|p| !p.host_network)
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    if ips.is_empty() {
        return BTreeMap::new();
    }
    match crate::antispoof::discover(netns, &ips) {
        Ok(found) => {
            let missing = ips.iter().filter(|ip| !found.contains_key(ip)).count();
            if missing > 0 {
                tracing::warn!(
                    missing,
                    "local pod addresses without a host route to their interface: their \
                     source addresses are checked only once bound to a bridge port"
                );
                // Such pods may sit behind a Linux bridge, whose traffic meets the policy
                // in `forward` only through br_netfilter.
                use crate::bridge::BridgeFiltering;
                match crate::bridge::filter_bridged_traffic(netns) {
                    Ok(BridgeFiltering::AlreadyOn) => {}
                    Ok(BridgeFiltering::TurnedOn) => tracing::info!(
                        "bridged pod traffic now passes the policy: \
                         net.bridge.bridge-nf-call-iptables and -ip6tables turned on"
                    ),
                    Ok(BridgeFiltering::Unavailable) => tracing::warn!(
                        "br_netfilter is not loaded: pods behind a Linux bridge reach each \
                         other past the policy (load it: modprobe br_netfilter)"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot turn on br_netfilter: pods behind a Linux bridge reach each \
                         other past the policy"
                    ),
                }
            }
            found
        }
        Err(e) => {
            tracing::warn!(error = %e, "anti-spoofing off: cannot read pod routes");
            BTreeMap::new()
        }
    }
}

impl Agent {
    /// A new agent.
    pub fn new(settings: AgentSettings) -> Self {
        Agent {
            settings: Some(settings),
            applied: None,
            netlink: None,
            pod_interface_prefixes: Vec::new(),
            bridge_ports: BTreeMap::new(),
            bridge_held: BTreeSet::new(),
            bridge_owners: BTreeMap::new(),
            bridge_guard: crate::bridge::PortGuard::default(),
            bridge_macs: BTreeMap::new(),
            bridge_applied: false,
            bridge_probed: BTreeMap::new(),
            revoked: BTreeMap::new(),
        }
    }

    /// The script that replaces the whole table with `rs`, the closed UDP/SCTP
    /// conversations still remembered (by this agent, or by the kernel's table: a previous
    /// run's) added in the same transaction with the time they have left.
    fn full_script(&mut self, rs: &crate::ruleset::Ruleset, netns: Option<&str>) -> String {
        let now = Instant::now();
        for (r, secs) in crate::revoke::read_revoked(netns) {
            let until = now + std::time::Duration::from_secs(secs);
            let e = self.revoked.entry(r).or_insert(until);
            *e = (*e).max(until);
        }
        self.revoked.retain(|_, until| *until > now);
        let left: Vec<(crate::revoke::Revoked, u64)> = self
            .revoked
            .iter()
            .map(|(r, until)| (r.clone(), until.duration_since(now).as_secs()))
            .collect();
        let mut script = rs.full_script();
        script.push_str(&crate::revoke::remember_script(&left));
        script
    }

    /// The pod addresses bound to bridge ports ([`crate::bridge`]'s anti-spoofing).
    pub fn bridge_ports(&self) -> &BTreeMap<IpAddr, String> {
        &self.bridge_ports
    }

    /// Binds the local pod addresses that have no host route (`routed`) to the bridge port
    /// they sit behind and keeps `table bridge palisade` in step ([`crate::bridge::bind`],
    /// [`crate::bridge::port_script`]). Each port's peer (the pod's interface) is read for
    /// the addresses configured on it; only addresses found on no readable peer fall back to
    /// the learned tables: probed once, waited for briefly, and picked up by a later
    /// reconcile or resync if they answer late.
    fn guard_bridge_ports(
        &mut self,
        engine: &Engine,
        pods: &[PodId],
        routed: &BTreeMap<IpAddr, String>,
        netns: Option<&str>,
    ) -> BTreeMap<IpAddr, BTreeSet<String>> {
        let wanted: Vec<(IpAddr, String)> = pods
            .iter()
            .map(|&p| &engine.pods()[p as usize])
            .filter(|p| !p.host_network)
            .flat_map(|p| {
                let key = format!("{}/{}", p.namespace, p.name);
                p.ips.iter().map(move |ip| (*ip, key.clone()))
            })
            .filter(|(ip, _)| !routed.contains_key(ip))
            .collect();
        let (bound, held, guard) = if wanted.is_empty() {
            self.bridge_owners.clear();
            self.bridge_macs.clear();
            (
                BTreeMap::new(),
                BTreeSet::new(),
                crate::bridge::PortGuard::default(),
            )
        } else {
            match self.bind_bridge_ports(&wanted, netns) {
                Ok((b, guard)) => {
                    self.bridge_owners = b.owners;
                    (b.bound, b.held, guard)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the node's bridges: bridge port bindings kept");
                    (
                        self.bridge_ports.clone(),
                        self.bridge_held.clone(),
                        self.bridge_guard.clone(),
                    )
                }
            }
        };
        // The bridged addresses may reach `inet palisade` from the node's bridges only.
        let bridges: BTreeSet<String> = guard.bridges.clone();
        let bridged = if bridges.is_empty() {
            BTreeMap::new()
        } else {
            wanted
                .iter()
                .map(|(ip, _)| (*ip, bridges.clone()))
                .collect()
        };
        if self.bridge_applied
            && bound == self.bridge_ports
            && held == self.bridge_held
            && guard == self.bridge_guard
        {
            return bridged;
        }
        match nft::apply(&crate::bridge::port_script(&bound, &held, &guard), netns) {
            Ok(()) => {
                if bound.len() != self.bridge_ports.len() || held.len() != self.bridge_held.len() {
                    tracing::info!(
                        bound = bound.len(),
                        held = held.len(),
                        "pod addresses bound to bridge ports"
                    );
                }
                self.bridge_ports = bound;
                self.bridge_held = held;
                self.bridge_guard = guard;
                self.bridge_applied = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "bridge port anti-spoofing not applied");
                self.bridge_applied = false;
            }
        }
        bridged
    }

    fn bind_bridge_ports(
        &mut self,
        wanted: &[(IpAddr, String)],
        netns: Option<&str>,
    ) -> Result<(crate::bridge::Binding<String>, crate::bridge::PortGuard), String> {
        let (ports, node_addrs) = crate::bridge::read_ports(netns)?;
        if ports.is_empty() {
            let none = crate::bridge::Binding {
                bound: BTreeMap::new(),
                held: BTreeSet::new(),
                owners: BTreeMap::new(),
            };
            return Ok((none, crate::bridge::PortGuard::default()));
        }
        let mut guard = crate::bridge::PortGuard {
            served: BTreeSet::new(),
            pod_ports: ports
                .iter()
                .filter(|p| p.peer.is_some())
                .map(|p| p.name.clone())
                .collect(),
            bridges: ports.iter().map(|p| p.bridge.clone()).collect(),
            node_addrs,
            macs: BTreeMap::new(),
        };
        let binding = self.bind_ports(wanted, netns, ports.clone())?;
        // The ports that serve a pod, each held to its pod's MAC from the first time it is
        // read.
        let served: BTreeMap<String, u32> = binding
            .owners
            .iter()
            .map(|(port, (index, _))| (port.clone(), *index))
            .collect();
        // Only ports not bound to a MAC yet are read (a bound one keeps its MAC).
        let unbound: Vec<crate::bridge::Port> = ports
            .iter()
            .filter(|p| served.get(&p.name) == Some(&p.index))
            .filter(|p| {
                self.bridge_macs
                    .get(&p.name)
                    .is_none_or(|(index, _)| *index != p.index)
            })
            .cloned()
            .collect();
        let read = if unbound.is_empty() {
            BTreeMap::new()
        } else {
            crate::bridge::read_peer_macs(netns, &unbound).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "bridge ports' pod MACs not read: bound MACs kept");
                BTreeMap::new()
            })
        };
        self.bridge_macs = crate::bridge::bind_macs(&self.bridge_macs, &served, &read);
        guard.macs = self
            .bridge_macs
            .iter()
            .map(|(port, (_, mac))| (port.clone(), *mac))
            .collect();
        guard.served = served.into_keys().collect();
        Ok((binding, guard))
    }

    fn bind_ports(
        &mut self,
        wanted: &[(IpAddr, String)],
        netns: Option<&str>,
        ports: Vec<crate::bridge::Port>,
    ) -> Result<crate::bridge::Binding<String>, String> {
        let peer_addrs = match crate::bridge::read_peers(netns, &ports) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "bridge ports' pod addresses not read: learned bindings only");
                BTreeMap::new()
            }
        };
        let authoritative = crate::bridge::BridgeView {
            ports: ports.clone(),
            peer_addrs: peer_addrs.clone(),
            ..Default::default()
        };
        let bind = |view: &crate::bridge::BridgeView| {
            crate::bridge::bind(&self.bridge_ports, &self.bridge_owners, wanted, view)
        };
        let unresolved = |b: &crate::bridge::Binding<String>| -> Vec<IpAddr> {
            wanted
                .iter()
                .map(|(ip, _)| *ip)
                .filter(|ip| !b.bound.contains_key(ip) && !b.held.contains(ip))
                .collect()
        };
        let mut binding = bind(&authoritative);
        if unresolved(&binding).is_empty() {
            return Ok(binding);
        }
        // The learned fallback, for pods behind ports whose peer cannot be read.
        let learned = || -> Result<crate::bridge::BridgeView, String> {
            let mut view = crate::bridge::read_view(netns, ports.clone())?;
            view.peer_addrs = peer_addrs.clone();
            Ok(view)
        };
        binding = bind(&learned()?);
        let now = Instant::now();
        self.bridge_probed
            .retain(|ip, _| wanted.iter().any(|(w, _)| w == ip));
        let to_probe: Vec<IpAddr> = unresolved(&binding)
            .into_iter()
            .filter(|ip| {
                self.bridge_probed
                    .get(ip)
                    .is_none_or(|t| now.duration_since(*t) >= PROBE_AGAIN)
            })
            .collect();
        if to_probe.is_empty() {
            return Ok(binding);
        }
        for ip in &to_probe {
            self.bridge_probed.insert(*ip, now);
        }
        crate::bridge::probe(netns, &to_probe);
        for _ in 0..6 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            binding =
                crate::bridge::bind(&self.bridge_ports, &self.bridge_owners, wanted, &learned()?);
            if to_probe.iter().all(|ip| binding.bound.contains_key(ip)) {
                break;
            }
        }
        Ok(binding)
    }

    /// Holds interfaces whose names start with one of `prefixes` (the CNI's pod interfaces:
    /// `cali`, `lxc`, …) to the deny posture while their address is no local pod of the
    /// snapshot ([`crate::newpod`]); nothing changes under the allowing posture. Prefixes
    /// that are not interface-name beginnings are left out (validation reports them).
    pub fn with_pod_interface_prefixes(mut self, prefixes: Vec<String>) -> Self {
        self.pod_interface_prefixes = prefixes
            .into_iter()
            .filter(|p| crate::newpod::valid_prefix(p))
            .collect();
        self
    }

    /// Closes the open connections `engine` now denies, of those the ruleset decides here
    /// (pod to pod with a local end, a local pod to this node or to and from outside
    /// addresses: [`crate::revoke::decide`]); returns how many. Closed UDP and SCTP
    /// conversations are remembered so neither side re-opens them (also over a full rebuild
    /// of the table, until they expire). Call it after the new
    /// ruleset is in force, so the connections' next packets meet it.
    pub fn close_denied(&mut self, engine: &Engine) -> std::io::Result<usize> {
        let Some(settings) = &self.settings else {
            return Ok(0);
        };
        let netns = settings.netns.as_deref();
        let tracked = crate::revoke::list(netns)?;
        let node = crate::revoke::NodeScope {
            local_pods: local_pods(engine, settings).into_iter().collect(),
            local_addrs: crate::revoke::node_addresses(netns)?,
            pod_interfaces: self
                .applied
                .as_ref()
                .map(crate::antispoof::checked_addresses)
                .unwrap_or_default(),
            node_services: settings.node_services.clone(),
        };
        let denied = crate::revoke::now_denied(engine, &node, &tracked);
        let remember = crate::revoke::remember(&denied);
        if !remember.is_empty() {
            if let Err(e) = nft::apply(&remember, netns) {
                tracing::warn!(error = %e, "closed UDP/SCTP conversations not remembered");
            }
            let until = Instant::now() + crate::revoke::REVOKED_FOR;
            for r in crate::revoke::revoked_entries(&denied) {
                self.revoked.insert(r, until);
            }
        }
        let mut closed = 0;
        for t in denied {
            if crate::revoke::delete(netns, t)? {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Renders the engine's policy for the local pods and applies it in one transaction.
    pub fn reconcile(&mut self, engine: &Engine) -> Result<ApplyStats, NftError> {
        let settings = self.settings.clone().unwrap_or(AgentSettings {
            node: String::new(),
            all_nodes: true,
            netns: None,
            log_flows: false,
            node_services: Vec::new(),
        });
        let t0 = Instant::now();
        let pods = local_pods(engine, &settings);
        let routed = pod_interfaces(engine, &pods, settings.netns.as_deref());
        let bridged = self.guard_bridge_ports(engine, &pods, &routed, settings.netns.as_deref());
        let mut rs = render(
            engine,
            &RenderOptions {
                pod_interfaces: routed,
                local_pods: pods.clone(),
                log_denied: settings.log_flows,
                log_allowed: settings.log_flows,
                node_services: settings.node_services.clone(),
                pod_interface_prefixes: self.pod_interface_prefixes.clone(),
            },
        );
        crate::antispoof::add_bridged(&mut rs.sets, &bridged);
        let render_us = t0.elapsed().as_micros();
        let mut stats = ApplyStats {
            pods: pods.len(),
            rules: rs.rules,
            chains: rs.chain_count(),
            render_us,
            ..ApplyStats::default()
        };
        let t1 = Instant::now();
        // Incremental against what this agent applied last; a full atomic rebuild on the
        // first reconcile (adopting whatever table a previous run left), when the difference
        // cannot be expressed, or when the kernel rejects it (someone changed the table).
        // Listing the kernel's table first would cost more than the update itself.
        // Pods coming and going change only elements: one netlink batch, no `nft` process
        // and no cache dump.
        if let Some(batch) = self.applied.as_ref().and_then(|old| rs.element_batch(old)) {
            if batch.is_empty() {
                stats.unchanged = true;
                stats.apply_us = t1.elapsed().as_micros();
                self.applied = Some(rs);
                return Ok(stats);
            }
            match self.apply_elements(&batch, settings.netns.as_deref()) {
                Ok(()) => {
                    stats.incremental = true;
                    stats.apply_us = t1.elapsed().as_micros();
                    self.applied = Some(rs);
                    return Ok(stats);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "element update over netlink failed; using nft");
                    self.netlink = None;
                }
            }
        }
        let diff = self.applied.as_ref().and_then(|old| rs.diff_script(old));
        match diff {
            Some(d) if d.is_empty() => stats.unchanged = true,
            Some(d) => {
                stats.incremental = true;
                if let Err(e) = nft::apply(&d, settings.netns.as_deref()) {
                    tracing::warn!(error = %e, "incremental update rejected; rebuilding the table");
                    stats.incremental = false;
                    let script = self.full_script(&rs, settings.netns.as_deref());
                    nft::apply(&script, settings.netns.as_deref())?;
                }
            }
            None => {
                let script = self.full_script(&rs, settings.netns.as_deref());
                nft::apply(&script, settings.netns.as_deref())?
            }
        }
        stats.apply_us = t1.elapsed().as_micros();
        self.applied = Some(rs);
        Ok(stats)
    }

    /// Whether the table this agent applied is still in the kernel with its base chains
    /// filled. Something else can remove it without the agent noticing (`nft flush
    /// ruleset` when a host firewall reloads, a hand edit); reconciles only apply
    /// differences, so without this check the node would stay open until policy changed.
    pub fn table_intact(&self) -> bool {
        let ns = self.settings.as_ref().and_then(|s| s.netns.clone());
        if !self.bridge_ports.is_empty()
            && !nft::run(
                &[
                    "list",
                    "chain",
                    "bridge",
                    crate::bridge::PORT_TABLE,
                    "port_source",
                ],
                ns.as_deref(),
            )
            .is_ok_and(|out| out.contains("@src_4"))
        {
            return false;
        }
        [
            ("forward", "ct state established"),
            ("input", "jump pod_source"),
            ("input", "saddr vmap @egress_4"),
            ("output", "daddr @local_pods_4"),
            (crate::antispoof::CHAIN, "@pod_ifaces"),
        ]
        .iter()
        .all(|(chain, rule)| {
            nft::run(&["list", "chain", "inet", TABLE, chain], ns.as_deref())
                .is_ok_and(|out| out.contains(rule))
        })
    }

    /// The periodic check: when the table is no longer intact, forgets what was applied and
    /// rebuilds it in one transaction from `engine`; otherwise reconciles as usual, which
    /// also picks up pod interfaces whose routes appeared after their pod (anti-spoofing).
    /// When anything changed, the connections opened meanwhile that `engine` denies (while
    /// the table was gone, or before a pod's interface was known) are closed too
    /// ([`Agent::close_denied`]). `Ok(None)` when nothing had to change (or this agent
    /// never applied anything).
    pub fn resync(&mut self, engine: &Engine) -> Result<Option<ApplyStats>, NftError> {
        if self.applied.is_none() {
            return Ok(None);
        }
        if !self.table_intact() {
            tracing::warn!("the ruleset was removed or emptied outside the agent; rebuilding it");
            self.applied = None;
            self.bridge_applied = false;
        }
        let stats = self.reconcile(engine)?;
        if stats.unchanged {
            return Ok(None);
        }
        match self.close_denied(engine) {
            Ok(0) => {}
            Ok(closed) => tracing::info!(
                closed,
                "connections opened while the ruleset was not in force, now denied, closed"
            ),
            Err(e) => tracing::warn!(error = %e, "open connections not checked after the resync"),
        }
        Ok(Some(stats))
    }

    fn apply_elements(
        &mut self,
        batch: &crate::nfnetlink::ElementBatch,
        netns: Option<&str>,
    ) -> Result<(), ElementError> {
        if self.netlink.is_none() {
            self.netlink = Some(NftSocket::open(netns)?);
        }
        match self.netlink.as_mut() {
            Some(sock) => sock.apply(TABLE, batch),
            None => Ok(()),
        }
    }

    /// Removes Palisade's table (only it; nothing else on the host is touched).
    pub fn remove(&mut self) -> Result<(), NftError> {
        let ns = self.settings.as_ref().and_then(|s| s.netns.clone());
        self.applied = None;
        self.bridge_ports.clear();
        self.bridge_held.clear();
        self.bridge_owners.clear();
        self.bridge_guard = crate::bridge::PortGuard::default();
        self.bridge_macs.clear();
        self.bridge_applied = false;
        nft::apply(
            &format!(
                "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n{}",
                crate::bridge::port_script(
                    &BTreeMap::new(),
                    &BTreeSet::new(),
                    &crate::bridge::PortGuard::default()
                )
            ),
            ns.as_deref(),
        )
    }
}

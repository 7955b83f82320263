//! The agent's reconcile step: which pods are local, render, apply atomically, remember
//! what is in force. A rejected transaction leaves the previous ruleset in the kernel.

use crate::nfnetlink::{ElementError, NftSocket};
use crate::nft::{self, NftError};
use crate::ruleset::{render, RenderOptions, TABLE};
use palisade_policy::{Engine, PodId};
use std::collections::BTreeMap;
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
}

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
                     source addresses are not checked (anti-spoofing)"
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
        }
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
    /// conversations are remembered so neither side re-opens them. Call it after the new
    /// ruleset is in force, so the connections' next packets meet it.
    pub fn close_denied(&self, engine: &Engine) -> std::io::Result<usize> {
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
        let rs = render(
            engine,
            &RenderOptions {
                pod_interfaces: pod_interfaces(engine, &pods, settings.netns.as_deref()),
                local_pods: pods.clone(),
                log_denied: settings.log_flows,
                log_allowed: settings.log_flows,
                node_services: settings.node_services.clone(),
                pod_interface_prefixes: self.pod_interface_prefixes.clone(),
            },
        );
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
                    nft::apply(&rs.full_script(), settings.netns.as_deref())?;
                }
            }
            None => nft::apply(&rs.full_script(), settings.netns.as_deref())?,
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
        nft::apply(
            &format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"),
            ns.as_deref(),
        )
    }
}

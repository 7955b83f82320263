//! Flow events from the kernel: each NFLOG'd packet becomes a `flow` event, attributed by
//! the engine (the same answer `palisade explain` gives), with the kernel's own verdict.

use crate::nflog::{LoggedPacket, NflogSocket};
use palisade_events::from_policy::pod_endpoint;
use palisade_events::{
    Endpoint, EndpointKind, Event, EventBody, EventSender, FlowInfo, FlowState, PolicyRef,
    Protocol as EvProto, Timestamp, Verdict as EvVerdict,
};
use palisade_policy::{Action, Endpoint as Ep, Engine, Flow, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the flow event for a logged packet.
pub fn flow_event(engine: &Engine, pkt: &LoggedPacket, cluster: &str, node: &str) -> Option<Event> {
    let protocol = match pkt.protocol {
        6 => Protocol::TCP,
        17 => Protocol::UDP,
        132 => Protocol::SCTP,
        _ => return None,
    };
    let src = engine.endpoint_for_ip(pkt.src);
    let dst = engine.endpoint_for_ip(pkt.dst);
    let v = engine.verdict(&Flow {
        src,
        dst,
        port: pkt.dst_port,
        protocol,
        http: None,
    });
    let kernel_denied = pkt.prefix.starts_with('D');
    let verdict = if kernel_denied {
        EvVerdict::Deny
    } else if v.action == Action::Audit {
        EvVerdict::Audit
    } else {
        EvVerdict::Allow
    };
    let policy = v
        .decisive()
        .and_then(|d| engine.policy_ref(d))
        .map(PolicyRef::from);
    let mut e = Event::new(
        palisade_events::new_id(),
        Timestamp::now(),
        EventBody::Flow(FlowInfo {
            state: if kernel_denied {
                FlowState::Denied
            } else {
                FlowState::New
            },
            bytes_sent: None,
            bytes_received: None,
            packets: None,
            duration_ms: None,
        }),
    );
    e.cluster = Some(cluster.to_string());
    e.node = Some(node.to_string());
    e.source = Some(endpoint(engine, src, pkt.src, None));
    e.destination = Some(endpoint(engine, dst, pkt.dst, Some(pkt.dst_port)));
    e.protocol = Some(match protocol {
        Protocol::TCP => EvProto::Tcp,
        Protocol::UDP => EvProto::Udp,
        Protocol::SCTP => EvProto::Sctp,
    });
    e.verdict = Some(verdict);
    e.policy = policy;
    Some(e)
}

fn endpoint(engine: &Engine, ep: Ep<'_>, ip: IpAddr, port: Option<u16>) -> Endpoint {
    match ep {
        Ep::Pod(id) => {
            let mut e = pod_endpoint(Some(engine), Some(id), Some(ip));
            e.port = port;
            e
        }
        _ => {
            let mut e = Endpoint::new(EndpointKind::External);
            e.ip = Some(ip);
            e.port = port;
            e
        }
    }
}

/// The `end` event of a finished connection, with its counters.
pub fn end_event(
    engine: &Engine,
    f: &crate::conntrack::FinishedFlow,
    cluster: &str,
    node: &str,
) -> Option<Event> {
    let pkt = LoggedPacket {
        prefix: "A end".into(),
        src: f.src,
        dst: f.dst,
        protocol: f.protocol,
        src_port: f.src_port,
        dst_port: f.dst_port,
    };
    // Only connections that involve a pod of this snapshot.
    if engine.pod_by_ip(f.src).is_none() && engine.pod_by_ip(f.dst).is_none() {
        return None;
    }
    let mut e = flow_event(engine, &pkt, cluster, node)?;
    e.body = EventBody::Flow(FlowInfo {
        state: FlowState::End,
        bytes_sent: Some(f.bytes_sent),
        bytes_received: Some(f.bytes_received),
        packets: Some(f.packets),
        duration_ms: f.duration_ms,
    });
    Some(e)
}

/// Reads NFLOG `group` until `stop` says so, sending flow events. Repeats of one denied
/// connection attempt (retransmitted SYNs) within a second are folded into one event.
/// `ready` is called once both the NFLOG socket and the conntrack watcher listen.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ready: impl FnOnce(),
    group: u16,
    engine: impl Fn() -> Option<Arc<Engine>> + Send + Sync + 'static,
    events: EventSender,
    cluster: String,
    node: String,
    stop: impl Fn() -> bool,
) -> std::io::Result<()> {
    let mut sock = NflogSocket::bind(group)?;
    sock.set_timeout(Duration::from_millis(200))?;
    let engine = Arc::new(engine);
    crate::conntrack::enable_accounting();
    let ct_engine = engine.clone();
    let ct_events = events.clone();
    let (ct_cluster, ct_node) = (cluster.clone(), node.clone());
    let mut ct = crate::conntrack::watch(move |f| {
        if let Some(eng) = ct_engine() {
            if let Some(e) = end_event(&eng, &f, &ct_cluster, &ct_node) {
                ct_events.try_send(e);
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "no byte counts for finished connections (conntrack-tools missing?)"))
    .ok();
    ready();
    let mut recent: HashMap<(IpAddr, IpAddr, u8, u16, bool), Instant> = HashMap::new();
    loop {
        let stopping = stop();
        let pkts = match sock.recv() {
            Ok(p) => p,
            // After a stop, the first quiet period means everything logged was read.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stopping {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(eng) = engine() else { continue };
        for p in pkts {
            let key = (
                p.src,
                p.dst,
                p.protocol,
                p.dst_port,
                p.prefix.starts_with('D'),
            );
            let now = Instant::now();
            if recent
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
            {
                continue;
            }
            recent.insert(key, now);
            if recent.len() > 100_000 {
                recent.retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
            }
            if let Some(e) = flow_event(&eng, &p, &cluster, &node) {
                events.try_send(e);
            }
        }
    }
    if let Some(c) = ct.as_mut() {
        // Connections still tracked end with the agent's watch: flush so their totals are
        // reported, then stop the reader.
        std::thread::sleep(Duration::from_millis(200));
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(())
}

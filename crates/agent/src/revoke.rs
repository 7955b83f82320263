//! Open connections that a new policy denies are closed (CONVENTIONS: "when policy
//! changes, open connections are checked again and those now denied are closed").
//!
//! The ruleset accepts packets of tracked connections before any policy rule, so without
//! this a connection opened under the old policy would live on for as long as it is used.
//! After an applied change (coalesced by [`CloseSchedule`]: at most one pass a second,
//! always one after the last change) the agent lists the node's conntrack table
//! (`conntrack -L -o xml`), decides every pod-to-pod connection again with the new engine
//! (the destination after DNAT, i.e. the reply's source, so a Service's backend is what is
//! decided), and deletes the entries it now denies (`conntrack -D` on the exact tuple).
//! The connection's next packet is then a new flow to the ruleset and is dropped by policy.
//!
//! Only connections between two pods are checked: one to an outside address may have been
//! opened by a DNS answer (an FQDN rule), which the engine alone cannot see, and those sets
//! expire with the answers' TTLs.

use palisade_policy::{Endpoint, Engine, Flow, Protocol};
use std::net::IpAddr;
use std::process::Command;

/// One tracked connection, as `conntrack -L` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// IP protocol number (6, 17, 132).
    pub protocol: u8,
    /// Original direction: initiator.
    pub src: IpAddr,
    /// Original direction: the address the initiator sent to (a Service's, before DNAT).
    pub dst: IpAddr,
    /// Original direction: initiator's port.
    pub src_port: u16,
    /// Original direction: destination port (before DNAT).
    pub dst_port: u16,
    /// Who answers: the reply direction's source (the backend after DNAT).
    pub responder: IpAddr,
    /// The responder's port.
    pub responder_port: u16,
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{name}>"))? + start;
    Some(&s[start..end])
}

fn protonum(meta: &str) -> Option<u8> {
    let l4 = &meta[meta.find("<layer4")?..];
    let key = "protonum=\"";
    let start = l4.find(key)? + key.len();
    let end = l4[start..].find('"')? + start;
    l4[start..end].parse().ok()
}

/// Parses one `<flow>…</flow>` element of `conntrack -L -o xml`. `None` for anything that
/// is not a TCP, UDP or SCTP connection with both directions.
pub fn parse_flow(flow: &str) -> Option<Tracked> {
    let orig_at = flow.find("<meta direction=\"original\">")?;
    let reply_at = flow.find("<meta direction=\"reply\">")?;
    let (orig, reply) = if orig_at < reply_at {
        (&flow[orig_at..reply_at], &flow[reply_at..])
    } else {
        (&flow[orig_at..], &flow[reply_at..orig_at])
    };
    let protocol = protonum(orig)?;
    if !matches!(protocol, 6 | 17 | 132) {
        return None;
    }
    let port = |m: &str, name: &str| tag(m, name).and_then(|v| v.parse::<u16>().ok());
    Some(Tracked {
        protocol,
        src: tag(orig, "src")?.parse().ok()?,
        dst: tag(orig, "dst")?.parse().ok()?,
        src_port: port(orig, "sport")?,
        dst_port: port(orig, "dport")?,
        responder: tag(reply, "src")?.parse().ok()?,
        responder_port: port(reply, "sport")?,
    })
}

/// Every `<flow>` element of a `conntrack -L -o xml` listing.
pub fn parse_listing(xml: &str) -> Vec<Tracked> {
    xml.split("</flow>").filter_map(parse_flow).collect()
}

fn conntrack(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "conntrack"]);
            c
        }
        None => Command::new("conntrack"),
    }
}

/// The node's tracked connections (inside `netns` when given).
pub fn list(netns: Option<&str>) -> std::io::Result<Vec<Tracked>> {
    let mut all = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let out = conntrack(netns)
            .args(["-L", "-f", family, "-o", "xml"])
            .stderr(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            all.extend(parse_listing(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    Ok(all)
}

fn protocol(n: u8) -> Option<Protocol> {
    match n {
        6 => Some(Protocol::TCP),
        17 => Some(Protocol::UDP),
        132 => Some(Protocol::SCTP),
        _ => None,
    }
}

/// The connections `engine` denies: both ends pods, decided initiator → responder on the
/// responder's port, and at least one end enforced here (`is_local`).
pub fn now_denied<'a>(
    engine: &Engine,
    tracked: &'a [Tracked],
    is_local: impl Fn(palisade_policy::PodId) -> bool,
) -> Vec<&'a Tracked> {
    tracked
        .iter()
        .filter(|t| {
            let (Endpoint::Pod(src), Endpoint::Pod(dst)) = (
                engine.endpoint_for_ip(t.src),
                engine.endpoint_for_ip(t.responder),
            ) else {
                return false;
            };
            let Some(protocol) = protocol(t.protocol) else {
                return false;
            };
            (is_local(src) || is_local(dst))
                && !engine
                    .verdict(&Flow {
                        src: Endpoint::Pod(src),
                        dst: Endpoint::Pod(dst),
                        port: t.responder_port,
                        protocol,
                        http: None,
                    })
                    .allowed()
        })
        .collect()
}

/// Deletes one connection's entry (its exact original tuple); whether one was deleted.
pub fn delete(netns: Option<&str>, t: &Tracked) -> std::io::Result<bool> {
    let proto = match t.protocol {
        6 => "tcp",
        17 => "udp",
        _ => "sctp",
    };
    let family = if t.src.is_ipv6() { "ipv6" } else { "ipv4" };
    let out = conntrack(netns)
        .args(["-D", "-f", family, "-p", proto])
        .args(["-s", &t.src.to_string(), "-d", &t.dst.to_string()])
        .args(["--sport", &t.src_port.to_string()])
        .args(["--dport", &t.dst_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    // conntrack exits 1 when no entry matched (the connection ended meanwhile).
    Ok(out.success())
}

/// When to close the connections a new policy denies: listing the node's conntrack table
/// costs in proportion to every connection on the node, so a burst of policy changes (pods
/// rolling out, a controller resyncing) is coalesced: at most one pass per `min_gap`, and
/// always one after the last applied change, so no change goes unchecked.
#[derive(Debug, Clone)]
pub struct CloseSchedule {
    min_gap: std::time::Duration,
    last_run: Option<std::time::Instant>,
    pending: bool,
}

impl CloseSchedule {
    /// A schedule allowing one pass per `min_gap`.
    pub fn new(min_gap: std::time::Duration) -> Self {
        CloseSchedule {
            min_gap,
            last_run: None,
            pending: false,
        }
    }

    /// A change was applied at `now`: whether to close denied connections now. When not,
    /// [`CloseSchedule::next_due`] says when.
    pub fn changed(&mut self, now: std::time::Instant) -> bool {
        self.pending = true;
        self.due(now)
    }

    /// Whether a pass is pending and may run at `now`.
    pub fn due(&self, now: std::time::Instant) -> bool {
        self.pending
            && self
                .last_run
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_gap)
    }

    /// When the pending pass may run (`None`: nothing pending).
    pub fn next_due(&self) -> Option<std::time::Instant> {
        if !self.pending {
            return None;
        }
        Some(match self.last_run {
            Some(t) => t + self.min_gap,
            None => std::time::Instant::now(),
        })
    }

    /// A pass ran at `now`, with the policy in force then: nothing is pending.
    pub fn ran(&mut self, now: std::time::Instant) {
        self.pending = false;
        self.last_run = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<conntrack>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.2</src><dst>10.96.0.10</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>40112</sport><dport>80</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.3</src><dst>10.78.1.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>8080</sport><dport>40112</dport></layer4></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>431999</timeout><id>1</id><assured/></meta></flow>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.2</src><dst>10.78.1.3</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.3</src><dst>10.78.1.2</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta></flow>
<flow><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>fd00::2</src><dst>fd00::3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>5353</sport><dport>53</dport></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>fd00::3</src><dst>fd00::2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>5353</dport></layer4></meta></flow>
</conntrack>
"#;

    #[test]
    fn a_listing_gives_tcp_udp_sctp_connections_with_the_responder_after_dnat() {
        let t = parse_listing(LISTING);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(
            t[0],
            Tracked {
                protocol: 6,
                src: "10.78.1.2".parse().unwrap(),
                dst: "10.96.0.10".parse().unwrap(),
                src_port: 40112,
                dst_port: 80,
                responder: "10.78.1.3".parse().unwrap(),
                responder_port: 8080,
            }
        );
        assert_eq!(t[1].protocol, 17);
        assert_eq!(t[1].responder, "fd00::3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_is_skipped_not_a_panic() {
        for s in [
            "",
            "<flow>",
            "<flow><meta direction=\"original\"><layer4 protonum=\"6\"",
            "<flow><meta direction=\"reply\"></meta><meta direction=\"original\"><src>x</src></meta></flow>",
            "<flow><meta direction=\"original\"><layer3><src>10.0.0.1</src><dst>10.0.0.2</dst></layer3><layer4 protonum=\"6\"><sport>99999</sport><dport>1</dport></layer4></meta><meta direction=\"reply\"><src>10.0.0.2</src><sport>1</sport></meta></flow>",
        ] {
            assert!(parse_listing(s).is_empty(), "{s}");
        }
    }
    /// Ten changes within a second cost two conntrack passes, not ten: one at the first
    /// change, one a second later covering the other nine (the last change is never left
    /// unchecked). On the old code every applied change listed the whole table.
    #[test]
    fn a_burst_of_changes_is_coalesced_and_the_last_one_is_checked() {
        use std::time::{Duration, Instant};
        let gap = Duration::from_secs(1);
        let mut s = CloseSchedule::new(gap);
        let t0 = Instant::now();
        assert_eq!(s.next_due(), None);
        assert!(s.changed(t0), "the first change is checked at once");
        s.ran(t0);
        assert_eq!(s.next_due(), None);
        let mut runs = 1;
        for i in 1..10u32 {
            let at = t0 + Duration::from_millis(100) * i;
            if s.changed(at) {
                s.ran(at);
                runs += 1;
            }
        }
        assert_eq!(runs, 1, "the burst waits");
        assert_eq!(
            s.next_due(),
            Some(t0 + gap),
            "one pass is pending, due after the gap"
        );
        assert!(!s.due(t0 + Duration::from_millis(999)));
        assert!(s.due(t0 + gap));
        s.ran(t0 + gap);
        assert_eq!(s.next_due(), None, "nothing left after it");
        // A lone change long after is checked at once again.
        assert!(s.changed(t0 + Duration::from_secs(5)));
    }
}

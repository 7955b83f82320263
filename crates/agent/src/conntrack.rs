//! Finished connections with their byte and packet counts: conntrack DESTROY events, read
//! from `conntrack -E -e DESTROY -o xml,id,timestamp` (conntrack-tools) run in the agent's
//! network namespace. Accounting needs `net.netfilter.nf_conntrack_acct=1` (the agent sets
//! it, and `nf_conntrack_timestamp=1` for durations).

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

/// One finished connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFlow {
    /// Initiator.
    pub src: IpAddr,
    /// Responder.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Initiator's port.
    pub src_port: u16,
    /// Responder's port.
    pub dst_port: u16,
    /// Bytes initiator → responder.
    pub bytes_sent: u64,
    /// Bytes responder → initiator.
    pub bytes_received: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Lifetime in milliseconds (second resolution), when timestamps are on.
    pub duration_ms: Option<u64>,
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find('<')? + start;
    Some(&s[start..end])
}

fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = s.find(&key)? + key.len();
    let end = s[start..].find('"')? + start;
    Some(&s[start..end])
}

/// Parses one `<flow type="destroy">` line. `None` for anything else.
pub fn parse_destroy(line: &str) -> Option<FinishedFlow> {
    if !line.contains("<flow type=\"destroy\">") {
        return None;
    }
    let orig_start = line.find("<meta direction=\"original\">")?;
    let reply_start = line.find("<meta direction=\"reply\">")?;
    let (orig, reply) = if orig_start < reply_start {
        (&line[orig_start..reply_start], &line[reply_start..])
    } else {
        (&line[orig_start..], &line[reply_start..orig_start])
    };
    let l4 = &orig[orig.find("<layer4")?..];
    let counters = |m: &str| -> (u64, u64) {
        let c = m.find("<counters>").map(|i| &m[i..]).unwrap_or("");
        (
            tag(c, "packets").and_then(|v| v.parse().ok()).unwrap_or(0),
            tag(c, "bytes").and_then(|v| v.parse().ok()).unwrap_or(0),
        )
    };
    let (op, ob) = counters(orig);
    let (rp, rb) = counters(reply);
    Some(FinishedFlow {
        src: tag(orig, "src")?.parse().ok()?,
        dst: tag(orig, "dst")?.parse().ok()?,
        protocol: attr(l4, "protonum")?.parse().ok()?,
        src_port: tag(l4, "sport").and_then(|v| v.parse().ok()).unwrap_or(0),
        dst_port: tag(l4, "dport").and_then(|v| v.parse().ok()).unwrap_or(0),
        bytes_sent: ob,
        bytes_received: rb,
        packets: op + rp,
        duration_ms: tag(line, "deltatime")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| s * 1000),
    })
}

/// Turns on conntrack accounting and timestamps in the current namespace (best effort).
pub fn enable_accounting() {
    for (k, v) in [
        ("/proc/sys/net/netfilter/nf_conntrack_acct", "1"),
        ("/proc/sys/net/netfilter/nf_conntrack_timestamp", "1"),
        // Events for every connection, also those created before a listener subscribed.
        ("/proc/sys/net/netfilter/nf_conntrack_events", "1"),
    ] {
        let _ = std::fs::write(k, v);
    }
}

/// Starts `conntrack -E` for DESTROY events; each finished flow is passed to `on_flow` from
/// a reader thread. Kill the child to stop.
pub fn watch(on_flow: impl Fn(FinishedFlow) + Send + 'static) -> std::io::Result<Child> {
    // conntrack writes to a pipe through stdio: line-buffer it so each event arrives at once.
    let line_buffered = Command::new("stdbuf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if line_buffered {
        let mut c = Command::new("stdbuf");
        c.args(["-oL", "conntrack"]);
        c
    } else {
        Command::new("conntrack")
    };
    let mut child = cmd
        .args(["-E", "-e", "DESTROY", "-o", "xml,id,timestamp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        // With `nf_conntrack_events=1` (set before this) every connection carries its
        // event state, so it is reported when it ends even if it began before the listener.
        let reader = BufReader::new(out);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Some(f) = parse_destroy(&line) {
                    on_flow(f);
                }
            }
        });
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"<flow type="destroy"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.0.1.1</src><dst>10.0.2.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>34234</sport><dport>7777</dport></layer4><counters><packets>4</packets><bytes>221</bytes></counters></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.0.2.2</src><dst>10.0.1.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>7777</sport><dport>34234</dport></layer4><counters><packets>5</packets><bytes>5204</bytes></counters></meta><meta direction="independent"><state>CLOSE</state><timeout>9</timeout><id>1815618877</id><assured/><deltatime>3</deltatime></meta></flow>"#;

    #[test]
    fn parses_counters_and_duration() {
        let f = parse_destroy(LINE).unwrap();
        assert_eq!(f.src, "10.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!((f.src_port, f.dst_port, f.protocol), (34234, 7777, 6));
        assert_eq!((f.bytes_sent, f.bytes_received, f.packets), (221, 5204, 9));
        assert_eq!(f.duration_ms, Some(3000));
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(parse_destroy(""), None);
        assert_eq!(parse_destroy("<flow type=\"destroy\">"), None);
        for cut in 0..LINE.len() {
            if LINE.is_char_boundary(cut) {
                let _ = parse_destroy(&LINE[..cut]);
            }
        }
    }
}

//! Set element updates straight over nfnetlink, without the `nft` binary.
//!
//! Pod churn and DNS answers change only set and map elements. Going through `nft` costs a
//! process start plus a dump of every set's elements into its cache (tens of milliseconds on
//! a table with thousands of elements); one netlink batch costs well under a millisecond.
//! A batch is one nftables transaction: the kernel applies all of it or none of it.
//!
//! Only what Palisade's own sets use is encoded: keys made of IPv4/IPv6 addresses and
//! interface names (concatenations included), verdict map values (`accept`, `drop`, `jump C`, `goto C`,
//! `return`, `continue`) and element timeouts. Anything else is refused with
//! [`ElementError::Unsupported`] so the caller can fall back to `nft`.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFPROTO_INET: u8 = 1;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_DESTROYSETELEM: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// Size of an `ifname` key part.
const IFNAMSIZ: usize = 16;

/// Why an element batch was not applied. Nothing of a failed batch is in force.
#[derive(Debug, thiserror::Error)]
pub enum ElementError {
    /// The element text is not one this encoder handles.
    #[error("element not supported over netlink: {0}")]
    Unsupported(String),
    /// Socket or namespace trouble.
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel rejected the batch.
    #[error("kernel rejected element update on {set}: {err}")]
    Rejected {
        /// The set of the first failing message.
        set: String,
        /// The kernel's error.
        err: std::io::Error,
    },
}

/// What to do with elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    /// Add (an existing element is left as it is).
    Add,
    /// Delete (an absent element fails the batch).
    Delete,
    /// Delete if present.
    Destroy,
}

/// One element: key bytes, the verdict of a map element, a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    key: Vec<u8>,
    verdict: Option<(i32, Option<String>)>,
    timeout: Option<Duration>,
}

impl Element {
    /// An element keyed by the concatenation of `ips` (`a . b`).
    pub fn of_ips(ips: &[IpAddr]) -> Self {
        let mut key = Vec::with_capacity(ips.len() * 16);
        for ip in ips {
            match ip {
                IpAddr::V4(v) => key.extend_from_slice(&v.octets()),
                IpAddr::V6(v) => key.extend_from_slice(&v.octets()),
            }
        }
        Element {
            key,
            verdict: None,
            timeout: None,
        }
    }

    /// The same element with a timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Parses an element as Palisade renders it: `10.0.0.1`, `fd00::1 . 10.0.0.2`,
    /// `"eth0" . 10.0.0.1` (an interface name), `10.0.0.1 : jump chain`.
    pub fn parse(text: &str) -> Result<Self, ElementError> {
        let unsupported = || ElementError::Unsupported(text.to_string());
        let (key, value) = match text.split_once(" : ") {
            Some((k, v)) => (k, Some(v.trim())),
            None => (text, None),
        };
        let mut bytes = Vec::new();
        for part in key.split(" . ") {
            let part = part.trim();
            if let Some(name) = part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                // An interface name (`ifname`): IFNAMSIZ bytes, NUL-padded.
                if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(['"', '\0']) {
                    return Err(unsupported());
                }
                let mut b = [0u8; IFNAMSIZ];
                b[..name.len()].copy_from_slice(name.as_bytes());
                bytes.extend_from_slice(&b);
                continue;
            }
            match part.parse::<IpAddr>().map_err(|_| unsupported())? {
                IpAddr::V4(v) => bytes.extend_from_slice(&v.octets()),
                IpAddr::V6(v) => bytes.extend_from_slice(&v.octets()),
            }
        }
        let mut e = Element {
            key: bytes,
            verdict: None,
            timeout: None,
        };
        if let Some(v) = value {
            let mut words = v.split_whitespace();
            let code = match words.next() {
                Some("accept") => 1,
                Some("drop") => 0,
                Some("continue") => -1,
                Some("jump") => -3,
                Some("goto") => -4,
                Some("return") => -5,
                _ => return Err(unsupported()),
            };
            let chain = words.next().map(str::to_string);
            if (code == -3 || code == -4) != chain.is_some() || words.next().is_some() {
                return Err(unsupported());
            }
            if chain
                .as_deref()
                .is_some_and(|c| c.len() > 255 || c.contains('\0'))
            {
                return Err(unsupported());
            }
            e.verdict = Some((code, chain));
        }
        Ok(e)
    }

    /// The key only (what a delete needs).
    pub fn key_only(&self) -> Self {
        Element {
            key: self.key.clone(),
            verdict: None,
            timeout: None,
        }
    }
}

/// A batch of element changes, applied as one transaction.
#[derive(Debug, Default)]
pub struct ElementBatch {
    ops: Vec<(ElementOp, String, Vec<Element>)>,
}

impl ElementBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `op` on `elements` of `set`.
    pub fn push(&mut self, op: ElementOp, set: &str, elements: Vec<Element>) {
        if !elements.is_empty() {
            self.ops.push((op, set.to_string(), elements));
        }
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Starts a nested attribute; returns its offset for [`end_nested`].
fn begin_nested(buf: &mut Vec<u8>, ty: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    at
}

fn end_nested(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends one netlink message (header, nfgenmsg, payload) to `out`.
fn message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, p: &[u8]) {
    let total = 16 + 4 + p.len();
    out.extend_from_slice(&(total as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(p);
}

fn elements_payload(table: &str, set: &str, elements: &[Element], with_data: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + elements.len() * 48);
    attr(&mut p, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
    attr(&mut p, NFTA_SET_ELEM_LIST_SET, &cstr(set));
    let list = begin_nested(&mut p, NFTA_SET_ELEM_LIST_ELEMENTS);
    for e in elements {
        let el = begin_nested(&mut p, NFTA_LIST_ELEM);
        let k = begin_nested(&mut p, NFTA_SET_ELEM_KEY);
        attr(&mut p, NFTA_DATA_VALUE, &e.key);
        end_nested(&mut p, k);
        if with_data {
            if let Some(t) = e.timeout {
                attr(
                    &mut p,
                    NFTA_SET_ELEM_TIMEOUT,
                    &(t.as_millis() as u64).to_be_bytes(),
                );
            }
            if let Some((code, chain)) = &e.verdict {
                let d = begin_nested(&mut p, NFTA_SET_ELEM_DATA);
                let v = begin_nested(&mut p, NFTA_DATA_VERDICT);
                attr(&mut p, NFTA_VERDICT_CODE, &code.to_be_bytes());
                if let Some(c) = chain {
                    attr(&mut p, NFTA_VERDICT_CHAIN, &cstr(c));
                }
                end_nested(&mut p, v);
                end_nested(&mut p, d);
            }
        }
        end_nested(&mut p, el);
    }
    end_nested(&mut p, list);
    p
}

/// Elements per message: keeps each message well inside one netlink page budget.
const PER_MESSAGE: usize = 256;

/// A netlink socket to nf_tables in one network namespace.
pub struct NftSocket {
    sock: socket2::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NftSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSocket").field("seq", &self.seq).finish()
    }
}

fn open_here() -> std::io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(
        socket2::Domain::from(AF_NETLINK),
        socket2::Type::RAW,
        Some(socket2::Protocol::from(NETLINK_NETFILTER)),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = sock.set_recv_buffer_size(1 << 20);
    Ok(sock)
}

impl NftSocket {
    /// Opens a socket in `netns` (a name under `/run/netns`) or in the current namespace.
    /// A socket belongs to the namespace it was created in, so a short-lived thread enters
    /// the namespace, creates it and exits; the process itself never moves.
    pub fn open(netns: Option<&str>) -> std::io::Result<Self> {
        let sock = crate::netns::run_in(netns, open_here)?;
        Ok(NftSocket {
            sock,
            seq: 1,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// Applies `batch` to `table` (family inet) as one transaction.
    pub fn apply(&mut self, table: &str, batch: &ElementBatch) -> Result<(), ElementError> {
        if batch.is_empty() {
            return Ok(());
        }
        let first = self.seq;
        let mut out = Vec::new();
        message(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            self.next_seq(),
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        // seq → set name, to name the set of a failing message.
        let mut sent: Vec<(u32, &str)> = Vec::new();
        for (op, set, elements) in &batch.ops {
            let (ty, flags, with_data) = match op {
                ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE, true),
                ElementOp::Delete => (NFT_MSG_DELSETELEM, 0, false),
                ElementOp::Destroy => (NFT_MSG_DESTROYSETELEM, 0, false),
            };
            for chunk in elements.chunks(PER_MESSAGE) {
                let seq = self.next_seq();
                let p = elements_payload(table, set, chunk, with_data);
                message(
                    &mut out,
                    (NFNL_SUBSYS_NFTABLES << 8) | ty,
                    NLM_F_REQUEST | NLM_F_ACK | flags,
                    seq,
                    NFPROTO_INET,
                    0,
                    &p,
                );
                sent.push((seq, set));
            }
        }
        message(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.next_seq(),
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        self.sock.send(&out)?;
        // One acknowledgement per message; the first error names the failing set.
        let mut pending = sent.len();
        let mut failure: Option<ElementError> = None;
        while pending > 0 {
            let n = match (&self.sock).read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if failure.is_some() => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(ElementError::Io(e)),
            };
            for (seq, code) in acks(&self.buf[..n]) {
                if seq < first || seq >= self.seq {
                    continue; // left over from an earlier batch
                }
                pending = pending.saturating_sub(1);
                if code != 0 && failure.is_none() {
                    let set = sent
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_default();
                    failure = Some(ElementError::Rejected {
                        set,
                        err: std::io::Error::from_raw_os_error(-code),
                    });
                    // The kernel aborts the batch; do not wait for every other reply.
                    let _ = self.sock.set_read_timeout(Some(Duration::from_millis(50)));
                }
            }
        }
        let _ = self.sock.set_read_timeout(Some(Duration::from_secs(5)));
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1).max(1);
        s
    }
}

/// (sequence, error code) of every acknowledgement in a datagram; malformed parts end it.
fn acks(mut data: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        if ty == NLMSG_ERROR && len >= 20 + 16 {
            let code = i32::from_ne_bytes([data[16], data[17], data[18], data[19]]);
            // The echoed request header follows the code; its sequence is ours.
            let seq = u32::from_ne_bytes([data[28], data[29], data[30], data[31]]);
            out.push((seq, code));
        }
        let aligned = (len + 3) & !3;
        if aligned >= data.len() {
            break;
        }
        data = &data[aligned..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rendered_elements() {
        let e = Element::parse("10.0.0.1").unwrap();
        assert_eq!(e.key, vec![10, 0, 0, 1]);
        let e = Element::parse("10.0.0.1 . 192.0.2.7").unwrap();
        assert_eq!(e.key, vec![10, 0, 0, 1, 192, 0, 2, 7]);
        let e = Element::parse("\"h0\" . 10.0.0.1").unwrap();
        assert_eq!(&e.key[..3], b"h0\0");
        assert_eq!(e.key.len(), 20);
        assert_eq!(&e.key[16..], [10, 0, 0, 1]);
        let e = Element::parse("fd00::1 : jump i_abc").unwrap();
        assert_eq!(e.key.len(), 16);
        assert_eq!(e.verdict, Some((-3, Some("i_abc".into()))));
        assert_eq!(
            Element::parse("10.0.0.1 : drop").unwrap().verdict,
            Some((0, None))
        );
        for bad in [
            "10.0.0.0/24",
            "10.0.0.1-10.0.0.9",
            "10.0.0.1 : jump",
            "10.0.0.1 : accept x",
            "10.0.0.1 : counter",
            "",
            "80",
            "\"\"",
            "\"sixteen-chars-xx\"",
            "\"h0",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_nested_lengths() {
        let e = Element::parse("10.0.0.1 : jump c").unwrap();
        let p = elements_payload("palisade", "egress_4", &[e], true);
        // table, set, then the element list whose length covers the rest.
        let list_at = 4 + 12 + 4 + 12;
        let len = u16::from_ne_bytes([p[list_at], p[list_at + 1]]) as usize;
        assert_eq!(list_at + len, p.len());
        let ty = u16::from_ne_bytes([p[list_at + 2], p[list_at + 3]]);
        assert_eq!(ty, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
    }

    #[test]
    fn ack_parser_never_panics() {
        let mut seed: u64 = 0x9e37_79b9;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = acks(&buf);
        }
    }
}

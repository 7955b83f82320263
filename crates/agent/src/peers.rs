//! The addresses configured on interfaces of other network namespaces, read over rtnetlink
//! without entering them: `RTM_GETADDR` with `IFA_TARGET_NETNSID` (Linux 4.20 and later)
//! dumps the addresses of the namespace the node knows under that id. A bridge port is the
//! host end of a veth whose peer is the pod's `eth0` (`IFLA_LINK` and `IFLA_LINK_NETNSID`
//! of the port, which `ip -d link` shows as `link_index` and `link_netnsid`): the addresses
//! on that peer are the ones the CNI configured for the pod, which is what
//! [`crate::bridge::bind`] binds the port to.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const AF_NETLINK: i32 = 16;
const NETLINK_ROUTE: i32 = 0;
const SOL_NETLINK: i32 = 270;
const NETLINK_GET_STRICT_CHK: i32 = 12;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_TARGET_NETNSID: u16 = 10;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_ADDRESS: u16 = 1;
const IFLA_TARGET_NETNSID: u16 = 46;

/// Link-layer (MAC) addresses by namespace id, then interface index in that namespace.
pub type PeerMacs = BTreeMap<i32, BTreeMap<u32, [u8; 6]>>;

/// Addresses by namespace id, then interface index in that namespace. A namespace that was
/// read is present even when none of its interfaces has an address.
pub type PeerAddresses = BTreeMap<i32, BTreeMap<u32, BTreeSet<IpAddr>>>;

/// The most addresses kept for one interface. A pod with `CAP_NET_ADMIN` can put as many
/// addresses on its interfaces as it likes, and the dump carries them all; past this many
/// the rest of that interface's are skipped (a pod's own interface has a few), so the
/// agent's memory does not grow with what a pod configures.
pub const MAX_ADDRESSES: usize = 64;

// nix's own macro writes the `setsockopt` call, so this crate needs no unsafe code.
use nix::{setsockopt_impl, sockopt_impl};
sockopt_impl!(
    /// `NETLINK_GET_STRICT_CHK`: strict checking of dump requests, without which the kernel
    /// ignores `IFA_TARGET_NETNSID` (and answers with this namespace's addresses).
    StrictCheck,
    SetOnly,
    SOL_NETLINK,
    NETLINK_GET_STRICT_CHK,
    bool
);

/// Turns on strict checking ([`StrictCheck`]).
fn strict(sock: &socket2::Socket) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(sock, StrictCheck, &true).map_err(std::io::Error::from)
}

fn open_here() -> std::io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(
        socket2::Domain::from(AF_NETLINK),
        socket2::Type::RAW,
        Some(socket2::Protocol::from(NETLINK_ROUTE)),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    strict(&sock)?;
    Ok(sock)
}

/// A route netlink socket in `netns` (a name under `/run/netns`) or in this namespace; the
/// namespace ids it resolves are those of that namespace.
fn open(netns: Option<&str>) -> std::io::Result<socket2::Socket> {
    crate::netns::run_in(netns, open_here)
}

/// The dump request for the addresses of namespace `nsid`.
fn request(nsid: i32, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&32u32.to_ne_bytes());
    out.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifaddrmsg: any family, no filter.
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&8u16.to_ne_bytes());
    out.extend_from_slice(&IFA_TARGET_NETNSID.to_ne_bytes());
    out.extend_from_slice(&nsid.to_ne_bytes());
    out
}

/// What one datagram of a dump held.
#[derive(Debug, Default, PartialEq, Eq)]
struct Part {
    addrs: Vec<(u32, IpAddr)>,
    /// The dump ended: `Some(0)` done, `Some(negative errno)` failed.
    end: Option<i32>,
}

fn u16_at(d: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([d[i], d[i + 1]])
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Walks the messages of one datagram answering `seq` (malformed parts end it), handing
/// each other message's type and bytes to `each`; returns the end of the dump when it is
/// in here: `Some(0)` done, `Some(negative errno)` failed.
fn walk(mut data: &[u8], seq: u32, mut each: impl FnMut(u16, &[u8])) -> Option<i32> {
    while data.len() >= 16 {
        let len = u32_at(data, 0) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let (ty, msg_seq) = (u16_at(data, 4), u32_at(data, 8));
        let msg = &data[..len];
        if msg_seq == seq {
            if ty == NLMSG_DONE || ty == NLMSG_ERROR {
                let code = if len >= 20 { u32_at(msg, 16) as i32 } else { 0 };
                return Some(code.min(0));
            }
            each(ty, msg);
        }
        let aligned = (len + 3) & !3;
        if aligned >= data.len() {
            break;
        }
        data = &data[aligned..];
    }
    None
}

/// The attributes (type without its flags, value) of `msg` from offset `at` on; a
/// malformed one ends them.
fn attributes(msg: &[u8], mut at: usize) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if at + 4 > msg.len() {
            return None;
        }
        let (alen, aty) = (u16_at(msg, at) as usize, u16_at(msg, at + 2));
        if alen < 4 || at + alen > msg.len() {
            return None;
        }
        let value = &msg[at + 4..at + alen];
        at += (alen + 3) & !3;
        Some((aty & 0x3fff, value))
    })
}

/// Parses one datagram of an address dump answering `seq`; malformed parts end it.
fn parse(data: &[u8], seq: u32) -> Part {
    let mut addrs = Vec::new();
    let end = walk(data, seq, |ty, msg| {
        if ty != RTM_NEWADDR || msg.len() < 24 {
            return;
        }
        let (family, index) = (msg[16], u32_at(msg, 20));
        let (mut local, mut address) = (None, None);
        for (aty, v) in attributes(msg, 24) {
            let ip = match (family, v.len()) {
                (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                (AF_INET6, 16) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(v);
                    Some(IpAddr::V6(Ipv6Addr::from(b)))
                }
                _ => None,
            };
            match aty {
                IFA_LOCAL => local = ip.or(local),
                IFA_ADDRESS => address = ip.or(address),
                _ => {}
            }
        }
        // IPv4 point-to-point links keep the peer in IFA_ADDRESS.
        if let Some(ip) = local.or(address) {
            addrs.push((index, ip));
        }
    });
    Part { addrs, end }
}

/// The dump request for the links of namespace `nsid` (strict checking wants the
/// `ifinfomsg` all zero: link dumps filter by nothing else).
fn link_request(nsid: i32, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&40u32.to_ne_bytes());
    out.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&8u16.to_ne_bytes());
    out.extend_from_slice(&IFLA_TARGET_NETNSID.to_ne_bytes());
    out.extend_from_slice(&nsid.to_ne_bytes());
    out
}

/// Parses one datagram of a link dump answering `seq`: (interface index, its Ethernet
/// address) of each link that has one, and the end of the dump when it is in here.
fn parse_links(data: &[u8], seq: u32) -> (Vec<(u32, [u8; 6])>, Option<i32>) {
    let mut links = Vec::new();
    let end = walk(data, seq, |ty, msg| {
        if ty != RTM_NEWLINK || msg.len() < 32 {
            return;
        }
        let index = u32_at(msg, 20);
        if let Some((_, v)) =
            attributes(msg, 32).find(|(aty, v)| *aty == IFLA_ADDRESS && v.len() == 6)
        {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(v);
            links.push((index, mac));
        }
    });
    (links, end)
}

/// The Ethernet addresses of the interfaces `peers` (namespace id → interface indexes
/// there), as [`read`] reads their IP addresses. A namespace that cannot be read is left out.
pub fn read_macs(
    netns: Option<&str>,
    peers: &BTreeMap<i32, BTreeSet<u32>>,
) -> std::io::Result<PeerMacs> {
    let mut out = PeerMacs::new();
    if peers.is_empty() {
        return Ok(out);
    }
    let sock = open(netns)?;
    let mut buf = vec![0u8; 1 << 16];
    for (i, (nsid, indexes)) in peers.iter().enumerate() {
        let seq = i as u32 + 1;
        sock.send(&link_request(*nsid, seq))?;
        let mut found = BTreeMap::new();
        let end = loop {
            let n = (&sock).read(&mut buf)?;
            let (links, end) = parse_links(&buf[..n], seq);
            for (index, mac) in links {
                if indexes.contains(&index) {
                    found.insert(index, mac);
                }
            }
            if let Some(end) = end {
                break end;
            }
            if n == 0 {
                break -(nix::errno::Errno::EIO as i32);
            }
        };
        if end == 0 {
            out.insert(*nsid, found);
        } else {
            tracing::debug!(
                nsid,
                error = %std::io::Error::from_raw_os_error(-end),
                "links of a pod namespace not read"
            );
        }
    }
    Ok(out)
}

/// Adds the addresses of `part` on the interfaces of `indexes` to `ns`, at most
/// [`MAX_ADDRESSES`] per interface; says whether any were skipped.
fn keep(ns: &mut BTreeMap<u32, BTreeSet<IpAddr>>, indexes: &BTreeSet<u32>, part: Part) -> bool {
    let mut skipped = false;
    for (index, ip) in part.addrs {
        if !indexes.contains(&index) {
            continue;
        }
        let addrs = ns.entry(index).or_default();
        if addrs.len() < MAX_ADDRESSES {
            addrs.insert(ip);
        } else if !addrs.contains(&ip) {
            skipped = true;
        }
    }
    skipped
}

/// The addresses of the interfaces `peers` (namespace id, as the node, `netns` when given,
/// knows it → interface indexes there): only those are kept, at most [`MAX_ADDRESSES`]
/// each. A namespace that cannot be read is left out.
pub fn read(
    netns: Option<&str>,
    peers: &BTreeMap<i32, BTreeSet<u32>>,
) -> std::io::Result<PeerAddresses> {
    let mut out = PeerAddresses::new();
    if peers.is_empty() {
        return Ok(out);
    }
    let sock = open(netns)?;
    let mut buf = vec![0u8; 1 << 16];
    for (i, (nsid, indexes)) in peers.iter().enumerate() {
        let seq = i as u32 + 1;
        sock.send(&request(*nsid, seq))?;
        let mut found = BTreeMap::new();
        let mut skipped = false;
        let end = loop {
            let n = (&sock).read(&mut buf)?;
            let part = parse(&buf[..n], seq);
            let end = part.end;
            skipped |= keep(&mut found, indexes, part);
            if let Some(end) = end {
                break end;
            }
            if n == 0 {
                break -(nix::errno::Errno::EIO as i32);
            }
        };
        if skipped {
            tracing::warn!(
                nsid,
                max = MAX_ADDRESSES,
                "a pod interface has more addresses than the agent reads: the rest are ignored"
            );
        }
        if end != 0 {
            tracing::debug!(
                nsid,
                error = %std::io::Error::from_raw_os_error(-end),
                "addresses of a pod namespace not read"
            );
            continue;
        }
        out.insert(*nsid, found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newaddr(seq: u32, family: u8, index: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        for (ty, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&ty.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend(body);
        m
    }

    #[test]
    fn address_dumps_are_parsed_per_interface_and_end_on_done() {
        let v6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let mut d = newaddr(
            7,
            AF_INET,
            2,
            &[(IFA_ADDRESS, &[10, 0, 0, 9]), (IFA_LOCAL, &[10, 0, 0, 1])],
        );
        d.extend(newaddr(7, AF_INET6, 2, &[(IFA_ADDRESS, &v6)]));
        d.extend(newaddr(6, AF_INET, 3, &[(IFA_LOCAL, &[10, 0, 0, 3])]));
        let p = parse(&d, 7);
        assert_eq!(
            p.addrs,
            [
                (2, "10.0.0.1".parse().unwrap()),
                (2, "fd00::1".parse().unwrap())
            ]
        );
        assert_eq!(p.end, None);
        let mut done = 20u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&2u16.to_ne_bytes());
        done.extend_from_slice(&7u32.to_ne_bytes());
        done.extend_from_slice(&0u32.to_ne_bytes());
        done.extend_from_slice(&(-22i32).to_ne_bytes());
        assert_eq!(parse(&done, 7).end, Some(-22));
        assert_eq!(request(3, 1).len(), 32);
    }

    /// The old reader kept every address of every interface of a pod's namespace, as many
    /// as the pod had configured; now only the peer's, and at most [`MAX_ADDRESSES`] of them.
    #[test]
    fn only_the_peers_addresses_are_kept_and_only_so_many() {
        let mut d = Vec::new();
        for i in 0..1000u32 {
            let b = i.to_be_bytes();
            d.extend(newaddr(
                1,
                AF_INET,
                2,
                &[(IFA_LOCAL, &[10, b[1], b[2], b[3]])],
            ));
            d.extend(newaddr(1, AF_INET, 5, &[(IFA_LOCAL, &[10, 9, b[2], b[3]])]));
        }
        let mut ns = BTreeMap::new();
        let skipped = keep(&mut ns, &[2].into(), parse(&d, 1));
        assert!(skipped);
        assert_eq!(ns.len(), 1, "other interfaces' addresses are not kept");
        assert_eq!(ns[&2].len(), MAX_ADDRESSES);
        assert!(
            ns[&2].contains(&"10.0.0.0".parse().unwrap()),
            "the first ones are kept"
        );
        let mut few = BTreeMap::new();
        assert!(!keep(
            &mut few,
            &[2].into(),
            parse(&newaddr(1, AF_INET, 2, &[(IFA_LOCAL, &[10, 0, 0, 1])]), 1)
        ));
        assert_eq!(few[&2].len(), 1);
    }

    /// Random datagrams, and well-formed ones with random bytes written over them, never
    /// make the parser panic, and it never reports more addresses than messages fit.
    #[test]
    fn random_dumps_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let v6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let mut good = newaddr(3, AF_INET6, 2, &[(IFA_ADDRESS, &v6)]);
        good.extend(newaddr(3, AF_INET, 2, &[(IFA_LOCAL, &[10, 0, 0, 1])]));
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut d: Vec<u8> = if next() % 2 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                good.clone()
            };
            for _ in 0..(next() % 4) {
                if !d.is_empty() {
                    let i = (next() as usize) % d.len();
                    d[i] = next() as u8;
                }
            }
            let p = parse(&d, 3);
            assert!(p.addrs.len() <= d.len() / 24 + 1);
        }
    }

    #[test]
    fn link_dumps_give_each_interfaces_mac_and_never_panic() {
        let mut m = Vec::new();
        let mut body = vec![0u8, 0, 1, 0];
        body.extend_from_slice(&7u32.to_ne_bytes());
        body.extend_from_slice(&[0u8; 8]);
        // IFLA_IFNAME "eth0", then IFLA_ADDRESS.
        body.extend_from_slice(&9u16.to_ne_bytes());
        body.extend_from_slice(&3u16.to_ne_bytes());
        body.extend_from_slice(b"eth0\0\0\0\0");
        body.extend_from_slice(&10u16.to_ne_bytes());
        body.extend_from_slice(&IFLA_ADDRESS.to_ne_bytes());
        body.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0, 0]);
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&5u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend(body);
        assert_eq!(parse_links(&m, 5), (vec![(7, [2, 0, 0, 0, 0, 7])], None));
        assert_eq!(parse_links(&m, 6).0, []);
        assert_eq!(link_request(3, 1).len(), 40);
        for cut in 0..m.len() {
            let _ = parse_links(&m[..cut], 5);
            let mut bad = m.clone();
            bad[cut] = 0xff;
            let _ = parse_links(&bad, 5);
        }
    }

    #[test]
    fn malformed_dumps_never_panic() {
        let base = newaddr(1, AF_INET, 2, &[(IFA_LOCAL, &[10, 0, 0, 1])]);
        for cut in 0..base.len() {
            let _ = parse(&base[..cut], 1);
            let mut bad = base.clone();
            bad[cut] = 0xff;
            let _ = parse(&bad, 1);
        }
    }
}

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

/// Addresses by namespace id, then interface index in that namespace. A namespace that was
/// read is present even when none of its interfaces has an address.
pub type PeerAddresses = BTreeMap<i32, BTreeMap<u32, BTreeSet<IpAddr>>>;

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
    match netns {
        None => open_here(),
        Some(ns) => {
            let path = format!("/run/netns/{ns}");
            std::thread::scope(|s| {
                s.spawn(|| {
                    let f = std::fs::File::open(&path)?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    open_here()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
            })
        }
    }
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

/// Parses one datagram of an address dump answering `seq`; malformed parts end it.
fn parse(mut data: &[u8], seq: u32) -> Part {
    let mut part = Part::default();
    let u16_at = |d: &[u8], i: usize| u16::from_ne_bytes([d[i], d[i + 1]]);
    let u32_at = |d: &[u8], i: usize| u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    while data.len() >= 16 {
        let len = u32_at(data, 0) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let (ty, msg_seq) = (u16_at(data, 4), u32_at(data, 8));
        let msg = &data[..len];
        if msg_seq == seq {
            match ty {
                NLMSG_DONE | NLMSG_ERROR => {
                    let code = if len >= 20 { u32_at(msg, 16) as i32 } else { 0 };
                    part.end = Some(code.min(0));
                    return part;
                }
                RTM_NEWADDR if len >= 24 => {
                    let (family, index) = (msg[16], u32_at(msg, 20));
                    let (mut local, mut address) = (None, None);
                    let mut at = 24;
                    while at + 4 <= len {
                        let (alen, aty) = (u16_at(msg, at) as usize, u16_at(msg, at + 2));
                        if alen < 4 || at + alen > len {
                            break;
                        }
                        let v = &msg[at + 4..at + alen];
                        let ip = match (family, v.len()) {
                            (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                            (AF_INET6, 16) => {
                                let mut b = [0u8; 16];
                                b.copy_from_slice(v);
                                Some(IpAddr::V6(Ipv6Addr::from(b)))
                            }
                            _ => None,
                        };
                        match aty & 0x3fff {
                            IFA_LOCAL => local = ip.or(local),
                            IFA_ADDRESS => address = ip.or(address),
                            _ => {}
                        }
                        at += (alen + 3) & !3;
                    }
                    // IPv4 point-to-point links keep the peer in IFA_ADDRESS.
                    if let Some(ip) = local.or(address) {
                        part.addrs.push((index, ip));
                    }
                }
                _ => {}
            }
        }
        let aligned = (len + 3) & !3;
        if aligned >= data.len() {
            break;
        }
        data = &data[aligned..];
    }
    part
}

/// The addresses of every interface of the namespaces `nsids` (ids as the node, `netns`
/// when given, knows them). A namespace that cannot be read is left out.
pub fn read(netns: Option<&str>, nsids: &BTreeSet<i32>) -> std::io::Result<PeerAddresses> {
    let mut out = PeerAddresses::new();
    if nsids.is_empty() {
        return Ok(out);
    }
    let sock = open(netns)?;
    let mut buf = vec![0u8; 1 << 16];
    for (i, nsid) in nsids.iter().enumerate() {
        let seq = i as u32 + 1;
        sock.send(&request(*nsid, seq))?;
        let mut found = Vec::new();
        let end = loop {
            let n = (&sock).read(&mut buf)?;
            let part = parse(&buf[..n], seq);
            found.extend(part.addrs);
            if let Some(end) = part.end {
                break end;
            }
            if n == 0 {
                break -(nix::errno::Errno::EIO as i32);
            }
        };
        if end != 0 {
            tracing::debug!(
                nsid,
                error = %std::io::Error::from_raw_os_error(-end),
                "addresses of a pod namespace not read"
            );
            continue;
        }
        let ns = out.entry(*nsid).or_default();
        for (index, ip) in found {
            ns.entry(index).or_default().insert(ip);
        }
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

//! NFLOG over netlink: the kernel copies the first packet of denied and of new allowed
//! connections (rules with `log group N`) to this socket. Plain sockets through `socket2`;
//! the message parsing is bounds-checked and never panics on malformed input.

use std::io::Read;
use std::net::IpAddr;

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

/// A logged packet, reduced to what flow events need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The rule's log prefix (`A r12`, `D r7`, `D ns p3`, `D default`).
    pub prefix: String,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (TCP/UDP/SCTP).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// A socket bound to one NFLOG group.
pub struct NflogSocket {
    sock: socket2::Socket,
    buf: Vec<u8>,
}

fn nlmsg(msg_type: u16, flags: u16, seq: u32, group: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0u8 /* AF_UNSPEC */, 0 /* version */];
    body.extend_from_slice(&group.to_be_bytes());
    for (ty, data) in attrs {
        let len = 4 + data.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&ty.to_ne_bytes());
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let total = 16 + body.len();
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

impl NflogSocket {
    /// Opens a netlink socket and binds it to `group` (copying up to 128 bytes of each
    /// packet). Must run in the network namespace whose rules log.
    pub fn bind(group: u16) -> std::io::Result<Self> {
        let sock = socket2::Socket::new(
            socket2::Domain::from(AF_NETLINK),
            socket2::Type::RAW,
            Some(socket2::Protocol::from(NETLINK_NETFILTER)),
        )?;
        let _ = sock.set_recv_buffer_size(4 << 20);
        let ty = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
        let mut s = NflogSocket {
            sock,
            buf: vec![0u8; 1 << 16],
        };
        s.request(&nlmsg(
            ty,
            NLM_F_REQUEST | NLM_F_ACK,
            1,
            group,
            &[(NFULA_CFG_CMD, vec![NFULNL_CFG_CMD_BIND])],
        ))?;
        let mut mode = 128u32.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        s.request(&nlmsg(
            ty,
            NLM_F_REQUEST | NLM_F_ACK,
            2,
            group,
            &[(NFULA_CFG_MODE, mode)],
        ))?;
        // Deliver each packet at once instead of batching for up to a second.
        s.request(&nlmsg(
            ty,
            NLM_F_REQUEST | NLM_F_ACK,
            3,
            group,
            &[(NFULA_CFG_QTHRESH, 1u32.to_be_bytes().to_vec())],
        ))?;
        s.request(&nlmsg(
            ty,
            NLM_F_REQUEST | NLM_F_ACK,
            4,
            group,
            &[(NFULA_CFG_TIMEOUT, 1u32.to_be_bytes().to_vec())],
        ))?;
        Ok(s)
    }

    fn request(&mut self, msg: &[u8]) -> std::io::Result<()> {
        self.sock.send(msg)?;
        let n = (&self.sock).read(&mut self.buf)?;
        let reply = &self.buf[..n];
        if reply.len() >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(-code));
            }
        }
        Ok(())
    }

    /// Sets a receive timeout so callers can stop.
    pub fn set_timeout(&self, t: std::time::Duration) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(t))
    }

    /// Blocks for the next datagram and returns the packets in it.
    pub fn recv(&mut self) -> std::io::Result<Vec<LoggedPacket>> {
        let n = (&self.sock).read(&mut self.buf)?;
        Ok(parse_messages(&self.buf[..n]))
    }
}

/// Parses a netlink datagram of NFLOG messages. Malformed parts are skipped.
pub fn parse_messages(mut data: &[u8]) -> Vec<LoggedPacket> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        if ty == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET && len >= 20 {
            if let Some(p) = parse_packet(&data[20..len]) {
                out.push(p);
            }
        }
        let aligned = (len + 3) & !3;
        if aligned >= data.len() {
            break;
        }
        data = &data[aligned..];
    }
    out
}

fn parse_packet(mut attrs: &[u8]) -> Option<LoggedPacket> {
    let mut prefix = String::new();
    let mut payload: Option<&[u8]> = None;
    while attrs.len() >= 4 {
        let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let aty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x7fff;
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let value = &attrs[4..alen];
        match aty {
            NFULA_PREFIX => {
                prefix = String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_string()
            }
            NFULA_PAYLOAD => payload = Some(value),
            _ => {}
        }
        let aligned = (alen + 3) & !3;
        if aligned >= attrs.len() {
            break;
        }
        attrs = &attrs[aligned..];
    }
    let (src, dst, protocol, l4) = parse_ip(payload?)?;
    let (src_port, dst_port) = if l4.len() >= 4 && matches!(protocol, 6 | 17 | 132) {
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    } else {
        (0, 0)
    };
    Some(LoggedPacket {
        prefix,
        src,
        dst,
        protocol,
        src_port,
        dst_port,
    })
}

/// (source, destination, protocol, transport header) of an IPv4 or IPv6 packet.
pub fn parse_ip(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match p.first()? >> 4 {
        4 => {
            if p.len() < 20 {
                return None;
            }
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            let src = IpAddr::from([p[12], p[13], p[14], p[15]]);
            let dst = IpAddr::from([p[16], p[17], p[18], p[19]]);
            Some((src, dst, p[9], p.get(ihl..)?))
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let s: [u8; 16] = p[8..24].try_into().ok()?;
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d), p[6], &p[40..]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_msg(prefix: &str, payload: &[u8]) -> Vec<u8> {
        let mut p = prefix.as_bytes().to_vec();
        p.push(0);
        nlmsg(
            (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET,
            0,
            0,
            7,
            &[(NFULA_PREFIX, p), (NFULA_PAYLOAD, payload.to_vec())],
        )
    }

    #[test]
    fn parses_a_logged_tcp_syn() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 1, 1, 10, 0, 2, 2,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 0]);
        let mut dgram = packet_msg("D r12", &ip);
        dgram.extend(packet_msg("A r3", &ip));
        let got = parse_messages(&dgram);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].prefix, "D r12");
        assert_eq!(got[0].dst_port, 80);
        assert_eq!(got[0].src_port, 40000);
        assert_eq!(got[0].src, "10.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(got[1].prefix, "A r3");
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed: u64 = 0x1234_5678;
        for len in 0..400 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(seed as u8);
            }
            let _ = parse_messages(&buf);
            // Also a valid header followed by garbage attributes.
            let mut m = nlmsg((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET, 0, 0, 7, &[]);
            m.extend_from_slice(&buf);
            let l = m.len() as u32;
            m[0..4].copy_from_slice(&l.to_ne_bytes());
            let _ = parse_messages(&m);
        }
    }
}

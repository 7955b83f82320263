//! Hand-built IPv4 packets sent from inside a lab pod: what a hostile pod can put on the
//! wire (another source address, any protocol, a bare ACK), to prove the node drops it.

use std::net::{Ipv4Addr, SocketAddr};

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (no options, DF clear) carrying `payload` as protocol `proto`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = Vec::with_capacity(total as usize);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&0x5a5au16.to_be_bytes()); // identification
    p.extend_from_slice(&0u16.to_be_bytes()); // flags, fragment offset
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// TCP flag bits.
pub const SYN: u8 = 0x02;
/// TCP ACK.
pub const ACK: u8 = 0x10;

/// An IPv4 TCP segment with `flags` and no payload.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.to_be_bytes()); // sequence
    t.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
    t.extend_from_slice(&[5 << 4, flags]);
    t.extend_from_slice(&65535u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, t.len() as u8]);
    pseudo.extend_from_slice(&t);
    let c = checksum(&pseudo);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

/// Sends `packet` (a whole IPv4 packet, header included) from inside network namespace
/// `netns`. A short-lived thread enters the namespace; the process never moves.
pub fn send_ipv4(netns: &str, packet: &[u8]) -> std::io::Result<()> {
    if packet.len() < 20 {
        return Err(std::io::Error::other("packet shorter than an IPv4 header"));
    }
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    crate::netns::run_in(Some(netns), || {
        // IPPROTO_RAW: the header is ours, source address included.
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(255)),
        )?;
        sock.send_to(packet, &SocketAddr::new(dst.into(), 0).into())
            .map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_valid_checksums() {
        let p = tcp(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            40000,
            8080,
            SYN,
        );
        assert_eq!(p.len(), 40);
        // A header with its checksum in place sums to zero.
        assert_eq!(checksum(&p[..20]), 0);
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20];
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(checksum(&pseudo), 0);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 8080);
        assert_eq!(p[33], SYN);
    }
}

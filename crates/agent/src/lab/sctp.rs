//! SCTP probing with raw IP sockets (this machine's kernel has no SCTP sockets, but
//! netfilter still filters SCTP): a hand-built INIT chunk, and a raw receiver that reports
//! which INITs reached the pod.

/// CRC32c (Castagnoli), as SCTP's checksum.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc: u32 = !0;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// An SCTP packet holding one INIT chunk.
pub fn init_packet(src_port: u16, dst_port: u16, tag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // verification tag: 0 for INIT
    p.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled below
    p.push(1); // chunk type INIT
    p.push(0); // flags
    p.extend_from_slice(&20u16.to_be_bytes()); // chunk length
    p.extend_from_slice(&tag.max(1).to_be_bytes()); // initiate tag
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&tag.to_be_bytes()); // initial TSN
    let c = crc32c(&p);
    // SCTP stores the CRC32c in little-endian byte order.
    p[8..12].copy_from_slice(&c.to_le_bytes());
    p
}

/// Parses an IPv4 packet carrying SCTP: (source address, destination port, initiate tag of
/// an INIT chunk). `None` for anything else or malformed input.
pub fn parse_ipv4_init(pkt: &[u8]) -> Option<(std::net::Ipv4Addr, u16, u32)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 132 {
        return None;
    }
    let ihl = ((pkt[0] & 0x0f) as usize) * 4;
    let sctp = pkt.get(ihl..)?;
    if sctp.len() < 32 || sctp[12] != 1 {
        return None;
    }
    let src = std::net::Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dport = u16::from_be_bytes([sctp[2], sctp[3]]);
    let tag = u32::from_be_bytes([sctp[16], sctp[17], sctp[18], sctp[19]]);
    Some((src, dport, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn init_round_trip() {
        let sctp = init_packet(40000, 80, 77);
        assert_eq!(sctp.len(), 32);
        let mut ip = vec![
            0x45, 0, 0, 52, 0, 0, 0, 0, 64, 132, 0, 0, 10, 0, 1, 1, 10, 0, 2, 2,
        ];
        ip.extend_from_slice(&sctp);
        assert_eq!(
            parse_ipv4_init(&ip),
            Some((std::net::Ipv4Addr::new(10, 0, 1, 1), 80, 77))
        );
        assert_eq!(parse_ipv4_init(&ip[..30]), None);
        assert_eq!(parse_ipv4_init(&[]), None);
    }
}

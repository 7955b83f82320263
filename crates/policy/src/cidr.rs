//! IPv4/IPv6 CIDR blocks: parsing, containment, matching.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A CIDR block. Host bits are masked off on parse (`10.0.0.1/24` is `10.0.0.0/24`), as the
/// Kubernetes API server accepts such values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    bits: u128,
    prefix: u8,
    v6: bool,
}

impl Cidr {
    /// The block's prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }
    /// Whether this is an IPv6 block.
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }
    /// A /32 or /128 for one address.
    pub fn host(ip: IpAddr) -> Self {
        let (bits, v6) = addr_bits(ip);
        Cidr {
            bits,
            prefix: if v6 { 128 } else { 32 },
            v6,
        }
    }
    fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }
    fn mask(&self) -> u128 {
        mask(self.width(), self.prefix)
    }
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (bits, v6) = addr_bits(ip);
        v6 == self.v6 && bits & self.mask() == self.bits
    }
    /// Whether `other` lies entirely inside this block.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.v6 == self.v6 && other.prefix >= self.prefix && other.bits & self.mask() == self.bits
    }
    /// `0.0.0.0/0` or `::/0`.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all: u128 = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let host_bits = width - prefix;
    if host_bits == 0 {
        all
    } else {
        all & !((1u128 << host_bits) - 1)
    }
}

fn addr_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, false),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u32::from(v4) as u128, false),
            None => (u128::from(v6), true),
        },
    }
}

impl Cidr {
    /// Parses a NetworkPolicy `ipBlock` CIDR as the API server does without strict IP
    /// validation (`ParseCIDRSloppy`): IPv4 octets with leading zeros are read as decimal
    /// (`010.0.0.0/8` is `10.0.0.0/8`, never octal). Returns the block and whether it was
    /// read that way. Strict validation (Kubernetes 1.33+) refuses such a block; until then
    /// the API server stores it, so refusing it here would leave a stored policy
    /// unenforced.
    pub fn parse_legacy(s: &str) -> Result<(Cidr, bool), String> {
        match s.parse::<Cidr>() {
            Ok(c) => Ok((c, false)),
            Err(e) => {
                let Some((addr, prefix)) = s.split_once('/') else {
                    return Err(e);
                };
                let octets: Vec<&str> = addr.split('.').collect();
                let decimal = octets.len() == 4
                    && octets.iter().all(|o| {
                        (1..=3).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_digit())
                    });
                if !decimal {
                    return Err(e);
                }
                let stripped: Vec<String> = octets
                    .iter()
                    .map(|o| o.trim_start_matches('0'))
                    .map(|o| {
                        if o.is_empty() {
                            "0".to_string()
                        } else {
                            o.to_string()
                        }
                    })
                    .collect();
                let again = format!("{}/{prefix}", stripped.join("."));
                again.parse::<Cidr>().map(|c| (c, true)).map_err(|_| e)
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected address/prefix)"))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: {addr:?} is not an IP address"))?;
        let width: u8 = if ip.is_ipv6() { 128 } else { 32 };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
            return Err(format!("{s:?} is not a CIDR: bad prefix length {prefix:?}"));
        }
        let p: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: bad prefix length"))?;
        if p > width {
            return Err(format!(
                "{s:?} is not a CIDR: prefix length {p} is over {width}"
            ));
        }
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it maps
        // (`10.0.0.0/8`): addresses are compared as IPv4 once unmapped (`addr_bits`), so
        // kept as IPv6 it would contain no address at all.
        let (ip, p) = match ip {
            IpAddr::V6(v6a) if p >= 96 => match v6a.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), p - 96),
                None => (ip, p),
            },
            _ => (ip, p),
        };
        let width: u8 = if ip.is_ipv6() { 128 } else { 32 };
        let v6 = ip.is_ipv6();
        let bits = match ip {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            IpAddr::V6(v6a) => u128::from(v6a),
        };
        Ok(Cidr {
            bits: bits & mask(width, p),
            prefix: p,
            v6,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.bits), self.prefix)
        } else {
            write!(
                f,
                "{}/{}",
                std::net::Ipv4Addr::from(self.bits as u32),
                self.prefix
            )
        }
    }
}

/// A CIDR with exceptions, as `ipBlock` has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpBlockMatcher {
    /// The block.
    pub cidr: Cidr,
    /// Carved out.
    pub except: Vec<Cidr>,
}

impl IpBlockMatcher {
    /// Whether `ip` is inside the block and outside every exception.
    pub fn matches(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// The address a connection to `ip` reaches: IPv4-mapped IPv6 and NAT64 addresses reach
/// the IPv4 address they embed. NAT64 here is the well-known prefix `64:ff9b::/96` and the
/// local-use prefix `64:ff9b:1::/48` (RFC 8215) in RFC 6052's /48 format: the IPv4 address
/// in bits 48..63 and 72..87, around the zero `u` octet. An address of the local-use
/// prefix whose bits 48..95 are all zero is read in the /96 format (`64:ff9b:1::/96`, the
/// IPv4 address in the last 32 bits), since the /48 format would embed 0.0.0.0 there.
pub fn reached_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let o = v6.octets();
            IpAddr::from([o[12], o[13], o[14], o[15]])
        }
        IpAddr::V6(v6) if v6.segments()[..3] == [0x64, 0xff9b, 1] => {
            let o = v6.octets();
            if o[6..12].iter().all(|b| *b == 0) {
                IpAddr::from([o[12], o[13], o[14], o[15]])
            } else {
                IpAddr::from([o[6], o[7], o[9], o[10]])
            }
        }
        other => other,
    }
}

/// Whether `ip` is inside the node itself or reaches what only the node should: the
/// unspecified, loopback, link-local (the cloud metadata service at 169.254.169.254 among
/// them), multicast and broadcast addresses, AWS's IPv6 metadata address `fd00:ec2::254`,
/// and their IPv4-mapped and NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) forms. A name from DNS must never lead
/// there: the DNS proxy opens no such answer, the egress gateway connects to none.
pub fn is_node_internal(ip: IpAddr) -> bool {
    match reached_address(ip) {
        IpAddr::V4(v4) => {
            v4.octets()[0] == 0
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.segments()[0] & 0xffc0 == 0xfe80
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ipv4_octets_with_leading_zeros_are_decimal() {
        let (c, sloppy) = Cidr::parse_legacy("010.001.0.0/16").unwrap();
        assert!(sloppy);
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert!(!c.contains("8.1.0.1".parse().unwrap()), "never octal");
        assert_eq!(
            Cidr::parse_legacy("10.1.0.0/16").unwrap(),
            ("10.1.0.0/16".parse().unwrap(), false)
        );
        for bad in [
            "0256.0.0.0/8",
            "010.0.0/8",
            "0x10.0.0.0/8",
            "010.0.0.0",
            "1000.0.0.0/8",
        ] {
            assert!(Cidr::parse_legacy(bad).is_err(), "{bad}");
        }
        assert!(
            "010.0.0.0/8".parse::<Cidr>().is_err(),
            "strict parse unchanged"
        );
    }

    #[test]
    fn parse_and_contain() {
        let c: Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(c.contains("10.0.255.1".parse().unwrap()));
        assert!(!c.contains("10.1.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let e: Cidr = "10.0.1.0/24".parse().unwrap();
        assert!(c.contains_cidr(&e));
        assert!(!e.contains_cidr(&c));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(all.is_everything());
        let h: Cidr = "10.0.1.7/24".parse().unwrap();
        assert_eq!(h.to_string(), "10.0.1.0/24");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let v6all: Cidr = "::/0".parse().unwrap();
        assert!(v6all.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6all.contains("1.2.3.4".parse().unwrap()));
        let host: Cidr = "10.0.1.2/32".parse().unwrap();
        assert!(host.contains("10.0.1.2".parse().unwrap()));
        assert!(!host.contains("10.0.1.3".parse().unwrap()));
    }

    /// Found by `cargo fuzz run patterns` (`crates/policy/fuzz`): `::ffff:0.0.0.0/96`
    /// parsed as an IPv6 block that contained not even its own address, because addresses
    /// are compared unmapped; a Deny on such a block matched nothing.
    #[test]
    fn ipv4_mapped_blocks_are_the_ipv4_blocks_they_map() {
        let c: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(c, "10.0.0.0/8".parse().unwrap());
        assert!(!c.is_ipv6());
        assert_eq!(c.prefix_len(), 8);
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "::ffff:0.0.0.0/96".parse().unwrap();
        assert!(all.contains("::ffff:0.0.0.0".parse().unwrap()));
        assert!(all.is_everything());
        assert_eq!(all.to_string(), "0.0.0.0/0");
        let host: Cidr = "::ffff:1.2.3.4/128".parse().unwrap();
        assert_eq!(host, Cidr::host("1.2.3.4".parse().unwrap()));
        // A shorter prefix is an IPv6 block (it is not all IPv4-mapped addresses).
        let wide: Cidr = "::ffff:0.0.0.0/80".parse().unwrap();
        assert!(wide.is_ipv6());
    }

    #[test]
    fn nat64_prefixes_reach_the_ipv4_address_they_embed() {
        let reached = |s: &str| reached_address(s.parse().unwrap()).to_string();
        // The well-known prefix, /96.
        assert_eq!(reached("64:ff9b::a9fe:a9fe"), "169.254.169.254");
        // The local-use prefix in RFC 6052's /48 format (its example 192.0.2.33 is
        // c0.00 | u | 02.21): on the old code these were read as the IPv6 addresses they
        // are, so 10.0.0.7 or the metadata service behind a NAT64 could be opened by name.
        assert_eq!(reached("64:ff9b:1:c000:2:2100::"), "192.0.2.33");
        assert_eq!(reached("64:ff9b:1:a00:0:700::"), "10.0.0.7");
        assert_eq!(reached("64:ff9b:1:a9fe:a9:fe00::"), "169.254.169.254");
        assert!(is_node_internal(
            "64:ff9b:1:a9fe:a9:fe00::".parse().unwrap()
        ));
        assert!(is_node_internal("64:ff9b:1:7f00:0:100::".parse().unwrap()));
        // Nothing between the prefix and the last 32 bits: the /96 form.
        assert_eq!(reached("64:ff9b:1::a00:7"), "10.0.0.7");
        assert!(is_node_internal("64:ff9b:1::7f00:1".parse().unwrap()));
        // Outside both prefixes nothing changes.
        assert_eq!(reached("64:ff9b:2:a00:0:700::"), "64:ff9b:2:a00:0:700::");
        assert_eq!(reached("2001:db8::a00:7"), "2001:db8::a00:7");
        assert!(!is_node_internal(
            "64:ff9b:1:c000:2:2100::".parse().unwrap()
        ));
    }

    #[test]
    fn bad_cidrs() {
        for s in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "::/129",
            "10.0.0.0/",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }
}

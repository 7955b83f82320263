//! `@ipMatch`: IPv4 and IPv6 addresses and CIDR blocks.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
pub(crate) struct IpNet {
    addr: u128,
    prefix: u32,
    v4: bool,
}

fn to_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

pub(crate) fn parse_list(s: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for item in s.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let (a, p) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let ip: IpAddr = a
            .parse()
            .map_err(|_| format!("invalid IP address {item:?}"))?;
        let (addr, v4) = to_bits(ip);
        let max = if v4 { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix in {item:?}"))?,
            None => max,
        };
        out.push(IpNet { addr, prefix, v4 });
    }
    Ok(out)
}

pub(crate) fn matches(nets: &[IpNet], input: &[u8]) -> bool {
    let Some(ip) = std::str::from_utf8(input)
        .ok()
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
    else {
        return false;
    };
    let (bits, v4) = to_bits(ip);
    nets.iter().any(|n| {
        if n.v4 != v4 {
            return false;
        }
        let width = if v4 { 32 } else { 128 };
        if n.prefix == 0 {
            return true;
        }
        let shift = width - n.prefix;
        (bits >> shift) == (n.addr >> shift)
    })
}

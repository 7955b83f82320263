//! The short user-written values of policies: `ipBlock` CIDRs and FQDN patterns (Palisade's
//! and AdminNetworkPolicy's), each line of the input tried as one, the next line as a name
//! or address to match. Never a panic; a CIDR prints back to itself and contains its own
//! address; an exact FQDN pattern matches itself in any case and nothing below it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::cidr::Cidr;
use palisade_policy::fqdn::FqdnPattern;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, subject) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(c) = pattern.parse::<Cidr>() {
        let printed = c.to_string();
        let again: Cidr = printed.parse().expect("a printed CIDR parses");
        assert_eq!(again, c, "{pattern:?} → {printed:?}");
        let (addr, _) = printed.split_once('/').expect("address/prefix");
        let ip: IpAddr = addr.parse().expect("an address");
        assert!(c.contains(ip), "{printed} does not contain its address");
        if let Ok(ip) = subject.parse::<IpAddr>() {
            let _ = c.contains(ip);
        }
    }
    for (anp, parsed) in [
        (false, FqdnPattern::parse(pattern)),
        (true, FqdnPattern::parse_anp(pattern)),
    ] {
        let Ok(p) = parsed else { continue };
        let _ = p.matches(subject);
        if !p.is_wildcard() && !pattern.contains('*') {
            assert!(
                p.matches(pattern),
                "{pattern:?} (anp {anp}) does not match itself"
            );
            assert!(p.matches(&pattern.to_ascii_uppercase()));
            assert!(
                !p.matches(&format!("x.{pattern}")),
                "{pattern:?} matches below it"
            );
        }
    }
});

//! Integration tests of the WAF engine: SecLang semantics, property tests for every parser
//! of untrusted input, and the OWASP CRS regression suite.

mod bodies;
mod crs;
mod crs334;
mod props;
mod seclang;

use palisade_waf::{Request, Ruleset, Transaction};

/// Runs a request through phases 1 and 2 and returns the transaction.
pub(crate) fn check<'r>(
    rs: &'r Ruleset,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Transaction<'r> {
    let h: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let mut tx = Transaction::new(rs);
    tx.process_request(&Request {
        method,
        uri: uri.as_bytes(),
        protocol: "HTTP/1.1",
        headers: &h,
        body,
        remote_addr: "10.0.0.1",
    });
    tx.process_logging();
    tx
}

/// Ids of the rules that logged.
pub(crate) fn fired(tx: &Transaction<'_>) -> Vec<u32> {
    tx.matched_rules().iter().map(|m| m.id).collect()
}

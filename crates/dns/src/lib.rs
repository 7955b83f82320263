//! Palisade's DNS proxy: a forwarding resolver that knows which pod is asking, answers only
//! the names that pod's policy allows, logs every query as a `dns` event, and reports the
//! addresses in allowed answers so the data plane can open them for their TTL.
//!
//! - [`decide`]: pure packet handling: parse a query, refuse it, or pass it on.
//! - [`answers`]: the addresses (and their TTLs) an upstream response gives for the name
//!   asked, following CNAME chains.
//! - [`proxy`]: the UDP/TCP server that ties both to the policy engine and the event stream;
//!   the UDP path runs on a few blocking worker threads (`udp`).
//! - [`rate`]: per-client query rate limits (token buckets).
//! - [`resolutions`]: the (pod, name, IP, expiry) records, bounded and saved across
//!   restarts, shared with the kernel updater and the egress gateway.
//! - [`feed`]: `GET /v1/answers`, the records streamed to egress gateways in other processes.
//! - `source_ports`: the rotated pool of random source ports forwarded UDP queries
//!   leave from.
//! - [`mixed_case`]: 0x20 mixing of forwarded questions, so forged answers must guess the
//!   case too.
//! - [`names`]: the text of a queried name, and whether any FQDN pattern may match it.
//! - [`wire`]: the hot path's in-place reading of ordinary queries, and name features for
//!   tunnelling detection.

pub mod answers;
pub mod decide;

pub use answers::{addresses, AnswerSummary, Resolved};
pub use decide::{decide, parse_query, Decision, DenyRcode, Question};
pub mod event;
pub mod feed;
pub mod mixed_case;
pub mod names;
pub mod proxy;
pub mod rate;
pub mod resolutions;
mod source_ports;
mod udp;
pub mod wire;

pub use event::{dns_event, Origin, QueryLog};
pub use proxy::{DnsProxy, ProxyConfig, ProxyStats};
pub use resolutions::{Record, Resolutions};

use std::net::SocketAddr;
use std::time::Duration;

/// The longest query served, over UDP and TCP alike (4 KiB, EDNS0's usual payload size
/// and more than any question with its OPT record needs): a longer datagram is dropped,
/// a TCP connection announcing a longer message is closed without reading it.
pub const MAX_QUERY: usize = 4096;

/// What can go wrong running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A listening socket failed.
    #[error("dns socket: {0}")]
    Io(std::io::Error),
    /// The upstream could not be reached or its answer could not be read.
    #[error("upstream: {0}")]
    Upstream(std::io::Error),
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
}

impl DnsError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DnsError::Bind { .. } => "bind",
            DnsError::Io(_) => "socket",
            DnsError::Upstream(_) => "upstream",
            DnsError::UpstreamTimeout(_) => "upstream_timeout",
        }
    }
}

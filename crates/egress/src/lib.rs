//! Palisade's egress gateway: the one exit from the cluster to the internet.
//!
//! An explicit HTTP/1.1 forward proxy (absolute-form requests and `CONNECT` tunnels) and a
//! transparent listener for traffic the agent redirects. Every request or tunnel is decided
//! by the policy engine — the client's source IP (or, in standalone mode, a proxy
//! credential) names the pod, the `Host` / `CONNECT` target / TLS SNI names the destination,
//! and where the request is visible its method, path and headers are checked too. Denied
//! requests get a `403` with a short reason code and nothing else; the deciding policy goes
//! into an `http` event.
//!
//! - [`decide`]: the engine question for one request or tunnel, and the reason codes.
//! - [`proxy`]: the tokio + hyper 1 server: forwarding with per-connection upstream reuse,
//!   tunnels, the transparent listener.
//! - [`events`]: `http` events in the shared schema.
//! - [`hop`]: hop-by-hop headers, never passed on (shared with the ingress gateway).
//! - [`idle`]: closing connections with no request in flight (shared with the ingress).
//! - [`h1`]: HTTP/1.1 answer relaying for the lean lanes (shared with the ingress gateway).
//! - [`prefixed`]: a socket with bytes already read put back in front (lane → hyper).
//! - [`head`], [`sni`]: small parsers for untrusted bytes (an HTTP request head, a TLS
//!   ClientHello) that never panic.
//! - [`answers`]: SNI / DNS / IP agreement with what the DNS proxy told each pod.
//! - [`answer_feed`]: subscriptions to DNS proxies in other processes (their answers feed).
//! - [`ai`]: AI-API awareness (provider, model, operation, token usage, up/downloads).
//! - [`dlp`]: secret and PII detectors for outbound bodies (block, redact, log);
//!   [`decoded`]: the percent-, JSON- and base64-decoded readings they also look at;
//!   [`head_dlp`]: the same detectors on request heads (target and header fields).
//! - [`tls`]: interception — the CA, per-host leaves, verified upstream TLS.
//! - [`workers`]: thread-per-core serving with one accept loop (shared with the ingress).
//! - [`config`]: the gateway's settings (static hosts, proxy users, event selection).

pub mod ai;
pub mod answer_feed;
pub mod answers;
pub mod budget;
pub mod config;
pub mod decide;
pub mod decoded;
pub mod dlp;
pub mod events;
pub mod h1;
pub mod head;
pub mod head_dlp;
pub mod hop;
pub mod idle;
pub mod prefixed;
pub mod proxy;
pub mod resolve;
pub mod sni;
pub mod tls;
pub mod workers;

pub use config::{DlpSettings, EventSelection, GatewayConfig};
pub use decide::{Decision, DenyReason};
pub use proxy::{engine_handle, publish, EgressGateway, EngineHandle, GatewayStats};

use std::net::SocketAddr;

/// What can go wrong running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The settings are not usable.
    #[error("egress config: {0}")]
    Config(String),
    /// A listening socket failed.
    #[error("egress socket: {0}")]
    Io(std::io::Error),
}

impl EgressError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EgressError::Bind { .. } => "bind",
            EgressError::Config(_) => "config",
            EgressError::Io(_) => "socket",
        }
    }
}

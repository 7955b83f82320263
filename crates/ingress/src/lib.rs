//! Palisade's ingress AI gateway: a reverse proxy in front of inference services,
//! configured by `AIGateway` resources. Per route it authenticates consumers (hashed API
//! keys, JWTs), enforces model and route allow-lists, request and token rate limits and
//! size limits, runs the OWASP CRS (through `palisade-waf`) on everything but the prompt
//! text, scores prompts for injection through the [`guard::PromptScorer`] hook, and filters
//! responses — streamed ones included — for secrets, PII and leaked canaries. Every request
//! becomes one `http` event. See `docs/ingress.md`.

pub mod auth;
pub mod config;
pub mod events;
pub mod filter;
pub mod guard;
pub mod json_output;
pub mod jwks;
pub mod limits;
pub mod openai;
pub mod proxy;
pub mod refusal;
pub mod sse;
pub mod sse_filter;
pub mod strict_json;
pub mod tokens;
pub mod waf;

pub use config::{compile, Compiled};
pub use guard::{HeuristicScorer, PromptScore, PromptScorer};
pub use proxy::{GatewayOptions, IngressGateway, IDLE_TIMEOUT, SEND_TIMEOUT};

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The resources do not compile (every problem, `file:line: field: message`).
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    /// TLS files.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listen address.
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    /// Starting the worker threads.
    #[error("cannot start the gateway's workers: {0}")]
    Io(std::io::Error),
}

impl IngressError {
    /// Stable label.
    pub fn label(&self) -> &'static str {
        match self {
            IngressError::Config(_) => "config",
            IngressError::Tls(_) => "tls",
            IngressError::Bind(..) => "bind",
            IngressError::Io(_) => "io",
        }
    }
}

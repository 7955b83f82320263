//! Observability built on recorded events: least-privilege policy recommended from observed
//! traffic ([`recommend`]), "what if" replay of a proposed policy set against recorded flows
//! ([`replay`]), Prometheus metrics ([`metrics`]), and the service graph and web UI that
//! `palisade up` serves ([`graph`], [`web`]).
//!
//! Everything but the web module is pure: functions of events, an engine and options. The
//! binary reads the events (from the store or a JSON-lines file) and prints the results.

pub mod access;
pub mod evaluate;
pub mod graph;
pub mod identity;
pub mod metrics;
pub mod pods;
pub mod recommend;
pub mod replay;
pub mod serve;
pub mod source;
pub mod traffic;
pub mod web;
pub mod yaml;

/// Errors of the observe crate.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The event store could not be read.
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    /// A JSON-lines file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a JSON-lines file is not an event.
    #[error("{path}:{line}: {source}")]
    BadEvent {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why it is not an event.
        source: palisade_events::EventError,
    },
}

//! Palisade's security events: the one JSON schema every component writes and every reader
//! (log pipelines, detectors, the CLI, the UI) relies on, as described in `EVENTS.md`.
//!
//! This crate is on the ground floor: pure data types and small helpers, no async runtime
//! and no I/O beyond the clock. It provides the serde types ([`Event`] and its parts),
//! time helpers ([`Timestamp`], [`parse_rfc3339`], [`parse_duration`]), sortable ids
//! ([`UlidGenerator`], [`new_id`]), and the bounded, never-blocking queue that carries
//! events off the data path ([`channel`]).

mod channel;
mod details;
#[cfg(feature = "policy")]
pub mod from_policy;
mod json;
mod model;
mod time;
mod ulid;

pub use channel::{channel, ChannelStats, ChannelWatch, EventReceiver, EventSender};
pub use details::{
    AiInfo, AlertInfo, AlertKind, Centi, ClientCertificate, Detection, DetectionAction,
    DnsFeatures, DnsInfo, FlowInfo, FlowState, HttpInfo, HttpVersion, Severity, TlsMode, Transfer,
};
pub use model::{
    Endpoint, EndpointKind, Event, EventBody, EventType, PolicyRef, Protocol, Verdict,
};
pub use time::{format_rfc3339_micros, now_micros, parse_duration, parse_rfc3339, Timestamp};
pub use ulid::{new_id, Ulid, UlidGenerator};

/// Why an event (or a value in one) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The line was empty or only whitespace.
    #[error("empty line")]
    Empty,
    /// Not valid JSON, or a field has the wrong shape or value.
    #[error("invalid event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `type` names an object that is absent.
    #[error("event has type \"{event_type}\" but no \"{event_type}\" object")]
    MissingBody {
        /// The declared type.
        event_type: EventType,
    },
    /// An object of another type is present too.
    #[error("event has type \"{event_type}\" but also a \"{extra}\" object")]
    ExtraBody {
        /// The declared type.
        event_type: EventType,
        /// The object that should not be there.
        extra: EventType,
    },
    /// A time that is not RFC 3339.
    #[error("invalid RFC 3339 time {0:?}")]
    InvalidTime(String),
    /// A value outside a closed set (e.g. a `type` or `verdict` given on a command line).
    #[error("unknown {field} {value:?}")]
    UnknownValue {
        /// Which field.
        field: &'static str,
        /// The value given (at most 64 characters).
        value: String,
    },
}

impl EventError {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Json(_) => "json",
            Self::MissingBody { .. } => "missing_body",
            Self::ExtraBody { .. } => "extra_body",
            Self::InvalidTime(_) => "invalid_time",
            Self::UnknownValue { .. } => "unknown_value",
        }
    }
}

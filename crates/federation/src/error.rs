//! The federation crate's error type.

use palisade_policy::Diagnostic;

/// What can go wrong talking to the federation store.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The policies do not validate; nothing was written.
    #[error("{} error(s); nothing pushed:\n{}", .0.len(), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// etcd could not be reached or refused the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// An etcd request took too long (unreachable, or no quorum).
    #[error("etcd did not answer within {0:?} (unreachable, or the cluster has lost quorum)")]
    Timeout(std::time::Duration),
    /// The endpoints or TLS settings are unusable.
    #[error("{0}")]
    Config(String),
    /// A revision that does not exist or cannot be used.
    #[error("{0}")]
    Revision(String),
    /// Concurrent pushes kept moving the current pointer.
    #[error("another push kept changing the current revision; try again")]
    Conflict,
}

/// Result alias.
pub type Result<T> = std::result::Result<T, FederationError>;

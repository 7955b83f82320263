//! Federation: global policy and shared workload identities over etcd.
//!
//! An operator pushes a set of `ClusterSecurityPolicy` objects once; it is validated like
//! `palisade check` and written to etcd as one immutable revision in one transaction, with a
//! `current` pointer moved by compare-and-swap ([`push`]). Member clusters watch the prefix
//! ([`member`]), merge the current revision into their snapshot as the highest-precedence
//! tier, publish their own workloads under a lease ([`identities`]), and report the revision
//! they enforce ([`status`]). When etcd is unreachable or has lost quorum, members keep the
//! last revision they applied (fail static) and catch up from the last etcd revision they saw.
//! Key layout: [`layout`]; revision documents: [`revision`]; Ed25519 revision signatures:
//! [`signing`]; connecting: [`connect`].

pub mod connect;
pub mod error;
pub mod identities;
pub mod layout;
pub mod member;
pub mod push;
pub mod revision;
pub mod signing;
pub mod status;

pub use connect::EtcdOptions;
pub use error::FederationError;
pub use layout::Layout;

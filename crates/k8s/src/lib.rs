//! Palisade in a Kubernetes cluster: the CRDs generated from the policy types
//! (`palisade crdgen`), and the controller that watches the API into the same snapshot
//! the standalone mode builds from files, reports invalid objects on their status and in
//! Events, and holds a Lease so one replica writes.
//!
//! The reconcile logic ([`reconcile`]) is pure; the I/O around it ([`watch`], [`status`],
//! [`lease`], [`controller`]) speaks to the API server through `kube`'s client.

pub mod backoff;
pub mod cluster;
pub mod controller;
pub mod convert;
pub mod crd;
pub mod lease;
pub mod reconcile;
pub mod resources;
pub mod status;
pub mod watch;

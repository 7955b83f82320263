//! The lab: a node built from network namespaces on this machine, the agent's ruleset in
//! its kernel, and every pod-to-pod probe observed.

pub mod craft;
pub mod pod;
pub mod sctp;
pub mod topology;
pub mod verify;

pub use topology::{available, Lab, LabError, LabPod};
pub use verify::{verify, Session, VerifyOptions, VerifyReport};

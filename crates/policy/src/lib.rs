//! Palisade's policy model and decision engine.
//!
//! Pure: no I/O, no async. It parses Kubernetes-style YAML (with file:line:column and field
//! paths for every problem), validates it, compiles a snapshot of workloads and policies
//! (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy, Palisade's SecurityPolicy
//! and ClusterSecurityPolicy), and answers `verdict(flow)` with the rule that decided, an
//! explanation of every stage, and reachability matrices. Every component asks this crate
//! the same question, so policy semantics live here and nowhere else.

pub mod cidr;
pub mod diag;
pub mod engine;
pub mod fqdn;
pub mod http_path;
mod http_regex;
pub mod lint;
pub mod load;
pub mod model;
pub mod podset;
pub mod snapshot;
pub mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Origin, Severity};
pub use engine::{
    Action, DirVerdict, Direction, Endpoint, Engine, Explanation, Exposure, Flow, GatewayDemands,
    HttpRequest, Matrix, PodId, PodInfo, PolicyInfo, PolicyKind, PolicyRef, Reason, Stage, Step,
    UploadBudget, Verdict,
};
pub use load::Manifests;
pub use model::{Mode, Posture, Protocol};
pub use snapshot::Snapshot;

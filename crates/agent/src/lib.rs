//! The node agent: turns the engine's compiled policy for the pods of one node into one
//! nftables table (`inet palisade`), applies it as one atomic transaction, and keeps it in
//! step with every change. Also the lab harness that proves, in network namespaces on this
//! machine, that the kernel enforces exactly what the engine predicts.

pub mod antispoof;
pub mod bridge;
pub mod conntrack;
pub mod flowlog;
pub mod fqdn;
pub mod hostfw;
pub mod lab;
pub mod netns;
pub mod newpod;
pub mod nflog;
pub mod nfnetlink;
pub mod nft;
pub mod peers;
pub mod porttable;
#[cfg(test)]
mod render_tests;
pub mod revoke;
pub mod ruleset;
pub mod runtime;

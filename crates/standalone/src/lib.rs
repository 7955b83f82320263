//! Standalone mode: reading manifests from folders, the `palisade up` supervisor that
//! watches them and swaps compiled snapshots atomically, and the local admin API.

pub mod admin;
pub mod config;
pub mod duration;
pub mod events;
pub mod source;
pub mod supervisor;

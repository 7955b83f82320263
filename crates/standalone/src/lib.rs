//! Standalone mode: reading manifests from folders, the `palisade up` supervisor that
//! watches them and swaps compiled snapshots atomically, and the local admin API.

pub mod source;

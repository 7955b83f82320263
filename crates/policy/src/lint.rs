//! Lints: valid input that is probably not what was meant.

use crate::diag::Diagnostic;
use crate::snapshot::Snapshot;

/// Lints a snapshot.
pub fn lint(_snap: &Snapshot) -> Vec<Diagnostic> {
    Vec::new()
}

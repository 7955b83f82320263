//! Diagnostics: every problem with file, line, column and field path.

use serde::Serialize;
use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Input Palisade cannot apply.
    Error,
    /// Valid, but probably not what was meant (lints).
    Warning,
    /// For information (skipped kinds, defaults filled in).
    Note,
}

/// Where an object came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Origin {
    /// File name as given.
    pub file: String,
    /// 1-based line of the object's first line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// Stable code, e.g. `invalid-field`, `selects-no-pods`.
    pub code: &'static str,
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Field path within the object, e.g. `spec.egress[0].to[1].ipBlock.except[0]`.
    pub path: String,
    /// The object, e.g. `NetworkPolicy x/allow-dns` (empty when unknown).
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{}:{}:{}: {sev}: ", self.file, self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if !self.object.is_empty() {
            write!(f, " [{}]", self.object)?;
        }
        Ok(())
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

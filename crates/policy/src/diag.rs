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

/// `s` as it may be printed to a terminal: control characters (C0, DEL, C1) and the Unicode
/// line and paragraph separators escaped (`\u{1b}`), the rest as it is. Names Palisade
/// prints are often what someone else chose (a pod's `Host` header or DNS query, another
/// cluster's status, an imported file); printed raw, an escape sequence would drive the
/// operator's terminal and a line break would fake a line of the output.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(unsafe_char) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn terminal_controls_and_line_separators_are_escaped_the_rest_kept() {
        assert!(matches!(
            printable("ml/trainer-0 ✓"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}[2Jb\nc\rd\u{85}e\u{2028}f\u{7f}"),
            "a\\u{1b}[2Jb\\nc\\rd\\u{85}e\\u{2028}f\\u{7f}"
        );
    }
}

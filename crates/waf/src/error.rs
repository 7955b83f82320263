//! Errors and warnings from loading rule files.

use std::fmt;
use std::path::PathBuf;

/// A rule file could not be loaded. Every variant says where (file:line) and which
/// directive, when it is known.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A directive is malformed or refers to something that does not exist.
    #[error("{file}:{line}: {directive}: {message}")]
    Directive {
        /// The file.
        file: PathBuf,
        /// 1-based line where the directive starts.
        line: usize,
        /// The directive name, e.g. `SecRule`.
        directive: String,
        /// What is wrong.
        message: String,
    },
}

/// Something accepted but worth telling the operator (an unknown harmless directive, an
/// action that has no effect here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The directive.
    pub directive: String,
    /// The message.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.directive,
            self.message
        )
    }
}

//! Bad input: every problem is reported with its severity, file, line, column and field
//! path, all problems of a file at once, and nothing panics — checked on hand-written
//! broken manifests and by property tests on arbitrary and mutated text.

#[path = "bad_input/objects.rs"]
mod objects;
#[path = "bad_input/props.rs"]
mod props;
#[path = "bad_input/syntax.rs"]
mod syntax;
#[path = "bad_input/values.rs"]
mod values;

use palisade_policy::{Diagnostic, Engine, Manifests, Severity, Snapshot};

/// Joins lines with `\n`, so that line `i` of the slice is line `i + 1` of the file.
fn lines(ls: &[&str]) -> String {
    let mut s = ls.join("\n");
    s.push('\n');
    s
}

fn load(file: &str, text: &str) -> Manifests {
    let mut m = Manifests::new();
    m.add_file(file, text);
    m
}

/// The one diagnostic at `path`.
#[track_caller]
fn at<'a>(m: &'a Manifests, path: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = m.diagnostics.iter().filter(|d| d.path == path).collect();
    assert_eq!(
        found.len(),
        1,
        "diagnostics at {path:?}: {:#?}",
        m.diagnostics
    );
    found[0]
}

/// What a diagnostic must say.
struct Want<'a> {
    severity: Severity,
    code: &'a str,
    file: &'a str,
    line: usize,
    col: usize,
    path: &'a str,
    words: &'a [&'a str],
}

#[track_caller]
fn check(d: &Diagnostic, w: Want<'_>) {
    assert_eq!(d.severity, w.severity, "{d}");
    assert_eq!(d.code, w.code, "{d}");
    assert_eq!(d.file, w.file, "{d}");
    assert_eq!((d.line, d.col), (w.line, w.col), "line:col of {d}");
    assert_eq!(d.path, w.path, "{d}");
    for word in w.words {
        assert!(d.message.contains(word), "{d:?} does not mention {word:?}");
    }
}

/// An error at `path`, at `line:col`, whose message mentions `words`.
#[track_caller]
fn error_at(
    m: &Manifests,
    file: &str,
    path: &str,
    line: usize,
    col: usize,
    code: &str,
    words: &[&str],
) {
    check(
        at(m, path),
        Want {
            severity: Severity::Error,
            code,
            file,
            line,
            col,
            path,
            words,
        },
    )
}

fn errors(m: &Manifests) -> usize {
    m.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

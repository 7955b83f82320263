//! SecLang files → directives: comments, line continuations, quoting and `Include`.

mod lex;

pub(crate) use lex::Directive;

use crate::error::LoadError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deep `Include` may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// Reads `path` and every file it includes, in order.
pub(crate) fn read_file(path: &Path) -> Result<Vec<Directive>, LoadError> {
    let mut out = Vec::new();
    read_into(path, 0, &mut out)?;
    Ok(out)
}

/// Parses `text` as if it were the file `name` (includes are resolved relative to the
/// current directory).
pub(crate) fn read_text(name: &Path, text: &str) -> Result<Vec<Directive>, LoadError> {
    let mut out = Vec::new();
    let file: Arc<Path> = Arc::from(name);
    expand(lex::lex(&file, text)?, 0, &mut out)?;
    Ok(out)
}

fn read_into(path: &Path, depth: usize, out: &mut Vec<Directive>) -> Result<(), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let file: Arc<Path> = Arc::from(path);
    expand(lex::lex(&file, &text)?, depth, out)
}

fn expand(dirs: Vec<Directive>, depth: usize, out: &mut Vec<Directive>) -> Result<(), LoadError> {
    for d in dirs {
        if d.name.eq_ignore_ascii_case("Include") || d.name.eq_ignore_ascii_case("IncludeOptional")
        {
            let optional = d.name.eq_ignore_ascii_case("IncludeOptional");
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(d.error("includes nest too deeply (a loop?)"));
            }
            let Some(pattern) = d.args.first() else {
                return Err(d.error("expects a file or glob"));
            };
            let base = d.file.parent().unwrap_or(Path::new("."));
            let pattern = base.join(pattern);
            let files = glob(&pattern).map_err(|m| d.error(&m))?;
            if files.is_empty() && !optional && !has_wildcard(&pattern) {
                return Err(d.error(&format!("{} does not exist", pattern.display())));
            }
            for f in files {
                read_into(&f, depth + 1, out).map_err(|e| match e {
                    LoadError::Io { path, message } => {
                        d.error(&format!("{}: {message}", path.display()))
                    }
                    other => other,
                })?;
            }
        } else {
            out.push(d);
        }
    }
    Ok(())
}

fn has_wildcard(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

/// Expands `*` and `?` in the last path component (and literal directories before it),
/// sorted by name, as Apache and ModSecurity do.
pub(crate) fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    if !has_wildcard(pattern) {
        return Ok(if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    if has_wildcard(dir) {
        return Err("wildcards are supported only in the file name".into());
    }
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| wildcard_match(name.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Shell-style match of `*` and `?`.
pub(crate) fn wildcard_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard() {
        assert!(wildcard_match(b"*.conf", b"REQUEST-901.conf"));
        assert!(!wildcard_match(b"*.conf", b"REQUEST-901.conf.example"));
        assert!(wildcard_match(b"a?c*", b"abcdef"));
        assert!(!wildcard_match(b"a?c", b"ac"));
    }
}

//! Lexing: physical lines → logical directives with their arguments.

use crate::error::LoadError;
use std::path::Path;
use std::sync::Arc;

/// One directive as written: name and arguments (quotes removed).
#[derive(Debug, Clone)]
pub(crate) struct Directive {
    pub(crate) file: Arc<Path>,
    pub(crate) line: usize,
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
}

impl Directive {
    /// An error about this directive.
    pub(crate) fn error(&self, message: &str) -> LoadError {
        LoadError::Directive {
            file: self.file.to_path_buf(),
            line: self.line,
            directive: self.name.clone(),
            message: message.to_string(),
        }
    }
}

/// Splits a file into directives. Lines ending in `\` continue on the next line; lines
/// starting with `#` are comments.
pub(crate) fn lex(file: &Arc<Path>, text: &str) -> Result<Vec<Directive>, LoadError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0usize;
    let mut continuing = false;
    for (idx, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if !continuing {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            start_line = idx + 1;
            logical.clear();
        }
        if let Some(body) = line.strip_suffix('\\') {
            logical.push_str(body);
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        push(file, start_line, &logical, &mut out)?;
    }
    if continuing {
        push(file, start_line, &logical, &mut out)?;
    }
    Ok(out)
}

fn push(
    file: &Arc<Path>,
    line: usize,
    logical: &str,
    out: &mut Vec<Directive>,
) -> Result<(), LoadError> {
    let words = split_args(logical).map_err(|m| LoadError::Directive {
        file: file.to_path_buf(),
        line,
        directive: logical.split_whitespace().next().unwrap_or("").to_string(),
        message: m,
    })?;
    let mut it = words.into_iter();
    let Some(name) = it.next() else {
        return Ok(());
    };
    out.push(Directive {
        file: file.clone(),
        line,
        name,
        args: it.collect(),
    });
    Ok(())
}

/// Splits a logical line into words the way Apache does: whitespace separates, `"` or
/// `'` quote, and inside quotes only a backslash before the quote character is removed.
pub(crate) fn split_args(s: &str) -> Result<Vec<String>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let q = b[i];
        if q == b'"' || q == b'\'' {
            i += 1;
            let mut word = Vec::new();
            let mut closed = false;
            while i < b.len() {
                if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == q {
                    word.push(q);
                    i += 2;
                } else if b[i] == q {
                    closed = true;
                    i += 1;
                    break;
                } else {
                    word.push(b[i]);
                    i += 1;
                }
            }
            if !closed {
                return Err(format!("unterminated {} quote", q as char));
            }
            out.push(String::from_utf8_lossy(&word).into_owned());
        } else {
            let st = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[st..i]).into_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Arc<Path> {
        Arc::from(Path::new("t.conf"))
    }

    #[test]
    fn continuation_and_quotes() {
        let text =
            "# c\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    pass\"\n\nSecMarker END\n";
        let d = lex(&f(), text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b", "id:1,    pass"]);
        assert_eq!(d[1].line, 6);
        assert_eq!(d[1].args, vec!["END"]);
    }

    #[test]
    fn backslashes_kept() {
        assert_eq!(
            split_args(r#"a "\x5c\\d" 'q\'s'"#).unwrap(),
            vec!["a", r"\x5c\\d", "q's"]
        );
        assert!(split_args("a \"open").is_err());
    }
}

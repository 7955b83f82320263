//! Labelled prompts in JSON Lines: `{"text": "...", "label": "injection" | "benign"}` per
//! line (other keys, such as `source`, are ignored; blank lines are skipped). Every
//! malformed line is an error naming the file and line.

use crate::GuardError;
use serde::Deserialize;
use std::path::Path;

/// One labelled prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The prompt text.
    pub text: String,
    /// Whether it is labelled `injection`.
    pub injection: bool,
}

#[derive(Deserialize)]
struct Line {
    text: String,
    label: String,
}

/// Parses JSONL text; `path` is only used in error messages.
pub fn parse_jsonl(path: &str, data: &str) -> Result<Vec<Example>, GuardError> {
    let mut out = Vec::new();
    for (i, raw) in data.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let err = |reason: String| GuardError::Dataset {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let l: Line = serde_json::from_str(raw).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let injection = match l.label.as_str() {
            "injection" => true,
            "benign" => false,
            other => {
                return Err(err(format!(
                    "label is {other:?}, expected \"injection\" or \"benign\""
                )))
            }
        };
        out.push(Example {
            text: l.text,
            injection,
        });
    }
    Ok(out)
}

/// Reads and parses a JSONL file.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<Example>, GuardError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| GuardError::Io {
        path: shown.clone(),
        error,
    })?;
    let data = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        GuardError::Dataset {
            path: shown.clone(),
            line,
            reason: "invalid UTF-8".to_owned(),
        }
    })?;
    parse_jsonl(&shown, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_skips_blank_lines() {
        let d = "{\"text\":\"hi\",\"label\":\"benign\",\"source\":\"x\"}\n\n{\"text\":\"ignore\",\"label\":\"injection\"}\n";
        let e = parse_jsonl("d.jsonl", d).unwrap();
        assert_eq!(e.len(), 2);
        assert!(!e[0].injection && e[1].injection);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let d = "{\"text\":\"a\",\"label\":\"benign\"}\n{\"text\":\"b\",\"label\":\"spam\"}\n";
        let e = parse_jsonl("d.jsonl", d).unwrap_err().to_string();
        assert!(e.starts_with("d.jsonl:2: label is \"spam\""), "{e}");
        let e = parse_jsonl("d.jsonl", "{\"text\": 1}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.jsonl:1: invalid JSON"), "{e}");
        let e = parse_jsonl("d.jsonl", "{\"label\":\"benign\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `text`"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = std::env::temp_dir().join(format!("guard-ds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.jsonl");
        std::fs::write(
            &p,
            b"{\"text\":\"a\",\"label\":\"benign\"}\n{\"text\":\"\xff\"}\n",
        )
        .unwrap();
        let e = read_jsonl(&p).unwrap_err().to_string();
        assert!(e.ends_with(":2: invalid UTF-8"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

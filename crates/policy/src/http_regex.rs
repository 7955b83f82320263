//! Regexes of HTTP conditions (`path.regex`, `headers[].regex`): they match the whole
//! value, so the pattern is anchored as `^(?:pattern)$`. Validation and compilation both
//! go through [`whole_value`], so a pattern the loader accepts is the pattern the engine
//! uses.

use regex::Regex;

/// `pattern` compiled to match whole values. A pattern in verbose mode (`(?x)`) may end
/// in a comment, which would swallow the closing `)$` of the anchor: the anchor then goes
/// on the next line, which verbose mode ignores.
pub(crate) fn whole_value(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| e.to_string())?;
    Regex::new(&format!("^(?:{pattern})$"))
        .or_else(|_| Regex::new(&format!("^(?:{pattern}\n)$")))
        .map_err(|e| format!("cannot be anchored to the whole value: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_values() {
        let re = whole_value("/v1/.*|/health").unwrap();
        assert!(re.is_match("/v1/chat") && re.is_match("/health"));
        assert!(!re.is_match("/x/v1/chat") && !re.is_match("/healthz"));
        assert!(whole_value("a(").is_err());
    }

    /// Found while writing the `http_rules` fuzz target (`crates/policy/fuzz`; from a
    /// `(?x)` seed it finds this in seconds on the old code): the loader checked
    /// `(?x)/models/.* # read only` alone, the engine anchored it as
    /// `^(?:(?x)/models/.* # read only)$`, whose comment ate the `)$`; the compile failed
    /// silently and the rule had no path condition at all, allowing every path.
    #[test]
    fn a_verbose_pattern_may_end_in_a_comment() {
        let re = whole_value("(?x) /models/ .*  # read only").unwrap();
        assert!(re.is_match("/models/llama"));
        assert!(!re.is_match("/upload"));
        assert!(!re.is_match("/models/x\n"));
        // Verbose mode switched off again before the end: the line break is not needed.
        let re = whole_value("(?x) a # c\n(?-x)b").unwrap();
        assert!(re.is_match("ab") && !re.is_match("ab\n"));
    }
}

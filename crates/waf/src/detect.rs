//! SQL injection and XSS detection for `@detectSQLi` / `@detectXSS`.
//!
//! The engine only sees the [`InjectionDetector`] trait; [`LibInjection`] implements it
//! with `libinjectionrs`, a pure-Rust port of libinjection (the reference ModSecurity
//! and Coraza use).

/// Decides whether a value is SQL injection or XSS, libinjection style.
pub trait InjectionDetector: Send + Sync + std::fmt::Debug {
    /// `Some(fingerprint)` if `input` is SQL injection.
    fn sqli(&self, input: &[u8]) -> Option<String>;
    /// Whether `input` is cross-site scripting.
    fn xss(&self, input: &[u8]) -> bool;
}

/// libinjection's algorithms through `libinjectionrs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibInjection;

impl InjectionDetector for LibInjection {
    fn sqli(&self, input: &[u8]) -> Option<String> {
        let r = libinjectionrs::detect_sqli(input);
        if r.is_injection() {
            Some(r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
        } else {
            None
        }
    }

    fn xss(&self, input: &[u8]) -> bool {
        libinjectionrs::detect_xss(input).is_injection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects() {
        let d = LibInjection;
        assert!(d.sqli(b"1' OR '1'='1").is_some());
        assert!(d.sqli(b"blue widget").is_none());
        assert!(d.xss(b"<script>alert(1)</script>"));
        assert!(!d.xss(b"hello world"));
    }
}

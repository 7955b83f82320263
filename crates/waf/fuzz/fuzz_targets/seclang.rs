//! Any text as a SecLang rules file through the loader `palisade waf test --rules` and the
//! ingress use (`RulesetBuilder::load_str` then `build`): never a panic; an error names the
//! file and a line inside it; a rule set that builds checks a request and its response.
//!
//! Inputs that could read other files (`Include`, `@pmFromFile`, `@ipMatchFromFile`) are
//! skipped: a fuzzer must not read `/dev/zero` or the disk; those paths have unit tests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::{LoadError, Request, Response, RulesetBuilder, Transaction};

const FILE: &str = "fuzz.conf";

/// Whether `text` could name a directive or operator that reads a file, whatever the
/// quoting, line continuations or case.
fn reads_files(text: &str) -> bool {
    let squashed: String = text
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    ["include", "pmf", "ipmatchf", "fromfile"]
        .iter()
        .any(|w| squashed.contains(w))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if reads_files(&text) {
        return;
    }
    let lines = text.split('\n').count();
    let mut b = RulesetBuilder::new();
    let built = b.load_str(FILE, &text).and_then(|()| {
        for w in b.warnings() {
            assert!(
                w.file.to_str() == Some(FILE) && w.line >= 1 && w.line <= lines,
                "{w}"
            );
        }
        b.build()
    });
    let rules = match built {
        Ok(r) => r,
        Err(LoadError::Directive {
            file,
            line,
            message,
            ..
        }) => {
            assert_eq!(file.to_str(), Some(FILE));
            assert!(
                line >= 1 && line <= lines,
                "line {line} of {lines}: {message}"
            );
            assert!(!message.is_empty());
            return;
        }
        Err(e @ LoadError::Io { .. }) => panic!("no file was named, yet: {e}"),
    };
    let headers: [(&[u8], &[u8]); 3] = [
        (b"Host", b"example.test"),
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Cookie", b"s=1; t=<script>"),
    ];
    let mut tx = Transaction::new(&rules);
    tx.process_request(&Request {
        method: "POST",
        uri: b"/a/b.php?q=1%27%20or%201=1&x=%3Cscript%3E",
        protocol: "HTTP/1.1",
        headers: &headers,
        body: b"a=1&b=select+*+from+t&c=..%2F..%2Fetc%2Fpasswd",
        remote_addr: "10.0.0.1",
    });
    tx.process_response(&Response {
        status: 200,
        protocol: "HTTP/1.1",
        headers: &[(b"Content-Type", b"text/html")],
        body: b"<html>ok</html>",
    });
    tx.process_logging();
    let _ = tx.audit_record();
});

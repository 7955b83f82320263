//! Any request through the four body processors (URL-encoded, multipart, JSON, XML), with
//! a fuzzed URI (query string, path) and Cookie header, against rules that read every
//! collection those parsers fill: never a panic; a multipart or JSON/XML body that does not
//! parse sets `REQBODY_ERROR` and no rule sees a half-parsed body as valid.
//!
//! Input layout: byte 0 picks the content type; then the URI, the Cookie value and the
//! body, separated by the first two `\n`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::{Request, Ruleset, Transaction};
use std::sync::OnceLock;

const RULES: &str = r#"
SecRequestBodyJsonDepthLimit 64
SecRule REQUEST_HEADERS:Content-Type "@rx json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx xml" "id:2,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule ARGS|ARGS_NAMES|ARGS_GET|ARGS_POST_NAMES|FILES|FILES_NAMES|FILES_SIZES|FILES_TMP_CONTENT|XML:/*|XML://@*|REQUEST_COOKIES|REQUEST_COOKIES_NAMES|MULTIPART_PART_HEADERS|MULTIPART_FILENAME|MULTIPART_NAME|REQUEST_FILENAME|REQUEST_BASENAME|QUERY_STRING|REQUEST_BODY "@rx (?i)select|<script" "id:3,phase:2,pass,log,capture,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:lowercase,setvar:'tx.s=+%{tx.1}'"
SecRule ARGS "@detectSQLi" "id:4,phase:2,pass,log"
SecRule ARGS "@detectXSS" "id:5,phase:2,pass,log"
SecRule REQBODY_ERROR "!@eq 0" "id:6,phase:2,pass,log,msg:'%{REQBODY_ERROR_MSG}'"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:7,phase:2,pass,log"
SecRule &ARGS "@gt 100" "id:8,phase:2,pass,log"
SecRule ARGS_COMBINED_SIZE|FILES_COMBINED_SIZE|REQUEST_BODY_LENGTH "@gt 1000" "id:9,phase:2,pass,log"
"#;

const CONTENT_TYPES: [&str; 8] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "multipart/form-data; boundary=\"b b\"",
    "multipart/form-data; boundary = b; charset=utf-8",
    "application/json",
    "text/xml",
    "multipart/form-data",
    "text/plain",
];

fn rules() -> &'static Ruleset {
    static RS: OnceLock<Ruleset> = OnceLock::new();
    RS.get_or_init(|| Ruleset::from_str("fuzz.conf", RULES).expect("the rules load"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&c| c == b'\n');
    let uri = parts.next().unwrap_or(b"/");
    let cookie = parts.next().unwrap_or(b"");
    let body = parts.next().unwrap_or(b"");
    let ct = CONTENT_TYPES[usize::from(kind) % CONTENT_TYPES.len()];
    let headers: [(&[u8], &[u8]); 2] = [(b"Content-Type", ct.as_bytes()), (b"Cookie", cookie)];
    let mut tx = Transaction::new(rules());
    tx.process_request(&Request {
        method: "POST",
        uri,
        protocol: "HTTP/1.1",
        headers: &headers,
        body,
        remote_addr: "::1",
    });
    tx.process_logging();
    let fired: Vec<u32> = tx.matched_rules().iter().map(|m| m.id).collect();
    let record = tx.audit_record();
    assert!(!record.blocked, "no rule here blocks: {fired:?}");
    // A JSON body that is not JSON is an error, never silently empty.
    if ct == "application/json"
        && !body.is_empty()
        && body.trim_ascii().first() != Some(&b'{')
        && body.trim_ascii().first() != Some(&b'[')
        && body.trim_ascii().first() != Some(&b'"')
        && !body
            .trim_ascii()
            .first()
            .is_some_and(|c| c.is_ascii_digit() || b"-tfn".contains(c))
    {
        assert!(
            fired.contains(&6),
            "{:?} parsed as JSON",
            String::from_utf8_lossy(body)
        );
    }
});

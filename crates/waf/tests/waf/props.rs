//! Property tests: no parser of untrusted input panics.

use palisade_waf::{
    apply_transformation, LoadError, Request, Ruleset, RulesetBuilder, Transaction,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn small_rules() -> &'static Ruleset {
    static RS: OnceLock<Ruleset> = OnceLock::new();
    RS.get_or_init(|| {
        Ruleset::from_str(
            "props.conf",
            r#"
SecRule REQUEST_HEADERS:Content-Type "@rx json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx xml" "id:2,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule ARGS|ARGS_NAMES|FILES|XML:/*|REQUEST_COOKIES|MULTIPART_PART_HEADERS "@rx (?i)select|<script" "id:3,phase:2,pass,log,capture,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:cmdLine,t:base64Decode,t:normalizePathWin,t:replaceComments,t:utf8toUnicode,setvar:'tx.s=+%{tx.1}'"
SecRule ARGS "@detectSQLi" "id:4,phase:2,pass,log"
SecRule ARGS "@detectXSS" "id:5,phase:2,pass,log"
SecRule REQBODY_ERROR "@eq 1" "id:6,phase:2,pass,log"
"#,
        )
        .unwrap()
    })
}

fn run(rs: &Ruleset, ct: &str, uri: &[u8], body: &[u8]) {
    let h: [(&[u8], &[u8]); 2] = [(b"Content-Type", ct.as_bytes()), (b"Cookie", b"a=1; b")];
    let mut tx = Transaction::new(rs);
    tx.process_request(&Request {
        method: "POST",
        uri,
        protocol: "HTTP/1.1",
        headers: &h,
        body,
        remote_addr: "::1",
    });
    tx.process_logging();
}

const TOKENS: &[&str] = &[
    "SecRule",
    "SecAction",
    "SecMarker",
    "SecDefaultAction",
    "Include",
    "ARGS",
    "!ARGS:x",
    "&TX:y",
    "REQUEST_HEADERS:/a|b/",
    "XML:/*",
    "\"",
    "'",
    "\\",
    "\n",
    " ",
    ",",
    ":",
    "@rx",
    "!@pm",
    "@eq",
    "@within %{tx.a}",
    "id:1",
    "id:2",
    "phase:2",
    "chain",
    "t:lowercase",
    "t:none",
    "setvar:tx.a=+1",
    "ctl:ruleRemoveById=1",
    "skipAfter:M",
    "msg:'x'",
    "(",
    "[",
    "%{",
    "}",
    "#",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn seclang_never_panics(parts in proptest::collection::vec(0..TOKENS.len(), 0..40)) {
        let text: String = parts.iter().map(|&i| TOKENS[i]).collect();
        let mut b = RulesetBuilder::new();
        if b.load_str("fuzz.conf", &text).is_ok() {
            let _ = b.build();
        }
    }

    #[test]
    fn seclang_bytes_never_panic(text in "\\PC{0,200}") {
        let _ = Ruleset::from_str("fuzz.conf", &text);
    }

    /// Every load error names the file and a line inside it (as `cargo fuzz run seclang`
    /// checks on any bytes).
    #[test]
    fn seclang_errors_name_a_line_of_the_file(parts in proptest::collection::vec(0..TOKENS.len(), 0..40)) {
        let text: String = parts.iter().map(|&i| TOKENS[i]).collect();
        if text.to_ascii_lowercase().contains("include") {
            return Ok(());
        }
        let lines = text.split('\n').count();
        match Ruleset::from_str("fuzz.conf", &text) {
            Ok(_) => {}
            Err(LoadError::Directive { file, line, message, .. }) => {
                prop_assert_eq!(file.to_str(), Some("fuzz.conf"));
                prop_assert!(line >= 1 && line <= lines, "line {} of {}: {}", line, lines, message);
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// Decoders and removers never lengthen a value; encoders round-trip (the properties of
    /// `cargo fuzz run transforms`).
    #[test]
    fn decoders_shrink_and_encoders_round_trip(v in proptest::collection::vec(any::<u8>(), 0..200)) {
        for t in ["urlDecode", "urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode", "cmdLine",
                  "base64Decode", "base64DecodeExt", "hexDecode", "escapeSeqDecode", "sqlHexDecode",
                  "replaceComments", "removeComments",
                  "removeCommentsChar", "compressWhitespace", "trim"] {
            let out = apply_transformation(t, &v).unwrap();
            prop_assert!(out.len() <= v.len(), "t:{} lengthened {:?} to {:?}", t, v, out);
        }
        let enc = |t: &str, v: &[u8]| apply_transformation(t, v).unwrap();
        prop_assert_eq!(enc("base64Decode", &enc("base64Encode", &v)), v.clone());
        prop_assert_eq!(enc("hexDecode", &enc("hexEncode", &v)), v.clone());
        prop_assert_eq!(enc("urlDecode", &enc("urlEncode", &v)), v.clone());
        // Path normalisation may add the `/` that marks a final `..` (`../..` → `../../`).
        let p = enc("normalizePathWin", &v);
        prop_assert!(p.len() <= v.len() + 1);
        prop_assert_eq!(enc("normalizePathWin", &p), p);
    }

    /// `@pm`, `@streq`, `@within` and `@ipMatch` arguments as written in a rules file match
    /// what a plain reference implementation says (the `operators` fuzz target's check).
    #[test]
    fn operator_arguments_mean_what_they_say(
        words in proptest::collection::vec("[a-zA-Z]{1,4}", 1..4),
        value in "[a-zA-Z ]{0,12}",
        net in (any::<[u8; 4]>(), 0u8..=32),
        ip in any::<[u8; 4]>(),
    ) {
        let arg = words.join(" ");
        let fires = |op: &str, arg: &str, v: &str| {
            let rs = Ruleset::from_str(
                "op.conf",
                &format!("SecRule REQUEST_HEADERS:x-v \"@{op} {arg}\" \"id:1,phase:1,pass,log\""),
            )
            .unwrap();
            let h: [(&[u8], &[u8]); 1] = [(b"x-v", v.as_bytes())];
            let mut tx = Transaction::new(&rs);
            tx.process_request(&Request {
                method: "GET",
                uri: b"/",
                protocol: "HTTP/1.1",
                headers: &h,
                body: b"",
                remote_addr: "10.0.0.1",
            });
            !tx.matched_rules().is_empty()
        };
        let lv = value.to_ascii_lowercase();
        let pm = words.iter().any(|w| lv.contains(&w.to_ascii_lowercase()));
        prop_assert_eq!(fires("pm", &arg, &value), pm);
        prop_assert_eq!(fires("streq", &arg, &value), value == arg);
        prop_assert_eq!(fires("within", &arg, &value), value.is_empty() || arg.contains(value.as_str()));
        let ((n, prefix), addr) = (net, std::net::Ipv4Addr::from(ip));
        let (n, a) = (u32::from_be_bytes(n), u32::from(addr));
        let inside = prefix == 0 || n >> (32 - prefix) == a >> (32 - prefix);
        let cidr = format!("{}/{prefix}", std::net::Ipv4Addr::from(n));
        prop_assert_eq!(fires("ipMatch", &cidr, &addr.to_string()), inside, "{} {}", cidr, addr);
    }

    #[test]
    fn body_parsers_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        kind in 0..4usize,
    ) {
        let ct = ["application/json", "text/xml", "multipart/form-data; boundary=b", "application/x-www-form-urlencoded"][kind];
        run(small_rules(), ct, b"/", &body);
    }

    #[test]
    fn structured_bodies_never_panic(s in "[{}\\[\\]\":,a-z0-9<>/=&% \\\\-]{0,200}", kind in 0..4usize) {
        let ct = ["application/json", "text/xml", "multipart/form-data; boundary=b", "application/x-www-form-urlencoded"][kind];
        let body = if kind == 2 { format!("--b\r\nContent-Disposition: form-data; {s}\r\n\r\n{s}\r\n--b--") } else { s.clone() };
        run(small_rules(), ct, s.as_bytes(), body.as_bytes());
    }

    #[test]
    fn transformations_never_panic(v in proptest::collection::vec(any::<u8>(), 0..200)) {
        for t in ["urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode", "cmdLine", "base64Decode",
                  "base64DecodeExt", "hexDecode", "normalizePath", "normalizePathWin", "replaceComments",
                  "removeCommentsChar", "utf8toUnicode", "escapeSeqDecode", "sqlHexDecode", "sha1",
                  "compressWhitespace", "removeWhitespace", "trim"] {
            prop_assert!(apply_transformation(t, &v).is_some());
        }
    }
}

#[test]
fn crs_never_panics_on_odd_requests() {
    let Some(d) = crate::crs::crs_dir() else {
        return;
    };
    let mut b = RulesetBuilder::new();
    b.load_file(&d.join("crs-setup.conf.example")).unwrap();
    b.load_str(
        "pl4.conf",
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=4\"",
    )
    .unwrap();
    b.load_dir(&d.join("rules")).unwrap();
    let rs = b.build().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..120),
                proptest::collection::vec(any::<u8>(), 0..300),
                0..4usize,
            ),
            |(uri, body, kind)| {
                let ct = [
                    "application/json",
                    "text/xml",
                    "multipart/form-data; boundary=b",
                    "application/x-www-form-urlencoded",
                ][kind];
                run(&rs, ct, &uri, &body);
                Ok(())
            },
        )
        .unwrap();
}

//! A SecurityPolicy whose HTTP rule has a fuzzed path regex and header regex, and a fuzzed
//! request (path and header value), one per input line. When the policy loads without
//! errors, the verdict must be what the documented semantics give: allowed exactly when
//! every reading of the path matches the whole path regex and the header value matches the
//! whole header regex. A regex the loader accepts but the engine cannot use would fail here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::http_path::views;
use palisade_policy::{Endpoint, Engine, Flow, HttpRequest, Manifests, Protocol, Snapshot};
use regex::Regex;

/// `s` as a YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn manifest(path_re: &str, header_re: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: a, namespace: x, labels: {{app: a}}}}
status: {{podIP: 10.0.0.1}}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: sp, namespace: x}}
spec:
  podSelector: {{matchLabels: {{app: a}}}}
  egress:
  - to: [{{fqdn: api.test}}]
    http:
    - path: {{regex: {}}}
      headers: [{{name: x-k, regex: {}}}]
",
        quoted(path_re),
        quoted(header_re)
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(4, '\n');
    let (path_re, header_re) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    let (path, value) = (fields.next().unwrap_or("/"), fields.next().unwrap_or(""));
    if path_re.len() > 200 || header_re.len() > 200 {
        return; // regex compile time, not the property, would dominate
    }
    let mut m = Manifests::new();
    m.add_file("fuzz.yaml", &manifest(path_re, header_re));
    if m.has_errors() {
        return;
    }
    // Accepted: both regexes must be usable as whole-value matches (a verbose-mode
    // pattern ending in a comment needs the anchor on the next line).
    let anchored = |r: &str| {
        Regex::new(&format!("^(?:{r})$"))
            .or_else(|_| Regex::new(&format!("^(?:{r}\n)$")))
            .unwrap_or_else(|e| panic!("the loader accepted {r:?}, which cannot be anchored: {e}"))
    };
    let (pre, hre) = (anchored(path_re), anchored(header_re));
    let e = Engine::compile(&Snapshot::from_manifests(&m));
    let pod = e.pod_by_key("x/a").expect("the pod");
    let headers = [("x-k", value)];
    let v = e.verdict(&Flow {
        src: Endpoint::Pod(pod),
        dst: Endpoint::Fqdn {
            name: "api.test",
            ip: None,
        },
        port: 443,
        protocol: Protocol::TCP,
        http: Some(HttpRequest {
            method: "GET",
            path,
            host: Some("api.test"),
            headers: &headers,
        }),
    });
    let path_ok = views(path).is_ok_and(|vs| vs.iter().all(|r| pre.is_match(r)));
    let want = path_ok && hre.is_match(value);
    assert_eq!(
        v.allowed(),
        want,
        "path regex {path_re:?}, header regex {header_re:?}, path {path:?}, value {value:?}"
    );
});

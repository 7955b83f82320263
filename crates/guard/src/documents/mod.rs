//! Long benign technical documents generated for training: source files with comments
//! (Rust, Python, Go, JavaScript, C, shell), operations runbooks, API references,
//! changelogs, configuration references, manual pages, READMEs and security notes that
//! *describe* attacks and defences in the third person.
//!
//! The public data sets have almost no long benign text (15 of ~9,800 benign training
//! texts exceed 1,500 characters, against ~750 attacks), so without these a long technical
//! document pasted for summarising reads as a jailbreak. Everything is composed here from
//! word lists and templates by a seeded generator: no external text is used.

mod code;

use crate::augment::{num, pick};
use code::{indent, source_file, statement};

#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "request", "response", "buffer", "config", "policy", "token", "session", "event", "connection",
    "header", "rule", "cache", "peer", "socket", "record", "entry", "frame", "packet", "message",
    "route", "user", "key", "certificate", "file", "path", "query", "row", "table", "job", "task",
    "worker", "queue", "limit", "timeout", "address", "port", "host", "label", "state", "snapshot",
    "version", "chunk", "line", "field", "result", "reader", "writer", "client", "server",
    "handler", "stream", "channel", "batch", "index", "score", "threshold", "metric", "counter",
    "span", "volume", "node", "pod", "namespace", "secret", "lease", "backend", "listener",
    "digest", "payload", "schema", "report", "archive",
];
#[rustfmt::skip]
const VERBS: &[&str] = &[
    "parse", "load", "send", "read", "write", "check", "apply", "build", "resolve", "handle",
    "validate", "encode", "decode", "flush", "spawn", "close", "open", "insert", "remove", "find",
    "update", "merge", "split", "render", "compile", "scan", "sort", "filter", "count", "reset",
    "retry", "connect", "accept", "forward", "reject", "allow", "deny", "emit", "publish", "watch",
    "refresh", "rotate", "hash", "sign", "verify", "compare", "normalise", "truncate", "collect",
    "drain", "schedule", "evict", "serialise", "restore", "prune",
];
#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "pending", "stale", "expired", "active", "default", "current", "next", "previous", "empty",
    "invalid", "cached", "remote", "local", "upstream", "idle", "partial", "signed", "new", "old",
    "first", "last", "allowed", "denied", "unknown", "malformed", "encrypted",
];
#[rustfmt::skip]
const COMPONENTS: &[&str] = &[
    "the gateway", "the scheduler", "the proxy", "the controller", "the agent", "the API server",
    "the resolver", "the exporter", "the ingest pipeline", "the load balancer", "the worker pool",
    "the CLI", "the web console", "the storage layer", "the auth service", "the build system",
];
#[rustfmt::skip]
const SERVICES: &[&str] = &[
    "nginx", "postgres", "redis", "kafka", "etcd", "haproxy", "prometheus", "grafana", "envoy",
    "coredns", "rabbitmq", "elasticsearch", "minio", "vault", "consul", "memcached",
];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn camel(a: &str, b: &str) -> String {
    format!("{}{}", cap(a), cap(b))
}

/// A descriptive sentence, as found in comments and reference documentation.
fn sentence(r: &mut u64) -> String {
    let (n1, n2, v, a) = (
        pick(r, NOUNS),
        pick(r, NOUNS),
        pick(r, VERBS),
        pick(r, ADJECTIVES),
    );
    let comp = pick(r, COMPONENTS);
    let n = num(r, 2, 600);
    match num(r, 0, 16) {
        0 => format!("{}s the {a} {n1} and returns the {n2}.", cap(v)),
        1 => format!("Returns an error if the {n1} is {a} or the {n2} cannot be {v}ed."),
        2 => format!("The {n1} is {v}ed once per {n2}, so a restart does not lose it."),
        3 => format!(
            "{} keeps at most {n} {n1}s in memory; older ones are dropped.",
            cap(comp)
        ),
        4 => format!("When the {n1} is {a}, {comp} falls back to the {n2} from the last run."),
        5 => format!("This {v}s every {n1} in order and stops at the first {a} {n2}."),
        6 => format!(
            "Set `{}_{}` to change how many {n2}s are kept (default {n}).",
            n1.to_uppercase(),
            n2.to_uppercase()
        ),
        7 => format!(
            "A {a} {n1} is logged with its {n2} and counted in the `{n1}_{v}_total` metric."
        ),
        8 => format!("Note that {comp} does not {v} the {n1} until the {n2} has been {v}ed."),
        9 => format!(
            "The {n1} must be {v}ed before the {n2}; otherwise the call fails with `{}Error`.",
            cap(a)
        ),
        10 => format!("Each {n1} carries its own {n2}, which is checked again after a reload."),
        11 => format!("If no {n2} is given, {comp} uses the {a} one and prints a warning."),
        12 => format!("We {v} the {n1} in a background task so that the {n2} path stays fast."),
        13 => format!("The {n}-second timeout applies to the whole {n1}, not to each {n2}."),
        14 => format!(
            "Older releases ignored the {n2} here; since version {}.{} it is honoured.",
            num(r, 0, 4),
            num(r, 1, 30)
        ),
        _ => format!(
            "Callers may override the {n1} per {n2}; the {a} value wins over the global one."
        ),
    }
}

fn paragraph(r: &mut u64, sentences: usize) -> String {
    (0..sentences)
        .map(|_| sentence(r))
        .collect::<Vec<_>>()
        .join(" ")
}

fn heading(r: &mut u64, level: &str) -> String {
    let (v, n) = (pick(r, VERBS), pick(r, NOUNS));
    match num(r, 0, 6) {
        0 => format!("{level} {}ing the {n}\n\n", cap(v)),
        1 => format!("{level} {} {n}s\n\n", cap(pick(r, ADJECTIVES))),
        2 => format!("{level} Configuration\n\n"),
        3 => format!("{level} Troubleshooting\n\n"),
        4 => format!("{level} How {} {v}s {n}s\n\n", pick(r, COMPONENTS)),
        _ => format!("{level} Limits\n\n"),
    }
}

fn runbook(r: &mut u64, target: usize) -> String {
    let svc = pick(r, SERVICES);
    let mut out = format!(
        "# Runbook: {svc} {} {}\n\n{}\n\n",
        pick(r, NOUNS),
        pick(
            r,
            &["alert", "outage", "upgrade", "failover", "restore", "latency"]
        ),
        paragraph(r, 2)
    );
    let mut step = 1;
    while out.len() < target {
        out.push_str(&format!(
            "{step}. {}\n\n   ```\n{}\n   ```\n\n",
            sentence(r),
            indent(&statement(r, 5), "   ")
        ));
        if num(r, 0, 3) == 0 {
            out.push_str(&format!("   Expected: {}\n\n", sentence(r)));
        }
        step += 1;
    }
    out
}

fn api_reference(r: &mut u64, target: usize) -> String {
    let mut out = format!("# {} API\n\n{}\n\n", cap(pick(r, NOUNS)), paragraph(r, 2));
    while out.len() < target {
        let (n1, n2) = (pick(r, NOUNS), pick(r, NOUNS));
        let method = pick(r, &["GET", "POST", "PUT", "DELETE", "PATCH"]);
        out.push_str(&format!(
            "## {method} /v{}/{n1}s/{{id}}/{n2}s\n\n{}\n\n| Parameter | Type | Required | Description |\n|---|---|---|---|\n| `{}` | {} | {} | {} |\n| `{}` | {} | no | {} |\n\nExample response ({}):\n\n```json\n{{\"id\": \"{}\", \"{n2}\": \"{}\", \"{}\": {}, \"status\": \"{}\"}}\n```\n\n",
            num(r, 1, 4),
            paragraph(r, 2),
            pick(r, NOUNS),
            pick(r, &["string", "integer", "boolean", "array of strings", "object"]),
            pick(r, &["yes", "no"]),
            sentence(r),
            pick(r, NOUNS),
            pick(r, &["string", "integer", "duration"]),
            sentence(r),
            pick(r, &["200 OK", "201 Created", "202 Accepted"]),
            num(r, 1000, 99999),
            pick(r, ADJECTIVES),
            pick(r, NOUNS),
            num(r, 0, 500),
            pick(r, ADJECTIVES)
        ));
        if num(r, 0, 2) == 0 {
            out.push_str(&format!(
                "Errors: `{}` when {}; `{}` when {}\n\n",
                pick(r, &["400", "404", "409", "422"]),
                sentence(r).to_lowercase(),
                pick(r, &["401", "403", "429", "503"]),
                sentence(r).to_lowercase()
            ));
        }
    }
    out
}

fn changelog(r: &mut u64, target: usize) -> String {
    let (mut major, mut minor) = (num(r, 0, 5), num(r, 0, 40));
    let mut out = String::from(pick(
        r,
        &["# Changelog\n\n", "NEWS\n====\n\n", "", "CHANGES\n\n"],
    ));
    while out.len() < target {
        out.push_str(&format!(
            "## {major}.{minor}.{} ({}-{:02}-{:02})\n\n",
            num(r, 0, 9),
            num(r, 2015, 2027),
            num(r, 1, 13),
            num(r, 1, 29)
        ));
        for _ in 0..2 + num(r, 0, 6) {
            let kind = pick(
                r,
                &[
                    "Fixed",
                    "Added",
                    "Changed",
                    "Removed",
                    "Security",
                    "Deprecated",
                ],
            );
            out.push_str(&format!(
                "- {kind}: {} (#{})\n",
                sentence(r).trim_end_matches('.'),
                num(r, 10, 9000)
            ));
        }
        out.push('\n');
        if minor == 0 {
            major = major.saturating_sub(1);
            minor = 9;
        } else {
            minor -= 1;
        }
    }
    out
}

fn config_reference(r: &mut u64, target: usize) -> String {
    let svc = pick(r, SERVICES);
    let mut out = format!("# {svc} configuration reference\n\n{}\n\n", paragraph(r, 2));
    let mut example = String::new();
    while out.len() < target {
        let (a, b) = (pick(r, NOUNS), pick(r, NOUNS));
        let sentences = 1 + num(r, 0, 2) as usize;
        let default = pick(
            r,
            &[
                "true", "false", "30s", "8080", "info", "\"\"", "1024", "none", "/var/lib",
            ],
        );
        out.push_str(&format!(
            "`{a}.{b}` ({}, default `{default}`)\n: {}\n\n",
            pick(r, &["string", "integer", "boolean", "duration", "list"]),
            paragraph(r, sentences)
        ));
        example.push_str(&format!("{a}:\n  {b}: {default}\n"));
        if example.len() > 200 {
            out.push_str(&format!("Example:\n\n```yaml\n{example}```\n\n"));
            example.clear();
        }
    }
    out
}

fn manual_page(r: &mut u64, target: usize) -> String {
    let cmd = format!("{}-{}", pick(r, SERVICES), pick(r, VERBS));
    let mut out = format!(
        "{}(8)\n\nNAME\n       {cmd} - {} {}s\n\nSYNOPSIS\n       {cmd} [OPTIONS] [{}...]\n\nDESCRIPTION\n       {}\n\nOPTIONS\n",
        cmd.to_uppercase(),
        pick(r, VERBS),
        pick(r, NOUNS),
        pick(r, NOUNS).to_uppercase(),
        paragraph(r, 3)
    );
    while out.len() < target {
        let n = pick(r, NOUNS);
        out.push_str(&format!(
            "       -{}, --{n}-{}={}\n              {}\n\n",
            &n[..1],
            pick(r, NOUNS),
            n.to_uppercase(),
            paragraph(r, 2)
        ));
    }
    out.push_str(&format!(
        "EXIT STATUS\n       0 on success, 1 when {}\n",
        sentence(r).to_lowercase()
    ));
    out
}

/// Security documentation: attacks and defences described in the third person.
fn security_sentence(r: &mut u64) -> String {
    let comp = pick(r, COMPONENTS);
    let (n1, n2) = (pick(r, NOUNS), pick(r, NOUNS));
    let attack = pick(
        r,
        &[
            "SQL injection",
            "cross-site scripting",
            "prompt injection",
            "server-side request forgery",
            "path traversal",
            "a jailbreak attempt",
            "credential stuffing",
            "a denial-of-service attack",
            "request smuggling",
            "data exfiltration",
            "a replay attack",
            "command injection",
            "indirect prompt injection in retrieved documents",
            "model extraction",
            "token theft",
        ],
    );
    match num(r, 0, 14) {
        0 => format!("An attacker who controls the {n1} may attempt {attack}; {comp} rejects such input before it reaches the {n2}."),
        1 => format!("{} is mitigated by validating the {n1} and by denying requests that do not match the policy.", cap(attack)),
        2 => format!("In {attack}, untrusted text is treated as if it came from a trusted source; the defence is to keep data and instructions apart."),
        3 => format!("The guard scores each prompt and blocks the request when the score is above the route's threshold, which limits {attack}."),
        4 => format!("Audit logs record every denied {n1}, including the rule that matched and the {n2} of the caller."),
        5 => format!("Rate limits per consumer reduce the impact of {attack}, and the limit is enforced before the {n1} is forwarded."),
        6 => "The threat model assumes that users may paste hostile content, such as documents written to manipulate a language model.".to_owned(),
        7 => format!("A WAF rule flags {attack} patterns in query parameters and headers, while natural-language fields are scored by the classifier."),
        8 => format!("Secrets are never written to logs; a leaked {n1} can be revoked and rotated within minutes."),
        9 => "The test suite contains known attack strings so that a regression in the detector fails the build.".to_owned(),
        10 => format!("Operators should review alerts about {attack} weekly and tune the {n1} threshold for each route."),
        11 => format!("Least privilege applies to service accounts: each {n1} gets only the {n2}s it needs."),
        12 => format!("Responses are filtered for canary tokens, API keys and personal data before they leave {comp}."),
        _ => format!("Researchers have shown that {attack} can bypass naive filters, which is why {comp} normalises Unicode and decodes base64 first."),
    }
}

fn security_doc(r: &mut u64, target: usize) -> String {
    let mut out = format!(
        "# {} security model\n\n",
        cap(pick(r, COMPONENTS).trim_start_matches("the "))
    );
    while out.len() < target {
        out.push_str(&heading(r, "##"));
        for _ in 0..2 + num(r, 0, 3) {
            out.push_str(&security_sentence(r));
            out.push(' ');
        }
        out.push_str("\n\n");
        if num(r, 0, 3) == 0 {
            out.push_str(&format!(
                "- {}\n- {}\n\n",
                security_sentence(r),
                sentence(r)
            ));
        }
    }
    out
}

fn readme(r: &mut u64, target: usize) -> String {
    let name = format!(
        "{}-{}",
        pick(r, NOUNS),
        pick(r, &["rs", "py", "kit", "d", "ctl", "io"])
    );
    let mut out = format!(
        "# {name}\n\n{}\n\n## Installation\n\n```\n{}\n```\n\n## Usage\n\n",
        paragraph(r, 3),
        pick(
            r,
            &[
                "cargo install --locked ",
                "pip install ",
                "npm install -g ",
                "go install ./cmd/",
                "apt-get install "
            ]
        )
        .to_owned()
            + &name
    );
    while out.len() < target {
        match num(r, 0, 4) {
            0 => {
                let lang = num(r, 0, 6) as usize;
                out.push_str(&format!("```\n{}\n```\n\n", statement(r, lang)));
            }
            1 => out.push_str(&format!(
                "- {}\n- {}\n- {}\n\n",
                sentence(r),
                sentence(r),
                sentence(r)
            )),
            2 => out.push_str(&heading(r, "##")),
            _ => out.push_str(&format!("{}\n\n", paragraph(r, 3))),
        }
    }
    out
}

/// A long benign technical document of one of several kinds, roughly `target` bytes.
pub(crate) fn technical_document(r: &mut u64) -> String {
    let target = [600, 1200, 2000, 2800, 3000, 4000][num(r, 0, 6) as usize];
    let body = match num(r, 0, 11) {
        0..=3 => source_file(r, target),
        4 => runbook(r, target),
        5 => api_reference(r, target),
        6 => changelog(r, target),
        7 => config_reference(r, target),
        8 => manual_page(r, target),
        9 => security_doc(r, target),
        _ => readme(r, target),
    };
    let prefix = pick(
        r,
        &[
            "Please summarise this for me:\n\n",
            "Summarize this:\n\n",
            "Can you explain what this does?\n\n",
            "TL;DR please\n\n",
            "Here is the file. What are the main points?\n\n",
            "Review this and list any problems:\n\n",
            "Context:\n",
            "",
            "",
            "",
        ],
    );
    format!("{prefix}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_long_varied_and_deterministic() {
        let mut r = 5;
        let docs: Vec<String> = (0..60).map(|_| technical_document(&mut r)).collect();
        let mut again = 5;
        assert_eq!(docs[0], technical_document(&mut again));
        assert!(docs.iter().all(|d| d.len() >= 500), "a short document");
        let starts: std::collections::HashSet<_> =
            docs.iter().map(|d| &d[..40.min(d.len())]).collect();
        assert!(starts.len() > 40, "{}", starts.len());
        assert!(docs.iter().any(|d| d.contains("fn ")) && docs.iter().any(|d| d.contains("## ")));
    }
}

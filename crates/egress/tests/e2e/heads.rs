//! Request heads through the gateway with the real `curl`: DLP scans the request target
//! and the header fields (plain HTTP on the lean lane and hyper's path, intercepted
//! HTTPS), leaves the pod's credential for the API alone, and upload budgets count head
//! bytes. On the old code every one of the refused requests below went through: heads
//! were neither scanned nor counted.

use super::bad_input::raw;
use super::intercept::intercepting;
use super::*;
use palisade_egress::DlpSettings;
use palisade_policy::model::DlpAction;

const AKIA: &str = "AKIAIOSFODNN7EXAMPLE";
const OPENAI_KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwx0123";
const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

/// The event's detections (`(detector, action)`) and reason.
fn found(e: &Event) -> (Vec<(String, String)>, Option<String>) {
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    let d = h
        .detections
        .iter()
        .map(|d| (d.detector.clone(), format!("{:?}", d.action).to_lowercase()))
        .collect();
    (d, h.reason.clone())
}

fn one(detector: &str, action: &str) -> Vec<(String, String)> {
    vec![(format!("dlp.{detector}"), action.to_string())]
}

async fn gateway_dlp(action: DlpAction) -> Setup {
    start_with(Posture::Allow, &[], move |cfg, _| {
        cfg.dlp = Some(DlpSettings::all(action))
    })
    .await
}

/// Provider hosts (resolved to the local upstream), which the client may reach too.
const PROVIDER_HOSTS: [&str; 2] = ["api.anthropic.com", "bucket.s3.amazonaws.com"];

/// [`gateway_dlp`] with [`PROVIDER_HOSTS`] and `forwarded` credentials.
async fn gateway_with_providers(
    action: DlpAction,
    forwarded: Vec<palisade_egress::dlp::Detector>,
) -> Setup {
    let s = start_with(Posture::Allow, &[], move |cfg, _| {
        for host in PROVIDER_HOSTS {
            cfg.hosts.insert(host.into(), "127.0.0.1".parse().unwrap());
        }
        let mut dlp = DlpSettings::all(action);
        dlp.forwarded_credentials = forwarded;
        cfg.dlp = Some(dlp);
    })
    .await;
    let rule = PROVIDER_HOSTS
        .map(|h| format!("{{fqdn: \"{h}\"}}"))
        .join(", ");
    let policy = POLICY.replace(
        "  - to: [{fqdn: \"allowed.test\"}]\n",
        &format!("  - to: [{{fqdn: \"allowed.test\"}}]\n  - to: [{rule}]\n"),
    );
    assert_ne!(policy, POLICY);
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(&policy, Posture::Allow))),
    );
    s
}

/// A secret or PII in a header value, a cookie, the User-Agent or the query string of a
/// plain request is refused (`403 dlp`, the detector in the event), on the lean lane
/// (`GET`) and on hyper's path (a `POST` with a clean body) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_the_request_head_are_blocked() {
    let s = gateway_dlp(DlpAction::Block).await;
    let url = |p: &str| format!("http://allowed.test:{}{p}", s.upstream);
    let debug = format!("X-Debug: {AKIA}");
    let agent = "bot/1.0 (card 4111 1111 1111 1111)".to_string();
    let query = format!("/q?k={}", TOKEN.replace('_', "%5F"));
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (vec!["-H", &debug], url("/"), "aws-key"),
        (
            vec!["-H", &debug, "-d", "weights=v2"],
            url("/echo"),
            "aws-key",
        ),
        (vec![], url(&query), "github-token"),
        (vec!["-b", "mail=bob@example.com"], url("/"), "email"),
        (vec!["-A", &agent], url("/"), "card"),
    ];
    for (extra, url, detector) in cases {
        let mut args = extra.clone();
        args.extend(["-w", "\n%{http_code}"]);
        let (body, code) = curl(via(&s, &args, &url)).await;
        assert_eq!(
            (body.as_str(), code.as_str()),
            ("palisade: denied (dlp)", "403"),
            "{extra:?} {url}"
        );
        let e = next_event(&s.events).await;
        assert_eq!(e.verdict, Some(Verdict::Deny));
        assert_eq!(
            found(&e),
            (one(detector, "block"), Some("dlp".to_string())),
            "{extra:?} {url}"
        );
    }
}

/// The transparent listener (plain HTTP the agent redirects) scans heads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_heads_are_scanned() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.transparent = Some("127.0.0.1:0".parse().unwrap());
        cfg.dlp = Some(DlpSettings::all(DlpAction::Block));
    })
    .await;
    let (t, p) = (s.transparent.unwrap(), s.upstream);
    let ok = format!("GET /x HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n");
    assert_eq!(raw(t, ok.as_bytes()).await, "HTTP/1.1 200 OK");
    let leaks = [
        format!("GET /x HTTP/1.1\r\nHost: allowed.test:{p}\r\nX-Debug: {AKIA}\r\n\r\n"),
        format!("GET /x?k={AKIA} HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n"),
    ];
    for leak in leaks {
        assert_eq!(
            raw(t, leak.as_bytes()).await,
            "HTTP/1.1 403 Forbidden",
            "{leak}"
        );
    }
    let mut reasons = Vec::new();
    for _ in 0..3 {
        reasons.push(found(&next_event(&s.events).await));
    }
    // The allowed request's event is sent when its answer ends: in any order.
    let dlp = (one("aws-key", "block"), Some("dlp".to_string()));
    let refused = reasons.iter().filter(|r| **r == dlp).count();
    assert_eq!(refused, 2, "{reasons:?}");
    assert!(reasons.contains(&(vec![], None)), "{reasons:?}");
}

/// What a pod legitimately sends to an API is not refused: its key in `Authorization` or
/// `x-api-key`, a presigned URL's credential parameters, an ordinary head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_for_the_api_and_clean_heads_pass() {
    let s = gateway_with_providers(DlpAction::Block, Vec::new()).await;
    let url = |p: &str| format!("http://allowed.test:{}{p}", s.upstream);
    let bearer = format!("Authorization: Bearer {OPENAI_KEY}");
    let x_api_key = format!("x-api-key: {OPENAI_KEY}");
    let presigned = format!(
        "/bucket/w.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKIA}%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={}",
        "0123456789abcdef".repeat(4)
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![], url("/")),
        (vec!["-H", &bearer], url("/")),
        (vec!["-H", &bearer, "-d", "weights=v2"], url("/")),
        (vec!["-H", &x_api_key], url("/")),
        (
            vec![],
            format!("http://bucket.s3.amazonaws.com:{}{presigned}", s.upstream),
        ),
    ];
    for (extra, url) in cases {
        let mut args = extra.clone();
        args.extend(["-w", "\n%{http_code}"]);
        let (body, code) = curl(via(&s, &args, &url)).await;
        assert_eq!(
            (body.as_str(), code.as_str()),
            ("hello", "200"),
            "{extra:?}"
        );
        let e = next_event(&s.events).await;
        assert_eq!(found(&e), (vec![], None), "{extra:?}");
    }
}

/// A credential field carries the pod's key *for the destination*: a key only another
/// provider takes (Anthropic's, GitHub's) sent there is refused `403 dlp` (under `redact`
/// too: a credential is not cut), while the provider's own host gets it, and a gateway
/// whose `dlp` lists `forwardedCredentials` (an AI gateway forwarding Anthropic keys) gets
/// the listed kind. On the old code every one of these requests passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_key_goes_only_to_that_provider() {
    let start = |forwarded| gateway_with_providers(DlpAction::Redact, forwarded);
    let anthropic = "x-api-key: sk-ant-api03-abcdefghijklmnopqrstuvwx";
    let github = format!("Authorization: Bearer {TOKEN}");
    let presigned = format!("?X-Amz-Credential={AKIA}%2F20261128%2Fus-east-1%2Fs3%2Faws4_request");
    let s = start(Vec::new()).await;
    let cases = [
        ("allowed.test", anthropic, "403", Some("anthropic-key")),
        ("allowed.test", github.as_str(), "403", Some("github-token")),
        ("api.anthropic.com", anthropic, "200", None),
        ("allowed.test", presigned.as_str(), "403", Some("aws-key")),
        ("bucket.s3.amazonaws.com", presigned.as_str(), "200", None),
    ];
    for (host, part, want, detector) in cases {
        // A header, or a presigned URL's query.
        let (header, query) = match part.strip_prefix('?') {
            Some(q) => ("X-Clean: 1", q),
            None => (part, ""),
        };
        let url = format!("http://{host}:{}/w.bin?{query}", s.upstream);
        let (body, code) = curl(via(&s, &["-H", header, "-w", "\n%{http_code}"], &url)).await;
        assert_eq!(code, want, "{host} {part}: {body}");
        let e = next_event(&s.events).await;
        match detector {
            Some(d) => assert_eq!(found(&e), (one(d, "block"), Some("dlp".into()))),
            None => assert_eq!(found(&e), (vec![], None), "{host} {part}"),
        }
    }
    let gateway = start(vec![palisade_egress::dlp::Detector::AnthropicKey]).await;
    for (header, want) in [(anthropic, "200"), (github.as_str(), "403")] {
        let url = format!("http://allowed.test:{}/", gateway.upstream);
        let (body, code) = curl(via(&gateway, &["-H", header, "-w", "\n%{http_code}"], &url)).await;
        assert_eq!(code, want, "{header}: {body}");
        next_event(&gateway.events).await;
    }
}

/// `redact` cuts a hit out of a header value (the upstream gets `[REDACTED:card]`); a hit in
/// the URL is refused (a rewritten URL breaks the request), the detection saying `block`;
/// `log` forwards and records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_and_log_on_heads() {
    let s = gateway_dlp(DlpAction::Redact).await;
    let url = |p: &str| format!("http://allowed.test:{}{p}", s.upstream);
    let (body, code) = curl(via(
        &s,
        &[
            "-H",
            "X-Note: pay 4111 1111 1111 1111",
            "-w",
            "\n%{http_code}",
        ],
        &url("/head"),
    ))
    .await;
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("x-note: pay [redacted:card]"), "{body}");
    assert!(!body.contains("4111"), "{body}");
    let e = next_event(&s.events).await;
    assert_eq!(found(&e), (one("card", "redact"), None));
    let (body, code) = curl(via(
        &s,
        &["-w", "\n%{http_code}"],
        &url("/head?c=4111111111111111"),
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (dlp)", "403")
    );
    let e = next_event(&s.events).await;
    assert_eq!(found(&e), (one("card", "block"), Some("dlp".to_string())));

    // The same card cut out of a header but percent-encoded in the body: refused, and the
    // one detection says `block`.
    let (body, code) = curl(via(
        &s,
        &[
            "-H",
            "X-Note: pay 4111 1111 1111 1111",
            "-d",
            "c=4111%201111%201111%201111",
            "-w",
            "\n%{http_code}",
        ],
        &url("/echo"),
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (dlp)", "403")
    );
    let e = next_event(&s.events).await;
    assert_eq!(found(&e), (one("card", "block"), Some("dlp".to_string())));

    let s = gateway_dlp(DlpAction::Log).await;
    let url = format!("http://allowed.test:{}/head", s.upstream);
    let (body, code) = curl(via(
        &s,
        &["-b", "mail=bob@example.com", "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!(code, "200");
    assert!(body.contains("mail=bob@example.com"), "{body}");
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Allow));
    assert_eq!(found(&e), (one("email", "log"), None));
}

/// Inside intercepted TLS a rule's own `dlp` scans heads; `credentialHeaders` names the
/// fields left alone, replacing the default list (so `Authorization` is scanned here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_heads_follow_the_rules_dlp_and_its_credential_headers() {
    let i = intercepting("heads-intercept").await;
    // `hub.test` stands in for Hugging Face, so it takes Hugging Face's token.
    let rules = "  - to: [{fqdn: \"hub.test\"}]\n    inspectTLS: true\n    dlp: {detectors: [secrets], action: block, credentialHeaders: [x-hub-token], forwardedCredentials: [huggingface-token]}\n";
    let policy = POLICY.replace(
        "  - to: [{fqdn: \"hub.test\"}]\n    http: [{methods: [GET, HEAD]}]\n",
        rules,
    );
    assert!(policy.contains("credentialHeaders"));
    palisade_egress::publish(
        &i.s.engine,
        Some(std::sync::Arc::new(engine_from(&policy, Posture::Allow))),
    );
    let url = format!("https://hub.test:{}/models/x", i.port);
    let hub_token = "X-Hub-Token: hf_abcdefghijklmnopqrstuvwxyzABCDEF";
    let bearer = format!("Authorization: Bearer {OPENAI_KEY}");
    let leak = format!("X-Trace: {TOKEN}");
    for (header, want) in [
        (hub_token, "200"),
        (bearer.as_str(), "403"),
        (leak.as_str(), "403"),
    ] {
        let (body, code) = curl(via(
            &i.s,
            &[
                "--http1.1",
                "--cacert",
                &i.cacert,
                "-H",
                header,
                "-w",
                "\n%{http_code}",
            ],
            &url,
        ))
        .await;
        assert_eq!(code, want, "{header}: {body}");
        let e = next_event(&i.s.events).await;
        let (detections, reason) = found(&e);
        if want == "403" {
            assert_eq!(reason.as_deref(), Some("dlp"), "{header}");
            assert_eq!(detections.len(), 1, "{detections:?}");
        } else {
            assert_eq!(detections, vec![], "{header}");
        }
    }
}

/// A budget of 3,000 bytes: two `GET`s with 1,000-byte headers and no body pass, the third
/// is refused `429 upload-budget` with `Retry-After`, and so is a `POST` with an empty
/// body (hyper's path). On the old code every one passed (bodies only were counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_bytes_count_toward_the_upload_budget() {
    const BUDGET: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ml, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: budget, namespace: ml}
spec:
  podSelector: {matchLabels: {app: client}}
  egress:
  - to: [{fqdn: "hub.test"}]
    uploadBudget: {bytes: 3000, window: 1h}
  - to: [{fqdn: "allowed.test"}]
"#;
    let s = start(Posture::Allow, &[]).await;
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(BUDGET, Posture::Allow))),
    );
    let pad = format!("X-Pad: {}", "p".repeat(1000));
    let url = format!("http://hub.test:{}/", s.upstream);
    for _ in 0..2 {
        let (body, code) = curl(via(&s, &["-H", &pad, "-w", "\n%{http_code}"], &url)).await;
        assert_eq!((body.as_str(), code.as_str()), ("hello", "200"));
    }
    let refused: [&[&str]; 2] = [&[], &["-d", ""]];
    for extra in refused {
        let mut args = vec!["-i", "-H", &pad];
        args.extend(extra);
        args.extend(["-w", "\n%{http_code}"]);
        let (body, code) = curl(via(&s, &args, &url)).await;
        assert_eq!(code, "429", "{extra:?}: {body}");
        assert!(
            body.to_ascii_lowercase().contains("retry-after: "),
            "{body}"
        );
        assert!(body.ends_with("palisade: denied (upload-budget)"), "{body}");
    }
    // Another rule is not charged.
    let other = format!("http://allowed.test:{}/", s.upstream);
    let (_, code) = curl(via(&s, &["-H", &pad, "-w", "\n%{http_code}"], &other)).await;
    assert_eq!(code, "200");
    let mut reasons = Vec::new();
    for _ in 0..5 {
        reasons.push(found(&next_event(&s.events).await).1);
    }
    let budget = Some("upload-budget".to_string());
    assert_eq!(reasons, [None, None, budget.clone(), budget, None]);
}

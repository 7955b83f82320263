//! What an allowing rule asks of the gateway, per rule rather than per gateway: a body size
//! limit (`maxBodyBytes`), DLP (`dlp`), interception (`inspectTLS`) and an upload budget per
//! pod and rule (`uploadBudget`), for plain requests and tunnels.

use super::*;

const RULES: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ml, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: guarded, namespace: ml}
spec:
  podSelector: {matchLabels: {app: client}}
  egress:
  - to: [{fqdn: "allowed.test"}]
    maxBodyBytes: 1000
    dlp: {detectors: [secrets], action: block}
  - to: [{fqdn: "hub.test"}]
    uploadBudget: {bytes: 3000, window: 1h}
  - to: [{fqdn: "models.test"}]
    inspectTLS: true
  - to: [{fqdn: "denied.test"}]
"#;

async fn start_rules() -> Setup {
    let s = start(Posture::Allow, &[]).await;
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(RULES, Posture::Allow))),
    );
    s
}

fn reason(e: &Event) -> Option<String> {
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    h.reason.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_limits_the_body_and_runs_its_own_dlp() {
    let s = start_rules().await;
    let url = format!("http://allowed.test:{}/echo", s.upstream);
    let big = "a".repeat(2000);
    let (body, code) = curl(via(&s, &["-d", &big, "-w", "\n%{http_code}"], &url)).await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (body-too-large)", "413")
    );
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Deny));
    assert_eq!(reason(&e).as_deref(), Some("body-too-large"));
    // The same without a declared length (chunked) is refused as well.
    let (body, code) = curl(via(
        &s,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "-d",
            &big,
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (body-too-large)", "413")
    );
    let _ = next_event(&s.events).await;
    // The rule's DLP blocks a secret though the gateway has no DLP of its own.
    let aws = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let (body, code) = curl(via(&s, &["-d", aws, "-w", "\n%{http_code}"], &url)).await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (dlp)", "403")
    );
    let e = next_event(&s.events).await;
    assert_eq!(reason(&e).as_deref(), Some("dlp"));
    // Small and clean: through.
    let (body, code) = curl(via(&s, &["-d", "weights=v2", "-w", "\n%{http_code}"], &url)).await;
    assert_eq!((body.as_str(), code.as_str()), ("weights=v2", "200"));
    // Another rule, no limits: a large body passes.
    let other = format!("http://denied.test:{}/echo", s.upstream);
    let (body, code) = curl(via(&s, &["-d", &big, "-w", "\n%{http_code}"], &other)).await;
    assert_eq!((body.len(), code.as_str()), (2000, "200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stop_at_the_budget_for_that_pod_and_name() {
    let s = start_rules().await;
    let url = format!("http://hub.test:{}/echo", s.upstream);
    let part = "b".repeat(2000);
    let (body, code) = curl(via(&s, &["-d", &part, "-w", "\n%{http_code}"], &url)).await;
    assert_eq!((body.len(), code.as_str()), (2000, "200"));
    // 2,000 more would make 4,000 > 3,000 this hour.
    let (body, code) = curl(via(&s, &["-i", "-d", &part, "-w", "\n%{http_code}"], &url)).await;
    assert_eq!(code, "429");
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("retry-after: "), "{body}");
    assert!(body.ends_with("palisade: denied (upload-budget)"), "{body}");
    // Bodies without a declared length count as they stream.
    let (_, code) = curl(via(
        &s,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "-d",
            &part,
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(code, "429");
    // What is left still goes: 3,000 less the first 2,000 and the heads counted (the first
    // request's, and the chunked one's, sent before its body was cut), some 600 bytes.
    let (body, code) = curl(via(
        &s,
        &["-d", &"c".repeat(300), "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!((body.len(), code.as_str()), (300, "200"));
    // A tunnel to the same name shares the budget: 2,000 bytes through it are cut.
    let (_, code) = curl(via(
        &s,
        &["-p", "-d", &part, "-w", "\n%{http_connect} %{http_code}"],
        &url,
    ))
    .await;
    assert_ne!(code, "200 200", "the tunnel must be cut at the budget");
    // Other names are not charged.
    let other = format!("http://denied.test:{}/echo", s.upstream);
    let (body, code) = curl(via(&s, &["-d", &part, "-w", "\n%{http_code}"], &other)).await;
    assert_eq!((body.len(), code.as_str()), (2000, "200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_tls_without_a_ca_refuses_the_tunnel() {
    let s = start_rules().await;
    let url = format!("http://models.test:{}/w.bin", s.upstream);
    // Plain HTTP is visible anyway.
    let (body, code) = curl(via(&s, &["-w", "\n%{http_code}"], &url)).await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200"));
    let _ = next_event(&s.events).await;
    // A tunnel would hide what the rule wants inspected, and no CA is configured.
    let (_, code) = curl(via(&s, &["-p", "-w", "\n%{http_connect}"], &url)).await;
    assert_eq!(code, "403");
    let e = next_event(&s.events).await;
    assert_eq!(reason(&e).as_deref(), Some("needs-inspection"));
}

/// A wildcard rule's budget is one for all the names it allows: on the old code each
/// subdomain a pod made up got a fresh budget (`a.up.test`, `b.up.test`, … 2,000 bytes each
/// under a 3,000-byte budget all went through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_subdomains_share_the_rules_upload_budget() {
    const WILDCARD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ml, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: uploads, namespace: ml}
spec:
  podSelector: {matchLabels: {app: client}}
  egress:
  - to: [{fqdn: "*.up.test"}]
    uploadBudget: {bytes: 3000, window: 1h}
  - to: [{fqdn: "allowed.test"}]
    uploadBudget: {bytes: 3000, window: 1h}
"#;
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        for n in ["a.up.test", "b.up.test", "c.up.test", "a.up.test."] {
            cfg.hosts.insert(n.into(), "127.0.0.1".parse().unwrap());
        }
    })
    .await;
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(WILDCARD, Posture::Allow))),
    );
    let part = "b".repeat(2000);
    let url = |h: &str| format!("http://{h}:{}/echo", s.upstream);
    let (body, code) = curl(via(
        &s,
        &["-d", &part, "-w", "\n%{http_code}"],
        &url("a.up.test"),
    ))
    .await;
    assert_eq!((body.len(), code.as_str()), (2000, "200"));
    for name in ["b.up.test", "C.UP.TEST", "a.up.test."] {
        let (body, code) = curl(via(&s, &["-d", &part, "-w", "\n%{http_code}"], &url(name))).await;
        assert_eq!(code, "429", "{name}: {body}");
    }
    // Another rule keeps its own budget.
    let (body, code) = curl(via(
        &s,
        &["-d", &part, "-w", "\n%{http_code}"],
        &url("allowed.test"),
    ))
    .await;
    assert_eq!((body.len(), code.as_str()), (2000, "200"));
}

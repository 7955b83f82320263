//! An address rule holds whatever spelling of the address a client uses: IPv6 literals in
//! brackets, IPv4-mapped IPv6, and the numeric forms `inet_aton` (and so the system
//! resolver) reads as IPv4 (`2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`). On the old
//! code each was decided as a *name*, so a cluster-wide `Deny` of the address never matched
//! and the gateway then connected to the address all the same.

use super::bad_input::raw;
use super::*;

const DENY_LOOPBACK: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ml, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-loopback}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{ipBlock: {cidr: 127.0.0.0/8}}, {ipBlock: {cidr: "::1/128"}}]
"#;

async fn setup() -> Setup {
    let s = start(Posture::Allow, &[]).await;
    let e = engine_from(DENY_LOOPBACK, Posture::Allow);
    palisade_egress::publish(&s.engine, Some(std::sync::Arc::new(e)));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_denied_address_is_refused() {
    let s = setup().await;
    let p = s.upstream;
    // The plain spelling was always refused.
    let (_, code) = curl(via(
        &s,
        &w("\n%{http_code}"),
        &format!("http://127.0.0.1:{p}/"),
    ))
    .await;
    assert_eq!(code, "403");
    // curl itself, IPv4-mapped IPv6 (plain request and CONNECT).
    let url = format!("http://[::ffff:127.0.0.1]:{p}/");
    let (_, code) = curl(via(&s, &w("\n%{http_code}"), &url)).await;
    assert_eq!(code, "403", "absolute-form to an IPv4-mapped literal");
    let (_, code) = curl(via(&s, &["-p", "-w", "\n%{http_connect}"], &url)).await;
    assert_eq!(code, "403", "CONNECT to an IPv4-mapped literal");
    // Raw requests (curl rewrites numeric hosts to dotted quads before sending them).
    for host in [
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "[::ffff:7f00:1]",
    ] {
        let get = format!("GET http://{host}:{p}/ HTTP/1.1\r\nHost: {host}:{p}\r\n\r\n");
        assert_eq!(
            raw(s.proxy, get.as_bytes()).await,
            "HTTP/1.1 403 Forbidden",
            "GET via {host}"
        );
        let connect = format!("CONNECT {host}:{p} HTTP/1.1\r\nHost: {host}:{p}\r\n\r\n");
        assert_eq!(
            raw(s.proxy, connect.as_bytes()).await,
            "HTTP/1.1 403 Forbidden",
            "CONNECT to {host}"
        );
    }
}

/// A name from DNS may not lead the gateway to loopback or link-local addresses (the
/// metadata service): an allowed name whose DNS someone else controls could otherwise be
/// pointed there. `localhost` comes from the system resolver (/etc/hosts) and is allowed
/// by policy here (posture allow, no rule names it); on the old code the gateway
/// connected to 127.0.0.1 and relayed the upstream's 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let s = setup().await;
    let p = s.upstream;
    let url = format!("http://localhost:{p}/");
    let (body, code) = curl(via(&s, &w("\n%{http_code}"), &url)).await;
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("upstream-internal-address"), "{body}");
    let (_, code) = curl(via(&s, &["-p", "-w", "\n%{http_connect}"], &url)).await;
    assert_eq!(code, "403", "CONNECT to a name that resolves to loopback");
}

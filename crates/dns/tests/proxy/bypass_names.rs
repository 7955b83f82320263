//! Bypass attempts through the queried name: labels holding a '.', '*', a space or raw
//! UTF-8, IDN forms, Deny rules, wildcard depth and case. Each test sends real DNS wire
//! format to the proxy in front of a crafted upstream and checks what the client got, what
//! the upstream saw, what was recorded and what was logged.

use super::*;
use crate::crafted::*;

/// A label holding a literal '.' (`evil.models` under `test`) is one label of another
/// name, not `evil` under `models.test`: it must not match `**.models.test`. Neither may
/// other bytes no hostname has (a '*', a space, raw UTF-8), which Cilium's matchPattern
/// (`*` is `[-a-zA-Z0-9_]*`) never matches either. On the old code the text form
/// `evil\.models.test` was split on every '.', matched the wildcard, was forwarded, and its
/// address was recorded under a name that the agent's set for `**.models.test` matches too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_with_a_dot_or_odd_bytes_match_no_pattern() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, events) = proxy_before(upstream, Posture::Allow).await;
    let sneaky: [&[&[u8]]; 5] = [
        &[b"evil.models", b"test"],
        &[b"x", b"evil.models", b"test"],
        &[b"*", b"models", b"test"],
        &[b"a b", b"models", b"test"],
        &["bücher".as_bytes(), b"models", b"test"],
    ];
    for (i, labels) in sneaky.iter().enumerate() {
        for tcp in [false, true] {
            let q = raw_query(100 + i as u16, labels, 1);
            let reply = if tcp {
                ask_tcp(proxy, &q).await
            } else {
                ask_udp("127.0.0.1", proxy, &q).await
            };
            let reply = reply.expect("an answer");
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::Refused,
                "{labels:?} tcp={tcp}"
            );
            assert!(reply.answers.is_empty());
        }
    }
    assert!(
        seen.lock().unwrap().names.is_empty(),
        "{:?}",
        seen.lock().unwrap().names
    );
    assert!(answers.lock().unwrap().is_empty());
    let evs = dns_events(&events);
    assert_eq!(evs.len(), 10, "every refused query is logged");
    // Events of different workers may arrive in any order.
    let first = evs
        .iter()
        .find(|e| dns_body(e).query == "evil\\.models.test")
        .expect("the first query's event");
    assert_eq!(dns_body(first).rcode.as_deref(), Some("REFUSED"));
    assert_eq!(first.verdict, Some(Verdict::Deny));
    let p = first.policy.as_ref().expect("the isolating policy");
    assert_eq!(
        (p.name.as_str(), p.rule.as_deref()),
        ("model-hub", Some("default"))
    );

    // The punycode form of the same name is a name like any other.
    let reply = ask_udp("127.0.0.1", proxy, &query(120, "xn--bcher-kva.models.test"))
        .await
        .unwrap();
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    // A leading hyphen is a plain label too (both readers agree).
    let reply = ask_udp(
        "127.0.0.1",
        proxy,
        &raw_query(121, &[b"-x", b"models", b"test"], 1),
    )
    .await
    .unwrap();
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    let got: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.name.clone())
        .collect();
    assert_eq!(got, vec!["xn--bcher-kva.models.test", "-x.models.test"]);
}

/// A client that is no pod resolves anything under the default posture, odd names too, but
/// no address of an odd name is recorded: no FQDN set may be opened by a name no pattern
/// can mean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_are_never_recorded() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let reply = ask_udp(
        "127.0.0.2",
        proxy,
        &raw_query(5, &[b"evil.models", b"test"], 1),
    )
    .await
    .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    let names: Vec<String> = seen
        .lock()
        .unwrap()
        .names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    assert_eq!(
        names,
        vec!["evil\\.models.test."],
        "forwarded (in mixed case)"
    );
    assert!(
        answers.lock().unwrap().is_empty(),
        "{:?}",
        answers.lock().unwrap()
    );
}

/// Deny rules fail closed on odd labels. `a b` under `blocked.test` is a subdomain of
/// `blocked.test` (its owner answers it): a Deny of `**.blocked.test` must refuse it, or a
/// pod could carry data to a blocked domain in labels with spaces. A label holding a '.'
/// under `one-blocked.test` is one label there: a Deny of `*.one-blocked.test` must refuse
/// it; on the old code its text `a\.b.one-blocked.test` had four labels, the Deny did not
/// apply and the name resolved. Since no reading of an odd name is right for every
/// pattern, a governed pod gets every odd name refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_rules_fail_closed_on_odd_labels() {
    let policy = engine_with(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: blocklist}
spec:
  tier: security
  egress:
  - name: blocked-domains
    action: Deny
    to: [{fqdn: "**.blocked.test"}, {fqdn: "*.one-blocked.test"}]
"#,
        Posture::Allow,
    );
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, events) = proxy_with(upstream, policy).await;
    let odd: [&[&[u8]]; 4] = [
        &[b"a b", b"blocked", b"test"],
        &[b"a.b", b"one-blocked", b"test"],
        &[b"x.blocked", b"test"],
        &[b"*", b"elsewhere", b"test"],
    ];
    for (i, labels) in odd.iter().enumerate() {
        let reply = ask_udp("127.0.0.1", proxy, &raw_query(400 + i as u16, labels, 1))
            .await
            .expect("an answer");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{labels:?}"
        );
    }
    assert!(
        seen.lock().unwrap().names.is_empty(),
        "{:?}",
        seen.lock().unwrap().names
    );
    let evs = dns_events(&events);
    assert_eq!(evs.len(), 4);
    let spaced = evs
        .iter()
        .find(|e| dns_body(e).query == "a\\032b.blocked.test")
        .expect("the spaced name's event");
    assert_eq!(spaced.verdict, Some(Verdict::Deny));
    let p = spaced
        .policy
        .as_ref()
        .expect("the Deny that matches the name's tail");
    assert_eq!(
        (p.name.as_str(), p.rule.as_deref()),
        ("blocklist", Some("egress[0]"))
    );
    // Plain names: the Deny decides as always.
    for (name, rcode) in [
        ("ok.test", ResponseCode::NoError),
        ("x.blocked.test", ResponseCode::Refused),
        ("x.one-blocked.test", ResponseCode::Refused),
        ("x.y.one-blocked.test", ResponseCode::NoError),
    ] {
        let reply = ask_udp("127.0.0.1", proxy, &query(410, name))
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, rcode, "{name}");
    }
    assert_eq!(answers.lock().unwrap().len(), 2);
}

/// Wildcard depth and case through the proxy, as DESIGN.md and Cilium's matchPattern have
/// it: `*.` one label (not the apex, not two), `**.` one or more (not the apex), `*`
/// inside a label stays in the label, exact is exact; case (0x20 mixing) and a trailing
/// dot do not matter. (Found safe; a guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_depth_and_case_follow_the_documented_semantics() {
    let policy = engine_with(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: depth, namespace: ml}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "*.one.test"}, {fqdn: "**.many.test"}, {fqdn: "exact.test"}, {fqdn: "api-*.inner.test"}]
"#,
        Posture::Allow,
    );
    let (upstream, _) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, _events) = proxy_with(upstream, policy).await;
    let cases = [
        ("a.one.test", true),
        ("A.ONE.test.", true),
        ("one.test", false),
        ("x.y.one.test", false),
        ("a.many.test", true),
        ("x.y.z.MANY.test", true),
        ("many.test", false),
        ("exact.test", true),
        ("eXaCt.TeSt", true),
        ("www.exact.test", false),
        ("api-eu.inner.test", true),
        ("api-eu.x.inner.test", false),
        ("web.inner.test", false),
        ("one.test.evil", false),
        ("aone.test", false),
    ];
    for (i, (name, allowed)) in cases.iter().enumerate() {
        let reply = ask_udp("127.0.0.1", proxy, &query(200 + i as u16, name))
            .await
            .expect("an answer");
        let want = if *allowed {
            ResponseCode::NoError
        } else {
            ResponseCode::Refused
        };
        assert_eq!(reply.metadata.response_code, want, "{name}");
    }
    let recorded: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.name.clone())
        .collect();
    assert_eq!(
        recorded,
        vec![
            "a.one.test",
            "a.one.test",
            "a.many.test",
            "x.y.z.many.test",
            "exact.test",
            "exact.test",
            "api-eu.inner.test"
        ]
    );
}

//! Palisade's SecurityPolicy: the directions it isolates, FQDN peers, L7 HTTP rules, and
//! Audit mode.

use super::*;

fn get<'a>(path: &'a str) -> Option<HttpRequest<'a>> {
    req("GET", path)
}

fn req<'a>(method: &'a str, path: &'a str) -> Option<HttpRequest<'a>> {
    Some(HttpRequest {
        method,
        path,
        host: Some("hub.models.test"),
        headers: &[],
    })
}

#[test]
fn security_policy_isolates_only_the_directions_present() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}]
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: c-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  egress: []
"#,
    );
    c.expect_rule(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        "SecurityPolicy b-from-a",
        Direction::Ingress,
        "ingress[0]",
    );
    c.expect(
        &c.tcp("x/a", "x/b", 80),
        Deny,
        Namespace,
        Some("SecurityPolicy b-from-a"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("SecurityPolicy b-from-a"),
    );
    // No `egress` field: x/b's egress is open.
    c.expect(&c.tcp("x/b", "x/a", 80), Allow, DefaultStage, None);
    // `egress: []` isolates egress with nothing allowed; ingress stays open.
    c.expect_rule(
        &c.tcp("x/c", "y/a", 80),
        Deny,
        Namespace,
        "SecurityPolicy c-no-egress",
        Direction::Egress,
        "default",
    );
    c.expect(&c.tcp("y/a", "x/c", 8000), Allow, DefaultStage, None);
}

#[test]
fn fqdn_peers_one_label_and_any_depth() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: egress-names, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: "*.models.test"}]
    ports: [{port: 443}]
  - to: [{fqdn: "**.cdn.test"}]
    ports: [{port: 443}]
  - to: [{fqdn: api.exact.test}]
"#,
    );
    let sp = "SecurityPolicy egress-names";
    let ok = |name: &str, port: u16, rule: &str| {
        let v = c.pod_to_fqdn("x/a", name, None, port, None);
        c.expect_rule(&v, Allow, Namespace, sp, Direction::Egress, rule);
    };
    let no = |name: &str, port: u16| {
        let v = c.pod_to_fqdn("x/a", name, None, port, None);
        c.expect_rule(&v, Deny, Namespace, sp, Direction::Egress, "default");
    };
    ok("hub.models.test", 443, "egress[0]");
    ok("HUB.Models.Test.", 443, "egress[0]");
    no("hub.models.test", 80);
    no("models.test", 443);
    no("a.hub.models.test", 443);
    ok("x.cdn.test", 443, "egress[1]");
    ok("a.b.c.cdn.test", 443, "egress[1]");
    no("cdn.test", 443);
    no("evilcdn.test", 443);
    ok("api.exact.test", 8443, "egress[2]");
    no("www.api.exact.test", 443);
    // A name peer never matches a bare IP, nor another pod.
    c.expect(
        &c.pod_to_ip("x/a", "203.0.113.1", 443, TCP),
        Deny,
        Namespace,
        Some(sp),
    );
    c.expect(&c.tcp("x/a", "x/b", 443), Deny, Namespace, Some(sp));
    // Pods not selected by it are unrestricted.
    c.expect(
        &c.pod_to_fqdn("x/b", "evil.test", None, 443, None),
        Allow,
        DefaultStage,
        None,
    );
}

#[test]
fn l7_http_rules() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub-read-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    ports: [{port: 443}]
    http:
    - methods: [GET, HEAD]
      path: {prefix: /models}
"#,
    );
    let sp = "SecurityPolicy hub-read-only";
    let v = c.pod_to_fqdn(
        "x/a",
        "hub.models.test",
        None,
        443,
        get("/models/llama-3/config.json"),
    );
    c.expect_rule(&v, Allow, Namespace, sp, Direction::Egress, "egress[0]");
    assert!(!v.egress.unwrap().l7, "the request itself was checked");
    c.expect(
        &c.pod_to_fqdn("x/a", "hub.models.test", None, 443, get("/models")),
        Allow,
        Namespace,
        Some(sp),
    );
    for (method, path) in [
        ("POST", "/models/llama-3"),
        ("PUT", "/models/x"),
        ("GET", "/upload"),
        ("GET", "/modelsx"),
    ] {
        let v = c.pod_to_fqdn("x/a", "hub.models.test", None, 443, req(method, path));
        c.expect_rule(&v, Deny, Namespace, sp, Direction::Egress, "default");
    }
    // The connection (no request visible yet) is allowed, flagged for per-request checks.
    let v = c.pod_to_fqdn("x/a", "hub.models.test", None, 443, None);
    c.expect_rule(&v, Allow, Namespace, sp, Direction::Egress, "egress[0]");
    assert!(v.egress.unwrap().l7);
    // Other names are refused even at the connection level.
    c.expect(
        &c.pod_to_fqdn("x/a", "upload.models.test", None, 443, None),
        Deny,
        Namespace,
        Some(sp),
    );
}

#[test]
fn l7_path_conditions_hold_for_every_reading_of_the_path() {
    // Allowed: GET under /models. Denied by a higher tier: anything under /admin.
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub-read-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    http:
    - methods: [GET]
      path: {prefix: /models}
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-admin}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{fqdn: hub.models.test}]
    http: [{path: {prefix: /admin}}]
"#,
    );
    let sp = "SecurityPolicy hub-read-only";
    let csp = "ClusterSecurityPolicy no-admin";
    let at = |path: &str| c.pod_to_fqdn("x/a", "hub.models.test", None, 443, get(path));
    // Every reading is under /models: allowed.
    for path in [
        "/models/x",
        "/models/%78",
        "/models//x",
        "/models/./x",
        "/models/a/../x",
    ] {
        c.expect(&at(path), Allow, Namespace, Some(sp));
    }
    // Some server reads it outside /models: not allowed by the GET rule.
    for path in [
        "/models/../datasets/x",
        "/models/%2e%2e/datasets",
        "/models/..%2Fdatasets",
        "/models/..%2f..%2fdatasets",
        "/models/..;/datasets",
        "/models\\..\\datasets",
    ] {
        let v = at(path);
        c.expect_rule(&v, Deny, Namespace, sp, Direction::Egress, "default");
    }
    // Some server reads it inside /admin: the Deny rule applies.
    for path in [
        "/admin",
        "/%61dmin/x",
        "//admin",
        "/models/../admin",
        "/x/..%2Fadmin",
        "/x/..;/admin",
        "/admin;v=1",
        // A malformed escape has no reading: every denying condition holds.
        "/admin%",
        "/models/%zz",
    ] {
        c.expect(&at(path), Deny, Admin, Some(csp));
    }
}

#[test]
fn l7_header_conditions_hold_for_every_field_of_that_name() {
    // Allowed: requests carrying `X-Env: prod`. Denied by a higher tier: `X-Debug: on`.
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: prod-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    http: [{headers: [{name: X-Env, value: prod}]}]
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-debug}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{fqdn: hub.models.test}]
    http: [{headers: [{name: X-Debug, value: "on"}]}]
"#,
    );
    let at = |headers: &[(&str, &str)]| {
        let http = HttpRequest {
            method: "GET",
            path: "/",
            host: Some("hub.models.test"),
            headers,
        };
        c.pod_to_fqdn("x/a", "hub.models.test", None, 443, Some(http))
    };
    let sp = Some("SecurityPolicy prod-only");
    let csp = Some("ClusterSecurityPolicy no-debug");
    c.expect(&at(&[("x-env", "prod")]), Allow, Namespace, sp);
    c.expect(
        &at(&[("X-Env", "prod"), ("X-Env", "prod")]),
        Allow,
        Namespace,
        sp,
    );
    // A second field that a server reading the last one would take: not allowed.
    c.expect(
        &at(&[("X-Env", "prod"), ("X-Env", "dev")]),
        Deny,
        Namespace,
        sp,
    );
    c.expect(
        &at(&[("X-Env", "dev"), ("X-Env", "prod")]),
        Deny,
        Namespace,
        sp,
    );
    c.expect(&at(&[("X-Env", "prod, dev")]), Deny, Namespace, sp);
    // The Deny takes any field, and any element of a list.
    for debug in [
        &[("X-Env", "prod"), ("X-Debug", "on")][..],
        &[("X-Env", "prod"), ("X-Debug", "off"), ("x-debug", "on")],
        &[("X-Env", "prod"), ("X-Debug", "off, on")],
    ] {
        c.expect(&at(debug), Deny, Admin, csp);
    }
    c.expect(
        &at(&[("X-Env", "prod"), ("X-Debug", "off")]),
        Allow,
        Namespace,
        sp,
    );
}

/// Found while writing the `http_rules` fuzz target (`crates/policy/fuzz`): a verbose-mode
/// regex ending in a comment passed validation but could not be anchored, so the rule lost
/// its path condition and allowed every path. It is now anchored and holds.
#[test]
fn l7_regex_conditions_may_end_in_a_verbose_mode_comment() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub-read-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    http:
    - path: {regex: "(?x) /models/ .*  # what training reads"}
      headers: [{name: X-Env, regex: "(?x) prod | staging  # never dev"}]
"#,
    );
    let at = |path: &'static str, env: &'static str| {
        let headers = [("X-Env", env)];
        let http = HttpRequest {
            method: "GET",
            path,
            host: Some("hub.models.test"),
            headers: &headers,
        };
        c.pod_to_fqdn("x/a", "hub.models.test", None, 443, Some(http))
    };
    let sp = Some("SecurityPolicy hub-read-only");
    c.expect(&at("/models/llama", "prod"), Allow, Namespace, sp);
    c.expect(&at("/models/llama", "staging"), Allow, Namespace, sp);
    c.expect(&at("/upload", "prod"), Deny, Namespace, sp);
    c.expect(&at("/models/llama", "dev"), Deny, Namespace, sp);
}

#[test]
fn l7_method_conditions_count_method_override_fields() {
    // GET and HEAD only (the hub's read-only rule of `l7_http_rules`).
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub-read-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    http: [{methods: [GET, HEAD]}]
"#,
    );
    let sp = Some("SecurityPolicy hub-read-only");
    let at = |headers: &[(&str, &str)]| {
        let http = HttpRequest {
            method: "GET",
            path: "/models/x",
            host: Some("hub.models.test"),
            headers,
        };
        c.pod_to_fqdn("x/a", "hub.models.test", None, 443, Some(http))
    };
    c.expect(&at(&[]), Allow, Namespace, sp);
    c.expect(
        &at(&[("X-HTTP-Method-Override", "HEAD")]),
        Allow,
        Namespace,
        sp,
    );
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "PUT"),
        ("X-Method-Override", "GET, POST"),
    ] {
        c.expect(&at(&[(name, value)]), Deny, Namespace, sp);
    }
}

#[test]
fn audit_mode_reports_and_does_not_deny() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: audit-b, namespace: x}
spec:
  mode: Audit
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: audit-deny-z}
spec:
  mode: Audit
  priority: 10
  subject: {namespaceSelector: {matchLabels: {team: blue}}}
  ingress:
  - action: Deny
    from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-deny-all, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
"#,
    );
    // Would be denied by the Audit SecurityPolicy: allowed, reported as Audit.
    let v = c.tcp("x/c", "x/b", 8080);
    assert!(v.allowed());
    c.expect(&v, Audit, Namespace, Some("SecurityPolicy audit-b"));
    let r = c.engine.policy_ref(v.decisive().unwrap()).unwrap();
    assert_eq!(r.mode, palisade_policy::Mode::Audit);
    // The enforced verdict underneath is the default allow.
    assert_eq!(v.ingress.unwrap().stage, DefaultStage);
    assert!(v.ingress.unwrap().allowed);
    // Allowed by the Audit policy too: a plain Allow.
    c.expect(&c.tcp("x/a", "x/b", 8080), Allow, DefaultStage, None);
    // An Audit ClusterSecurityPolicy Deny.
    let v = c.tcp("z/a", "y/b", 8080);
    c.expect(&v, Audit, Admin, Some("ClusterSecurityPolicy audit-deny-z"));
    c.expect(&c.tcp("x/a", "y/b", 8080), Allow, DefaultStage, None);
    // Audit never masks an enforced Deny.
    c.expect(
        &c.tcp("x/a", "x/c", 8000),
        Deny,
        Namespace,
        Some("NetworkPolicy c-deny-all"),
    );
}

#[test]
fn explain_names_the_enforced_policy_that_isolates() {
    // Two SecurityPolicies select x/b for ingress; the first by name is in Audit mode.
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: a-audit, namespace: x}
spec:
  mode: Audit
  podSelector: {matchLabels: {app: b}}
  ingress: []
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: b-enforce, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"#,
    );
    let flow = Flow {
        src: Endpoint::Pod(c.pod("x/c")),
        dst: Endpoint::Pod(c.pod("x/b")),
        port: 8080,
        protocol: TCP,
        http: None,
    };
    let v = c.engine.verdict(&flow);
    c.expect(&v, Deny, Namespace, Some("SecurityPolicy b-enforce"));
    let e = c.engine.explain(&flow);
    assert_eq!(e.policy.as_ref().unwrap().name, "b-enforce");
    let isolated: Vec<_> = e.steps.iter().filter(|s| s.outcome == "isolated").collect();
    assert_eq!(isolated.len(), 1, "{:#?}", e.steps);
    assert!(
        isolated[0]
            .text
            .contains("selected by SecurityPolicy x/b-enforce and"),
        "{}",
        isolated[0].text
    );
    assert_eq!(isolated[0].policy.as_ref().unwrap().name, "b-enforce");
    // Allowed for x/a by the enforced policy; with the Audit one enforced too it still would
    // be (policies add up), so this is a plain Allow, not an Audit.
    let v = c.tcp("x/a", "x/b", 8080);
    c.expect(&v, Allow, Namespace, Some("SecurityPolicy b-enforce"));
}

#[test]
fn egress_rules_carry_their_gateway_demands() {
    let c = Cluster::new(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub-guarded, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: hub.models.test}]
    ports: [{port: 443}]
    inspectTLS: true
    maxBodyBytes: 1048576
    dlp: {detectors: [secrets], action: redact}
    uploadBudget: {bytes: 10000000, window: 1h}
  - to: [{fqdn: plain.models.test}]
"#,
    );
    let v = c.pod_to_fqdn("x/a", "hub.models.test", None, 443, None);
    let d = c.engine.gateway_demands(&v).expect("the rule's demands");
    assert!(d.inspect_tls);
    assert_eq!(d.max_body_bytes, Some(1_048_576));
    let dlp = d.dlp.as_ref().unwrap();
    assert_eq!(dlp.detectors, vec!["secrets".to_string()]);
    assert_eq!(
        d.upload_budget,
        Some(palisade_policy::UploadBudget {
            bytes: 10_000_000,
            window: std::time::Duration::from_secs(3600)
        })
    );
    // A rule that asks nothing, a pod no rule selects, and a denied flow: no demands.
    let plain = c.pod_to_fqdn("x/a", "plain.models.test", None, 443, None);
    assert!(plain.allowed());
    assert!(c.engine.gateway_demands(&plain).is_none());
    let other = c.pod_to_fqdn("x/b", "hub.models.test", None, 443, None);
    assert!(c.engine.gateway_demands(&other).is_none());
    let denied = c.pod_to_fqdn("x/a", "evil.test", None, 443, None);
    assert!(!denied.allowed());
    assert!(c.engine.gateway_demands(&denied).is_none());
}

//! Values out of range or malformed: ports, CIDRs, FQDN patterns, label selectors.

use super::*;

#[test]
fn out_of_range_ports_are_all_reported() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",              // 1
        "kind: NetworkPolicy",                           // 2
        "metadata: {name: np, namespace: x}",            // 3
        "spec:",                                         // 4
        "  podSelector: {}",                             // 5
        "  ingress:",                                    // 6
        "  - ports:",                                    // 7
        "    - port: 70000",                             // 8
        "    - port: 0",                                 // 9
        "    - {port: 8080, endPort: 80}",               // 10
        "    - {port: 8080, endPort: 70000}",            // 11
        "---",                                           // 12
        "apiVersion: policy.networking.k8s.io/v1alpha1", // 13
        "kind: AdminNetworkPolicy",                      // 14
        "metadata: {name: anp}",                         // 15
        "spec:",                                         // 16
        "  priority: 1001",                              // 17
        "  subject: {namespaces: {}}",                   // 18
        "  ingress:",                                    // 19
        "  - action: Deny",                              // 20
        "    from: [{namespaces: {}}]",                  // 21
        "    ports:",                                    // 22
        "    - portNumber: {port: 70000}",               // 23
        "    - portRange: {start: 9000, end: 8000}",     // 24
        "---",                                           // 25
        "apiVersion: v1",                                // 26
        "kind: Pod",                                     // 27
        "metadata: {name: p, namespace: x}",             // 28
        "spec:",                                         // 29
        "  containers:",                                 // 30
        "  - name: main",                                // 31
        "    ports: [{containerPort: 70000}]",           // 32
    ]);
    let m = load("ports.yaml", &text);
    let f = "ports.yaml";
    assert_eq!(errors(&m), 8, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[0].port",
        8,
        13,
        "invalid-value",
        &["port 70000 is outside 1..65535"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[1].port",
        9,
        13,
        "invalid-value",
        &["port 0 is outside 1..65535"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[2].endPort",
        10,
        29,
        "invalid-value",
        &["endPort 80 is below port 8080"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[3].endPort",
        11,
        29,
        "invalid-value",
        &["endPort 70000 is outside 1..65535"],
    );
    error_at(
        &m,
        f,
        "spec.priority",
        17,
        13,
        "invalid-value",
        &["priority 1001 is outside 0..1000"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[0].portNumber.port",
        23,
        26,
        "invalid-value",
        &["port 70000 is outside 1..65535"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[1].portRange.end",
        24,
        37,
        "invalid-value",
        &["end 8000 is below start 9000"],
    );
    error_at(
        &m,
        f,
        "spec.containers[0].ports[0].containerPort",
        32,
        29,
        "invalid-field",
        &["70000"],
    );
    for d in &m.diagnostics {
        assert_eq!(d.file, f);
    }
    assert!(m.objects.is_empty());
}

#[test]
fn bad_cidrs_and_exceptions_outside_the_block() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                // 1
        "kind: NetworkPolicy",                             // 2
        "metadata: {name: np, namespace: x}",              // 3
        "spec:",                                           // 4
        "  podSelector: {}",                               // 5
        "  egress:",                                       // 6
        "  - to:",                                         // 7
        "    - ipBlock: {cidr: 10.0.0.0/33}",              // 8
        "    - ipBlock: {cidr: x}",                        // 9
        "    - ipBlock:",                                  // 10
        "        cidr: 10.0.0.0/8",                        // 11
        "        except:",                                 // 12
        "        - 10.1.0.0/16",                           // 13
        "        - 192.168.0.0/24",                        // 14
        "        - 10.0.0.0/8",                            // 15
        "        - 10.2.0.0",                              // 16
        "---",                                             // 17
        "apiVersion: policy.networking.k8s.io/v1alpha1",   // 18
        "kind: AdminNetworkPolicy",                        // 19
        "metadata: {name: anp}",                           // 20
        "spec:",                                           // 21
        "  priority: 1",                                   // 22
        "  subject: {namespaces: {}}",                     // 23
        "  egress:",                                       // 24
        "  - action: Deny",                                // 25
        "    to: [{networks: [10.0.0.0/8, 300.0.0.0/8]}]", // 26
    ]);
    let m = load("cidr.yaml", &text);
    let f = "cidr.yaml";
    assert_eq!(errors(&m), 6, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].ipBlock.cidr",
        8,
        23,
        "invalid-value",
        &["10.0.0.0/33", "prefix length 33 is over 32"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[1].ipBlock.cidr",
        9,
        23,
        "invalid-value",
        &["\"x\" is not a CIDR"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[2].ipBlock.except[1]",
        14,
        11,
        "invalid-value",
        &["192.168.0.0/24 is not inside cidr 10.0.0.0/8"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[2].ipBlock.except[2]",
        15,
        11,
        "invalid-value",
        &["10.0.0.0/8 is not inside cidr 10.0.0.0/8"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[2].ipBlock.except[3]",
        16,
        11,
        "invalid-value",
        &["\"10.2.0.0\" is not a CIDR"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].networks[1]",
        26,
        34,
        "invalid-value",
        &["300.0.0.0/8", "not an IP address"],
    );
    assert!(m
        .diagnostics
        .iter()
        .all(|d| d.path != "spec.egress[0].to[2].ipBlock.except[0]"));
}

/// CIDRs Kubernetes accepts but warns about (and refuses with strict IP validation): host
/// bits set, an IPv4-mapped IPv6 block, IPv6 not in its shortest form. They load, with a
/// warning that says how each is read.
#[test]
fn non_canonical_cidrs_are_warned_about_and_read_as_kubernetes_reads_them() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                // 1
        "kind: NetworkPolicy",                             // 2
        "metadata: {name: np, namespace: x}",              // 3
        "spec:",                                           // 4
        "  podSelector: {}",                               // 5
        "  egress:",                                       // 6
        "  - to:",                                         // 7
        "    - ipBlock: {cidr: 10.1.2.3/8}",               // 8
        "    - ipBlock: {cidr: '::ffff:192.168.0.0/112'}", // 9
        "    - ipBlock: {cidr: '2001:0DB8::/32'}",         // 10
        "    - ipBlock: {cidr: 172.16.0.0/12}",            // 11
    ]);
    let m = load("cidr.yaml", &text);
    assert_eq!(errors(&m), 0, "{:#?}", m.diagnostics);
    for (i, line, words) in [
        (0, 8, ["\"10.1.2.3/8\"", "\"10.0.0.0/8\""]),
        (1, 9, ["::ffff:192.168.0.0/112", "\"192.168.0.0/16\""]),
        (2, 10, ["2001:0DB8::/32", "\"2001:db8::/32\""]),
    ] {
        check(
            at(&m, &format!("spec.egress[0].to[{i}].ipBlock.cidr")),
            Want {
                severity: Severity::Warning,
                code: "suspicious-value",
                file: "cidr.yaml",
                line,
                col: 23,
                path: &format!("spec.egress[0].to[{i}].ipBlock.cidr"),
                words: &words,
            },
        );
    }
    assert!(m
        .diagnostics
        .iter()
        .all(|d| d.path != "spec.egress[0].to[3].ipBlock.cidr"));
}

#[test]
fn bad_fqdn_patterns() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",             // 1
        "kind: SecurityPolicy",                          // 2
        "metadata: {name: sp, namespace: x}",            // 3
        "spec:",                                         // 4
        "  podSelector: {}",                             // 5
        "  egress:",                                     // 6
        "  - to:",                                       // 7
        "    - fqdn: a..example.com",                    // 8
        "    - fqdn: '*'",                               // 9
        "    - fqdn: a.**.example.com",                  // 10
        "    - fqdn: bücher.example",                    // 11
        "    - fqdn: -a.example.com",                    // 12
        "    - fqdn: 'a b.example.com'",                 // 13
        "    - fqdn: '**.example.com'",                  // 14
        "  ingress:",                                    // 15
        "  - from:",                                     // 16
        "    - fqdn: example.com",                       // 17
        "---",                                           // 18
        "apiVersion: policy.networking.k8s.io/v1alpha1", // 19
        "kind: AdminNetworkPolicy",                      // 20
        "metadata: {name: anp}",                         // 21
        "spec:",                                         // 22
        "  priority: 1",                                 // 23
        "  subject: {namespaces: {}}",                   // 24
        "  egress:",                                     // 25
        "  - action: Allow",                             // 26
        "    to:",                                       // 27
        "    - domainNames: ['**.example.com', 'a.*.example.com', '*.example.com']", // 28
    ]);
    let m = load("fqdn.yaml", &text);
    let f = "fqdn.yaml";
    assert_eq!(errors(&m), 9, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].fqdn",
        8,
        13,
        "invalid-value",
        &["empty label"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[1].fqdn",
        9,
        13,
        "invalid-value",
        &["matches every name"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[2].fqdn",
        10,
        13,
        "invalid-value",
        &["`**` is only allowed as the whole first label"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[3].fqdn",
        11,
        13,
        "invalid-value",
        &["non-ASCII", "punycode"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[4].fqdn",
        12,
        13,
        "invalid-value",
        &["may not start or end with '-'"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[5].fqdn",
        13,
        13,
        "invalid-value",
        &["invalid character ' '"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].from[0].fqdn",
        17,
        13,
        "invalid-value",
        &["fqdn peers are for egress rules only"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].domainNames[0]",
        28,
        21,
        "invalid-value",
        &["**.example.com"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].domainNames[1]",
        28,
        39,
        "invalid-value",
        &["`*` only as the first label"],
    );
    // `**.example.com` (Palisade) and `*.example.com` (ANP) are fine.
    assert!(m
        .diagnostics
        .iter()
        .all(|d| d.path != "spec.egress[0].to[6].fqdn"));
    assert!(m
        .diagnostics
        .iter()
        .all(|d| d.path != "spec.egress[0].to[0].domainNames[2]"));
}

#[test]
fn invalid_label_selectors() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                   // 1
        "kind: NetworkPolicy",                                // 2
        "metadata: {name: np, namespace: x}",                 // 3
        "spec:",                                              // 4
        "  podSelector:",                                     // 5
        "    matchExpressions:",                              // 6
        "    - {key: app, operator: In}",                     // 7
        "    - {key: tier, operator: Exists, values: [web]}", // 8
        "    - {key: -app, operator: NotIn, values: [a]}",    // 9
        "    - {key: app, operator: NotIn, values: []}",      // 10
        "  ingress:",                                         // 11
        "  - from:",                                          // 12
        "    - namespaceSelector:",                           // 13
        "        matchLabels: {team: 'red team'}",            // 14
        "---",                                                // 15
        "apiVersion: networking.k8s.io/v1",                   // 16
        "kind: NetworkPolicy",                                // 17
        "metadata: {name: np2, namespace: x}",                // 18
        "spec:",                                              // 19
        "  podSelector:",                                     // 20
        "    matchExpressions:",                              // 21
        "    - {key: app, operator: Equals, values: [a]}",    // 22
    ]);
    let m = load("selectors.yaml", &text);
    let f = "selectors.yaml";
    assert_eq!(errors(&m), 6, "{:#?}", m.diagnostics);
    // `values` is missing: the location is the requirement itself.
    error_at(
        &m,
        f,
        "spec.podSelector.matchExpressions[0].values",
        7,
        7,
        "invalid-value",
        &["operator In needs at least one value"],
    );
    error_at(
        &m,
        f,
        "spec.podSelector.matchExpressions[1].values",
        8,
        45,
        "invalid-value",
        &["operator Exists takes no values"],
    );
    error_at(
        &m,
        f,
        "spec.podSelector.matchExpressions[2].key",
        9,
        13,
        "invalid-value",
        &["label key \"-app\""],
    );
    error_at(
        &m,
        f,
        "spec.podSelector.matchExpressions[3].values",
        10,
        43,
        "invalid-value",
        &["operator NotIn needs at least one value"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].from[0].namespaceSelector.matchLabels.team",
        14,
        29,
        "invalid-value",
        &["label value \"red team\""],
    );
    error_at(
        &m,
        f,
        "spec.podSelector.matchExpressions[0].operator",
        22,
        28,
        "invalid-field",
        &[
            "unknown variant `Equals`",
            "`In`, `NotIn`, `Exists`, `DoesNotExist`",
        ],
    );
}

#[test]
fn bad_upload_budgets_and_gateway_fields_on_ingress() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",         // 1
        "kind: SecurityPolicy",                      // 2
        "metadata: {name: sp, namespace: x}",        // 3
        "spec:",                                     // 4
        "  podSelector: {}",                         // 5
        "  egress:",                                 // 6
        "  - to: [{fqdn: hub.test}]",                // 7
        "    uploadBudget: {bytes: 0, window: 1w}",  // 8
        "  ingress:",                                // 9
        "  - uploadBudget: {bytes: 5, window: 10m}", // 10
    ]);
    let m = load("budget.yaml", &text);
    let f = "budget.yaml";
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "spec.egress[0].uploadBudget.window",
        8,
        38,
        "invalid-value",
        &["window \"1w\"", "s, m, h or d"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].uploadBudget.bytes",
        8,
        27,
        "invalid-value",
        &["at least 1"],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0]",
        10,
        5,
        "invalid-value",
        &["apply to egress rules only"],
    );
}

#[test]
fn ai_gateway_limits_algorithms_and_timeouts() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",   // 1
        "kind: AIGateway",                     // 2
        "metadata: {name: gw, namespace: ml}", // 3
        "spec:",                               // 4
        "  routes:",                           // 5
        "  - name: chat",                      // 6
        "    backend: http://127.0.0.1:8000",  // 7
        "    timeoutSeconds: 0",               // 8
        "    auth:",                           // 9
        "      jwt:",                          // 10
        "        algorithms: [RS256, none]",   // 11
        "    limits:",                         // 12
        "      requestsPerSecond: -1",         // 13
        "      burst: 0",                      // 14
        "  consumers:",                        // 15
        "  - name: alice",                     // 16
        "    limits: {tokensPerMinute: 0}",    // 17
    ]);
    let m = load("gw.yaml", &text);
    assert_eq!(errors(&m), 5, "{:#?}", m.diagnostics);
    for (path, line, words) in [
        ("spec.routes[0].timeoutSeconds", 8, "at least 1"),
        (
            "spec.routes[0].auth.jwt.algorithms[1]",
            11,
            "unknown algorithm \"none\"",
        ),
        ("spec.routes[0].limits.requestsPerSecond", 13, "above 0"),
        ("spec.routes[0].limits.burst", 14, "at least 1"),
        ("spec.consumers[0].limits.tokensPerMinute", 17, "at least 1"),
    ] {
        let d = at(&m, path);
        assert_eq!(d.severity, Severity::Error, "{d}");
        assert_eq!((d.file.as_str(), d.line), ("gw.yaml", line), "{d}");
        assert!(d.message.contains(words), "{d}");
    }
    assert!(m.objects.is_empty());
}

/// A stream idle timeout out of range, and client-certificate authentication on a
/// gateway that verifies no client certificates (or maps no identity).
#[test]
fn ai_gateway_stream_idle_timeout_and_mtls() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",        // 1
        "kind: AIGateway",                          // 2
        "metadata: {name: gw, namespace: ml}",      // 3
        "spec:",                                    // 4
        "  tls: {certFile: a.crt, keyFile: a.key}", // 5
        "  routes:",                                // 6
        "  - name: chat",                           // 7
        "    backend: http://127.0.0.1:8000",       // 8
        "    streamIdleTimeoutSeconds: 0",          // 9
        "    auth:",                                // 10
        "      mtls:",                              // 11
        "        identities: {}",                   // 12
    ]);
    let m = load("gw.yaml", &text);
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    for (path, line, words) in [
        ("spec.routes[0].streamIdleTimeoutSeconds", 9, "1 to 86400"),
        ("spec.routes[0].auth.mtls", 12, "clientCaFile"),
        ("spec.routes[0].auth.mtls.identities", 12, "at least one"),
    ] {
        let d = at(&m, path);
        assert_eq!(d.severity, Severity::Error, "{d}");
        assert_eq!((d.file.as_str(), d.line), ("gw.yaml", line), "{d}");
        assert!(d.message.contains(words), "{d}");
    }
    assert!(m.objects.is_empty());
}

/// A route's `extraEndpoints` must be plain paths: one a backend reads another way (dot
/// segments, escapes), or with a query, would match other resources than the one named.
#[test]
fn ai_gateway_extra_endpoints_are_plain_paths() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",   // 1
        "kind: AIGateway",                     // 2
        "metadata: {name: gw, namespace: ml}", // 3
        "spec:",                               // 4
        "  routes:",                           // 5
        "  - name: chat",                      // 6
        "    backend: http://127.0.0.1:8000",  // 7
        "    extraEndpoints:",                 // 8
        "    - /api/pull",                     // 9
        "    - api/push",                      // 10
        "    - /slots/0?action=save",          // 11
        "    - /api/../push",                  // 12
        "    - /api/%70ush",                   // 13
    ]);
    let m = load("gw.yaml", &text);
    assert_eq!(errors(&m), 4, "{:#?}", m.diagnostics);
    for (path, line) in [
        ("spec.routes[0].extraEndpoints[1]", 10),
        ("spec.routes[0].extraEndpoints[2]", 11),
        ("spec.routes[0].extraEndpoints[3]", 12),
        ("spec.routes[0].extraEndpoints[4]", 13),
    ] {
        let d = at(&m, path);
        assert_eq!(d.severity, Severity::Error, "{d}");
        assert_eq!((d.file.as_str(), d.line), ("gw.yaml", line), "{d}");
        assert!(d.message.contains("must be a path"), "{d}");
    }
    assert!(m.objects.is_empty());
}

/// Revocation lists and an optional client certificate on a gateway that verifies no
/// client certificates, an empty CRL file name, and a client-auth mode that does not exist.
#[test]
fn ai_gateway_client_crls_and_client_auth() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",   // 1
        "kind: AIGateway",                     // 2
        "metadata: {name: gw, namespace: ml}", // 3
        "spec:",                               // 4
        "  tls:",                              // 5
        "    certFile: a.crt",                 // 6
        "    keyFile: a.key",                  // 7
        "    clientCrlFiles: [ca.crl, \"\"]",  // 8
        "    clientAuth: optional",            // 9
        "  routes:",                           // 10
        "  - name: chat",                      // 11
        "    backend: http://127.0.0.1:8000",  // 12
    ]);
    let m = load("gw.yaml", &text);
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    for (path, line, words) in [
        ("spec.tls.clientCrlFiles", 8, "clientCaFile"),
        ("spec.tls.clientCrlFiles[1]", 8, "empty"),
        ("spec.tls.clientAuth", 9, "clientCaFile"),
    ] {
        let d = at(&m, path);
        assert_eq!(d.severity, Severity::Error, "{d}");
        assert_eq!((d.file.as_str(), d.line), ("gw.yaml", line), "{d}");
        assert!(d.message.contains(words), "{d}");
    }
    assert!(m.objects.is_empty());

    let bad = text.replace("clientAuth: optional", "clientAuth: sometimes");
    let m = load("gw.yaml", &bad);
    assert!(errors(&m) >= 1, "{:#?}", m.diagnostics);
    let d = m
        .diagnostics
        .iter()
        .find(|d| d.message.contains("sometimes"))
        .unwrap_or_else(|| panic!("{:#?}", m.diagnostics));
    assert_eq!((d.file.as_str(), d.line), ("gw.yaml", 9), "{d}");
    assert!(m.objects.is_empty());
}

#[test]
fn bad_dns_answers_feed_addresses() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",         // 1
        "kind: PalisadeConfig",                      // 2
        "metadata: {name: node}",                    // 3
        "spec:",                                     // 4
        "  dns:",                                    // 5
        "    listen: 127.0.0.1:53",                  // 6
        "    upstream: 127.0.0.1:5353",              // 7
        "    answersListen: nowhere",                // 8
        "  egress:",                                 // 9
        "    listen: 127.0.0.1:3128",                // 10
        "    dnsAnswers:",                           // 11
        "    - http://10.0.0.1:9054",                // 12
        "    - https://10.0.0.2:9054",               // 13
        "    - http://dns.palisade:9054/v1/answers", // 14
    ]);
    let m = load("config.yaml", &text);
    let f = "config.yaml";
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "spec.dns.answersListen",
        8,
        20,
        "invalid-value",
        &["\"nowhere\" is not host:port"],
    );
    error_at(
        &m,
        f,
        "spec.egress.dnsAnswers[1]",
        13,
        7,
        "invalid-value",
        &["is not http://host:port"],
    );
    error_at(
        &m,
        f,
        "spec.egress.dnsAnswers[2]",
        14,
        7,
        "invalid-value",
        &["/v1/answers"],
    );
}

#[test]
fn idle_timeouts_out_of_range() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1", // 1
        "kind: PalisadeConfig",              // 2
        "metadata: {name: node}",            // 3
        "spec:",                             // 4
        "  egress:",                         // 5
        "    listen: 127.0.0.1:3128",        // 6
        "    idleTimeoutSeconds: 0",         // 7
        "  ingress:",                        // 8
        "    listen: 127.0.0.1:8443",        // 9
        "    idleTimeoutSeconds: 100000",    // 10
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    for (path, line) in [
        ("spec.egress.idleTimeoutSeconds", 7),
        ("spec.ingress.idleTimeoutSeconds", 10),
    ] {
        error_at(
            &m,
            "config.yaml",
            path,
            line,
            25,
            "invalid-value",
            &["1 to 86400"],
        );
    }
    let upstream = lines(&[
        "apiVersion: palisade.dev/v1alpha1", // 1
        "kind: PalisadeConfig",              // 2
        "metadata: {name: node}",            // 3
        "spec:",                             // 4
        "  egress:",                         // 5
        "    listen: 127.0.0.1:3128",        // 6
        "    upstreamIdleTimeoutSeconds: 0", // 7
        "  ingress:",                        // 8
        "    listen: 127.0.0.1:8443",        // 9
        "    sendTimeoutSeconds: 90000",     // 10
    ]);
    let m = load("config.yaml", &upstream);
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "config.yaml",
        "spec.egress.upstreamIdleTimeoutSeconds",
        7,
        33,
        "invalid-value",
        &["upstreamIdleTimeoutSeconds must be 1 to 86400"],
    );
    error_at(
        &m,
        "config.yaml",
        "spec.ingress.sendTimeoutSeconds",
        10,
        25,
        "invalid-value",
        &["sendTimeoutSeconds must be 1 to 86400"],
    );
    let egress_send = upstream.replace("upstreamIdleTimeoutSeconds: 0", "sendTimeoutSeconds: 0");
    let m = load("config.yaml", &egress_send);
    error_at(
        &m,
        "config.yaml",
        "spec.egress.sendTimeoutSeconds",
        7,
        25,
        "invalid-value",
        &["sendTimeoutSeconds must be 1 to 86400"],
    );
    let ok = lines(&[
        "apiVersion: palisade.dev/v1alpha1",
        "kind: PalisadeConfig",
        "metadata: {name: node}",
        "spec:",
        "  ingress: {listen: 127.0.0.1:8443, idleTimeoutSeconds: 30}",
    ]);
    assert_eq!(errors(&load("ok.yaml", &ok)), 0);
}

#[test]
fn events_retention_days_are_bounded() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",         // 1
        "kind: PalisadeConfig",                      // 2
        "metadata: {name: node}",                    // 3
        "spec:",                                     // 4
        "  events: {store: true, retentionDays: 0}", // 5
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "config.yaml",
        "spec.events.retentionDays",
        5,
        40,
        "invalid-value",
        &["retentionDays must be 1 to 36500"],
    );
    let ok = text.replace("retentionDays: 0", "retentionDays: 30");
    assert_eq!(errors(&load("ok.yaml", &ok)), 0);
}

#[test]
fn cluster_networks_are_cidrs() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1", // 1
        "kind: PalisadeConfig",              // 2
        "metadata: {name: node}",            // 3
        "spec:",                             // 4
        "  clusterNetworks:",                // 5
        "  - 10.96.0.0/12",                  // 6
        "  - 10.0.0.0/33",                   // 7
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "config.yaml",
        "spec.clusterNetworks[1]",
        7,
        5,
        "invalid-value",
        &["\"10.0.0.0/33\" is not a CIDR"],
    );
    let ok = text.replace("10.0.0.0/33", "10.0.0.0/16");
    assert_eq!(errors(&load("ok.yaml", &ok)), 0);
}

#[test]
fn dns_mix_case_is_a_boolean() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1", // 1
        "kind: PalisadeConfig",              // 2
        "metadata: {name: node}",            // 3
        "spec:",                             // 4
        "  dns: {listen: 127.0.0.1:53, upstream: 10.0.0.10:53, mixCase: maybe}", // 5
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    let d = m
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap();
    assert_eq!((d.file.as_str(), d.line), ("config.yaml", 5), "{d:?}");
    assert!(d.path.contains("mixCase"), "{d:?}");
    let ok = lines(&[
        "apiVersion: palisade.dev/v1alpha1",
        "kind: PalisadeConfig",
        "metadata: {name: node}",
        "spec:",
        "  dns: {listen: 127.0.0.1:53, upstream: 10.0.0.10:53, mixCase: false}",
    ]);
    let m = load("ok.yaml", &ok);
    assert_eq!(errors(&m), 0, "{:#?}", m.diagnostics);
}

#[test]
fn dns_max_records_per_pod_is_bounded() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1", // 1
        "kind: PalisadeConfig",              // 2
        "metadata: {name: node}",            // 3
        "spec:",                             // 4
        "  dns:",                            // 5
        "    listen: 127.0.0.1:53",          // 6
        "    upstream: 10.0.0.10:53",        // 7
        "    maxRecordsPerPod: 0",           // 8
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "config.yaml",
        "spec.dns.maxRecordsPerPod",
        8,
        23,
        "invalid-value",
        &["1 to 200000"],
    );
}

/// The proxy's per-client limits were code-only (`ProxyConfig`): on the old code these
/// fields were unknown (one deny_unknown_fields error at the first), the limits could not
/// be set. Now each is a `spec.dns` field, bounded, and every bad one gets its own error
/// at its line; good values load cleanly.
#[test]
fn dns_client_limits_are_configurable_and_bounded() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",      // 1
        "kind: PalisadeConfig",                   // 2
        "metadata: {name: node}",                 // 3
        "spec:",                                  // 4
        "  dns:",                                 // 5
        "    listen: 127.0.0.1:53",               // 6
        "    upstream: 10.0.0.10:53",             // 7
        "    queriesPerSecondPerClient: 2000000", // 8
        "    queryBurstPerClient: 0",             // 9
        "    maxInFlightPerClient: 5000",         // 10
        "    maxTcpPerClient: 0",                 // 11
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 4, "{:#?}", m.diagnostics);
    for (path, line, col, words) in [
        ("spec.dns.queriesPerSecondPerClient", 8, 32, "0 to 1000000"),
        ("spec.dns.queryBurstPerClient", 9, 26, "1 to 1000000"),
        ("spec.dns.maxInFlightPerClient", 10, 27, "1 to 4096"),
        ("spec.dns.maxTcpPerClient", 11, 22, "1 to 4096"),
    ] {
        error_at(
            &m,
            "config.yaml",
            path,
            line,
            col,
            "invalid-value",
            &[words],
        );
    }
    let ok = lines(&[
        "apiVersion: palisade.dev/v1alpha1",
        "kind: PalisadeConfig",
        "metadata: {name: node}",
        "spec:",
        "  dns:",
        "    listen: 127.0.0.1:53",
        "    upstream: 10.0.0.10:53",
        "    queriesPerSecondPerClient: 0",
        "    queryBurstPerClient: 50",
        "    maxInFlightPerClient: 64",
        "    maxTcpPerClient: 8",
    ]);
    let m = load("ok.yaml", &ok);
    assert_eq!(errors(&m), 0, "{:#?}", m.diagnostics);
    let dns = m
        .objects
        .iter()
        .find_map(|o| match &o.object {
            palisade_policy::model::Object::PalisadeConfig(c) => c.spec.dns.clone(),
            _ => None,
        })
        .expect("the config's dns");
    assert_eq!(
        (
            dns.queries_per_second_per_client,
            dns.query_burst_per_client,
            dns.max_in_flight_per_client,
            dns.max_tcp_per_client
        ),
        (Some(0), Some(50), Some(64), Some(8))
    );
}

#[test]
fn dlp_credential_headers_must_be_field_names() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",           // 1
        "kind: SecurityPolicy",                        // 2
        "metadata: {name: sp, namespace: x}",          // 3
        "spec:",                                       // 4
        "  podSelector: {}",                           // 5
        "  egress:",                                   // 6
        "  - to: [{fqdn: api.test}]",                  // 7
        "    dlp:",                                    // 8
        "      credentialHeaders: [x-key, \"x key\"]", // 9
    ]);
    let m = load("dlp.yaml", &text);
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "dlp.yaml",
        "spec.egress[0].dlp.credentialHeaders[1]",
        9,
        34,
        "invalid-value",
        &["\"x key\" is not a valid header name"],
    );
}

#[test]
fn dlp_forwarded_credentials_must_be_provider_keys() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",        // 1
        "kind: SecurityPolicy",                     // 2
        "metadata: {name: sp, namespace: x}",       // 3
        "spec:",                                    // 4
        "  podSelector: {}",                        // 5
        "  egress:",                                // 6
        "  - to: [{fqdn: gateway.ai.test}]",        // 7
        "    dlp:",                                 // 8
        "      detectors: [secrets, high-entropy]", // 9
        "      forwardedCredentials: [anthropic-key, openai-key, gcp-key]", // 10
    ]);
    let m = load("dlp.yaml", &text);
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "dlp.yaml",
        "spec.egress[0].dlp.forwardedCredentials[1]",
        10,
        45,
        "invalid-value",
        &["\"openai-key\" is not a provider's key detector"],
    );
    error_at(
        &m,
        "dlp.yaml",
        "spec.egress[0].dlp.forwardedCredentials[2]",
        10,
        57,
        "invalid-value",
        &["\"gcp-key\" is not a provider's key detector"],
    );
}

#[test]
fn agent_pod_interface_prefixes_are_name_beginnings() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",                 // 1
        "kind: PalisadeConfig",                              // 2
        "metadata: {name: node}",                            // 3
        "spec:",                                             // 4
        "  agent:",                                          // 5
        "    podInterfacePrefixes: [cali, \"cali*\", \"\"]", // 6
    ]);
    let m = load("config.yaml", &text);
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    error_at(
        &m,
        "config.yaml",
        "spec.agent.podInterfacePrefixes[1]",
        6,
        34,
        "invalid-value",
        &["\"cali*\" is not an interface-name prefix"],
    );
    error_at(
        &m,
        "config.yaml",
        "spec.agent.podInterfacePrefixes[2]",
        6,
        43,
        "invalid-value",
        &["\"\" is not an interface-name prefix"],
    );
    let ok = lines(&[
        "apiVersion: palisade.dev/v1alpha1",
        "kind: PalisadeConfig",
        "metadata: {name: node}",
        "spec:",
        "  defaultPosture: deny",
        "  agent: {podInterfacePrefixes: [cali, lxc, veth]}",
    ]);
    let m = load("ok.yaml", &ok);
    assert!(m.diagnostics.is_empty(), "{:#?}", m.diagnostics);
    // Under the allowing posture the setting holds nothing: a warning says so.
    let allow = ok.replace("  defaultPosture: deny\n", "");
    let m = load("allow.yaml", &allow);
    assert_eq!(errors(&m), 0, "{:#?}", m.diagnostics);
    let d = at(&m, "spec.agent.podInterfacePrefixes");
    assert_eq!(d.severity, Severity::Warning, "{d}");
    assert_eq!(d.line, 5, "{d}");
    assert!(d.message.contains("defaultPosture: deny"), "{d}");
}

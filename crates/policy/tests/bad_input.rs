//! Bad input: every problem is reported with its severity, file, line, column and field
//! path, all problems of a file at once, and nothing panics — checked on hand-written
//! broken manifests and by property tests on arbitrary and mutated text.

use palisade_policy::cidr::Cidr;
use palisade_policy::fqdn::FqdnPattern;
use palisade_policy::{
    Diagnostic, Endpoint, Engine, Flow, Manifests, Protocol, Severity, Snapshot,
};
use proptest::prelude::*;

/// Joins lines with `\n`, so that line `i` of the slice is line `i + 1` of the file.
fn lines(ls: &[&str]) -> String {
    let mut s = ls.join("\n");
    s.push('\n');
    s
}

fn load(file: &str, text: &str) -> Manifests {
    let mut m = Manifests::new();
    m.add_file(file, text);
    m
}

/// The one diagnostic at `path`.
#[track_caller]
fn at<'a>(m: &'a Manifests, path: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = m.diagnostics.iter().filter(|d| d.path == path).collect();
    assert_eq!(found.len(), 1, "diagnostics at {path:?}: {:#?}", m.diagnostics);
    found[0]
}

/// What a diagnostic must say.
struct Want<'a> {
    severity: Severity,
    code: &'a str,
    file: &'a str,
    line: usize,
    col: usize,
    path: &'a str,
    words: &'a [&'a str],
}

#[track_caller]
fn check(d: &Diagnostic, w: Want<'_>) {
    assert_eq!(d.severity, w.severity, "{d}");
    assert_eq!(d.code, w.code, "{d}");
    assert_eq!(d.file, w.file, "{d}");
    assert_eq!((d.line, d.col), (w.line, w.col), "line:col of {d}");
    assert_eq!(d.path, w.path, "{d}");
    for word in w.words {
        assert!(d.message.contains(word), "{d:?} does not mention {word:?}");
    }
}

/// An error at `path`, at `line:col`, whose message mentions `words`.
#[track_caller]
fn error_at(m: &Manifests, file: &str, path: &str, line: usize, col: usize, code: &str, words: &[&str]) {
    check(
        at(m, path),
        Want {
            severity: Severity::Error,
            code,
            file,
            line,
            col,
            path,
            words,
        },
    )
}

fn errors(m: &Manifests) -> usize {
    m.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

#[test]
fn yaml_syntax_errors_point_at_the_place_and_apply_nothing() {
    let text = lines(&[
        "apiVersion: v1",     // 1
        "kind: Namespace",    // 2
        "metadata: {name: a}", // 3
        "---",                // 4
        "apiVersion: v1",     // 5
        "kind: Namespace",    // 6
        "metadata: name: b",  // 7
    ]);
    let m = load("syntax.yaml", &text);
    assert_eq!(m.diagnostics.len(), 1, "{:#?}", m.diagnostics);
    check(
        &m.diagnostics[0],
        Want {
            severity: Severity::Error,
            code: "yaml-syntax",
            file: "syntax.yaml",
            line: 7,
            col: 15,
            path: "",
            words: &["invalid YAML", "mapping values are not allowed"],
        },
    );
    // The valid first document is not applied either: a file that does not parse is out.
    assert!(m.objects.is_empty());
    assert!(m.has_errors());

    // An unclosed flow mapping is found where the parser gives up: the next line.
    let text = lines(&[
        "apiVersion: v1",        // 1
        "kind: Namespace",       // 2
        "metadata:",             // 3
        "  name: x",             // 4
        "  labels: {team: red",  // 5
        "---",                   // 6
    ]);
    let m = load("unclosed.yaml", &text);
    assert_eq!(m.diagnostics.len(), 1);
    let d = &m.diagnostics[0];
    assert_eq!((d.code, d.file.as_str(), d.line), ("yaml-syntax", "unclosed.yaml", 6));
    assert!(d.message.contains("did not find expected ',' or '}'"), "{d}");

    // Duplicate keys are a syntax error at the second key.
    let text = lines(&[
        "apiVersion: v1",  // 1
        "kind: Namespace", // 2
        "metadata:",       // 3
        "  name: x",       // 4
        "  name: y",       // 5
    ]);
    let m = load("dupkey.yaml", &text);
    let d = &m.diagnostics[0];
    assert_eq!((d.code, d.line, d.col), ("yaml-syntax", 5, 3), "{d}");
    assert!(d.message.contains("duplicate key \"name\""), "{d}");
}

#[test]
fn wrong_types_name_the_field_and_what_was_found() {
    let text = lines(&[
        "apiVersion: policy.networking.k8s.io/v1alpha1", // 1
        "kind: AdminNetworkPolicy",                      // 2
        "metadata: {name: a}",                           // 3
        "spec:",                                         // 4
        "  priority: high",                              // 5
        "  subject: {namespaces: {}}",                   // 6
        "---",                                           // 7
        "apiVersion: networking.k8s.io/v1",              // 8
        "kind: NetworkPolicy",                           // 9
        "metadata: {name: np, namespace: x}",            // 10
        "spec:",                                         // 11
        "  podSelector: {}",                             // 12
        "  ingress:",                                    // 13
        "  - ports:",                                    // 14
        "    - port: true",                              // 15
        "---",                                           // 16
        "apiVersion: networking.k8s.io/v1",              // 17
        "kind: NetworkPolicy",                           // 18
        "metadata: {name: np2, namespace: x}",           // 19
        "spec:",                                         // 20
        "  podSelector: [app]",                          // 21
        "---",                                           // 22
        "apiVersion: v1",                                // 23
        "kind: Namespace",                               // 24
        "metadata:",                                     // 25
        "  name: y",                                     // 26
        "  labels: {app: 5}",                            // 27
        "---",                                           // 28
        "apiVersion: networking.k8s.io/v1",              // 29
        "kind: NetworkPolicy",                           // 30
        "metadata: {name: np3, namespace: x}",           // 31
        "spec:",                                         // 32
        "  podSelector: {}",                             // 33
        "  policyTypes: Ingress",                        // 34
    ]);
    let m = load("types.yaml", &text);
    assert_eq!(errors(&m), 5, "{:#?}", m.diagnostics);
    assert!(m.objects.is_empty());
    let f = "types.yaml";
    error_at(&m, f, "spec.priority", 5, 13, "invalid-field", &["expected an integer", "\"high\""]);
    error_at(&m, f, "spec.ingress[0].ports[0].port", 15, 13, "invalid-field", &["boolean `true`", "port number or a port name"]);
    error_at(&m, f, "spec.podSelector", 21, 16, "invalid-field", &["expected a mapping, found a list"]);
    error_at(&m, f, "metadata.labels.app", 27, 17, "invalid-field", &["expected a string, found integer 5"]);
    error_at(&m, f, "spec.policyTypes", 34, 16, "invalid-field", &["expected a list"]);
    assert_eq!(at(&m, "spec.priority").object, "AdminNetworkPolicy a");
}

#[test]
fn unknown_fields_are_errors_at_the_key() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                  // 1
        "kind: NetworkPolicy",                               // 2
        "metadata: {name: np, namespace: x}",                // 3
        "spec:",                                             // 4
        "  podSelector: {}",                                 // 5
        "  ingress:",                                        // 6
        "  - form:",                                         // 7
        "    - podSelector: {}",                             // 8
        "---",                                               // 9
        "apiVersion: v1",                                    // 10
        "kind: Namespace",                                   // 11
        "metadata:",                                         // 12
        "  nmae: x",                                         // 13
        "---",                                               // 14
        "apiVersion: palisade.dev/v1alpha1",                 // 15
        "kind: SecurityPolicy",                              // 16
        "metadata: {name: sp, namespace: x}",                // 17
        "spec:",                                             // 18
        "  podSelector: {}",                                 // 19
        "  egress:",                                         // 20
        "  - to:",                                           // 21
        "    - {fqdns: [example.com]}",                      // 22
    ]);
    let m = load("unknown.yaml", &text);
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    let f = "unknown.yaml";
    error_at(&m, f, "spec.ingress[0].form", 7, 5, "invalid-field", &["unknown field `form`", "`from`"]);
    error_at(&m, f, "metadata.nmae", 13, 3, "invalid-field", &["unknown field `nmae`", "`name`"]);
    error_at(&m, f, "spec.egress[0].to[0].fqdns", 22, 8, "invalid-field", &["unknown field `fqdns`", "`fqdn`"]);
}

#[test]
fn out_of_range_ports_are_all_reported() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                              // 1
        "kind: NetworkPolicy",                                           // 2
        "metadata: {name: np, namespace: x}",                            // 3
        "spec:",                                                         // 4
        "  podSelector: {}",                                             // 5
        "  ingress:",                                                    // 6
        "  - ports:",                                                    // 7
        "    - port: 70000",                                             // 8
        "    - port: 0",                                                 // 9
        "    - {port: 8080, endPort: 80}",                               // 10
        "    - {port: 8080, endPort: 70000}",                            // 11
        "---",                                                           // 12
        "apiVersion: policy.networking.k8s.io/v1alpha1",                 // 13
        "kind: AdminNetworkPolicy",                                      // 14
        "metadata: {name: anp}",                                         // 15
        "spec:",                                                         // 16
        "  priority: 1001",                                              // 17
        "  subject: {namespaces: {}}",                                   // 18
        "  ingress:",                                                    // 19
        "  - action: Deny",                                              // 20
        "    from: [{namespaces: {}}]",                                  // 21
        "    ports:",                                                    // 22
        "    - portNumber: {port: 70000}",                               // 23
        "    - portRange: {start: 9000, end: 8000}",                     // 24
        "---",                                                           // 25
        "apiVersion: v1",                                                // 26
        "kind: Pod",                                                     // 27
        "metadata: {name: p, namespace: x}",                             // 28
        "spec:",                                                         // 29
        "  containers:",                                                 // 30
        "  - name: main",                                                // 31
        "    ports: [{containerPort: 70000}]",                           // 32
    ]);
    let m = load("ports.yaml", &text);
    let f = "ports.yaml";
    assert_eq!(errors(&m), 8, "{:#?}", m.diagnostics);
    error_at(&m, f, "spec.ingress[0].ports[0].port", 8, 13, "invalid-value", &["port 70000 is outside 1..65535"]);
    error_at(&m, f, "spec.ingress[0].ports[1].port", 9, 13, "invalid-value", &["port 0 is outside 1..65535"]);
    error_at(&m, f, "spec.ingress[0].ports[2].endPort", 10, 29, "invalid-value", &["endPort 80 is below port 8080"]);
    error_at(&m, f, "spec.ingress[0].ports[3].endPort", 11, 29, "invalid-value", &["endPort 70000 is outside 1..65535"]);
    error_at(&m, f, "spec.priority", 17, 13, "invalid-value", &["priority 1001 is outside 0..1000"]);
    error_at(&m, f, "spec.ingress[0].ports[0].portNumber.port", 23, 26, "invalid-value", &["port 70000 is outside 1..65535"]);
    error_at(&m, f, "spec.ingress[0].ports[1].portRange.end", 24, 37, "invalid-value", &["end 8000 is below start 9000"]);
    error_at(&m, f, "spec.containers[0].ports[0].containerPort", 32, 29, "invalid-field", &["70000"]);
    for d in &m.diagnostics {
        assert_eq!(d.file, f);
    }
    assert!(m.objects.is_empty());
}

#[test]
fn bad_cidrs_and_exceptions_outside_the_block() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                       // 1
        "kind: NetworkPolicy",                                    // 2
        "metadata: {name: np, namespace: x}",                     // 3
        "spec:",                                                  // 4
        "  podSelector: {}",                                      // 5
        "  egress:",                                              // 6
        "  - to:",                                                // 7
        "    - ipBlock: {cidr: 10.0.0.0/33}",                     // 8
        "    - ipBlock: {cidr: x}",                               // 9
        "    - ipBlock:",                                         // 10
        "        cidr: 10.0.0.0/8",                               // 11
        "        except:",                                        // 12
        "        - 10.1.0.0/16",                                  // 13
        "        - 192.168.0.0/24",                               // 14
        "        - 10.0.0.0/8",                                   // 15
        "        - 10.2.0.0",                                     // 16
        "---",                                                    // 17
        "apiVersion: policy.networking.k8s.io/v1alpha1",          // 18
        "kind: AdminNetworkPolicy",                               // 19
        "metadata: {name: anp}",                                  // 20
        "spec:",                                                  // 21
        "  priority: 1",                                          // 22
        "  subject: {namespaces: {}}",                            // 23
        "  egress:",                                              // 24
        "  - action: Deny",                                       // 25
        "    to: [{networks: [10.0.0.0/8, 300.0.0.0/8]}]",        // 26
    ]);
    let m = load("cidr.yaml", &text);
    let f = "cidr.yaml";
    assert_eq!(errors(&m), 6, "{:#?}", m.diagnostics);
    error_at(&m, f, "spec.egress[0].to[0].ipBlock.cidr", 8, 23, "invalid-value", &["10.0.0.0/33", "prefix length 33 is over 32"]);
    error_at(&m, f, "spec.egress[0].to[1].ipBlock.cidr", 9, 23, "invalid-value", &["\"x\" is not a CIDR"]);
    error_at(&m, f, "spec.egress[0].to[2].ipBlock.except[1]", 14, 11, "invalid-value", &["192.168.0.0/24 is not inside cidr 10.0.0.0/8"]);
    error_at(&m, f, "spec.egress[0].to[2].ipBlock.except[2]", 15, 11, "invalid-value", &["10.0.0.0/8 is not inside cidr 10.0.0.0/8"]);
    error_at(&m, f, "spec.egress[0].to[2].ipBlock.except[3]", 16, 11, "invalid-value", &["\"10.2.0.0\" is not a CIDR"]);
    error_at(&m, f, "spec.egress[0].to[0].networks[1]", 26, 34, "invalid-value", &["300.0.0.0/8", "not an IP address"]);
    assert!(m.diagnostics.iter().all(|d| d.path != "spec.egress[0].to[2].ipBlock.except[0]"));
}

#[test]
fn bad_fqdn_patterns() {
    let text = lines(&[
        "apiVersion: palisade.dev/v1alpha1",                 // 1
        "kind: SecurityPolicy",                              // 2
        "metadata: {name: sp, namespace: x}",                // 3
        "spec:",                                             // 4
        "  podSelector: {}",                                 // 5
        "  egress:",                                         // 6
        "  - to:",                                           // 7
        "    - fqdn: a..example.com",                        // 8
        "    - fqdn: '*'",                                   // 9
        "    - fqdn: a.**.example.com",                      // 10
        "    - fqdn: bücher.example",                        // 11
        "    - fqdn: -a.example.com",                        // 12
        "    - fqdn: 'a b.example.com'",                     // 13
        "    - fqdn: '**.example.com'",                      // 14
        "  ingress:",                                        // 15
        "  - from:",                                         // 16
        "    - fqdn: example.com",                           // 17
        "---",                                               // 18
        "apiVersion: policy.networking.k8s.io/v1alpha1",     // 19
        "kind: AdminNetworkPolicy",                          // 20
        "metadata: {name: anp}",                             // 21
        "spec:",                                             // 22
        "  priority: 1",                                     // 23
        "  subject: {namespaces: {}}",                       // 24
        "  egress:",                                         // 25
        "  - action: Allow",                                 // 26
        "    to:",                                           // 27
        "    - domainNames: ['**.example.com', 'a.*.example.com', '*.example.com']", // 28
    ]);
    let m = load("fqdn.yaml", &text);
    let f = "fqdn.yaml";
    assert_eq!(errors(&m), 9, "{:#?}", m.diagnostics);
    error_at(&m, f, "spec.egress[0].to[0].fqdn", 8, 13, "invalid-value", &["empty label"]);
    error_at(&m, f, "spec.egress[0].to[1].fqdn", 9, 13, "invalid-value", &["matches every name"]);
    error_at(&m, f, "spec.egress[0].to[2].fqdn", 10, 13, "invalid-value", &["`**` is only allowed as the whole first label"]);
    error_at(&m, f, "spec.egress[0].to[3].fqdn", 11, 13, "invalid-value", &["non-ASCII", "punycode"]);
    error_at(&m, f, "spec.egress[0].to[4].fqdn", 12, 13, "invalid-value", &["may not start or end with '-'"]);
    error_at(&m, f, "spec.egress[0].to[5].fqdn", 13, 13, "invalid-value", &["invalid character ' '"]);
    error_at(&m, f, "spec.ingress[0].from[0].fqdn", 17, 13, "invalid-value", &["fqdn peers are for egress rules only"]);
    error_at(&m, f, "spec.egress[0].to[0].domainNames[0]", 28, 21, "invalid-value", &["**.example.com"]);
    error_at(&m, f, "spec.egress[0].to[0].domainNames[1]", 28, 39, "invalid-value", &["`*` only as the first label"]);
    // `**.example.com` (Palisade) and `*.example.com` (ANP) are fine.
    assert!(m.diagnostics.iter().all(|d| d.path != "spec.egress[0].to[6].fqdn"));
    assert!(m.diagnostics.iter().all(|d| d.path != "spec.egress[0].to[0].domainNames[2]"));
}

#[test]
fn invalid_label_selectors() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",                              // 1
        "kind: NetworkPolicy",                                           // 2
        "metadata: {name: np, namespace: x}",                            // 3
        "spec:",                                                         // 4
        "  podSelector:",                                                // 5
        "    matchExpressions:",                                         // 6
        "    - {key: app, operator: In}",                                // 7
        "    - {key: tier, operator: Exists, values: [web]}",            // 8
        "    - {key: -app, operator: NotIn, values: [a]}",               // 9
        "    - {key: app, operator: NotIn, values: []}",                 // 10
        "  ingress:",                                                    // 11
        "  - from:",                                                     // 12
        "    - namespaceSelector:",                                      // 13
        "        matchLabels: {team: 'red team'}",                       // 14
        "---",                                                           // 15
        "apiVersion: networking.k8s.io/v1",                              // 16
        "kind: NetworkPolicy",                                           // 17
        "metadata: {name: np2, namespace: x}",                           // 18
        "spec:",                                                         // 19
        "  podSelector:",                                                // 20
        "    matchExpressions:",                                         // 21
        "    - {key: app, operator: Equals, values: [a]}",               // 22
    ]);
    let m = load("selectors.yaml", &text);
    let f = "selectors.yaml";
    assert_eq!(errors(&m), 6, "{:#?}", m.diagnostics);
    // `values` is missing: the location is the requirement itself.
    error_at(&m, f, "spec.podSelector.matchExpressions[0].values", 7, 7, "invalid-value", &["operator In needs at least one value"]);
    error_at(&m, f, "spec.podSelector.matchExpressions[1].values", 8, 45, "invalid-value", &["operator Exists takes no values"]);
    error_at(&m, f, "spec.podSelector.matchExpressions[2].key", 9, 13, "invalid-value", &["label key \"-app\""]);
    error_at(&m, f, "spec.podSelector.matchExpressions[3].values", 10, 43, "invalid-value", &["operator NotIn needs at least one value"]);
    error_at(&m, f, "spec.ingress[0].from[0].namespaceSelector.matchLabels.team", 14, 29, "invalid-value", &["label value \"red team\""]);
    error_at(&m, f, "spec.podSelector.matchExpressions[0].operator", 22, 28, "invalid-field", &["unknown variant `Equals`", "`In`, `NotIn`, `Exists`, `DoesNotExist`"]);
}

#[test]
fn duplicate_objects_are_errors_at_the_second_definition() {
    let np = |name: &str, ns: &str| {
        lines(&[
            "apiVersion: networking.k8s.io/v1",
            "kind: NetworkPolicy",
            &format!("metadata: {{name: {name}, namespace: {ns}}}"),
            "spec: {podSelector: {}}",
        ])
    };
    let mut m = Manifests::new();
    m.add_file("a.yaml", &np("web", "x"));
    // Same name and namespace twice more (line 6 of b.yaml), then the same name elsewhere.
    let b = format!("{}---\n{}---\n{}", np("other", "x"), np("web", "x"), np("web", "y"));
    m.add_file("b.yaml", &b);
    // Same name, other kind: fine.
    m.add_file(
        "c.yaml",
        "apiVersion: palisade.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: web, namespace: x}\nspec: {podSelector: {}, ingress: []}\n",
    );
    assert_eq!(errors(&m), 1, "{:#?}", m.diagnostics);
    check(
        &m.diagnostics[0],
        Want {
            severity: Severity::Error,
            code: "duplicate-object",
            file: "b.yaml",
            line: 6,
            col: 1,
            path: "",
            words: &["duplicate NetworkPolicy x/web", "first defined at a.yaml:1"],
        },
    );
    assert_eq!(m.diagnostics[0].object, "NetworkPolicy x/web");
    let names: Vec<String> = m
        .objects
        .iter()
        .map(|o| o.object.display_name())
        .collect();
    assert_eq!(
        names,
        [
            "NetworkPolicy x/web",
            "NetworkPolicy x/other",
            "NetworkPolicy y/web",
            "SecurityPolicy x/web"
        ]
    );
}

#[test]
fn missing_api_version_or_kind_and_non_objects() {
    let text = lines(&[
        "kind: Namespace",           // 1
        "metadata: {name: a}",       // 2
        "---",                       // 3
        "# a comment",               // 4
        "apiVersion: v1",            // 5
        "metadata: {name: b}",       // 6
        "---",                       // 7
        "apiVersion: 1",             // 8
        "kind: Namespace",           // 9
        "---",                       // 10
        "- just",                    // 11
        "- a list",                  // 12
        "---",                       // 13
        "apiVersion: networking.k8s.io/v1beta1", // 14
        "kind: NetworkPolicy",       // 15
        "metadata: {name: np}",      // 16
        "spec: {podSelector: {}}",   // 17
    ]);
    let m = load("types.yaml", &text);
    let f = "types.yaml";
    assert_eq!(errors(&m), 5, "{:#?}", m.diagnostics);
    let ds: Vec<(&str, usize, usize, &str)> = m
        .diagnostics
        .iter()
        .map(|d| (d.code, d.line, d.col, d.path.as_str()))
        .collect();
    assert_eq!(
        ds,
        [
            ("missing-type", 1, 1, ""),
            ("missing-type", 5, 1, ""),
            ("missing-type", 8, 1, ""),
            ("not-an-object", 11, 1, ""),
            ("unsupported-api-version", 14, 1, "apiVersion"),
        ]
    );
    assert!(m.diagnostics[0].message.contains("`apiVersion`"));
    assert!(m.diagnostics[1].message.contains("`kind`"));
    assert!(m.diagnostics[2].message.contains("`apiVersion`"));
    assert!(m.diagnostics[3].message.contains("found a list"));
    assert!(m.diagnostics[4].message.contains("networking.k8s.io/v1beta1"));
    assert!(m.diagnostics[4].message.contains("expected \"networking.k8s.io/v1\""));
    assert!(m.diagnostics.iter().all(|d| d.file == f));
}

#[test]
fn unknown_kinds_are_notes_not_errors() {
    let text = lines(&[
        "apiVersion: apps/v1",                 // 1
        "kind: Deployment",                    // 2
        "metadata: {name: web, namespace: x}", // 3
        "spec: {replicas: 3}",                 // 4
        "---",                                 // 5
        "apiVersion: cilium.io/v2",            // 6
        "kind: CiliumNetworkPolicy",           // 7
        "metadata: {name: l7}",                // 8
        "---",                                 // 9
        "apiVersion: v1",                      // 10
        "kind: Namespace",                     // 11
        "metadata: {name: x}",                 // 12
    ]);
    let m = load("mixed.yaml", &text);
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    assert_eq!(m.diagnostics.len(), 2);
    check(
        &m.diagnostics[0],
        Want {
            severity: Severity::Note,
            code: "skipped-kind",
            file: "mixed.yaml",
            line: 1,
            col: 1,
            path: "",
            words: &["apps/v1 Deployment is not used by Palisade"],
        },
    );
    assert_eq!(m.diagnostics[0].object, "Deployment web");
    assert_eq!((m.diagnostics[1].severity, m.diagnostics[1].line), (Severity::Note, 6));
    assert!(m.diagnostics[1].message.contains("CiliumNetworkPolicy"));
    assert_eq!(m.objects.len(), 1);
}

#[test]
fn a_list_with_one_bad_item_keeps_the_good_ones() {
    let text = lines(&[
        "apiVersion: v1",                                       // 1
        "kind: List",                                           // 2
        "metadata: {resourceVersion: ''}",                      // 3
        "items:",                                               // 4
        "- apiVersion: v1",                                     // 5
        "  kind: Namespace",                                    // 6
        "  metadata: {name: x}",                                // 7
        "- apiVersion: networking.k8s.io/v1",                   // 8
        "  kind: NetworkPolicy",                                // 9
        "  metadata: {name: np, namespace: x}",                 // 10
        "  spec:",                                              // 11
        "    podSelector: {}",                                  // 12
        "    ingress:",                                         // 13
        "    - from:",                                          // 14
        "      - ipBlock: {cidr: 10.0.0.0/33}",                 // 15
        "- apiVersion: v1",                                     // 16
        "  kind: Pod",                                          // 17
        "  metadata: {name: p, namespace: x}",                  // 18
        "  status: {podIP: 10.0.0.1}",                          // 19
        "- kind: Pod",                                          // 20
        "  metadata: {name: q, namespace: x}",                  // 21
    ]);
    let m = load("list.yaml", &text);
    let f = "list.yaml";
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    error_at(&m, f, "items[1].spec.ingress[0].from[0].ipBlock.cidr", 15, 25, "invalid-value", &["prefix length 33"]);
    error_at(&m, f, "items[3]", 20, 3, "missing-type", &["`apiVersion`"]);
    let names: Vec<String> = m.objects.iter().map(|o| o.object.display_name()).collect();
    assert_eq!(names, ["Namespace x", "Pod x/p"]);
    assert_eq!(m.objects[1].origin.line, 16);
    // The good items make a usable snapshot.
    let e = Engine::compile(&Snapshot::from_manifests(&m));
    assert_eq!(e.pod_by_ip("10.0.0.1".parse().unwrap()), e.pod_by_key("x/p"));
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = lines(&[
        "apiVersion: v1",                                    // 1
        "kind: Namespace",                                   // 2
        "metadata: {name: x}",                               // 3
        "---",                                               // 4
        "apiVersion: networking.k8s.io/v1",                  // 5
        "kind: NetworkPolicy",                               // 6
        "metadata: {name: np, namespace: x}",                // 7
        "spec:",                                             // 8
        "  podSelector: {}",                                 // 9
        "  egress:",                                         // 10
        "  - to:",                                           // 11
        "    - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}", // 12
        "    ports:",                                        // 13
        "    - port: 0",                                     // 14
        "---",                                               // 15
        "apiVersion: policy.networking.k8s.io/v1alpha1",     // 16
        "kind: AdminNetworkPolicy",                          // 17
        "metadata: {name: anp}",                             // 18
        "spec: {priority: '5', subject: {namespaces: {}}}",  // 19
        "---",                                               // 20
        "apiVersion: palisade.dev/v1alpha1",                 // 21
        "kind: SecurityPolicy",                              // 22
        "metadata: {name: sp, namespace: x}",                // 23
        "spec: {podSelector: {}, egres: []}",                // 24
        "---",                                               // 25
        "apiVersion: apps/v1",                               // 26
        "kind: Deployment",                                  // 27
        "metadata: {name: d}",                               // 28
        "---",                                               // 29
        "apiVersion: policy.networking.k8s.io/v1alpha1",     // 30
        "kind: AdminNetworkPolicy",                          // 31
        "metadata: {name: anp2, namespace: x}",              // 32
        "spec: {priority: 5, subject: {namespaces: {}}}",    // 33
        "---",                                               // 34
        "apiVersion: v1",                                    // 35
        "kind: Pod",                                         // 36
        "metadata: {name: p, namespace: x}",                 // 37
    ]);
    let m = load("all.yaml", &text);
    let got: Vec<(Severity, usize, &str)> = m
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.line, d.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Severity::Error, 12, "spec.egress[0].to[0].ipBlock.except[0]"),
            (Severity::Error, 14, "spec.egress[0].ports[0].port"),
            (Severity::Error, 19, "spec.priority"),
            (Severity::Error, 24, "spec.egres"),
            (Severity::Note, 26, ""),
            (Severity::Warning, 32, "metadata.namespace"),
        ]
    );
    assert!(m.diagnostics.iter().all(|d| d.file == "all.yaml"));
    assert!(m.diagnostics[3].message.contains("unknown field `egres`"));
    assert!(m.diagnostics[5].message.contains("cluster scoped"));
    // The valid objects (and the one with only a warning) are read; the broken ones are not.
    let names: Vec<String> = m.objects.iter().map(|o| o.object.display_name()).collect();
    assert_eq!(names, ["Namespace x", "AdminNetworkPolicy anp2", "Pod x/p"]);
    let shown = m.diagnostics[0].to_string();
    assert!(
        shown.starts_with("all.yaml:12:") && shown.contains("error: spec.egress[0].to[0].ipBlock.except[0]: "),
        "{shown}"
    );
}

#[test]
fn empty_and_comment_only_files_are_fine() {
    for text in ["", "\n", "# nothing here\n", "---\n---\n", "--- # just a marker\n...\n"] {
        let m = load("empty.yaml", text);
        assert!(m.diagnostics.is_empty(), "{text:?}: {:#?}", m.diagnostics);
        assert!(m.objects.is_empty());
    }
}

/// A valid file of several kinds: the seed of the mutation property.
const VALID: &str = "apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: red}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers:
  - name: main
    ports: [{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: app, operator: In, values: [a]}]}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports: [{port: http}, {port: 8000, endPort: 8100}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: anp}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: red}}}
  ingress:
  - {name: r, action: Pass, from: [{namespaces: {}}], ports: [{namedPort: http}]}
  egress:
  - {action: Deny, to: [{networks: [192.168.0.0/16]}, {domainNames: ['*.example.com']}]}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: sp, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{fqdn: '**.models.test'}]
    ports: [{port: 443}]
    http: [{methods: [GET], path: {prefix: /v1}, headers: [{name: x-key, regex: 'k-.*'}]}]
";

/// Applies byte flips, insertions and deletions.
fn mutate(base: &str, muts: &[(u8, usize, u8)]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for &(op, pos, byte) in muts {
        let i = pos % (bytes.len() + 1);
        match op % 3 {
            0 if i < bytes.len() => bytes[i] ^= byte | 1,
            1 => bytes.insert(i, byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => bytes.push(byte),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads `text`; checks that every diagnostic points into it; when it is valid, compiles it
/// and asks every question of the engine.
fn exercise(text: &str) {
    let mut m = Manifests::new();
    m.add_file("fuzz.yaml", text);
    let n_lines = text.lines().count().max(1);
    for d in &m.diagnostics {
        assert_eq!(d.file, "fuzz.yaml");
        assert!(d.line >= 1 && d.line <= n_lines + 1, "{d} (of {n_lines} lines)");
        assert!(d.col >= 1, "{d}");
        assert!(!d.message.is_empty(), "{d}");
    }
    if m.has_errors() {
        return;
    }
    let e = Engine::compile(&Snapshot::from_manifests(&m));
    let pods = e.sorted_pods();
    let matrix = e.matrix(&pods, 80, Protocol::TCP);
    for (i, &from) in pods.iter().enumerate() {
        let flow = Flow {
            src: Endpoint::Pod(from),
            dst: Endpoint::Fqdn {
                name: "a.models.test",
                ip: Some("192.168.1.1".parse().unwrap()),
            },
            port: 443,
            protocol: Protocol::TCP,
            http: None,
        };
        assert_eq!(e.explain(&flow).verdict, e.verdict(&flow).action);
        for (j, &to) in pods.iter().enumerate() {
            let flow = Flow {
                src: Endpoint::Pod(from),
                dst: Endpoint::Pod(to),
                port: 80,
                protocol: Protocol::TCP,
                http: None,
            };
            assert_eq!(matrix.get(i, j), e.verdict(&flow).allowed());
        }
    }
}

#[test]
fn the_mutation_seed_is_valid_and_used() {
    let m = load("valid.yaml", VALID);
    assert!(m.diagnostics.is_empty(), "{:#?}", m.diagnostics);
    assert_eq!(m.objects.len(), 6);
    assert_eq!(mutate(VALID, &[]), VALID);
    assert_eq!(mutate("abc", &[(1, 0, b'x'), (2, 3, 0), (0, 0, 0)]), "yab");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn add_file_never_panics_on_arbitrary_text(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn add_file_never_panics_on_yaml_like_text(
        text in "[a-zA-Z0-9:{}\\[\\]\\-\\n ,'\"&*!|>#./%@`?~]{0,400}"
    ) {
        exercise(&text);
    }

    #[test]
    fn add_file_never_panics_on_mutated_policy(
        muts in proptest::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 1..8)
    ) {
        exercise(&mutate(VALID, &muts));
    }

    #[test]
    fn fqdn_parsing_never_panics(pattern in any::<String>(), name in any::<String>()) {
        for p in [FqdnPattern::parse(&pattern), FqdnPattern::parse_anp(&pattern)].into_iter().flatten() {
            let _ = p.matches(&name);
        }
    }

    #[test]
    fn exact_fqdn_patterns_match_themselves(pattern in "[a-zA-Z0-9*.\\-_]{0,70}") {
        if let Ok(p) = FqdnPattern::parse(&pattern) {
            let _ = p.matches(&pattern);
            if !p.is_wildcard() {
                prop_assert!(p.matches(&pattern));
                prop_assert!(p.matches(&pattern.to_ascii_uppercase()));
                let deeper = format!("x.{}", pattern);
                prop_assert!(!p.matches(&deeper));
            }
        }
        let _ = FqdnPattern::parse_anp(&pattern);
    }

    #[test]
    fn cidr_parsing_never_panics(text in any::<String>()) {
        let _ = text.parse::<Cidr>();
    }

    #[test]
    fn cidr_parsing_round_trips(text in "[0-9a-fA-F:./]{0,45}") {
        if let Ok(c) = text.parse::<Cidr>() {
            let again: Cidr = c.to_string().parse().unwrap();
            prop_assert_eq!(again, c);
        }
    }

    #[test]
    fn ipv4_prefixes_over_32_are_rejected(a: u8, b: u8, c: u8, d: u8, prefix in 0u32..200) {
        let s = format!("{a}.{b}.{c}.{d}/{prefix}");
        let parsed = s.parse::<Cidr>();
        prop_assert_eq!(parsed.is_ok(), prefix <= 32, "{}", s);
        if let Ok(cidr) = parsed {
            prop_assert!(cidr.contains(std::net::IpAddr::from([a, b, c, d])));
        }
    }
}

//! Whole objects: duplicates, missing type fields, unknown kinds, lists, and every
//! problem of a file at once.

use super::*;

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
    let b = format!(
        "{}---\n{}---\n{}",
        np("other", "x"),
        np("web", "x"),
        np("web", "y")
    );
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
    let names: Vec<String> = m.objects.iter().map(|o| o.object.display_name()).collect();
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
        "kind: Namespace",                       // 1
        "metadata: {name: a}",                   // 2
        "---",                                   // 3
        "# a comment",                           // 4
        "apiVersion: v1",                        // 5
        "metadata: {name: b}",                   // 6
        "---",                                   // 7
        "apiVersion: 1",                         // 8
        "kind: Namespace",                       // 9
        "---",                                   // 10
        "- just",                                // 11
        "- a list",                              // 12
        "---",                                   // 13
        "apiVersion: networking.k8s.io/v1beta1", // 14
        "kind: NetworkPolicy",                   // 15
        "metadata: {name: np}",                  // 16
        "spec: {podSelector: {}}",               // 17
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
    assert!(m.diagnostics[4]
        .message
        .contains("networking.k8s.io/v1beta1"));
    assert!(m.diagnostics[4]
        .message
        .contains("expected \"networking.k8s.io/v1\""));
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
    assert_eq!(
        (m.diagnostics[1].severity, m.diagnostics[1].line),
        (Severity::Note, 6)
    );
    assert!(m.diagnostics[1].message.contains("CiliumNetworkPolicy"));
    assert_eq!(m.objects.len(), 1);
}

#[test]
fn a_list_with_one_bad_item_keeps_the_good_ones() {
    let text = lines(&[
        "apiVersion: v1",                       // 1
        "kind: List",                           // 2
        "metadata: {resourceVersion: ''}",      // 3
        "items:",                               // 4
        "- apiVersion: v1",                     // 5
        "  kind: Namespace",                    // 6
        "  metadata: {name: x}",                // 7
        "- apiVersion: networking.k8s.io/v1",   // 8
        "  kind: NetworkPolicy",                // 9
        "  metadata: {name: np, namespace: x}", // 10
        "  spec:",                              // 11
        "    podSelector: {}",                  // 12
        "    ingress:",                         // 13
        "    - from:",                          // 14
        "      - ipBlock: {cidr: 10.0.0.0/33}", // 15
        "- apiVersion: v1",                     // 16
        "  kind: Pod",                          // 17
        "  metadata: {name: p, namespace: x}",  // 18
        "  status: {podIP: 10.0.0.1}",          // 19
        "- kind: Pod",                          // 20
        "  metadata: {name: q, namespace: x}",  // 21
    ]);
    let m = load("list.yaml", &text);
    let f = "list.yaml";
    assert_eq!(errors(&m), 2, "{:#?}", m.diagnostics);
    error_at(
        &m,
        f,
        "items[1].spec.ingress[0].from[0].ipBlock.cidr",
        15,
        25,
        "invalid-value",
        &["prefix length 33"],
    );
    error_at(&m, f, "items[3]", 20, 3, "missing-type", &["`apiVersion`"]);
    let names: Vec<String> = m.objects.iter().map(|o| o.object.display_name()).collect();
    assert_eq!(names, ["Namespace x", "Pod x/p"]);
    assert_eq!(m.objects[1].origin.line, 16);
    // The good items make a usable snapshot.
    let e = Engine::compile(&Snapshot::from_manifests(&m));
    assert_eq!(
        e.pod_by_ip("10.0.0.1".parse().unwrap()),
        e.pod_by_key("x/p")
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = lines(&[
        "apiVersion: v1",                                           // 1
        "kind: Namespace",                                          // 2
        "metadata: {name: x}",                                      // 3
        "---",                                                      // 4
        "apiVersion: networking.k8s.io/v1",                         // 5
        "kind: NetworkPolicy",                                      // 6
        "metadata: {name: np, namespace: x}",                       // 7
        "spec:",                                                    // 8
        "  podSelector: {}",                                        // 9
        "  egress:",                                                // 10
        "  - to:",                                                  // 11
        "    - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}", // 12
        "    ports:",                                               // 13
        "    - port: 0",                                            // 14
        "---",                                                      // 15
        "apiVersion: policy.networking.k8s.io/v1alpha1",            // 16
        "kind: AdminNetworkPolicy",                                 // 17
        "metadata: {name: anp}",                                    // 18
        "spec: {priority: '5', subject: {namespaces: {}}}",         // 19
        "---",                                                      // 20
        "apiVersion: palisade.dev/v1alpha1",                        // 21
        "kind: SecurityPolicy",                                     // 22
        "metadata: {name: sp, namespace: x}",                       // 23
        "spec: {podSelector: {}, egres: []}",                       // 24
        "---",                                                      // 25
        "apiVersion: apps/v1",                                      // 26
        "kind: Deployment",                                         // 27
        "metadata: {name: d}",                                      // 28
        "---",                                                      // 29
        "apiVersion: policy.networking.k8s.io/v1alpha1",            // 30
        "kind: AdminNetworkPolicy",                                 // 31
        "metadata: {name: anp2, namespace: x}",                     // 32
        "spec: {priority: 5, subject: {namespaces: {}}}",           // 33
        "---",                                                      // 34
        "apiVersion: v1",                                           // 35
        "kind: Pod",                                                // 36
        "metadata: {name: p, namespace: x}",                        // 37
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
            (
                Severity::Error,
                12,
                "spec.egress[0].to[0].ipBlock.except[0]"
            ),
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
        shown.starts_with("all.yaml:12:")
            && shown.contains("error: spec.egress[0].to[0].ipBlock.except[0]: "),
        "{shown}"
    );
}

#[test]
fn empty_and_comment_only_files_are_fine() {
    for text in [
        "",
        "\n",
        "# nothing here\n",
        "---\n---\n",
        "--- # just a marker\n...\n",
    ] {
        let m = load("empty.yaml", text);
        assert!(m.diagnostics.is_empty(), "{text:?}: {:#?}", m.diagnostics);
        assert!(m.objects.is_empty());
    }
}

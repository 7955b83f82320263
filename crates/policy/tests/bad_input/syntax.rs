//! YAML syntax errors, wrong types and unknown fields.

use super::*;

#[test]
fn yaml_syntax_errors_point_at_the_place_and_apply_nothing() {
    let text = lines(&[
        "apiVersion: v1",      // 1
        "kind: Namespace",     // 2
        "metadata: {name: a}", // 3
        "---",                 // 4
        "apiVersion: v1",      // 5
        "kind: Namespace",     // 6
        "metadata: name: b",   // 7
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
        "apiVersion: v1",       // 1
        "kind: Namespace",      // 2
        "metadata:",            // 3
        "  name: x",            // 4
        "  labels: {team: red", // 5
        "---",                  // 6
    ]);
    let m = load("unclosed.yaml", &text);
    assert_eq!(m.diagnostics.len(), 1);
    let d = &m.diagnostics[0];
    assert_eq!(
        (d.code, d.file.as_str(), d.line),
        ("yaml-syntax", "unclosed.yaml", 6)
    );
    assert!(
        d.message.contains("did not find expected ',' or '}'"),
        "{d}"
    );

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
    error_at(
        &m,
        f,
        "spec.priority",
        5,
        13,
        "invalid-field",
        &["expected an integer", "\"high\""],
    );
    error_at(
        &m,
        f,
        "spec.ingress[0].ports[0].port",
        15,
        13,
        "invalid-field",
        &["boolean `true`", "port number or a port name"],
    );
    error_at(
        &m,
        f,
        "spec.podSelector",
        21,
        16,
        "invalid-field",
        &["expected a mapping, found a list"],
    );
    error_at(
        &m,
        f,
        "metadata.labels.app",
        27,
        17,
        "invalid-field",
        &["expected a string, found integer 5"],
    );
    error_at(
        &m,
        f,
        "spec.policyTypes",
        34,
        16,
        "invalid-field",
        &["expected a list"],
    );
    assert_eq!(at(&m, "spec.priority").object, "AdminNetworkPolicy a");
}

#[test]
fn unknown_fields_are_errors_at_the_key() {
    let text = lines(&[
        "apiVersion: networking.k8s.io/v1",   // 1
        "kind: NetworkPolicy",                // 2
        "metadata: {name: np, namespace: x}", // 3
        "spec:",                              // 4
        "  podSelector: {}",                  // 5
        "  ingress:",                         // 6
        "  - form:",                          // 7
        "    - podSelector: {}",              // 8
        "---",                                // 9
        "apiVersion: v1",                     // 10
        "kind: Namespace",                    // 11
        "metadata:",                          // 12
        "  nmae: x",                          // 13
        "---",                                // 14
        "apiVersion: palisade.dev/v1alpha1",  // 15
        "kind: SecurityPolicy",               // 16
        "metadata: {name: sp, namespace: x}", // 17
        "spec:",                              // 18
        "  podSelector: {}",                  // 19
        "  egress:",                          // 20
        "  - to:",                            // 21
        "    - {fqdns: [example.com]}",       // 22
    ]);
    let m = load("unknown.yaml", &text);
    assert_eq!(errors(&m), 3, "{:#?}", m.diagnostics);
    let f = "unknown.yaml";
    error_at(
        &m,
        f,
        "spec.ingress[0].form",
        7,
        5,
        "invalid-field",
        &["unknown field `form`", "`from`"],
    );
    error_at(
        &m,
        f,
        "metadata.nmae",
        13,
        3,
        "invalid-field",
        &["unknown field `nmae`", "`name`"],
    );
    error_at(
        &m,
        f,
        "spec.egress[0].to[0].fqdns",
        22,
        8,
        "invalid-field",
        &["unknown field `fqdns`", "`fqdn`"],
    );
}

/// Found by `cargo fuzz run manifests` (`crates/policy/fuzz`): at the end of a file without
/// a final line break the YAML parser reported the line after the last, which no editor
/// shows. The error now points at the end of the last line.
#[test]
fn a_syntax_error_at_the_end_of_the_file_points_into_the_file() {
    for (text, line, col) in [
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a\n",
            4,
            1,
        ),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: a", 3, 19),
        ("apiVersion: v1\rkind: Namespace\rmetadata: [a", 3, 13),
        ("a: b\nn", 2, 2),
        // Two empty explicit keys: the second one's mark is the end of the input.
        ("?\r?", 2, 2),
        ("?\n?", 2, 2),
    ] {
        let m = load("eof.yaml", text);
        assert_eq!(m.diagnostics.len(), 1, "{text:?}: {:#?}", m.diagnostics);
        let d = &m.diagnostics[0];
        assert_eq!(d.code, "yaml-syntax", "{d}");
        assert_eq!((d.line, d.col), (line, col), "{text:?}: {d}");
    }
}

//! Property tests: nothing panics on arbitrary or mutated input, and every diagnostic
//! points into the file.

use super::*;
use palisade_policy::cidr::Cidr;
use palisade_policy::fqdn::FqdnPattern;
use palisade_policy::{Endpoint, Engine, Flow, Protocol};
use proptest::prelude::*;

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
  - {action: Allow, to: [{domainNames: ['*.example.com']}]}
  - {action: Deny, to: [{networks: [192.168.0.0/16]}]}
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

/// A lone CR where a space was (a mutation proptest found): YAML breaks the line there, so
/// the error at the end of the file is on a line `str::lines` does not count.
#[test]
fn a_lone_cr_breaks_a_line_as_yaml_reads_it() {
    assert_eq!(VALID.matches("http: [").count(), 1);
    exercise(&VALID.replace("http: [", "http:\r["));
}

/// Loads `text`; checks that every diagnostic points into it; when it is valid, compiles it
/// and asks every question of the engine.
fn exercise(text: &str) {
    let mut m = Manifests::new();
    m.add_file("fuzz.yaml", text);
    // Lines as YAML counts them: a lone CR breaks a line too (YAML 1.2 §5.4), which
    // `str::lines` does not count.
    let n_lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .count()
        .max(1);
    for d in &m.diagnostics {
        assert_eq!(d.file, "fuzz.yaml");
        assert!(
            d.line >= 1 && d.line <= n_lines + 1,
            "{d} (of {n_lines} lines)"
        );
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
            let printed = c.to_string();
            let again: Cidr = printed.parse().unwrap();
            prop_assert_eq!(again, c);
            let network: std::net::IpAddr = printed.split_once('/').unwrap().0.parse().unwrap();
            prop_assert!(c.contains(network), "{} does not contain its address", printed);
        }
    }

    /// `::ffff:a.b.c.d/96+n` is `a.b.c.d/n` (found by `cargo fuzz run patterns`).
    #[test]
    fn ipv4_mapped_blocks_are_ipv4_blocks(a: u8, b: u8, c: u8, d: u8, prefix in 96u32..=128) {
        let mapped: Cidr = format!("::ffff:{a}.{b}.{c}.{d}/{prefix}").parse().unwrap();
        let plain: Cidr = format!("{a}.{b}.{c}.{d}/{}", prefix - 96).parse().unwrap();
        prop_assert_eq!(mapped, plain);
        prop_assert!(mapped.contains(std::net::IpAddr::from([a, b, c, d])));
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

//! The writer against `serde_json`: byte-identical output for every shape serde can
//! produce, the same errors, and generated events.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use proptest::prelude::*;
use serde::{Serialize, Serializer};

use super::{write, JsonError};
use crate::*;

/// Asserts our output equals `serde_json::to_vec`, and returns it.
fn same_as_serde_json<T: Serialize + ?Sized + fmt::Debug>(value: &T) -> String {
    let mut ours = Vec::new();
    write(&mut ours, value).unwrap();
    let theirs = serde_json::to_vec(value).unwrap();
    let ours = String::from_utf8(ours).unwrap();
    assert_eq!(ours, String::from_utf8(theirs).unwrap(), "{value:?}");
    ours
}

/// Asserts both writers refuse `value`, and ours leaves the buffer as it was.
fn both_refuse<T: Serialize + ?Sized>(value: &T) -> JsonError {
    assert!(serde_json::to_vec(value).is_err());
    let mut out = b"kept".to_vec();
    let err = write(&mut out, value).unwrap_err();
    assert_eq!(out, b"kept");
    err
}

#[derive(Debug, Serialize)]
struct Unit;

#[derive(Debug, Serialize)]
struct Newtype(u8);

#[derive(Debug, Serialize)]
struct Pair(i32, &'static str);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    a_field: u8,
    #[serde(rename = "we\"ird\nkey")]
    weird: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    none: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    list: Vec<u8>,
}

#[derive(Debug, Serialize)]
enum External {
    Unit,
    #[serde(rename = "re-named")]
    Renamed,
    Newtype(u8),
    Tuple(u8, &'static str),
    EmptyTuple(),
    Struct {
        x: u8,
        y: Option<bool>,
    },
    EmptyStruct {},
}

#[derive(Debug, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
enum Internal {
    Unit,
    Struct { value: u32 },
    Newtype(Fields),
}

#[derive(Debug, Serialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u8),
    B { s: String },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Untagged {
    Num(u64),
    Text(String),
}

#[derive(Debug, Serialize)]
struct Flattened {
    id: u8,
    #[serde(flatten)]
    extra: BTreeMap<String, u8>,
}

/// Bytes through `serialize_bytes` (serde's `&[u8]` goes through `serialize_seq`).
#[derive(Debug)]
struct Bytes(&'static [u8]);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A map with keys of any type, in the given order.
#[derive(Debug)]
struct Pairs<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Pairs<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A `Display` that writes in pieces, some needing escapes, through `collect_str`.
#[derive(Debug)]
struct Pieces(&'static [&'static str]);

impl fmt::Display for Pieces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|p| f.write_str(p))
    }
}

impl Serialize for Pieces {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `Display` that fails.
#[derive(Debug)]
struct Broken;

impl fmt::Display for Broken {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}

impl Serialize for Broken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[test]
fn scalars_match_serde_json() {
    same_as_serde_json(&true);
    same_as_serde_json(&false);
    same_as_serde_json(&());
    same_as_serde_json(&Unit);
    same_as_serde_json(&Newtype(7));
    same_as_serde_json(&Option::<u8>::None);
    same_as_serde_json(&Some("x"));
    for c in ['a', '"', '\\', '\n', '\u{0}', 'é', '😀'] {
        same_as_serde_json(&c);
    }
    same_as_serde_json(&[i8::MIN, 0, i8::MAX]);
    same_as_serde_json(&[i16::MIN, -1, i16::MAX]);
    same_as_serde_json(&[i32::MIN, -10, i32::MAX]);
    same_as_serde_json(&[i64::MIN, -100, i64::MAX]);
    same_as_serde_json(&[i128::MIN, 0, i128::MAX]);
    same_as_serde_json(&[u8::MIN, 9, 10, u8::MAX]);
    same_as_serde_json(&[u16::MIN, 99, 100, u16::MAX]);
    same_as_serde_json(&[u32::MIN, 999_999, u32::MAX]);
    same_as_serde_json(&[u64::MIN, 1_000_000_000_000, u64::MAX]);
    same_as_serde_json(&[u128::MIN, u128::MAX]);
}

#[test]
fn floats_match_serde_json_and_non_finite_is_null() {
    let f64s = [
        0.0,
        -0.0,
        0.1,
        3.12,
        1.0,
        -2.5,
        1e300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    assert_eq!(
        same_as_serde_json(&f64s[10..]),
        "[null,null,null]",
        "NaN and infinities are null"
    );
    for v in f64s {
        same_as_serde_json(&v);
        same_as_serde_json(&(v as f32));
    }
    same_as_serde_json(&Centi(312));
}

#[test]
fn sequences_and_tuples_match_serde_json() {
    same_as_serde_json(&Vec::<u8>::new());
    same_as_serde_json(&vec!["a", "b\"", ""]);
    same_as_serde_json(&vec![Vec::<u8>::new(), vec![1], vec![2, 3]]);
    same_as_serde_json(&(1u8, "two", 3.5f64, None::<u8>));
    same_as_serde_json(&Pair(-4, "x"));
    same_as_serde_json(&[0u8; 0]);
    // Unknown length: serde_json opens without closing at once.
    same_as_serde_json(&std::collections::BTreeSet::from([3u8, 1, 2]));
    assert_eq!(same_as_serde_json(&Bytes(b"\x00\x7f\xff")), "[0,127,255]");
    assert_eq!(same_as_serde_json(&Bytes(b"")), "[]");
}

#[test]
fn structs_and_attributes_match_serde_json() {
    let text = same_as_serde_json(&Fields {
        a_field: 1,
        weird: true,
        skipped: None,
        none: None,
        list: vec![],
    });
    assert_eq!(text, r#"{"aField":1,"we\"ird\nkey":true,"none":null}"#);
    same_as_serde_json(&Fields {
        a_field: 2,
        weird: false,
        skipped: Some(3),
        none: Some(4),
        list: vec![5, 6],
    });
    same_as_serde_json(&Flattened {
        id: 1,
        extra: BTreeMap::from([("k".into(), 2), ("\u{1}".into(), 3)]),
    });
}

#[test]
fn every_enum_representation_matches_serde_json() {
    let external = [
        External::Unit,
        External::Renamed,
        External::Newtype(1),
        External::Tuple(2, "t"),
        External::EmptyTuple(),
        External::Struct { x: 3, y: None },
        External::EmptyStruct {},
    ];
    for v in &external {
        same_as_serde_json(v);
    }
    assert_eq!(
        same_as_serde_json(&external[..4]),
        r#"["Unit","re-named",{"Newtype":1},{"Tuple":[2,"t"]}]"#
    );
    same_as_serde_json(&Internal::Unit);
    same_as_serde_json(&Internal::Struct { value: 9 });
    same_as_serde_json(&Internal::Newtype(Fields {
        a_field: 0,
        weird: true,
        skipped: Some(1),
        none: None,
        list: vec![1],
    }));
    same_as_serde_json(&Adjacent::A(1));
    same_as_serde_json(&Adjacent::B { s: "\"".into() });
    same_as_serde_json(&Untagged::Num(1));
    same_as_serde_json(&Untagged::Text("t".into()));
    for v in [Verdict::Allow, Verdict::Deny, Verdict::Audit] {
        same_as_serde_json(&v);
    }
    for v in [HttpVersion::Http10, HttpVersion::Http2] {
        same_as_serde_json(&v);
    }
    same_as_serde_json(&AlertKind::PromptInjectionCampaign);
}

#[test]
fn maps_with_stringified_keys_match_serde_json() {
    same_as_serde_json(&BTreeMap::<String, String>::new());
    same_as_serde_json(&BTreeMap::from([("b", "2"), ("a\"", "1"), ("", "")]));
    same_as_serde_json(&HashMap::from([("only".to_string(), vec![1u8])]));
    assert_eq!(
        same_as_serde_json(&BTreeMap::from([(-1i64, 'x'), (20, 'y')])),
        r#"{"-1":"x","20":"y"}"#
    );
    same_as_serde_json(&BTreeMap::from([(u128::MAX, 1u8), (0, 2)]));
    same_as_serde_json(&BTreeMap::from([(i8::MIN, ()), (0, ())]));
    same_as_serde_json(&BTreeMap::from([(true, 1u8), (false, 0)]));
    same_as_serde_json(&BTreeMap::from([('"', 1u8), ('é', 2)]));
    same_as_serde_json(&Pairs(vec![(Verdict::Deny, 1u8)]));
    same_as_serde_json(&BTreeMap::from([(Some("k"), 1u8)]));
    same_as_serde_json(&Pairs(vec![(Newtype(5), "n")]));
    same_as_serde_json(&Pairs(vec![(1.5f64, 1u8), (-0.0, 2)]));
    same_as_serde_json(&Pairs(vec![(2.5f32, 1u8)]));
    same_as_serde_json(&Pairs(vec![(Pieces(&["a", "\"b"]), 1u8)]));
    same_as_serde_json(&Pairs(vec![(Timestamp(0), 1u8)]));
}

#[test]
fn unsupported_map_keys_are_errors_like_serde_json() {
    let key_must_be_a_string = [
        both_refuse(&Pairs(vec![((), 1u8)])),
        both_refuse(&Pairs(vec![(None::<u8>, 1u8)])),
        both_refuse(&Pairs(vec![(Unit, 1u8)])),
        both_refuse(&Pairs(vec![(vec![1u8], 1u8)])),
        both_refuse(&Pairs(vec![((1u8, 2u8), 1u8)])),
        both_refuse(&Pairs(vec![(Pair(1, "x"), 1u8)])),
        both_refuse(&Pairs(vec![(External::Newtype(1), 1u8)])),
        both_refuse(&Pairs(vec![(External::Tuple(1, "x"), 1u8)])),
        both_refuse(&Pairs(vec![(External::Struct { x: 1, y: None }, 1u8)])),
        both_refuse(&Pairs(vec![(BTreeMap::from([(1u8, 1u8)]), 1u8)])),
        both_refuse(&Pairs(vec![(Bytes(b"k"), 1u8)])),
        both_refuse(&Pairs(vec![(
            Fields {
                a_field: 0,
                weird: false,
                skipped: None,
                none: None,
                list: vec![],
            },
            1u8,
        )])),
    ];
    for err in key_must_be_a_string {
        assert_eq!(err, JsonError::KeyMustBeAString);
        assert_eq!(err.to_string(), "key must be a string");
    }
    for key in [f64::NAN, f64::INFINITY] {
        let err = both_refuse(&Pairs(vec![(key, 1u8)]));
        assert_eq!(err, JsonError::FloatKeyMustBeFinite);
        assert_eq!(
            both_refuse(&Pairs(vec![(key as f32, 1u8)])),
            JsonError::FloatKeyMustBeFinite
        );
    }
    // Nested: the error surfaces from deep inside, and nothing is left written.
    let nested = vec![Some(Pairs(vec![((), 1u8)]))];
    assert_eq!(both_refuse(&nested), JsonError::KeyMustBeAString);
}

#[test]
fn collect_str_escapes_each_piece_without_a_temporary_string() {
    let text = same_as_serde_json(&Pieces(&["a\"", "", "b\\", "\u{1}c", "0123456789"]));
    assert_eq!(text, r#""a\"b\\\u0001c0123456789""#);
    same_as_serde_json(&Timestamp(1_795_000_000_123_456));
    same_as_serde_json(&Timestamp(-62_167_219_200_000_001));
    same_as_serde_json(&new_id());
    // (serde_json panics here: "there should be an error"; we return one.)
    let mut out = Vec::new();
    assert_eq!(write(&mut out, &Broken), Err(JsonError::Format));
    assert!(out.is_empty());
}

#[test]
fn custom_errors_from_serialize_impls_pass_through() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no can do"))
        }
    }
    let mut out = b"[".to_vec();
    assert_eq!(
        write(&mut out, &(1u8, Fails)),
        Err(JsonError::Custom("no can do".into()))
    );
    assert_eq!(out, b"[");
}

/// The HTTP event the egress gateway writes, as in the benchmark.
const EGRESS_HTTP_LINE: &str = include_str!("../../benches/egress_http_event.json");

#[test]
fn egress_http_event_is_written_exactly() {
    let line = EGRESS_HTTP_LINE.trim_end();
    let e = Event::from_json_line(line).unwrap();
    assert_eq!(e.to_json(), line);
    assert_eq!(same_as_serde_json(&e), line);
    let mut out = b"previous\n".to_vec();
    e.write_json_line(&mut out);
    assert_eq!(out, format!("previous\n{line}\n").as_bytes());
}

/// Strings rich in what JSON escapes, plus arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('/'),
        1 => (0u8..0x20).prop_map(char::from),
        1 => Just('\u{7f}'),
        2 => any::<char>(),
    ];
    prop_oneof![
        4 => proptest::collection::vec(ch, 0..40).prop_map(String::from_iter),
        1 => any::<String>(),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let kind = prop_oneof![
        Just(EndpointKind::Pod),
        Just(EndpointKind::Node),
        Just(EndpointKind::External),
        Just(EndpointKind::Fqdn),
    ];
    (
        kind,
        (opt_text(), opt_text(), opt_text()),
        proptest::option::of(ip()),
        any::<Option<u16>>(),
        opt_text(),
        proptest::collection::btree_map(text(), text(), 0..4),
        opt_text(),
    )
        .prop_map(
            |(kind, (namespace, name, workload), ip, port, fqdn, labels, service_account)| {
                Endpoint {
                    kind,
                    namespace,
                    name,
                    workload,
                    ip,
                    port,
                    fqdn,
                    labels,
                    service_account,
                }
            },
        )
}

fn policy() -> impl Strategy<Value = PolicyRef> {
    (
        text(),
        opt_text(),
        text(),
        opt_text(),
        opt_text(),
        opt_text(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(kind, namespace, name, rule, stage, mode, federation_revision)| PolicyRef {
                federation_revision,
                kind,
                namespace,
                name,
                rule,
                stage,
                mode,
            },
        )
}

fn flow() -> impl Strategy<Value = FlowInfo> {
    let state = prop_oneof![
        Just(FlowState::New),
        Just(FlowState::End),
        Just(FlowState::Denied)
    ];
    (state, any::<[Option<u64>; 4]>()).prop_map(|(state, [sent, received, packets, ms])| FlowInfo {
        state,
        bytes_sent: sent,
        bytes_received: received,
        packets,
        duration_ms: ms,
    })
}

fn dns() -> impl Strategy<Value = DnsInfo> {
    let features = (any::<u8>(), any::<u8>(), any::<u16>(), 0u32..100_000).prop_map(
        |(labels, longest_label, length, centi)| DnsFeatures {
            labels,
            longest_label,
            length,
            entropy: Centi(centi),
        },
    );
    (
        text(),
        (opt_text(), opt_text()),
        proptest::option::of(proptest::collection::vec(text(), 0..4)),
        any::<Option<u32>>(),
        any::<Option<u64>>(),
        proptest::option::of(features),
    )
        .prop_map(
            |(query, (qtype, rcode), answers, ttl, latency_us, features)| DnsInfo {
                query,
                qtype,
                rcode,
                answers,
                ttl,
                latency_us,
                features,
            },
        )
}

fn detection() -> impl Strategy<Value = Detection> {
    let action = prop_oneof![
        Just(DetectionAction::Block),
        Just(DetectionAction::Redact),
        Just(DetectionAction::Flag),
        Just(DetectionAction::Log),
    ];
    // Decimal scores: serde_json reads these back exactly (arbitrary floats are covered
    // for byte equality by `arbitrary_floats_match_serde_json`).
    let score = proptest::option::of((-100_000i32..100_000).prop_map(|v| f64::from(v) / 8.0));
    (
        text(),
        action,
        score,
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(detector, action, score, rules)| Detection {
            detector,
            action,
            score,
            rules,
        })
}

fn ai() -> impl Strategy<Value = AiInfo> {
    let transfer = proptest::option::of(prop_oneof![
        Just(Transfer::Upload),
        Just(Transfer::Download)
    ]);
    (
        (opt_text(), opt_text(), opt_text()),
        any::<[Option<u64>; 2]>(),
        transfer,
    )
        .prop_map(
            |((provider, model, operation), [prompt_tokens, completion_tokens], transfer)| AiInfo {
                provider,
                model,
                operation,
                prompt_tokens,
                completion_tokens,
                transfer,
            },
        )
}

fn http() -> impl Strategy<Value = HttpInfo> {
    let tls = proptest::option::of(prop_oneof![
        Just(TlsMode::Intercepted),
        Just(TlsMode::Passthrough),
        Just(TlsMode::None),
    ]);
    let version = proptest::option::of(prop_oneof![
        Just(HttpVersion::Http10),
        Just(HttpVersion::Http11),
        Just(HttpVersion::Http2),
        Just(HttpVersion::Http3),
    ]);
    (
        (opt_text(), opt_text(), opt_text()),
        any::<Option<u16>>(),
        any::<[Option<u64>; 3]>(),
        (opt_text(), opt_text()),
        tls,
        version,
        proptest::option::of(ai()),
        proptest::collection::vec(detection(), 0..3),
        opt_text(),
        (
            proptest::option::of(client_certificate().prop_map(Box::new)),
            any::<Option<u64>>(),
        ),
    )
        .prop_map(
            |(
                (method, host, path),
                status,
                [bytes_in, bytes_out, duration_ms],
                (consumer, route),
                tls,
                version,
                ai,
                detections,
                reason,
                (client_certificate, suppressed),
            )| HttpInfo {
                method,
                host,
                path,
                status,
                bytes_in,
                bytes_out,
                duration_ms,
                consumer,
                route,
                tls,
                version,
                ai,
                detections,
                reason,
                client_certificate,
                suppressed,
            },
        )
}

fn client_certificate() -> impl Strategy<Value = ClientCertificate> {
    (
        opt_text(),
        opt_text(),
        opt_text(),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(subject, issuer, serial, names)| ClientCertificate {
            subject,
            issuer,
            serial,
            names,
        })
}

fn alert() -> impl Strategy<Value = AlertInfo> {
    let kind = prop_oneof![
        Just(AlertKind::NewDestination),
        Just(AlertKind::EgressVolume),
        Just(AlertKind::DnsTunnel),
        Just(AlertKind::LateralMovement),
        Just(AlertKind::InferenceAbuse),
        Just(AlertKind::PromptInjectionCampaign),
    ];
    let severity = prop_oneof![
        Just(Severity::Low),
        Just(Severity::Medium),
        Just(Severity::High),
        Just(Severity::Critical),
    ];
    (
        kind,
        severity,
        text(),
        text(),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(kind, severity, subject, summary, evidence)| AlertInfo {
            kind,
            severity,
            subject,
            summary,
            evidence,
        })
}

fn event() -> impl Strategy<Value = Event> {
    let body = prop_oneof![
        flow().prop_map(EventBody::Flow),
        dns().prop_map(EventBody::Dns),
        http().prop_map(EventBody::Http),
        alert().prop_map(EventBody::Alert),
    ];
    let protocol = proptest::option::of(prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp),
    ]);
    let verdict = proptest::option::of(prop_oneof![
        Just(Verdict::Allow),
        Just(Verdict::Deny),
        Just(Verdict::Audit),
    ]);
    (
        text(),
        -10_000_000_000_000_000i64..250_000_000_000_000_000,
        (opt_text(), opt_text()),
        (
            proptest::option::of(endpoint()),
            proptest::option::of(endpoint()),
        ),
        protocol,
        verdict,
        proptest::option::of(policy()),
        body,
    )
        .prop_map(
            |(
                id,
                micros,
                (cluster, node),
                (source, destination),
                protocol,
                verdict,
                policy,
                body,
            )| {
                Event {
                    id,
                    time: Timestamp(micros),
                    cluster,
                    node,
                    source,
                    destination,
                    protocol,
                    verdict,
                    policy,
                    body,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn generated_events_are_byte_identical_to_serde_json_and_read_back(e in event()) {
        let json = e.to_json();
        prop_assert_eq!(&json, &serde_json::to_string(&e).unwrap());
        let mut line = Vec::new();
        e.write_json_line(&mut line);
        prop_assert_eq!(line, format!("{json}\n").into_bytes());
        let back = Event::from_json_line(&json).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn arbitrary_strings_are_escaped_like_serde_json(s in text(), t in any::<String>()) {
        same_as_serde_json(&s);
        same_as_serde_json(&t);
        same_as_serde_json(&BTreeMap::from([(s.clone(), t.clone())]));
    }

    #[test]
    fn arbitrary_floats_match_serde_json(v in any::<f64>(), w in any::<f32>()) {
        same_as_serde_json(&v);
        same_as_serde_json(&w);
        same_as_serde_json(&Detection {
            detector: "d".into(),
            action: DetectionAction::Flag,
            score: Some(v),
            rules: vec![],
        });
    }
}

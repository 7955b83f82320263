//! The JSON contract of EVENTS.md: exact field names, round trips, rejects, and no panics
//! on arbitrary input.

use palisade_events::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const EXAMPLE: &str = r#"{
  "id": "01JDX6Q5X9M4T8J2W3E5R7Y9K0",
  "time": "2026-11-26T16:00:00.123456Z",
  "type": "flow",
  "cluster": "default",
  "node": "node-1",
  "source":      { "kind": "pod", "namespace": "training", "name": "trainer-0",
                   "workload": "training/trainer", "ip": "10.0.1.5",
                   "labels": { "app": "trainer" }, "serviceAccount": "trainer" },
  "destination": { "kind": "external", "ip": "203.0.113.7", "port": 443,
                   "fqdn": "huggingface.co" },
  "protocol": "TCP",
  "verdict": "allow",
  "policy": { "kind": "SecurityPolicy", "namespace": "training", "name": "allow-hub",
              "rule": "egress[0]", "stage": "namespace", "mode": "Enforce" },
  "flow": { "state": "end", "bytesSent": 1234, "bytesReceived": 5678, "packets": 12,
            "durationMs": 1500 }
}"#;

fn one_line(s: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<Value>(s).unwrap()).unwrap()
}

#[test]
fn spec_example_round_trips_exactly() {
    let e = Event::from_json_line(&one_line(EXAMPLE)).unwrap();
    assert_eq!(e.event_type(), EventType::Flow);
    assert_eq!(
        e.time.as_micros(),
        parse_rfc3339("2026-11-26T16:00:00.123456Z").unwrap()
    );
    let src = e.source.as_ref().unwrap();
    assert_eq!(src.workload.as_deref(), Some("training/trainer"));
    assert_eq!(src.service_account.as_deref(), Some("trainer"));
    assert_eq!(src.display_name(), "training/trainer-0");
    assert_eq!(
        e.destination.as_ref().unwrap().display_name(),
        "huggingface.co"
    );
    assert_eq!(e.protocol, Some(Protocol::Tcp));
    assert_eq!(e.verdict, Some(Verdict::Allow));
    let EventBody::Flow(flow) = &e.body else {
        panic!("not a flow")
    };
    assert_eq!(
        (flow.state, flow.bytes_sent, flow.duration_ms),
        (FlowState::End, Some(1234), Some(1500))
    );
    let expected: Value = serde_json::from_str(EXAMPLE).unwrap();
    let written: Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(written, expected);
    // Field order follows the schema: common fields first, then the body.
    let text = e.to_json();
    assert!(text.starts_with(
        r#"{"id":"01JDX6Q5X9M4T8J2W3E5R7Y9K0","time":"2026-11-26T16:00:00.123456Z","type":"flow","#
    ));
    assert!(text.ends_with(r#""flow":{"state":"end","bytesSent":1234,"bytesReceived":5678,"packets":12,"durationMs":1500}}"#));
}

#[test]
fn absent_fields_are_omitted() {
    let body = EventBody::Dns(DnsInfo {
        query: "example.com".into(),
        ..Default::default()
    });
    let e = Event::new("x", Timestamp(0), body);
    assert_eq!(
        e.to_json(),
        r#"{"id":"x","time":"1970-01-01T00:00:00.000000Z","type":"dns","dns":{"query":"example.com"}}"#
    );
    let mut line = Vec::new();
    e.write_json_line(&mut line);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(
        Event::from_json_line(std::str::from_utf8(&line).unwrap()).unwrap(),
        e
    );
}

#[test]
fn every_type_round_trips() {
    let http = json!({"id": "h", "time": "2026-01-01T00:00:00.000001Z", "type": "http",
        "source": {"kind": "pod", "namespace": "ml", "name": "app-1", "workload": "ml/app"},
        "destination": {"kind": "fqdn", "fqdn": "api.openai.com", "port": 443},
        "protocol": "TCP", "verdict": "deny",
        "http": {"method": "POST", "host": "api.openai.com", "path": "/v1/chat/completions",
            "status": 403, "bytesIn": 2048, "bytesOut": 120, "durationMs": 35,
            "consumer": "team-a", "route": "openai", "tls": "intercepted",
            "ai": {"provider": "openai", "model": "gpt-4o", "operation": "chat",
                   "promptTokens": 512, "completionTokens": 0, "transfer": "upload"},
            "detections": [{"detector": "dlp.aws-keys", "action": "block", "score": 0.98,
                            "rules": ["aws-access-key"]},
                           {"detector": "crs", "action": "log"}]}});
    let dns = json!({"id": "d", "time": "2026-01-01T00:00:00.000000Z", "type": "dns",
        "cluster": "c1", "node": "n1", "protocol": "UDP", "verdict": "audit",
        "policy": {"kind": "AdminPolicy", "name": "no-tunnels", "stage": "admin"},
        "dns": {"query": "x.example.com", "qtype": "TXT", "rcode": "NXDOMAIN", "answers": [],
                "ttl": 30, "latencyUs": 812}});
    let alert = json!({"id": "a", "time": "2026-01-01T00:00:00.000000Z", "type": "alert",
        "alert": {"kind": "prompt-injection-campaign", "severity": "critical",
                  "subject": "consumer:team-a", "summary": "Twelve injection attempts.",
                  "evidence": ["h", "d"]}});
    for v in [http, dns, alert] {
        let e = Event::from_json_line(&v.to_string()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&e.to_json()).unwrap(), v);
        assert_eq!(serde_json::from_str::<Event>(&e.to_json()).unwrap(), e);
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let line = r#"{"id":"1","time":"2026-01-01T00:00:00Z","type":"flow","future":1,
        "flow":{"state":"new","newCounter":7}}"#;
    let e = Event::from_json_line(line).unwrap();
    assert_eq!(e.event_type(), EventType::Flow);
}

#[test]
fn rejects_with_specific_errors() {
    let base = r#""id":"1","time":"2026-01-01T00:00:00Z""#;
    let cases = [
        ("", "empty"),
        ("   \n", "empty"),
        ("{", "json"),
        (r#"{"type":"flow","flow":{"state":"new"}}"#, "json"),
        (&format!(r#"{{{base},"type":"flow"}}"#), "missing_body"),
        (
            &format!(r#"{{{base},"type":"dns","flow":{{"state":"new"}}}}"#),
            "extra_body",
        ),
        (
            &format!(r#"{{{base},"type":"flow","flow":{{"state":"new"}},"dns":{{"query":"a"}}}}"#),
            "extra_body",
        ),
        (
            &format!(r#"{{{base},"type":"tcp","flow":{{"state":"new"}}}}"#),
            "json",
        ),
        (
            r#"{"id":"1","time":"yesterday","type":"flow","flow":{"state":"new"}}"#,
            "json",
        ),
        (
            &format!(r#"{{{base},"type":"flow","flow":{{"state":"new"}},"verdict":"maybe"}}"#),
            "json",
        ),
        (
            &format!(
                r#"{{{base},"type":"flow","flow":{{"state":"new"}},"destination":{{"kind":"pod","port":70000}}}}"#
            ),
            "json",
        ),
    ];
    for (line, label) in cases {
        let err = Event::from_json_line(line).unwrap_err();
        assert_eq!(err.label(), label, "{line}: {err}");
    }
    let err = Event::from_json_line(&format!(r#"{{{base},"type":"flow"}}"#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"event has type "flow" but no "flow" object"#
    );
    assert_eq!("deny".parse::<Verdict>().unwrap(), Verdict::Deny);
    assert_eq!("alert".parse::<EventType>().unwrap(), EventType::Alert);
    assert_eq!(
        "x".parse::<EventType>().unwrap_err().label(),
        "unknown_value"
    );
}

#[test]
fn every_truncation_and_byte_flip_of_the_example_is_handled() {
    let line = one_line(EXAMPLE);
    let bytes = line.as_bytes();
    for cut in 0..bytes.len() {
        let _ = Event::from_json_line(&String::from_utf8_lossy(&bytes[..cut]));
    }
    for i in 0..bytes.len() {
        for b in [b'"', b'{', b'}', b'0', b'\\', b'x', b' ', 0xff] {
            let mut m = bytes.to_vec();
            m[i] = b;
            let _ = Event::from_json_line(&String::from_utf8_lossy(&m));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = Event::from_json_line(&s);
    }

    #[test]
    fn mutated_lines_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = one_line(EXAMPLE).into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = Event::from_json_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn generated_events_round_trip(
        id in "[0-9A-Z]{26}",
        micros in -10_000_000_000_000_000i64..250_000_000_000_000_000,
        ns in "[a-z]{1,8}", name in "\\PC{0,12}", port in any::<u16>(),
        bytes_sent in any::<Option<u64>>(), status in any::<Option<u16>>(),
        is_http in any::<bool>(), ip in any::<[u8; 4]>(),
    ) {
        let body = if is_http {
            EventBody::Http(HttpInfo { status, path: Some(name.clone()), ..Default::default() })
        } else {
            EventBody::Flow(FlowInfo { state: FlowState::New, bytes_sent, bytes_received: None,
                packets: None, duration_ms: None })
        };
        let mut e = Event::new(id, Timestamp(micros), body);
        e.source = Some(Endpoint::pod(ns, name));
        let mut dst = Endpoint::external(std::net::IpAddr::from(ip));
        dst.port = Some(port);
        e.destination = Some(dst);
        e.verdict = Some(Verdict::Deny);
        let back = Event::from_json_line(&e.to_json()).unwrap();
        prop_assert_eq!(back, e);
    }
}

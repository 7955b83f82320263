use super::*;
use proptest::prelude::*;

fn config() -> crate::Compiled {
    let yaml = "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: t, namespace: ml}\nspec:\n  routes:\n    - name: small\n      pathPrefix: /small\n      backend: http://127.0.0.1:9\n      limits: {maxBodyBytes: 8}\n    - name: plain\n      pathPrefix: /\n      backend: http://127.0.0.1:9/base\n";
    let mut m = palisade_policy::Manifests::new();
    m.add_file("gateway.yaml", yaml);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    crate::compile(&palisade_policy::Snapshot::from_manifests(&m).gateways).unwrap()
}

fn peer() -> Peer {
    Peer::new("127.0.0.1:5000".parse().unwrap())
}

fn planned(c: &crate::Compiled, raw: &[u8]) -> Option<(Plan, String)> {
    let (head, _) = parse_head(raw, MAX_HEADER_BYTES).ok()?;
    let mut req = Vec::new();
    let p = plan(c, &peer(), &head, &mut req)?;
    Some((p, String::from_utf8(req).unwrap()))
}

#[test]
fn plain_requests_are_written_as_the_full_path_sends_them() {
    let c = config();
    let (p, req) = planned(
        &c,
        b"POST /x/a?b=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer k\r\nKeep-Alive: 5\r\nContent-Length: 3\r\nX-Forwarded-Proto: https\r\nX-Trace: 7\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        (p.body, p.head_only, p.idempotent, p.close),
        (3, false, false, false)
    );
    assert_eq!(p.route.name, "plain");
    assert_eq!(
        req,
        "POST /base/x/a?b=1 HTTP/1.1\r\nX-Trace: 7\r\nHost: 127.0.0.1:9\r\nContent-Length: 3\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
    assert_eq!((p.log.path.as_str(), p.log.bytes_in), ("/x/a", 3));
    let (p, _) = planned(
        &c,
        b"HEAD / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(p.head_only && p.idempotent && p.close);
}

#[test]
fn what_the_lane_leaves_to_the_full_path() {
    let c = config();
    for raw in [
        &b"POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"GET /x HTTP/1.0\r\nHost: gw\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: gw\r\nConnection: x-private\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /x<y HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n",
        b"POST /small HTTP/1.1\r\nHost: gw\r\nContent-Length: 9\r\n\r\n",
        // Paths servers may read differently: escapes, `//`, dot segments.
        b"GET /x/%61 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET //small HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /x/../small HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /x/. HTTP/1.1\r\nHost: gw\r\n\r\n",
    ] {
        assert!(
            planned(&c, raw).is_none(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

proptest! {
    /// Any head the parser accepts: a plan or a hand-over, never a panic.
    #[test]
    fn any_head_is_planned_or_handed_over(
        method in "[A-Z]{1,7}",
        target in "[ -~]{0,40}",
        fields in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,20}"), 0..6),
    ) {
        let c = config();
        let mut raw = format!("{method} {target} HTTP/1.1\r\n");
        for (n, v) in &fields {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let _ = planned(&c, raw.as_bytes());
    }
}

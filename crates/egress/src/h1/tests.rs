use super::*;
use proptest::prelude::*;

fn answer(raw: &str, head_only: bool, close: bool) -> (Option<Answer>, String) {
    let mut out = Vec::new();
    match answer_head(raw.as_bytes(), head_only, close, &mut out) {
        Parsed::Done(a) => (Some(a), String::from_utf8(out).unwrap()),
        Parsed::Interim(n) => panic!("interim {n}"),
        Parsed::Partial => panic!("partial"),
        Parsed::Bad => (None, String::new()),
    }
}

#[test]
fn answer_heads_are_framed_and_their_hop_by_hop_fields_dropped() {
    let (a, out) = answer(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nDate: Mon, 02 Jan 2026 00:00:00 GMT\r\nX-End: 2\r\n\r\nhello",
        false,
        false,
    );
    let a = a.unwrap();
    assert_eq!(a.framing, BodyFraming::Length(5));
    assert!(a.reusable);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Mon, 02 Jan 2026 00:00:00 GMT\r\nX-End: 2\r\n\r\n"
    );

    let (a, out) = answer(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        false,
        true,
    );
    assert_eq!(a.unwrap().framing, BodyFraming::Chunked);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: "));
    assert!(out.ends_with("GMT\r\nConnection: close\r\n\r\n"), "{out}");

    // No framing: until the upstream closes, and the client connection closes after.
    let (a, out) = answer("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, false);
    let a = a.unwrap();
    assert_eq!(a.framing, BodyFraming::UntilClose);
    assert!(!a.reusable);
    assert!(out.ends_with("Connection: close\r\n\r\n"));

    // HEAD, 204 and 304 have no body whatever their fields say.
    let (a, _) = answer("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, false);
    assert_eq!(a.unwrap().framing, BodyFraming::None);
    let (a, _) = answer(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        false,
        false,
    );
    assert_eq!(a.unwrap().framing, BodyFraming::None);
    let (a, _) = answer("HTTP/1.1 204 No Content\r\n\r\n", false, false);
    assert_eq!(a.unwrap().framing, BodyFraming::None);

    // HTTP/1.0 upstreams and `Connection: close` are not kept.
    let (a, _) = answer("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false);
    assert!(!a.unwrap().reusable);
    let (a, _) = answer(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        false,
        false,
    );
    assert!(a.unwrap().reusable);
    let (a, _) = answer(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
        false,
    );
    assert!(!a.unwrap().reusable);
}

#[test]
fn ambiguous_or_broken_answers_are_refused() {
    for raw in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        assert!(answer(raw, false, false).0.is_none(), "{raw}");
    }
    let mut out = Vec::new();
    assert!(matches!(
        answer_head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
            false,
            false,
            &mut out
        ),
        Parsed::Interim(25)
    ));
}

#[test]
fn chunked_bodies_end_where_the_last_chunk_and_trailers_do() {
    let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
    let mut c = ChunkedEnd::default();
    let used = c.feed(body).unwrap();
    assert_eq!(&body[used..], b"NEXT");
    assert!(c.done());
    assert_eq!(c.payload(), 15);
    for bad in [
        &b"x\r\n"[..],
        b"5\nhello\r\n",
        b"5\r\nhelloX\r\n",
        b"1234567890abcdef0\r\n",
        b";\r\n",
        b"0\r\nX\n",
    ] {
        assert!(ChunkedEnd::default().feed(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    /// A chunked body split anywhere gives the same end and payload.
    #[test]
    fn chunked_end_does_not_depend_on_the_split(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
        cuts in proptest::collection::vec(0usize..400, 0..5),
    ) {
        let mut body = Vec::new();
        let mut payload = 0u64;
        for c in &chunks {
            body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
            payload += c.len() as u64;
        }
        body.extend_from_slice(b"0\r\n\r\nTAIL");
        let end = body.len() - 4;
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
        cuts.push(body.len());
        cuts.sort_unstable();
        let mut c = ChunkedEnd::default();
        let mut at = 0;
        let mut used_total = 0;
        for cut in cuts {
            if cut <= at || c.done() {
                continue;
            }
            used_total += c.feed(&body[at..cut]).unwrap();
            at = cut;
        }
        prop_assert!(c.done());
        prop_assert_eq!(used_total, end);
        prop_assert_eq!(c.payload(), payload);
    }

    /// Any bytes: an answer, never a panic.
    #[test]
    fn answer_heads_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300), head_only: bool) {
        let mut out = Vec::new();
        let _ = answer_head(&raw, head_only, false, &mut out);
        let _ = ChunkedEnd::default().feed(&raw);
    }
}

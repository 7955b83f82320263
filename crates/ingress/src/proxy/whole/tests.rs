//! Reading the start of an answer: whole when it ends within the limit, the frames read
//! and the rest when it goes on, a failure when it errs or stalls; and the whole-answer
//! refusal in both APIs' shapes.

use super::*;
use crate::filter::FilterAction;
use crate::proxy::test_body::{self, channel};
use proptest::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_body_ending_within_the_limit_is_read_whole() {
    let frames = test_body::frames(&[b'a'; 1000], 64);
    match read_start(test_body::of(&frames), 1000, SECOND).await {
        Start::Whole(b) => assert!(b[..] == [b'a'; 1000]),
        _ => panic!("not whole"),
    }
    match read_start(test_body::of(&[]), 1000, SECOND).await {
        Start::Whole(b) => assert!(b.is_empty()),
        _ => panic!("not whole"),
    }
}

#[tokio::test]
async fn a_body_going_past_the_limit_hands_back_what_was_read_and_the_rest() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let frames = test_body::frames(&data, 300);
    let Start::Longer(read, rest) = read_start(test_body::of(&frames), 1000, SECOND).await else {
        panic!("not longer");
    };
    // Four frames (1200 bytes) are the first to pass 1000; nothing more was taken.
    assert_eq!(read.len(), 4);
    let mut all: Vec<u8> = read.iter().flat_map(|f| f.to_vec()).collect();
    all.extend_from_slice(&rest.collect().await.unwrap().to_bytes());
    assert!(all == data, "no byte lost or repeated");
}

proptest! {
    /// Whatever the framing and the limit: a body within the limit is read whole; a longer
    /// one stops at the first frame past the limit, and what was read followed by the rest
    /// is the body, no byte lost or repeated.
    #[test]
    fn the_start_and_the_rest_are_the_body(
        data in proptest::collection::vec(any::<u8>(), 0..4000),
        size in 1usize..700,
        limit in 0usize..4000,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let frames = test_body::frames(&data, size);
        match rt.block_on(read_start(test_body::of(&frames), limit, SECOND)) {
            Start::Whole(b) => prop_assert!(data.len() <= limit && b[..] == data[..]),
            Start::Longer(read, rest) => {
                let got: usize = read.iter().map(Bytes::len).sum();
                prop_assert!(got > limit && got - read.back().unwrap().len() <= limit);
                let mut all: Vec<u8> = read.iter().flat_map(|f| f.to_vec()).collect();
                all.extend_from_slice(&rt.block_on(rest.collect()).unwrap().to_bytes());
                prop_assert!(all == data);
            }
            Start::Failed => prop_assert!(false, "a body that ends is never a failure"),
        }
    }
}

#[tokio::test]
async fn a_stalled_or_failing_body_is_a_failure_within_the_time_allowed() {
    let (tx, body) = channel();
    tx.send(Ok(Bytes::from_static(b"{\"choices\":"))).unwrap();
    let t = Instant::now();
    let r = read_start(body, 1000, Duration::from_millis(200)).await;
    assert!(matches!(r, Start::Failed));
    assert!(t.elapsed() < SECOND, "{:?}", t.elapsed());
    drop(tx);

    let (tx, body) = channel();
    tx.send(Ok(Bytes::from_static(b"{\"choices\":"))).unwrap();
    tx.send(Err("connection reset".into())).unwrap();
    assert!(matches!(
        read_start(body, 1000, SECOND).await,
        Start::Failed
    ));
}

fn summary_slot() -> (Finish, Arc<Mutex<Option<BodySummary>>>) {
    let got = Arc::new(Mutex::new(None));
    let into = got.clone();
    (Box::new(move |s| *into.lock().unwrap() = Some(s)), got)
}

fn canary_filters() -> FilterSet {
    FilterSet {
        detectors: Vec::new(),
        canary: Some(("pcn-0123456789abcdef".into(), FilterAction::Block)),
    }
}

async fn body_text(r: Response<ProxyBody>) -> String {
    let b = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

#[tokio::test]
async fn a_whole_answer_that_leaks_is_refused_in_the_apis_shape() {
    let leak = Bytes::from_static(
        br#"{"choices":[{"message":{"content":"it is pcn-0123456789abcdef"}}]}"#,
    );
    for anthropic in [false, true] {
        let parts = Response::new(()).into_parts().0;
        let (finish, got) = summary_slot();
        let r = filter_whole(parts, leak.clone(), &canary_filters(), anthropic, finish);
        assert_eq!(r.status(), 403);
        let v: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
        if anthropic {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "permission_error", "{v}");
        } else {
            assert_eq!(v["error"]["code"], "output_blocked", "{v}");
        }
        let s = got.lock().unwrap().take().unwrap();
        assert_eq!(
            (s.blocked.as_deref(), s.status),
            (Some("canary"), Some(403))
        );
    }
    let clean = Bytes::from_static(br#"{"choices":[{"message":{"content":"all fine"}}]}"#);
    let (finish, _) = summary_slot();
    let parts = Response::new(()).into_parts().0;
    let r = filter_whole(parts, clean.clone(), &canary_filters(), false, finish);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_LENGTH], clean.len().to_string());
    assert_eq!(body_text(r).await.as_bytes(), &clean[..]);
}

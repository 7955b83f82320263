use super::*;
use proptest::prelude::*;

#[test]
fn urls_the_lane_takes() {
    let u = Url::parse("http://Allowed.test:8080/a/b?x=1&y=%20").unwrap();
    assert_eq!(u.authority, "Allowed.test:8080");
    assert_eq!(u.host, "Allowed.test");
    assert_eq!(u.port, 8080);
    assert_eq!(u.path, "/a/b");
    assert_eq!(u.path_and_query, "/a/b?x=1&y=%20");
    let u = Url::parse("http://a.test").unwrap();
    assert_eq!((u.port, u.path, u.path_and_query), (80, "/", "/"));
}

#[test]
fn urls_left_to_the_full_path() {
    for t in [
        "https://a.test/",
        "HTTP://a.test/",
        "/relative",
        "http://user@a.test/",
        "http://[::1]/",
        "http://a.test:/",
        "http://a.test:0/",
        "http://a.test:65536/",
        "http://a.test:+80/",
        "http:///x",
        "http://a.test?q",
        "http://a.test/\"quoted\"",
        "http://a.test/{x}",
        "http://a.test/x#frag",
    ] {
        assert_eq!(Url::parse(t), None, "{t}");
    }
}

proptest! {
    /// Any bytes: an answer, never a panic.
    #[test]
    fn urls_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300), head_only: bool) {
        let _ = head_only;
        if let Ok(s) = std::str::from_utf8(&raw) {
            let _ = Url::parse(s);
        }
    }
}

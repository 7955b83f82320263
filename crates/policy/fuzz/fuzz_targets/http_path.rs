//! Any text as a request path through `http_path::views`: never a panic; at most nine
//! readings, the path as sent first, no two alike; readings of a path starting with `/`
//! start with `/` and hold no dot segment; a plain path has exactly one reading; and every
//! reading is itself well-formed (it has readings of its own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::http_path::{is_plain, views};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let plain = is_plain(path);
    let Ok(vs) = views(path) else {
        assert!(!plain, "a plain path always has a reading: {path:?}");
        assert!(path.contains('%'), "only a bad escape is refused: {path:?}");
        return;
    };
    assert!(
        !vs.is_empty() && vs.len() <= 9,
        "{} readings of {path:?}",
        vs.len()
    );
    assert_eq!(vs[0], path);
    if plain {
        assert_eq!(
            vs.len(),
            1,
            "a plain path has one reading: {path:?} → {vs:?}"
        );
    }
    for (i, r) in vs.iter().enumerate() {
        assert!(!vs[..i].contains(r), "reading {r:?} twice for {path:?}");
        if path.starts_with('/') {
            assert!(r.starts_with('/'), "{path:?} → {r:?}");
        }
        if i > 0 && r.starts_with('/') {
            assert!(
                !r.contains("/./") && !r.contains("/../"),
                "{path:?} → {r:?}"
            );
            assert!(
                !r.ends_with("/.") && !r.ends_with("/.."),
                "{path:?} → {r:?}"
            );
            assert!(views(r).is_ok(), "{path:?} → {r:?} has no reading");
        }
    }
});

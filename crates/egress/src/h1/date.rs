//! The `Date` field value (IMF-fixdate, RFC 9110 §5.6.7), formatted once a second per
//! thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the current date.
pub fn now(out: &mut Vec<u8>) {
    let t = SystemTime::now();
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.0 = secs;
            c.1 = httpdate::fmt_http_date(t);
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

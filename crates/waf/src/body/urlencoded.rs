//! `application/x-www-form-urlencoded` and query strings.

use super::Kv;
use crate::transforms::decode::url_decode;

/// Splits on `sep`, then on the first `=`; names and values are URL-decoded (`+` is a
/// space). Empty pieces are skipped.
pub(crate) fn parse(s: &[u8], sep: u8, out: &mut Vec<Kv>) {
    for piece in s.split(|&c| c == sep) {
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match piece.iter().position(|&c| c == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        out.push(Kv {
            key: url_decode(k, false).into_owned(),
            value: url_decode(v, false).into_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let mut out = Vec::new();
        parse(b"a=1&b=x+y%21&&c&=z", b'&', &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[1], Kv::new(b"b", b"x y!"));
        assert_eq!(out[2], Kv::new(b"c", b""));
        assert_eq!(out[3], Kv::new(b"", b"z"));
    }

    fn encode(v: &[u8]) -> String {
        v.iter()
            .map(|&c| match c {
                b' ' => "+".to_string(),
                c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => (c as char).to_string(),
                c => format!("%{c:02X}"),
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            sep in proptest::prelude::any::<u8>(),
        ) {
            let mut out = Vec::new();
            parse(&body, sep, &mut out);
            proptest::prop_assert!(out.len() <= body.len());
        }

        /// What a browser, `requests` or Go's `url.Values.Encode` sends reads back as the
        /// same pairs, in order.
        #[test]
        fn encoded_pairs_round_trip(
            pairs in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 1..20),
                 proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
                0..8,
            ),
        ) {
            let body = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let mut out = Vec::new();
            parse(body.as_bytes(), b'&', &mut out);
            let want: Vec<Kv> = pairs.iter().map(|(k, v)| Kv::new(k, v)).collect();
            proptest::prop_assert_eq!(out, want);
        }
    }
}

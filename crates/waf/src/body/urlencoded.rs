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
}

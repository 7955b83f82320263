//! Any value through every transformation (`t:`), alone and chained after the decoders CRS
//! chains most: never a panic, and the properties ModSecurity's in-place implementations
//! have: decoders and removers never lengthen a value (path normalisation by at most the
//! `/` that marks a final `..` as a directory); encoders round-trip through their
//! decoder; case mappings and path normalisation are idempotent; `length` and `sha1` have
//! their fixed shapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::apply_transformation as t;

/// Transformations whose output is never longer than their input.
const SHRINKING: &[&str] = &[
    "urlDecode",
    "urlDecodeUni",
    "htmlEntityDecode",
    "jsDecode",
    "cssDecode",
    "cmdLine",
    "compressWhitespace",
    "removeWhitespace",
    "removeNulls",
    "replaceNulls",
    "replaceComments",
    "removeComments",
    "removeCommentsChar",
    "base64Decode",
    "base64DecodeExt",
    "hexDecode",
    "escapeSeqDecode",
    "sqlHexDecode",
    "lowercase",
    "uppercase",
    "trim",
    "trimLeft",
    "trimRight",
    "none",
];

/// Everything else.
const OTHERS: &[&str] = &[
    "urlEncode",
    "base64Encode",
    "hexEncode",
    "utf8toUnicode",
    "length",
    "sha1",
];

fn apply(name: &str, v: &[u8]) -> Vec<u8> {
    t(name, v).unwrap_or_else(|| panic!("t:{name} is unknown"))
}

fuzz_target!(|v: &[u8]| {
    for name in SHRINKING {
        let out = apply(name, v);
        assert!(out.len() <= v.len(), "t:{name} lengthened {v:?} to {out:?}");
        // Names are case-insensitive.
        assert_eq!(apply(&name.to_ascii_uppercase(), v), out);
    }
    // Path normalisation marks a final `..` it keeps as a directory: `../..` is `../../`.
    for name in ["normalizePath", "normalizePathWin"] {
        let out = apply(name, v);
        assert!(
            out.len() <= v.len() + 1,
            "t:{name} lengthened {v:?} to {out:?}"
        );
    }
    for name in OTHERS {
        let _ = apply(name, v);
    }
    assert_eq!(apply("none", v), v);
    assert_eq!(apply("length", v), v.len().to_string().into_bytes());
    assert_eq!(apply("sha1", v).len(), 20);
    assert_eq!(apply("base64Decode", &apply("base64Encode", v)), v);
    assert_eq!(apply("hexDecode", &apply("hexEncode", v)), v);
    assert_eq!(apply("urlDecode", &apply("urlEncode", v)), v);
    for name in [
        "lowercase",
        "uppercase",
        "trim",
        "compressWhitespace",
        "normalizePath",
    ] {
        let once = apply(name, v);
        assert_eq!(
            apply(name, &once),
            once,
            "t:{name} is not idempotent on {v:?}"
        );
    }
    if std::str::from_utf8(v).is_ok() {
        let u = apply("utf8toUnicode", v);
        assert!(u.is_ascii(), "t:utf8toUnicode left non-ASCII in {u:?}");
    }
    // The chains CRS uses most.
    let mut x = v.to_vec();
    for name in [
        "utf8toUnicode",
        "urlDecodeUni",
        "htmlEntityDecode",
        "jsDecode",
        "cssDecode",
        "removeNulls",
        "cmdLine",
        "normalizePathWin",
        "replaceComments",
    ] {
        x = apply(name, &x);
    }
});

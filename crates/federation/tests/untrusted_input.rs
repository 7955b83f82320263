//! Everything a member reads from etcd is untrusted (anyone with write access to the prefix
//! can put bytes there): the parsers answer with an error, never a panic.

use palisade_federation::identities;
use palisade_federation::layout::Layout;
use palisade_federation::revision::{parse_pointer, parse_revision, RevisionDoc, RevisionFile};
use palisade_federation::signing::{self, PublicKey, TrustedKeys};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), n in 0u64..10) {
        let _ = parse_revision(n, &bytes);
        let _ = parse_pointer(&bytes);
        let _ = identities::parse("east", &bytes);
        let _ = Layout::new("s").classify(&bytes);
        // Signed envelopes are untrusted too, and so is a public key file's text.
        let key: PublicKey = format!("ed25519 {}", "ab".repeat(32)).parse().unwrap();
        let _ = TrustedKeys(vec![key]).verify("s", n, &bytes);
        let _ = signing::document(&bytes);
        let _ = String::from_utf8_lossy(&bytes).parse::<PublicKey>();
    }

    #[test]
    fn arbitrary_yaml_in_a_revision_never_panics_nor_applies_errors(yaml in "[ -~\n]{0,300}") {
        let doc = RevisionDoc {
            revision: 1,
            created_at_us: 0,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![RevisionFile { name: "f.yaml".into(), yaml }],
        };
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Ok(p) = parse_revision(1, &bytes) {
            // Whatever was accepted is only ClusterSecurityPolicy objects.
            prop_assert!(p.policies.iter().all(|(_, o)| o.file == "federation/r1/f.yaml"));
        }
    }
}

/// One key pair for the signed-envelope properties (written once into a temporary folder).
fn test_key() -> &'static (signing::SigningKey, TrustedKeys) {
    static KEY: std::sync::OnceLock<(signing::SigningKey, TrustedKeys)> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("palisade-untrusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (private, public, _) = signing::keygen(&d).unwrap();
        let pair = (
            signing::SigningKey::load(&private).unwrap(),
            TrustedKeys::load(&[public]).unwrap(),
        );
        std::fs::remove_dir_all(&d).unwrap();
        pair
    })
}

proptest! {
    /// What a member verifies is what it parses: a signed envelope rewritten in any way
    /// (bytes changed, inserted or removed, JSON re-encoded with escapes, duplicate keys,
    /// trailing data) either fails to verify or opens to exactly the document signed.
    #[test]
    fn a_verified_envelope_opens_to_the_signed_document(
        at in 0usize..400,
        insert in proptest::collection::vec(any::<u8>(), 0..24),
        remove in 0usize..4,
    ) {
        let (key, trusted) = test_key();
        let doc = serde_json::to_vec(&RevisionDoc {
            revision: 3,
            created_at_us: 1,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![RevisionFile { name: "f.yaml".into(), yaml: "a: b\n".into() }],
        })
        .unwrap();
        let sealed = key.seal("s", 3, 2, &doc);
        let at = at % (sealed.len() + 1);
        let mut mutated = sealed[..at].to_vec();
        mutated.extend_from_slice(&insert);
        mutated.extend_from_slice(&sealed[(at + remove).min(sealed.len())..]);
        if trusted.verify("s", 3, &mutated).is_ok() {
            prop_assert_eq!(&*signing::document(&mutated), doc.as_slice());
        }
    }
}

/// Hand-made rewrites of a signed envelope: a second `document` key, trailing data, a
/// document smuggled beside the envelope. None verifies with another document.
#[test]
fn envelope_rewrites_do_not_swap_the_document() {
    let (key, trusted) = test_key();
    let sealed =
        String::from_utf8(key.seal("s", 3, 2, br#"{"revision":3,"createdAtUs":1,"files":[]}"#))
            .unwrap();
    let evil = r#"{\"revision\":3,\"createdAtUs\":1,\"files\":[{\"name\":\"x\",\"yaml\":\"x\"}]}"#;
    let dup = sealed.replacen(
        "\"document\":",
        &format!("\"document\":\"{evil}\",\"document\":"),
        1,
    );
    let dup_after = sealed.replacen("}}", &format!(",\"document\":\"{evil}\"}}}}"), 1);
    let trailing = format!("{sealed}{{\"revision\":3}}");
    for bytes in [dup, dup_after, trailing] {
        assert!(trusted.verify("s", 3, bytes.as_bytes()).is_err(), "{bytes}");
        assert!(parse_revision(3, bytes.as_bytes()).is_err(), "{bytes}");
    }
}

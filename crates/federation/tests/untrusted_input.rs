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

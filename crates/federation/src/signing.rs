//! Signed revisions (Ed25519, `ring`). The hub signs each revision it writes
//! (`federation push --signing-key`); a member given trusted public keys (`--trust-key`)
//! applies only revisions whose signature verifies under one of them.
//!
//! A signed revision is stored as an envelope around the exact bytes of the revision
//! document:
//!
//! ```text
//! {"signedRevision": {"revision": N, "previous": P, "keyId": "…", "signature": "<hex>",
//!                     "document": "<the revision document's JSON, as signed>"}}
//! ```
//!
//! The signature covers [`message`]: a domain tag, the set name, the revision number, the
//! revision the pointer named when it was written (`previous`) and the document's bytes. A
//! signature is thus valid for one set and one revision number only: copied onto another
//! number, or with any byte of the document changed, it does not verify. Unsigned revisions
//! keep today's format (the bare document).
//!
//! Key files: the private key is PKCS#8 (DER, as `ring` and `openssl genpkey -algorithm
//! ed25519 -outform DER` write it), mode 0600; the public key is one line `ed25519 <hex>`.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Domain tag at the start of every signed message (never valid as anything else).
const DOMAIN: &[u8] = b"palisade-federation-revision-v1\0";

/// The private key file `keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "federation-signing.key";
/// The public key file `keygen` writes.
pub const PUBLIC_KEY_FILE: &str = "federation-signing.pub";

/// A key file that cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct KeyError {
    /// The file.
    pub file: String,
    /// What is wrong with it.
    pub reason: String,
}

fn key_error(file: &Path, reason: impl Into<String>) -> KeyError {
    KeyError {
        file: file.display().to_string(),
        reason: reason.into(),
    }
}

/// A private key that signs revisions.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 Ed25519 private key (DER).
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?;
        SigningKey::from_pkcs8(&bytes).map_err(|reason| key_error(path, reason))
    }

    /// An Ed25519 private key from PKCS#8 (DER) bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, String> {
        if bytes.starts_with(b"-----BEGIN") {
            return Err("a PEM file; give the PKCS#8 DER file `palisade federation keygen` writes (or `openssl pkey -outform DER`)".into());
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|e| format!("not a PKCS#8 Ed25519 private key ({e})"))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(SigningKey { pair, key_id })
    }

    /// The short name of its public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey {
            bytes,
            key_id: self.key_id.clone(),
        }
    }

    /// Whether `stored` is revision `revision` of set `set` as this key signed it: what the
    /// hub checks before taking anything from a stored revision into a new one it signs.
    pub fn check_own(&self, set: &str, revision: u64, stored: &[u8]) -> Result<(), String> {
        TrustedKeys(vec![self.public_key()]).verify(set, revision, stored)
    }

    /// Wraps `document` (a revision document's bytes) in a signed envelope for revision
    /// `revision` of set `set`, written while the pointer named `previous` (0: none).
    pub fn seal(&self, set: &str, revision: u64, previous: u64, document: &[u8]) -> Vec<u8> {
        let sig = self.pair.sign(&message(set, revision, previous, document));
        let env = Envelope {
            signed_revision: Signed {
                revision,
                previous,
                key_id: self.key_id.clone(),
                signature: hex(sig.as_ref()),
                document: String::from_utf8_lossy(document).into_owned(),
            },
        };
        serde_json::to_vec(&env).unwrap_or_default()
    }
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    key_id: String,
}

impl PublicKey {
    /// Reads a public key file (`ed25519 <hex>`, as `keygen` writes it).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?;
        let text = std::str::from_utf8(&text).map_err(|_| {
            key_error(
                path,
                "not text; expected one line `ed25519 <64 hex digits>`",
            )
        })?;
        text.parse().map_err(|reason| key_error(path, reason))
    }

    /// The short name of the key (first 8 bytes of its SHA-256, hex).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn to_line(&self) -> String {
        format!("ed25519 {}\n", hex(&self.bytes))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;
    fn from_str(text: &str) -> Result<PublicKey, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("empty; expected one line `ed25519 <64 hex digits>`")?;
        let h = match line.split_once(char::is_whitespace) {
            Some(("ed25519", h)) => h.trim(),
            Some((alg, _)) => return Err(format!("key type {alg:?}; only ed25519 is supported")),
            None => line,
        };
        let raw = unhex(h)
            .filter(|b| b.len() == 32)
            .ok_or("not an Ed25519 public key; expected `ed25519 <64 hex digits>`")?;
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&raw);
        Ok(PublicKey {
            bytes,
            key_id: key_id(&bytes),
        })
    }
}

/// The keys a member accepts revisions from (empty: unsigned revisions are applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(pub Vec<PublicKey>);

impl TrustedKeys {
    /// Reads every file; all errors are reported at once.
    pub fn load(paths: &[PathBuf]) -> Result<TrustedKeys, Vec<KeyError>> {
        let (ok, errs): (Vec<_>, Vec<_>) = paths
            .iter()
            .map(|p| PublicKey::load(p))
            .partition(Result::is_ok);
        if errs.is_empty() {
            Ok(TrustedKeys(ok.into_iter().flatten().collect()))
        } else {
            Err(errs.into_iter().filter_map(Result::err).collect())
        }
    }

    /// No key configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the stored value of revision `n` of set `set`: with no trusted key, anything
    /// (signed or not) passes; otherwise it must be an envelope for revision `n` whose
    /// signature verifies under a trusted key. Returns why it is refused.
    pub fn verify(&self, set: &str, n: u64, stored: &[u8]) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let Some(env) = envelope(stored) else {
            return Err(format!(
                "revision {n} is not signed, and this member applies only revisions signed by a trusted key (--trust-key)"
            ));
        };
        let s = env.signed_revision;
        let Some(key) = self.0.iter().find(|k| k.key_id == s.key_id) else {
            return Err(format!(
                "revision {n} is signed by key {:?}, which this member does not trust (trusted: {})",
                printable_id(&s.key_id),
                self.0.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>().join(", ")
            ));
        };
        let sig = unhex(&s.signature).unwrap_or_default();
        let msg = message(set, n, s.previous, s.document.as_bytes());
        if UnparsedPublicKey::new(&ED25519, key.bytes)
            .verify(&msg, &sig)
            .is_err()
        {
            let why = if s.revision != n {
                format!("it was signed as revision {} (a signature copied onto another revision number)", s.revision)
            } else {
                "the revision was altered after signing, or signed for another set".to_string()
            };
            return Err(format!(
                "revision {n}: the signature by key {} does not verify: {why}",
                key.key_id
            ));
        }
        Ok(())
    }
}

/// What a signature covers: domain tag, set, revision number, previous pointer, document.
pub fn message(set: &str, revision: u64, previous: u64, document: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + set.len() + 17 + document.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(set.as_bytes());
    m.push(0);
    m.extend_from_slice(&revision.to_be_bytes());
    m.extend_from_slice(&previous.to_be_bytes());
    m.extend_from_slice(document);
    m
}

/// The stored envelope of a signed revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope {
    /// The signed revision.
    pub signed_revision: Signed,
}

/// A signed revision's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Signed {
    /// The revision number it was signed as.
    pub revision: u64,
    /// The revision the pointer named when it was written (0: none).
    pub previous: u64,
    /// Which key signed it.
    pub key_id: String,
    /// Ed25519 signature over [`message`], hex.
    pub signature: String,
    /// The revision document, exactly as signed.
    pub document: String,
}

/// The envelope, when `stored` is a signed revision.
pub fn envelope(stored: &[u8]) -> Option<Envelope> {
    serde_json::from_slice(stored).ok()
}

/// The revision document inside `stored` (the envelope's, or `stored` itself when unsigned),
/// without checking any signature.
pub fn document(stored: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match envelope(stored) {
        Some(e) => e.signed_revision.document.into_bytes().into(),
        None => stored.into(),
    }
}

/// Writes a new key pair into `dir` (created if missing): the private key mode 0600,
/// refusing to overwrite either file. Returns (private, public, key id).
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf, String), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e.to_string()))?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| key_error(dir, format!("cannot generate a key: {e}")))?;
    let key = SigningKey::from_pkcs8(pkcs8.as_ref()).map_err(|r| key_error(dir, r))?;
    let (private, public) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    for p in [&private, &public] {
        if p.exists() {
            return Err(key_error(p, "exists; not overwritten"));
        }
    }
    let write = |p: &Path, mode: u32, bytes: &[u8]| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
            .map_err(|e| key_error(p, e.to_string()))
    };
    write(&private, 0o600, pkcs8.as_ref())?;
    write(&public, 0o644, key.public_key().to_line().as_bytes())?;
    Ok((private, public, key.key_id))
}

fn key_id(public: &[u8]) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

fn printable_id(s: &str) -> String {
    s.chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("palisade-sign-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn pair(dir: &Path) -> (SigningKey, TrustedKeys) {
        let (private, public, id) = keygen(dir).unwrap();
        let k = SigningKey::load(&private).unwrap();
        assert_eq!(k.key_id(), id);
        (k, TrustedKeys::load(&[public]).unwrap())
    }

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let d = temp("keygen");
        let (private, public, id) = keygen(&d).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let line = std::fs::read_to_string(&public).unwrap();
        assert!(
            line.starts_with("ed25519 ") && line.len() == 8 + 64 + 1,
            "{line}"
        );
        assert_eq!(PublicKey::load(&public).unwrap().key_id(), id);
        let err = keygen(&d).unwrap_err();
        assert_eq!(err.file, private.display().to_string());
        assert!(err.reason.contains("not overwritten"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_signed_revision_verifies_and_nothing_else_does() {
        let d = temp("verify");
        let (k, trusted) = pair(&d);
        let doc = br#"{"revision":5,"createdAtUs":1,"files":[]}"#;
        let sealed = k.seal("prod", 5, 4, doc);
        assert_eq!(trusted.verify("prod", 5, &sealed), Ok(()));
        assert_eq!(&*document(&sealed), doc);
        // Nothing configured: anything passes (today's behaviour).
        assert_eq!(TrustedKeys::default().verify("prod", 5, doc), Ok(()));
        // Unsigned.
        let e = trusted.verify("prod", 5, doc).unwrap_err();
        assert!(e.contains("is not signed"), "{e}");
        // Another set, or another number (the envelope copied under another key).
        let e = trusted.verify("staging", 5, &sealed).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        let e = trusted.verify("prod", 6, &sealed).unwrap_err();
        assert!(e.contains("signed as revision 5"), "{e}");
        // Its number or previous pointer rewritten, or the document altered.
        let mut env = envelope(&sealed).unwrap();
        env.signed_revision.previous = 3;
        let e = trusted
            .verify("prod", 5, &serde_json::to_vec(&env).unwrap())
            .unwrap_err();
        assert!(e.contains("altered after signing"), "{e}");
        let mut env = envelope(&sealed).unwrap();
        env.signed_revision.document = env.signed_revision.document.replace("1", "2");
        let e = trusted
            .verify("prod", 5, &serde_json::to_vec(&env).unwrap())
            .unwrap_err();
        assert!(e.contains("altered after signing"), "{e}");
        // Another key (not trusted), and another key claiming the trusted key's id.
        let (other, _) = pair(&d.join("other"));
        let e = trusted
            .verify("prod", 5, &other.seal("prod", 5, 4, doc))
            .unwrap_err();
        assert!(e.contains("does not trust"), "{e}");
        let mut env = envelope(&other.seal("prod", 5, 4, doc)).unwrap();
        env.signed_revision.key_id = k.key_id().to_string();
        let e = trusted
            .verify("prod", 5, &serde_json::to_vec(&env).unwrap())
            .unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // A garbage signature.
        let mut env = envelope(&sealed).unwrap();
        env.signed_revision.signature = "zz".into();
        assert!(trusted
            .verify("prod", 5, &serde_json::to_vec(&env).unwrap())
            .is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_key_files_are_errors_naming_the_file() {
        let d = temp("badkeys");
        std::fs::create_dir_all(&d).unwrap();
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty.key", b"", "not a PKCS#8 Ed25519 private key"),
            (
                "junk.key",
                b"\x30\x03\x02\x01\x00",
                "not a PKCS#8 Ed25519 private key",
            ),
            ("pem.key", b"-----BEGIN PRIVATE KEY-----\n", "a PEM file"),
        ];
        for (name, bytes, want) in cases {
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = SigningKey::load(&p).unwrap_err();
            assert_eq!(e.file, p.display().to_string());
            assert!(e.to_string().contains(want), "{e}");
        }
        let missing = d.join("missing.key");
        assert!(SigningKey::load(&missing)
            .unwrap_err()
            .to_string()
            .starts_with(&missing.display().to_string()));
        let pubs: &[(&str, &[u8], &str)] = &[
            ("empty.pub", b"", "empty"),
            ("short.pub", b"ed25519 abcd\n", "not an Ed25519 public key"),
            ("rsa.pub", b"ssh-rsa AAAA\n", "only ed25519"),
            ("bin.pub", b"\xff\xfe", "not text"),
        ];
        let mut paths = Vec::new();
        for (name, bytes, want) in pubs {
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = PublicKey::load(&p).unwrap_err();
            assert_eq!(e.file, p.display().to_string());
            assert!(e.to_string().contains(want), "{e}");
            paths.push(p);
        }
        // Every bad file is reported at once.
        assert_eq!(TrustedKeys::load(&paths).unwrap_err().len(), pubs.len());
        // A private key given as a public key (and the reverse) is refused too.
        let (private, public, _) = keygen(&d.join("k")).unwrap();
        assert!(PublicKey::load(&private).is_err());
        assert!(SigningKey::load(&public).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

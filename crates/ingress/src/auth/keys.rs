//! API keys: a Secret-style YAML (`stringData` / base64 `data`) or a plain `consumer: value`
//! map. A value is `sha256:<hex>` (the key's SHA-256, how keys should be stored) or a
//! plaintext key, hashed at load; several comma-separated values give a consumer several
//! keys. Only hashes are kept in memory, and a presented key is hashed and compared with
//! every stored hash in constant time.

use ring::digest;
use serde::Deserialize;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The key hashes of one file.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    entries: Vec<([u8; 32], String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretDoc {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// SHA-256 of a key.
pub fn hash(key: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl ApiKeys {
    /// Parses a keys file; errors name the file and line.
    pub fn parse(file: &str, text: &str) -> Result<Self, String> {
        let doc: SecretDoc = serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        if doc.kind.as_deref() == Some("Secret") {
            pairs.extend(doc.string_data);
            for (k, v) in doc.data {
                let raw = base64_decode(v.trim())
                    .ok_or_else(|| format!("{file}: data.{k}: not valid base64"))?;
                let s =
                    String::from_utf8(raw).map_err(|_| format!("{file}: data.{k}: not UTF-8"))?;
                pairs.push((k, s));
            }
        } else {
            if doc.kind.is_some() {
                return Err(format!(
                    "{file}: kind must be Secret (or a plain `consumer: key` map)"
                ));
            }
            pairs.extend(doc.string_data);
            for (k, v) in doc.rest {
                match v {
                    serde_json::Value::String(s) => pairs.push((k, s)),
                    _ => return Err(format!("{file}: {k}: the value must be a string")),
                }
            }
        }
        let mut entries = Vec::new();
        for (consumer, value) in pairs {
            for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                let h = match v.strip_prefix("sha256:") {
                    Some(hex) => parse_hex32(hex).ok_or_else(|| {
                        format!("{file}: {consumer}: sha256: needs 64 hex digits")
                    })?,
                    None => hash(v),
                };
                entries.push((h, consumer.clone()));
            }
        }
        if entries.is_empty() {
            return Err(format!("{file}: no keys"));
        }
        Ok(ApiKeys { entries })
    }

    /// The consumer owning `key`. Every stored hash is compared, in constant time each.
    pub fn lookup(&self, key: &str) -> Option<&str> {
        let h = hash(key);
        let mut found = None;
        for (stored, consumer) in &self.entries {
            if bool::from(stored.ct_eq(&h)) {
                found = Some(consumer.as_str());
            }
        }
        found
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Standard base64 (with or without padding).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: [u8; 32]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn secret_with_hashes_and_base64() {
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\nstringData:\n  alice: sha256:{}\ndata:\n  bob: {}\n",
            hex(hash("key-alice")),
            "a2V5LWJvYg==" // "key-bob"
        );
        let k = ApiKeys::parse("keys.yaml", &text).unwrap();
        assert_eq!(k.lookup("key-alice"), Some("alice"));
        assert_eq!(k.lookup("key-bob"), Some("bob"));
        assert_eq!(k.lookup("key-carol"), None);
        assert_eq!(k.lookup(""), None);
    }

    #[test]
    fn plain_map_with_several_keys() {
        let k = ApiKeys::parse("k", "carol: one, two\n").unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.lookup("two"), Some("carol"));
    }

    #[test]
    fn errors_name_the_file() {
        let e = ApiKeys::parse("k.yaml", "alice: sha256:abc\n").unwrap_err();
        assert!(e.starts_with("k.yaml: alice"), "{e}");
        let e = ApiKeys::parse("k.yaml", "alice: [1\n").unwrap_err();
        assert!(e.contains("k.yaml"), "{e}");
        assert!(e.contains("line") || e.contains(':'), "{e}");
    }

    #[test]
    fn hashing_is_sha256() {
        assert_eq!(
            hex(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

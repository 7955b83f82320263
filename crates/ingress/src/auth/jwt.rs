//! JWT validation: signature (HS256/RS256/ES256 and the rest of their families, keys from a
//! JWKS whose `oct` entries carry HMAC secrets), `exp` (required), `nbf`, `aud` and `iss`.
//! The key set can be swapped at run time (a JWKS URL is fetched again periodically).

use super::AuthError;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use std::str::FromStr;
use std::sync::Arc;

/// Validates bearer JWTs for one route.
#[derive(Debug)]
pub struct JwtVerifier {
    keys: ArcSwap<Vec<(Jwk, DecodingKey)>>,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audience: Option<String>,
    consumer_claim: String,
    /// Seconds of clock skew allowed on `exp` / `nbf`.
    pub leeway: u64,
}

/// Settings of a verifier.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// Accepted algorithms (empty: RS256, ES256, HS256).
    pub algorithms: Vec<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Claim naming the consumer (default `sub`).
    pub consumer_claim: Option<String>,
}

/// Parses a JWKS document into usable keys.
pub fn parse_jwks(text: &str) -> Result<Vec<(Jwk, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::new();
    for (i, k) in set.keys.into_iter().enumerate() {
        let d = DecodingKey::from_jwk(&k).map_err(|e| format!("keys[{i}]: {e}"))?;
        out.push((k, d));
    }
    if out.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    Ok(out)
}

impl JwtVerifier {
    /// A verifier with the given keys.
    pub fn new(s: &JwtSettings, keys: Vec<(Jwk, DecodingKey)>) -> Result<Self, String> {
        let names: Vec<&str> = if s.algorithms.is_empty() {
            vec!["RS256", "ES256", "HS256"]
        } else {
            s.algorithms.iter().map(String::as_str).collect()
        };
        let algorithms = names
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| format!("unknown algorithm {a:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JwtVerifier {
            keys: ArcSwap::from_pointee(keys),
            algorithms,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            consumer_claim: s.consumer_claim.clone().unwrap_or_else(|| "sub".into()),
            leeway: 30,
        })
    }

    /// Replaces the key set (JWKS refresh).
    pub fn set_keys(&self, keys: Vec<(Jwk, DecodingKey)>) {
        self.keys.store(Arc::new(keys));
    }

    /// The consumer named by a valid token.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let bad = |m: &str| AuthError::InvalidToken(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(bad("algorithm not accepted"));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        // A configured audience or issuer must be in the token: `jsonwebtoken` checks them
        // only when present, so a token without them (or with one it cannot read, such as
        // `"aud": 5`) would pass.
        let mut required = vec!["exp"];
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let keys = self.keys.load();
        let candidates = keys.iter().filter(|(jwk, key)| {
            let kid_ok = match (&header.kid, &jwk.common.key_id) {
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
                (None, _) => true,
            };
            let alg_ok = jwk
                .common
                .key_algorithm
                .map(|ka| Algorithm::try_from(ka).is_ok_and(|a| a == header.alg))
                .unwrap_or(true);
            kid_ok && alg_ok && key.family() == header.alg.family()
        });
        let mut last = bad("no matching key");
        for (_, key) in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &v)
            {
                Ok(data) => {
                    return match data.claims.get(&self.consumer_claim) {
                        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                        _ => Err(bad("no consumer claim")),
                    }
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => bad("not yet valid"),
                        ErrorKind::InvalidAudience => bad("wrong audience"),
                        ErrorKind::InvalidIssuer => bad("wrong issuer"),
                        ErrorKind::MissingRequiredClaim(_) => bad("missing claim"),
                        ErrorKind::InvalidSignature => bad("bad signature"),
                        _ => bad("invalid"),
                    };
                    // A signature that verified but failed a claim check is final.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    // "supersecret-hmac-key-for-tests!!" base64url.
    const JWKS: &str = r#"{"keys":[{"kty":"oct","kid":"h1","alg":"HS256","k":"c3VwZXJzZWNyZXQtaG1hYy1rZXktZm9yLXRlc3RzISE"}]}"#;
    const SECRET: &[u8] = b"supersecret-hmac-key-for-tests!!";

    fn verifier() -> JwtVerifier {
        let s = JwtSettings {
            issuer: Some("https://idp.test".into()),
            audience: Some("inference".into()),
            ..Default::default()
        };
        JwtVerifier::new(&s, parse_jwks(JWKS).unwrap()).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("h1".into());
        encode(&h, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn a_valid_token_names_its_subject() {
        let t = token(
            json!({"sub":"alice","iss":"https://idp.test","aud":"inference","exp":now()+600}),
        );
        assert_eq!(verifier().verify(&t), Ok("alice".into()));
    }

    #[test]
    fn expired_wrong_audience_issuer_nbf_and_signature() {
        let v = verifier();
        let base = json!({"sub":"a","iss":"https://idp.test","aud":"inference","exp":now()+600});
        let with = |k: &str, val: serde_json::Value| {
            let mut c = base.clone();
            c[k] = val;
            token(c)
        };
        assert_eq!(
            v.verify(&with("exp", json!(now() - 3600))),
            Err(AuthError::Expired)
        );
        assert_eq!(
            v.verify(&with("aud", json!("other"))),
            Err(AuthError::InvalidToken("wrong audience".into()))
        );
        assert_eq!(
            v.verify(&with("iss", json!("evil"))),
            Err(AuthError::InvalidToken("wrong issuer".into()))
        );
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 3600))),
            Err(AuthError::InvalidToken("not yet valid".into()))
        );
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &base,
            &EncodingKey::from_secret(b"wrong"),
        )
        .unwrap();
        assert!(matches!(v.verify(&forged), Err(AuthError::InvalidToken(_))));
        let no_exp = token(json!({"sub":"a","iss":"https://idp.test","aud":"inference"}));
        assert!(matches!(v.verify(&no_exp), Err(AuthError::InvalidToken(_))));
        assert!(matches!(
            v.verify("eyJ.eyJ.x"),
            Err(AuthError::InvalidToken(_))
        ));
    }

    /// Regression: with an audience and an issuer configured, a token signed by a trusted
    /// key but carrying no `aud` / `iss` (or ones that are not strings) was accepted.
    #[test]
    fn a_configured_audience_and_issuer_must_be_in_the_token() {
        let v = verifier();
        let exp = now() + 600;
        for (claims, why) in [
            (
                json!({"sub":"a","iss":"https://idp.test","exp":exp}),
                "missing claim",
            ),
            (
                json!({"sub":"a","aud":"inference","exp":exp}),
                "missing claim",
            ),
            (json!({"sub":"a","exp":exp}), "missing claim"),
            (
                json!({"sub":"a","iss":"https://idp.test","aud":5,"exp":exp}),
                "missing claim",
            ),
            (
                json!({"sub":"a","iss":"https://idp.test","aud":["other"],"exp":exp}),
                "wrong audience",
            ),
        ] {
            assert_eq!(
                v.verify(&token(claims.clone())),
                Err(AuthError::InvalidToken(why.into())),
                "{claims}"
            );
        }
        // A list naming the configured audience among others is the standard form.
        let t =
            token(json!({"sub":"a","iss":"https://idp.test","aud":["x","inference"],"exp":exp}));
        assert_eq!(v.verify(&t), Ok("a".into()));
        // Without settings, tokens need neither.
        let open = JwtVerifier::new(&JwtSettings::default(), parse_jwks(JWKS).unwrap()).unwrap();
        assert_eq!(
            open.verify(&token(json!({"sub":"a","exp":exp}))),
            Ok("a".into())
        );
    }

    #[test]
    fn unsigned_tokens_unknown_kids_and_wrong_claim_types_are_refused() {
        let v = verifier();
        // `alg: none` (the signature part empty) and `None`.
        for t in [
            "eyJhbGciOiJub25lIiwia2lkIjoiaDEifQ.eyJzdWIiOiJhIiwiaXNzIjoiaHR0cHM6Ly9pZHAudGVzdCIsImF1ZCI6ImluZmVyZW5jZSIsImV4cCI6OTk5OTk5OTk5OX0.",
            "eyJhbGciOiJOb25lIiwia2lkIjoiaDEifQ.eyJzdWIiOiJhIiwiaXNzIjoiaHR0cHM6Ly9pZHAudGVzdCIsImF1ZCI6ImluZmVyZW5jZSIsImV4cCI6OTk5OTk5OTk5OX0.",
        ] {
            assert_eq!(v.verify(t), Err(AuthError::InvalidToken("malformed".into())));
        }
        let claims = json!({"sub":"a","iss":"https://idp.test","aud":"inference","exp":now()+600});
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("h2".into());
        let t = encode(&h, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            v.verify(&t),
            Err(AuthError::InvalidToken("no matching key".into()))
        );
        // A non-numeric `exp` / `nbf`, and a subject that is not a string.
        let mut c = claims.clone();
        c["exp"] = json!("9999999999");
        assert!(matches!(
            v.verify(&token(c)),
            Err(AuthError::InvalidToken(_))
        ));
        let mut c = claims.clone();
        c["nbf"] = json!("0");
        assert!(matches!(
            v.verify(&token(c)),
            Err(AuthError::InvalidToken(_))
        ));
        let mut c = claims;
        c["sub"] = json!(["alice"]);
        assert!(matches!(
            v.verify(&token(c)),
            Err(AuthError::InvalidToken(_))
        ));
    }

    /// The classic confusion: an HS256 token whose HMAC secret is the public key the JWKS
    /// publishes (EC here; RSA keys take the same family check). The key is of another
    /// family, so it is never tried as a secret.
    #[test]
    fn an_hmac_token_keyed_with_the_public_key_is_refused() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ek = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&ek, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let v = JwtVerifier::new(
            &JwtSettings {
                algorithms: vec!["ES256".into(), "HS256".into()],
                ..Default::default()
            },
            parse_jwks(&json!({"keys":[jwk]}).to_string()).unwrap(),
        )
        .unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let claims = json!({"sub":"svc","exp":now()+60});
        for secret in [
            kp.public_key_pem().into_bytes(),
            kp.public_key_raw().to_vec(),
        ] {
            let t = encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(
                v.verify(&t),
                Err(AuthError::InvalidToken("no matching key".into()))
            );
        }
    }

    #[test]
    fn es256_keys_from_a_jwks() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = kp.serialize_pem();
        let ek = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&ek, Algorithm::ES256).unwrap();
        let jwks = json!({"keys":[jwk]}).to_string();
        let v = JwtVerifier::new(&JwtSettings::default(), parse_jwks(&jwks).unwrap()).unwrap();
        let t = encode(
            &Header::new(Algorithm::ES256),
            &json!({"sub":"svc","exp":now()+60}),
            &ek,
        )
        .unwrap();
        assert_eq!(v.verify(&t), Ok("svc".into()));
        // An HS256 token cannot pass with the EC key (no algorithm confusion).
        let h = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub":"svc","exp":now()+60}),
            &EncodingKey::from_secret(b"x"),
        )
        .unwrap();
        assert!(v.verify(&h).is_err());
    }
}

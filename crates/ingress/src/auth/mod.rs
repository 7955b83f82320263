//! Who is calling: API keys (hashed, compared in constant time), JWTs (HS256 / RS256 /
//! ES256 from a JWKS) and client certificates verified in the TLS handshake (mutual TLS,
//! identities mapped by `auth.mtls`), turned into a consumer name.

pub mod jwt;
pub mod keys;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential in the request.
    #[error("missing credential")]
    Missing,
    /// The API key is not known.
    #[error("invalid API key")]
    InvalidKey,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Any other token problem (signature, `aud`, `iss`, `nbf`, unknown key).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A route authenticating by client certificate only, and none was verified for it.
    #[error("client certificate required")]
    CertificateRequired,
    /// The verified client certificate names no identity the route maps to a consumer.
    #[error("client certificate not allowed")]
    UnknownCertificate,
}

impl AuthError {
    /// Stable code for the client and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_api_key",
            AuthError::InvalidKey => "invalid_api_key",
            AuthError::Expired => "token_expired",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::CertificateRequired => "client_certificate_required",
            AuthError::UnknownCertificate => "client_certificate_not_allowed",
        }
    }
}

/// The credential in a request: `Authorization: Bearer …`, else `api-key` / `x-api-key`.
pub fn credential(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    ["api-key", "x-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Whether a credential has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(c: &str) -> bool {
    let parts: Vec<&str> = c.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

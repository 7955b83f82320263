//! Refusals in the OpenAI error shape, `{"error":{"message","type","code"}}`, so OpenAI
//! clients raise their usual exceptions — and, on the Anthropic Messages API, in Anthropic's
//! shape, `{"type":"error","error":{"type","message"}}`, so the `anthropic` client raises
//! its own (`AuthenticationError`, `RateLimitError`, …). Messages are short and never carry
//! internals; details (the stable reason code among them) go to the event.

/// A request the gateway answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// Stable reason code (`code`).
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// `Retry-After` seconds (429).
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal.
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The JSON body in the shape of the API asked: Anthropic's for the Messages API
    /// (`anthropic`), else OpenAI's.
    pub fn body_for(&self, anthropic: bool) -> Vec<u8> {
        if !anthropic {
            return self.body();
        }
        serde_json::to_vec(&serde_json::json!({
            "type": "error",
            "error": {
                "type": anthropic_type(self.status),
                "message": self.message,
            }
        }))
        .unwrap_or_default()
    }

    /// The JSON body (OpenAI's shape).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        }))
        .unwrap_or_default()
    }
}

/// Anthropic's error `type` for a status (its API reference, "Errors").
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let r = Refusal::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "Incorrect API key provided.");
    }

    #[test]
    fn anthropic_shape_on_the_messages_api() {
        let r = Refusal::new(
            429,
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests.",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body_for(true)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "Rate limit reached for requests.");
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (502, "api_error"),
        ] {
            assert_eq!(anthropic_type(status), kind);
        }
        assert_eq!(r.body_for(false), r.body());
    }
}

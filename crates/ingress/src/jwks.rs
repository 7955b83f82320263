//! JWKS documents named by URL: fetched before the gateway serves and every
//! [`REFRESH`] after, so signing-key rotation needs no restart. A failed fetch keeps the
//! keys already held.

use crate::auth::jwt::parse_jwks;
use crate::config::Compiled;
use crate::proxy::Shared;
use std::sync::Arc;
use std::time::Duration;

/// How often JWKS URLs are fetched again.
pub const REFRESH: Duration = Duration::from_secs(300);

/// Fetches every JWKS URL of the routes once.
pub async fn refresh_all(c: &Compiled) {
    for r in &c.routes {
        let Some(auth) = &r.auth else { continue };
        let (Some(url), Some(v)) = (&auth.jwks_url, &auth.jwt) else {
            continue;
        };
        match crate::proxy::upstream::fetch_text(url)
            .await
            .and_then(|t| parse_jwks(&t))
        {
            Ok(keys) => v.set_keys(keys),
            Err(e) => {
                tracing::warn!(route = %r.name, error = %e, "JWKS fetch failed; keeping the keys held")
            }
        }
    }
}

/// Refreshes forever.
pub async fn refresh_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let c = shared.config.load_full();
        refresh_all(&c).await;
    }
}

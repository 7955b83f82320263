//! Admission: the stages before the body is read. The request target and the TLS server
//! name are checked, the route is found (on a path every server reads the same way), the
//! caller is authenticated and authorised, and the limits that apply to it are chosen.

use super::request_body::decides_on_body;
use super::{Exchange, Peer};
use crate::auth::{credential, looks_like_jwt, AuthError};
use crate::config::{Compiled, ConsumerRights, Route};
use crate::limits::Limits;
use crate::openai::{creates_batch, operation};
use crate::refusal::Refusal;
use http::{HeaderMap, Request};
use std::sync::Arc;

/// What admission decided: the route, who is calling, and what they may do there.
pub(super) struct Admitted {
    pub(super) route: Arc<Route>,
    /// The authenticated consumer, on a route that authenticates.
    pub(super) consumer: Option<String>,
    /// The consumer's rights on the route's gateway, when the route lists consumers.
    pub(super) rights: Option<ConsumerRights>,
    pub(super) limits: Limits,
    pub(super) max_body: u64,
    pub(super) max_prompt: Option<u64>,
    /// The rate-limit key: the consumer, else the client's address.
    pub(super) limit_key: String,
}

impl Admitted {
    /// Whether the route's decisions depend on what the JSON body says ([`decides_on_body`]).
    pub(super) fn decides_on_body(&self) -> bool {
        decides_on_body(
            &self.route,
            self.rights.as_ref(),
            &self.limits,
            self.max_prompt,
        )
    }
}

/// Admits `req` (for `host` and `path`) or refuses it, in this order: a flawed request
/// target, a misdirected TLS request, a path read differently by servers, no route, no or
/// a bad credential, a consumer or route not allowed, a batch the route cannot check.
pub(super) fn admit(
    x: &mut Exchange,
    config: &Compiled,
    req: &mut Request<()>,
    host: &str,
    path: &str,
    peer: &Peer,
) -> Result<Admitted, Refusal> {
    let route = find_route(x, config, req, host, path, peer)?;

    // Who is calling, and may they use this route?
    let (consumer, rights) = authorise(x, &route, req.headers(), peer)?;
    let (limits, max_body, max_prompt) = route.limits_for(consumer.as_deref());
    let limit_key = consumer.clone().unwrap_or_else(|| peer.limit_key.clone());
    let admitted = Admitted {
        route,
        consumer,
        rights,
        limits,
        max_body,
        max_prompt,
        limit_key,
    };
    // A batch runs many requests the gateway never reads (inline `requests[].params` or a
    // file uploaded before): where the route decides on what requests say (models,
    // prompts, tokens), it cannot decide on those, so it does not create them.
    if req.method() == http::Method::POST && creates_batch(path) && admitted.decides_on_body() {
        return Err(Refusal::new(
            403,
            "permission_error",
            "batch_not_allowed",
            "Batches cannot be created through this route: their requests are not checked one by one.",
        ));
    }
    Ok(admitted)
}

/// The route serving `req`, once its target, its TLS server name and its path passed.
fn find_route(
    x: &mut Exchange,
    config: &Compiled,
    req: &mut Request<()>,
    host: &str,
    path: &str,
    peer: &Peer,
) -> Result<Arc<Route>, Refusal> {
    if let Some(r) = super::super::target::flaw(req) {
        return Err(r);
    }
    if x.shared.tls {
        if let Some(r) = super::super::sni::misdirected(&config.tls, peer.sni.as_deref(), host) {
            return Err(r);
        }
    }
    // HTTP/2 may split `cookie` into fields: the WAF and the backend (HTTP/1.1) get them
    // joined, as an HTTP/1.1 client sends them.
    if req.version() == http::Version::HTTP_2 {
        palisade_egress::hop::fold_cookies(req.headers_mut());
    }
    one_reading(config, host, path)?;
    let Some(route) = config.route(host, path).cloned() else {
        return Err(Refusal::new(
            404,
            "invalid_request_error",
            "route_not_found",
            "No route serves this URL.",
        ));
    };
    x.log.route = Some(route.name.clone());
    x.log.backend = Some(route.backend.authority.to_string());
    Ok(route)
}

/// The consumer calling `route` and its rights there, or the refusal: not authenticated,
/// not a consumer of the gateway, not allowed on this route.
fn authorise(
    x: &mut Exchange,
    route: &Route,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<(Option<String>, Option<ConsumerRights>), Refusal> {
    let consumer = match authenticate(route, headers, peer) {
        Ok((c, id)) => {
            // The identity that authenticated, else what a verified certificate names.
            x.log.client_identity = id.or_else(|| {
                let cert = peer.client_cert.as_ref();
                cert.and_then(|c| c.names.first().cloned())
            });
            c
        }
        Err(e) => return Err(auth_refusal(&e)),
    };
    x.log.consumer = consumer.clone();
    let rights = match &consumer {
        Some(c) if !route.consumers.is_empty() => match route.consumers.get(c) {
            Some(r) => Some(r.clone()),
            None => {
                return Err(Refusal::new(
                    403,
                    "permission_error",
                    "consumer_not_allowed",
                    "This consumer may not use this gateway.",
                ))
            }
        },
        _ => None,
    };
    if let Some(r) = &rights {
        if !r.routes.is_empty() && !r.routes.contains(&route.name) {
            return Err(Refusal::new(
                403,
                "permission_error",
                "route_not_allowed",
                "This consumer may not use this route.",
            ));
        }
    }
    Ok((consumer, rights))
}

fn auth_refusal(e: &AuthError) -> Refusal {
    let msg = match e {
        AuthError::Missing => "You didn't provide an API key.",
        AuthError::InvalidKey => "Incorrect API key provided.",
        AuthError::Expired => "The access token has expired.",
        AuthError::InvalidToken(_) => "The access token is not valid.",
        AuthError::CertificateRequired => "This route requires a client certificate.",
        AuthError::UnknownCertificate => "The client certificate is not allowed on this route.",
    };
    Refusal::new(401, "invalid_request_error", e.code(), msg)
}

/// The consumer of a request to `route`, and the certificate identity that proved it (mutual
/// TLS). A client certificate verified by the route's own gateway and naming an identity the
/// route maps (`auth.mtls`) decides first; otherwise the bearer credential does, when the
/// route takes one.
fn authenticate(
    route: &Route,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<(Option<String>, Option<String>), AuthError> {
    let Some(auth) = &route.auth else {
        return Ok((None, None));
    };
    if let Some(map) = &auth.mtls {
        let cert = peer
            .client_cert
            .as_ref()
            .filter(|c| c.gateway == route.gateway);
        if let Some(cert) = cert {
            if let Some((id, consumer)) = cert.names.iter().find_map(|n| map.get(n).map(|c| (n, c)))
            {
                return Ok((Some(consumer.clone()), Some(id.clone())));
            }
        }
        if auth.keys.is_none() && auth.jwt.is_none() {
            return Err(match cert {
                None => AuthError::CertificateRequired,
                Some(_) => AuthError::UnknownCertificate,
            });
        }
    }
    bearer(auth, headers).map(|c| (c, None))
}

fn bearer(
    auth: &crate::config::RouteAuth,
    headers: &HeaderMap,
) -> Result<Option<String>, AuthError> {
    let cred = credential(headers)
        .filter(|c| !c.is_empty())
        .ok_or(AuthError::Missing)?;
    if let (Some(jwt), true) = (&auth.jwt, looks_like_jwt(cred)) {
        return jwt.verify(cred).map(Some);
    }
    match (&auth.keys, &auth.jwt) {
        (Some(keys), _) => keys
            .lookup(cred)
            .map(|c| Some(c.to_string()))
            .ok_or(AuthError::InvalidKey),
        (None, Some(jwt)) => jwt.verify(cred).map(Some),
        (None, None) => Err(AuthError::InvalidKey),
    }
}

/// Refuses a path that servers may read differently (`palisade_policy::http_path`) when
/// the readings would take different routes or be different AI operations: the route's
/// authentication, limits and prompt checks must be those of the resource the backend
/// serves, whichever way it reads the path. A malformed escape is refused too. Nothing is
/// rewritten: the backend gets the path as sent.
pub(crate) fn one_reading(
    config: &crate::config::Compiled,
    host: &str,
    path: &str,
) -> Result<(), Refusal> {
    let bad = |why: &'static str| Refusal::new(400, "invalid_request_error", "invalid_path", why);
    let views = palisade_policy::http_path::views(path)
        .map_err(|_| bad("The path has a malformed percent-escape."))?;
    if views.len() == 1 {
        // One reading (the common case): nothing to compare, no route lookup here.
        return Ok(());
    }
    let first = &views[0];
    let route = |p: &str| config.route(host, p).map(|r| r.name.clone());
    let (r0, o0, b0) = (route(first), operation(first), creates_batch(first));
    if views[1..]
        .iter()
        .any(|v| route(v) != r0 || operation(v) != o0 || creates_batch(v) != b0)
    {
        return Err(bad(
            "The path reads differently once normalised (escapes, dot segments, slashes).",
        ));
    }
    Ok(())
}

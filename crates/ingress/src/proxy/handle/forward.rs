//! Forwarding: the request rebuilt for the backend (its URI, the headers it may see, the
//! gateway's own), sent within the route's timeout, and a failure turned into a refusal.

use super::{Exchange, Peer, CONSUMER_HEADER, CREDENTIAL_HEADERS};
use crate::config::Route;
use crate::filter::FilterSet;
use crate::proxy::https::{tls_failure, TlsFailure};
use crate::proxy::upstream::full;
use crate::refusal::Refusal;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use palisade_egress::hop::is_hop_by_hop;

/// Sends the request (`parts` with `out_body`) to the route's backend on behalf of
/// `consumer` and returns its answer, or the refusal: a request that cannot be forwarded,
/// a backend that does not answer in time or cannot be reached.
pub(super) async fn send(
    x: &mut Exchange,
    route: &Route,
    parts: &http::request::Parts,
    out_body: Bytes,
    filters: &FilterSet,
    consumer: Option<&str>,
    peer: &Peer,
) -> Result<Response<Incoming>, Refusal> {
    // Forward.
    let cant_forward = || {
        Refusal::new(
            400,
            "invalid_request_error",
            "bad_request",
            "The request could not be forwarded.",
        )
    };
    let Some(target) = backend_uri(&route.backend, parts.uri.path_and_query()) else {
        return Err(cant_forward());
    };
    let mut up = Request::builder().method(parts.method.clone()).uri(target);
    if let Some(h) = up.headers_mut() {
        upstream_headers(
            h,
            route,
            parts,
            &out_body,
            filters,
            consumer,
            peer,
            x.shared.tls,
        );
    }
    let Ok(up) = up.body(full(out_body)) else {
        return Err(cant_forward());
    };
    let shared = &x.shared;
    let sent = async {
        match &route.backend.tls {
            Some(t) => t.client.request(up).await.map_err(Into::into),
            None => crate::proxy::upstream::send_request(&shared.client, up).await,
        }
    };
    match tokio::time::timeout(route.timeout, sent).await {
        Err(_) => {
            // The backend may be generating still: the reservation stays charged.
            x.reserved = None;
            Err(Refusal::new(
                504,
                "server_error",
                "upstream_timeout",
                "The model backend did not answer in time.",
            ))
        }
        Ok(Err(e)) => {
            let tls = tls_failure(&*e);
            tracing::warn!(route = %route.name, error = %e, tls = ?tls, "backend request failed");
            let refusal = match tls {
                Some(TlsFailure::Certificate(_)) => Refusal::new(
                    502,
                    "server_error",
                    "upstream_certificate_invalid",
                    "The model backend's TLS certificate could not be verified.",
                ),
                Some(TlsFailure::Handshake(_)) => Refusal::new(
                    502,
                    "server_error",
                    "upstream_tls_failed",
                    "The TLS handshake with the model backend failed.",
                ),
                None => Refusal::new(
                    502,
                    "server_error",
                    "upstream_unavailable",
                    "The model backend is unavailable.",
                ),
            };
            Err(refusal)
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// The headers the backend gets: the client's, without hop-by-hop ones, the gateway
/// credential and a client's own consumer header; then the gateway's (`Host`, the length,
/// `Accept-Encoding` for the filters, `X-Forwarded-*`, the authenticated consumer).
#[allow(clippy::too_many_arguments)]
fn upstream_headers(
    h: &mut http::HeaderMap,
    route: &Route,
    parts: &http::request::Parts,
    out_body: &Bytes,
    filters: &FilterSet,
    consumer: Option<&str>,
    peer: &Peer,
    tls: bool,
) {
    for (k, v) in parts.headers.iter() {
        let n = k.as_str();
        if is_hop_by_hop(k)
            || CREDENTIAL_HEADERS.contains(&n)
            || n == CONSUMER_HEADER
            || n == "host"
            || n == "content-length"
        {
            continue;
        }
        h.append(k.clone(), v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(route.backend.host_header()) {
        h.insert(header::HOST, v);
    }
    if !out_body.is_empty() || parts.method == http::Method::POST {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(out_body.len()));
    }
    // The output filters read the answer as sent: ask for it uncompressed (a client's
    // `Accept-Encoding: gzip` would otherwise get compressed bytes past them).
    if !filters.is_empty() {
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Some(v) = peer.forwarded_for.clone() {
        h.append("x-forwarded-for", v);
    }
    h.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(c) = consumer.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(CONSUMER_HEADER, c);
    }
}

/// The backend URI for a request to `pq`: the backend's scheme and authority, its path
/// prefix, then the request's path and query (built from parts, without re-parsing when
/// the backend has no prefix).
pub(super) fn backend_uri(
    backend: &crate::config::Backend,
    pq: Option<&http::uri::PathAndQuery>,
) -> Option<http::Uri> {
    let path = match (backend.base_path.is_empty(), pq) {
        (true, Some(p)) => p.clone(),
        (true, None) => http::uri::PathAndQuery::from_static("/"),
        (false, p) => format!("{}{}", backend.base_path, p.map_or("/", |p| p.as_str()))
            .parse()
            .ok()?,
    };
    let scheme = if backend.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    http::Uri::builder()
        .scheme(scheme)
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build()
        .ok()
}

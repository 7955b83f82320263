//! The local admin API of `palisade up`: health, readiness, status, explain, events.

use crate::supervisor::State;
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use palisade_policy::{Flow, HttpRequest, Protocol};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// Shared state of the admin handlers.
#[derive(Clone)]
pub struct AdminState {
    /// Published snapshot and reload status.
    pub state: State,
    /// Event query backend.
    pub events: Option<Arc<dyn EventQuery>>,
    /// Federation membership health (connection, revisions, last error), when federated.
    pub federation: Option<tokio::sync::watch::Receiver<serde_json::Value>>,
}

/// Answers `/api/v1/events` (implemented by the event store).
pub trait EventQuery: Send + Sync {
    /// JSON events matching the filters, oldest first.
    fn query(
        &self,
        types: &[String],
        since_us: Option<i64>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, String>;
}

/// The router.
pub fn router(st: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/events", get(events))
        .with_state(st)
}

fn error(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({ "error": { "code": reason, "message": message } })),
    )
        .into_response()
}

async fn readyz(AxState(st): AxState<AdminState>) -> Response {
    match st.state.published.borrow().as_ref() {
        Some(p) => (
            StatusCode::OK,
            format!("ready (generation {})\n", p.generation),
        )
            .into_response(),
        None => {
            // Anyone who can connect may probe readiness (kubelet does, without a token):
            // say how many problems there are, not what they are (file paths, field values);
            // `/api/v1/status` and the log carry the details.
            let errors = st.state.status.borrow().errors.len();
            let why = match errors {
                0 => "no policy snapshot loaded yet".to_string(),
                n => format!("the policy has {n} error(s); see /api/v1/status or the log"),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
                .into_response()
        }
    }
}

async fn status(AxState(st): AxState<AdminState>) -> Response {
    let published = st.state.published.borrow().clone();
    let reload = st.state.status.borrow().clone();
    Json(json!({
        "enforcing": published.as_ref().map(|p| json!({
            "generation": p.generation,
            "federationRevision": p.federation_revision,
            "appliedAtUs": p.applied_at_us,
            "objects": p.objects,
            "pods": p.engine.pods().len(),
            "policies": p.engine.policies().len(),
            "posture": p.engine.posture(),
        })),
        "lastReload": reload,
        "federation": st.federation.as_ref().map(|f| f.borrow().clone()),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ExplainParams {
    from: String,
    to: String,
    port: u16,
    protocol: Option<String>,
    ip: Option<IpAddr>,
    method: Option<String>,
    path: Option<String>,
}

async fn explain(
    AxState(st): AxState<AdminState>,
    q: Result<Query<ExplainParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-query", e.body_text()),
    };
    let Some(published) = st.state.published.borrow().clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "no policy snapshot loaded".into(),
        );
    };
    let engine = &published.engine;
    let protocol = match q.protocol.as_deref().map(Protocol::parse) {
        None => Protocol::TCP,
        Some(Some(p)) => p,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-protocol",
                "protocol must be TCP, UDP or SCTP".into(),
            )
        }
    };
    let src = match engine.parse_endpoint(&q.from, None, false) {
        Ok(e) => e,
        Err(m) => return error(StatusCode::BAD_REQUEST, "bad-from", m),
    };
    let dst = match engine.parse_endpoint(&q.to, q.ip, true) {
        Ok(e) => e,
        Err(m) => return error(StatusCode::BAD_REQUEST, "bad-to", m),
    };
    let http = (q.method.is_some() || q.path.is_some()).then(|| HttpRequest {
        method: q.method.as_deref().unwrap_or("GET"),
        path: q.path.as_deref().unwrap_or("/"),
        host: None,
        headers: &[],
    });
    let ex = engine.explain(&Flow {
        src,
        dst,
        port: q.port,
        protocol,
        http,
    });
    Json(json!({
        "generation": published.generation,
        "federationRevision": published.federation_revision,
        "explanation": ex,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct EventParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn events(
    AxState(st): AxState<AdminState>,
    q: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-query", e.body_text()),
    };
    let Some(backend) = st.events.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-store",
            "event store not open".into(),
        );
    };
    let types: Vec<String> = q
        .kind
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::to_string)
        .collect();
    for t in &types {
        if !["flow", "dns", "http", "alert"].contains(&t.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-type",
                format!("type {t:?} is not flow, dns, http or alert"),
            );
        }
    }
    let since_us = match q.since.as_deref() {
        None => None,
        Some(s) => match crate::duration::parse_since(s) {
            Some(us) => Some(us),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-since",
                    format!("since {s:?} is not a duration like 15m, 1h, 2d"),
                )
            }
        },
    };
    // 0 would mean "no limit" to the store: the whole store in one answer.
    if q.limit == Some(0) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad-limit",
            "limit 0 is not allowed: give 1 to 100000 (the default is 1000)".into(),
        );
    }
    let limit = q.limit.unwrap_or(1000).min(100_000);
    match tokio::task::spawn_blocking(move || backend.query(&types, since_us, limit)).await {
        Ok(Ok(rows)) => Json(json!({ "events": rows })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "query task failed".into(),
        ),
    }
}

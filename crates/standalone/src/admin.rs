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
    /// Events matching the filters, oldest first, each as its JSON text (EVENTS.md).
    fn query(
        &self,
        types: &[String],
        since_us: Option<i64>,
        limit: usize,
    ) -> Result<Vec<String>, String>;
}

/// Most events one `/api/v1/events` answer holds (`limit` is 1 to this).
pub const EVENTS_MAX: usize = 10_000;

/// Most `/api/v1/events` reads running at once (each holds up to [`EVENTS_MAX`] events
/// until its answer is built); further requests wait their turn.
pub const MAX_CONCURRENT_EVENT_READS: usize = 2;

static EVENT_READS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_EVENT_READS);

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
    let limit = match q.limit {
        None => 1000,
        Some(n @ 1..=EVENTS_MAX) => n,
        Some(n) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-limit",
                format!("limit {n} is not allowed: give 1 to {EVENTS_MAX} (the default is 1000)"),
            )
        }
    };
    let Ok(_permit) = EVENT_READS.acquire().await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "query limiter closed".into(),
        );
    };
    match tokio::task::spawn_blocking(move || backend.query(&types, since_us, limit)).await {
        Ok(Ok(rows)) => {
            // The events' own JSON text, joined: no second copy of every event as a tree.
            let mut body =
                String::with_capacity(16 + rows.iter().map(|r| r.len() + 1).sum::<usize>());
            body.push_str("{\"events\":[");
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(r);
            }
            body.push_str("]}");
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Ok(Err(e)) => {
            // The details (paths, SQLite's words) go to the log, not to the client.
            tracing::warn!(error = %e, "/api/v1/events: the event store could not be read");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                "the event store could not be read; see the log".into(),
            )
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "query task failed".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store of identical events that counts the reads running at once.
    struct Fake {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl EventQuery for Fake {
        fn query(&self, _: &[String], _: Option<i64>, limit: usize) -> Result<Vec<String>, String> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![r#"{"id":"e1","type":"dns"}"#.to_string(); limit])
        }
    }

    fn get_sync(port: u16, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head[9..12].parse().unwrap(), body.to_string())
    }

    async fn get(port: u16, path: &'static str) -> (u16, String) {
        tokio::task::spawn_blocking(move || get_sync(port, path))
            .await
            .unwrap()
    }

    /// The admin API's events are bounded like the UI's: on the old code `limit` went up
    /// to 100,000 (a 63 MB answer that took about 850 MB to build, and any number built at
    /// once); now it is 1 to 10,000 (400 beyond), at most two reads run at once, and a
    /// store error says no more than that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn events_answers_are_bounded_and_read_two_at_a_time() {
        let (_ptx, published) = tokio::sync::watch::channel(None);
        let (_stx, status) = tokio::sync::watch::channel(Default::default());
        let fake = Arc::new(Fake {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let app = router(AdminState {
            state: State { published, status },
            events: Some(fake.clone()),
            federation: None,
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });

        let (code, body) = get(port, "/api/v1/events?limit=100000").await;
        let start = &body[..body.len().min(300)];
        assert_eq!(code, 400, "{start}");
        assert!(
            body.contains("bad-limit") && body.contains("1 to 10000"),
            "{start}"
        );
        let (code, body) = get(port, "/api/v1/events?limit=10000").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 10_000);
        assert_eq!(v["events"][0]["id"], "e1");

        let all: Vec<_> = (0..12)
            .map(|_| tokio::spawn(get(port, "/api/v1/events?limit=10")))
            .collect();
        for t in all {
            assert_eq!(t.await.unwrap().0, 200);
        }
        let peak = fake.peak.load(Ordering::SeqCst);
        assert!(
            (1..=MAX_CONCURRENT_EVENT_READS).contains(&peak),
            "{peak} reads at once"
        );
    }
}

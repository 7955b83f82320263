//! The web UI and its JSON API, served by `palisade up` next to the admin API: the service
//! graph, an events view with filters, alerts with their evidence, "explain this flow"
//! (through the admin API's `/api/v1/explain`), and Prometheus `/metrics`. The UI is one
//! HTML page and one script embedded in the binary: no build step, no external assets.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query as Params, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use palisade_events::{now_micros, parse_duration, Event, EventBody, EventType};
use palisade_policy::Engine;
use palisade_store::{Query, Store};
use serde::Deserialize;
use serde_json::json;

use crate::metrics::Metrics;
use crate::traffic::Traffic;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// The enforced engine, when there is one.
pub type EngineSource = Arc<dyn Fn() -> Option<Arc<Engine>> + Send + Sync>;

/// What the UI handlers need.
#[derive(Clone)]
pub struct WebState {
    /// The event store file.
    pub store: PathBuf,
    /// The enforced engine.
    pub engine: EngineSource,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
}

/// Routes: `/` (redirect), `/ui/`, `/ui/app.js`, `/ui/app.css`, `/metrics`, `/api/v1/graph`,
/// `/api/v1/ui/events`, `/api/v1/alerts`. Serve them behind [`crate::access::Access::protect`].
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route(
            "/ui/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/ui/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/ui/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/ui/events", get(events))
        .route("/api/v1/alerts", get(alerts))
        .with_state(state)
}

/// Metrics only, for a listener of its own.
pub fn metrics_router(state: WebState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({ "error": { "code": reason, "message": message } })),
    )
        .into_response()
}

/// An API error: status, a short reason code, and a message.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

async fn metrics(State(st): State<WebState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(""),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Filters {
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    verdict: Option<String>,
    workload: Option<String>,
    limit: Option<usize>,
}

impl Filters {
    fn query(&self, default_since: &str) -> Result<Query, ApiError> {
        let bad = |code: &'static str, m: String| Err(ApiError(StatusCode::BAD_REQUEST, code, m));
        let mut types = Vec::new();
        for t in self
            .kind
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
        {
            match t.parse::<EventType>() {
                Ok(t) => types.push(t),
                Err(_) => {
                    return bad(
                        "bad-type",
                        format!("type {t:?} is not flow, dns, http or alert"),
                    )
                }
            }
        }
        let since = self.since.as_deref().unwrap_or(default_since);
        let since_us = if since == "all" {
            None
        } else {
            match parse_duration(since) {
                Some(d) => Some(now_micros() - d),
                None => {
                    return bad(
                        "bad-since",
                        format!("since {since:?} is not a duration like 15m, 1h, 2d, or all"),
                    )
                }
            }
        };
        if let Some(v) = &self.verdict {
            if !["allow", "deny", "audit"].contains(&v.as_str()) {
                return bad(
                    "bad-verdict",
                    format!("verdict {v:?} is not allow, deny or audit"),
                );
            }
        }
        if self.limit == Some(0) {
            return bad(
                "bad-limit",
                format!("limit 0 is not allowed: give 1 to {EVENTS_MAX} (the default is 500)"),
            );
        }
        Ok(Query {
            types,
            since_us,
            verdict: self.verdict.clone().filter(|v| !v.is_empty()),
            workload: self.workload.clone().filter(|w| !w.is_empty()),
            limit: self.limit.unwrap_or(500).min(EVENTS_MAX),
            ..Query::default()
        })
    }
}

/// Most store reads the API runs at once: each may hold up to [`GRAPH_MAX_EVENTS`] events
/// (the alerts view reads up to [`EVIDENCE_SCAN_MAX`] per alert), so requests beyond it wait
/// their turn instead of each adding its share of memory and a blocking thread.
pub const MAX_CONCURRENT_READS: usize = 4;

static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_READS);

/// Store reads running now, and the most seen at once (for the tests).
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const NO_STORE: &str = "no event store yet";

/// Runs a store read off the async workers, at most [`MAX_CONCURRENT_READS`] at once.
async fn with_store<T: Send + 'static>(
    st: &WebState,
    f: impl FnOnce(&Store) -> Result<T, palisade_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    use std::sync::atomic::Ordering;
    let Ok(_permit) = READS.acquire().await else {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "query limiter closed".into(),
        ));
    };
    let path = st.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        let r = (|| {
            if !path.exists() {
                return Err(NO_STORE.to_string());
            }
            let store = Store::open(&path).map_err(|e| e.to_string())?;
            f(&store).map_err(|e| e.to_string())
        })();
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        r
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e == NO_STORE => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "store", e)),
        Ok(Err(e)) => {
            // The details (paths, SQLite's words) go to the log, not to the client.
            tracing::warn!(error = %e, "UI API: the event store could not be read");
            Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                "the event store could not be read; see the log".into(),
            ))
        }
        Err(_) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "query task failed".into(),
        )),
    }
}

async fn graph(
    State(st): State<WebState>,
    p: Result<Params<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Params(p) = match p {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-query", e.body_text()),
    };
    let mut q = match p.query("1h") {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    q.types = vec![EventType::Flow, EventType::Dns, EventType::Http];
    // Pods choose how many events there are: the graph reads the newest of the range only.
    q.limit = GRAPH_MAX_EVENTS;
    q.newest = true;
    let engine = (st.engine)();
    // No store yet: the snapshot's workloads alone.
    let events = with_store(&st, move |s| s.query(&q))
        .await
        .unwrap_or_default();
    let truncated = events.len() >= GRAPH_MAX_EVENTS;
    let traffic = Traffic::from_events(events.iter().map(|(_, e)| e));
    drop(events);
    let mut g = crate::graph::graph(&traffic, engine.as_deref());
    g.truncated = truncated;
    Json(g).into_response()
}

async fn events(
    State(st): State<WebState>,
    p: Result<Params<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Params(p) = match p {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-query", e.body_text()),
    };
    let mut q = match p.query("1h") {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    // The newest of the range: a burst of older events must not hide the latest ones.
    q.newest = true;
    match with_store(&st, move |s| s.query(&q)).await {
        Ok(rows) => {
            Json(json!({ "events": rows.into_iter().map(|(_, e)| e).collect::<Vec<Event>>() }))
                .into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// How far before an alert its evidence is looked for.
const EVIDENCE_WINDOW_US: i64 = 24 * 3_600 * 1_000_000;

/// Most events the graph is built from (the newest of the range).
pub const GRAPH_MAX_EVENTS: usize = 100_000;

/// Most rows `/api/v1/ui/events` returns.
pub const EVENTS_MAX: usize = 10_000;

/// Most alerts `/api/v1/alerts` returns (each looks up its evidence).
pub const ALERTS_MAX: usize = 200;

/// Most events read per alert while looking for its evidence (the newest before it).
const EVIDENCE_SCAN_MAX: usize = 20_000;

async fn alerts(
    State(st): State<WebState>,
    p: Result<Params<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Params(p) = match p {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-query", e.body_text()),
    };
    let mut q = match p.query("24h") {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    q.types = vec![EventType::Alert];
    q.verdict = None;
    // Newest alerts first in line; each one reads events to find its evidence.
    q.limit = q.limit.min(ALERTS_MAX);
    q.newest = true;
    let r = with_store(&st, move |s| {
        let mut out = Vec::new();
        for (_, a) in s.query(&q)? {
            let EventBody::Alert(info) = &a.body else {
                continue;
            };
            let wanted: std::collections::HashSet<&str> =
                info.evidence.iter().map(String::as_str).collect();
            let mut evidence = Vec::new();
            if !wanted.is_empty() {
                let eq = Query {
                    since_us: Some(a.time.as_micros() - EVIDENCE_WINDOW_US),
                    until_us: Some(a.time.as_micros() + 1),
                    workload: (!info.subject.starts_with("consumer:"))
                        .then(|| info.subject.clone()),
                    limit: EVIDENCE_SCAN_MAX,
                    newest: true,
                    ..Query::default()
                };
                evidence = s
                    .query(&eq)?
                    .into_iter()
                    .map(|(_, e)| e)
                    .filter(|e| wanted.contains(e.id.as_str()))
                    .take(100)
                    .collect();
            }
            out.push(json!({ "alert": a, "evidence": evidence }));
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(list) => Json(json!({ "alerts": list })).into_response(),
        Err(r) => r.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn store_reads_wait_their_turn() {
        // 16 requests at once (each of which may hold 100,000 events): at most
        // MAX_CONCURRENT_READS run together, the others wait, and all are answered.
        let dir = std::env::temp_dir().join(format!("palisade-web-reads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        drop(Store::open(&path).unwrap());
        let st = WebState {
            store: path,
            engine: Arc::new(|| None),
            metrics: Arc::new(Metrics::new()),
        };
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let st = st.clone();
                tokio::spawn(async move {
                    with_store(&st, |s| {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        s.latest_seq()
                    })
                    .await
                    .is_ok()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(
            (2..=MAX_CONCURRENT_READS).contains(&peak),
            "{peak} store reads ran at once"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_broken_store_is_a_503_without_its_details() {
        // On the old code the client got the store's error as it was: the file's path
        // and SQLite's words.
        let dir = std::env::temp_dir().join(format!("palisade-web-broken-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let st = WebState {
            store: path,
            engine: Arc::new(|| None),
            metrics: Arc::new(Metrics::new()),
        };
        let Err(ApiError(code, reason, message)) = with_store(&st, |s| s.latest_seq()).await else {
            panic!("a store of garbage was read");
        };
        assert_eq!((code, reason), (StatusCode::SERVICE_UNAVAILABLE, "store"));
        assert_eq!(message, "the event store could not be read; see the log");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

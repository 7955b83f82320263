//! A small Kubernetes API server for tests: list (with 404 for resources not served),
//! watch (scripted JSON-lines streams), status PATCH, Event POST and Lease GET/POST/PUT
//! with resourceVersion conflicts, speaking the wire protocol kube's client expects. It
//! records every request, and can go down (503, open watches broken) and come back.

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One scripted watch response.
pub(crate) struct WatchScript {
    /// JSON lines sent at once.
    pub(crate) lines: Vec<String>,
    /// Keep the stream open afterwards (until an outage) instead of ending it.
    pub(crate) hold: bool,
}

/// A request as received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) body: Value,
}

#[derive(Default)]
pub(crate) struct ApiState {
    /// Collection path → list responses (the last one is repeated).
    pub(crate) lists: HashMap<String, VecDeque<Value>>,
    /// Collection paths answered 404.
    pub(crate) absent: HashSet<String>,
    /// Collection path → watch responses (when none are left: an empty held stream).
    pub(crate) watches: HashMap<String, VecDeque<WatchScript>>,
    /// Every request.
    pub(crate) requests: Vec<Recorded>,
    /// Leases by path.
    pub(crate) leases: HashMap<String, Value>,
    /// Refuse everything with 503.
    pub(crate) down: bool,
}

pub(crate) struct FakeApi {
    pub(crate) state: Arc<Mutex<ApiState>>,
    pub(crate) url: String,
    outage: watch::Sender<bool>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl FakeApi {
    pub(crate) async fn start(state: ApiState) -> FakeApi {
        let state = Arc::new(Mutex::new(state));
        let (outage, outage_rx) = watch::channel(false);
        let st = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let st = st.clone();
            let outage_rx = outage_rx.clone();
            async move { handle(st, outage_rx, method, uri, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { state, url, outage }
    }

    /// Goes down: every request gets 503 and open watches break.
    pub(crate) fn go_down(&self) {
        self.state.lock().unwrap().down = true;
        self.outage.send_replace(true);
    }

    /// Comes back.
    pub(crate) fn come_back(&self) {
        self.state.lock().unwrap().down = false;
        self.outage.send_replace(false);
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn handle(
    st: Arc<Mutex<ApiState>>,
    outage: watch::Receiver<bool>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut s = st.lock().unwrap();
    if s.down {
        return status(503, "ServiceUnavailable", "the API server is down");
    }
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body_json.clone(),
    });
    if path.contains("/leases") {
        return lease(&mut s, &method, &path, body_json);
    }
    if method == Method::PATCH && path.ends_with("/status") {
        return ok(200, &body_json);
    }
    if method == Method::POST && path.ends_with("/events") {
        return ok(201, &body_json);
    }
    if method != Method::GET {
        return status(405, "MethodNotAllowed", "not in this fake");
    }
    if s.absent.contains(&path) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if query.split('&').any(|kv| kv == "watch=true") {
        let script = s
            .watches
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or(WatchScript {
                lines: vec![],
                hold: true,
            });
        drop(s);
        let mut text = String::new();
        for l in &script.lines {
            text.push_str(l);
            text.push('\n');
        }
        let first =
            futures_util::stream::once(
                async move { Ok::<Bytes, std::io::Error>(Bytes::from(text)) },
            );
        let hold = script.hold;
        let mut outage = outage;
        let rest = futures_util::stream::once(async move {
            if hold {
                let _ = outage.wait_for(|down| *down).await;
                Err(std::io::Error::other("connection reset"))
            } else {
                Ok(Bytes::new())
            }
        });
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(first.chain(rest)))
            .unwrap();
    }
    let Some(q) = s.lists.get_mut(&path) else {
        return status(404, "NotFound", "no such collection in this fake");
    };
    // Pages: `limit` items from the offset the `continue` token carries.
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
    };
    let offset: usize = param("continue")
        .and_then(|c| c.strip_prefix("offset-")?.parse().ok())
        .unwrap_or(0);
    let list = if q.len() > 1 && offset == 0 {
        q.pop_front().unwrap()
    } else {
        q.front().cloned().unwrap_or(json!({"items": []}))
    };
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let limit: usize = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let mut page = list.clone();
    let end = offset.saturating_add(limit).min(items.len());
    page["items"] = Value::Array(items[offset.min(end)..end].to_vec());
    if end < items.len() {
        page["metadata"]["continue"] = json!(format!("offset-{end}"));
    }
    ok(200, &page)
}

fn lease(s: &mut ApiState, method: &Method, path: &str, body: Value) -> Response {
    if *method == Method::GET {
        return match s.leases.get(path) {
            Some(l) => ok(200, l),
            None => status(404, "NotFound", "leases not found"),
        };
    }
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
    let item_path = if *method == Method::POST {
        format!("{path}/{name}")
    } else {
        path.to_string()
    };
    let current = s.leases.get(&item_path);
    let current_rv: Option<u64> = current
        .and_then(|l| l["metadata"]["resourceVersion"].as_str())
        .and_then(|v| v.parse().ok());
    match (method.as_str(), current_rv) {
        ("POST", Some(_)) => status(409, "AlreadyExists", "lease exists"),
        ("PUT", None) => status(404, "NotFound", "no lease"),
        ("PUT", Some(rv))
            if body["metadata"]["resourceVersion"].as_str() != Some(&rv.to_string()) =>
        {
            status(409, "Conflict", "the object has been modified")
        }
        ("POST" | "PUT", rv) => {
            let mut stored = body;
            stored["metadata"]["resourceVersion"] = json!((rv.unwrap_or(0) + 1).to_string());
            s.leases.insert(item_path, stored.clone());
            ok(if rv.is_some() { 200 } else { 201 }, &stored)
        }
        _ => status(405, "MethodNotAllowed", "not in this fake"),
    }
}

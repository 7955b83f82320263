//! Following one resource through the API: list (paginated), then watch from the list's
//! resourceVersion with bookmarks; resume from the last resourceVersion seen when a watch
//! ends, list again when it expired (410 Gone), back off on errors. A resource the API does
//! not serve (404: its CRD is not installed) counts as empty and is asked for again later.

use crate::backoff::Backoff;
use crate::reconcile::Change;
use crate::resources::Resource;
use futures_util::{pin_mut, StreamExt};
use kube::core::params::{ListParams, WatchParams};
use kube::core::Request;
use kube::Client;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// Timing of the watch loop.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Items per list page.
    pub page_size: u32,
    /// Server-side watch timeout (the API server ends the watch; it is resumed).
    pub watch_timeout_secs: u32,
    /// First backoff after an error.
    pub backoff_min: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// How often a resource the API does not serve is asked for again.
    pub absent_retry: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            page_size: 500,
            watch_timeout_secs: 290,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            absent_retry: Duration::from_secs(60),
        }
    }
}

/// A change of one resource, as sent to the reconciler.
pub type Update = (&'static Resource, Change);

enum Listed {
    Items(Value),
    Absent,
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Lists every object of `res`, page by page. A continue token that expired mid-way
/// (410) starts the list over.
async fn list_all(client: &Client, res: &Resource, page: u32) -> Result<Listed, kube::Error> {
    let req = Request::new(res.collection_path());
    'restart: loop {
        let mut items: Vec<Value> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(page);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let r = client
                .request::<Value>(req.list(&lp).map_err(kube::Error::BuildRequest)?)
                .await;
            let list = match r {
                Ok(l) => l,
                Err(e) if status_code(&e) == Some(404) => return Ok(Listed::Absent),
                Err(e) if status_code(&e) == Some(410) && token.is_some() => continue 'restart,
                Err(e) => return Err(e),
            };
            if let Some(a) = list["items"].as_array() {
                items.extend(a.iter().cloned());
            }
            token = list["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                let mut out = list;
                out["items"] = Value::Array(items);
                return Ok(Listed::Items(out));
            }
        }
    }
}

/// Follows `res` until `tx` closes.
pub async fn follow(
    client: Client,
    res: &'static Resource,
    settings: WatchSettings,
    tx: mpsc::Sender<Update>,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut version: Option<String> = None;
    let req = Request::new(res.collection_path());
    while !tx.is_closed() {
        let rv = match version.clone() {
            Some(rv) => rv,
            None => match list_all(&client, res, settings.page_size).await {
                Ok(Listed::Items(list)) => {
                    let change = Change::from_list(&list);
                    let Change::Listed {
                        resource_version, ..
                    } = &change
                    else {
                        unreachable!("from_list gives Listed")
                    };
                    let rv = resource_version.clone();
                    tracing::debug!(kind = res.kind, %rv, "listed");
                    if tx.send((res, change)).await.is_err() {
                        return;
                    }
                    backoff.reset();
                    version = Some(rv.clone());
                    rv
                }
                Ok(Listed::Absent) => {
                    tracing::info!(
                        kind = res.kind,
                        "not served by the API (CRD not installed?); treated as empty"
                    );
                    let change = Change::Listed {
                        items: Vec::new(),
                        resource_version: String::new(),
                        absent: true,
                    };
                    if tx.send((res, change)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(settings.absent_retry).await;
                    continue;
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(kind = res.kind, error = %e, ?wait, "list failed; the last snapshot stays in force");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            },
        };
        let wp = WatchParams::default().timeout(settings.watch_timeout_secs);
        let stream = match req.watch(&wp, &rv) {
            Ok(r) => client.request_events::<Value>(r).await,
            Err(e) => Err(kube::Error::BuildRequest(e)),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) if status_code(&e) == Some(410) => {
                version = None;
                let _ = tx.send((res, Change::Expired)).await;
                continue;
            }
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(kind = res.kind, error = %e, ?wait, "watch failed; the last snapshot stays in force");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        pin_mut!(stream);
        let mut failed = false;
        while let Some(item) = stream.next().await {
            let ev = match item {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(kind = res.kind, error = %e, "watch stream broke; resuming");
                    failed = true;
                    break;
                }
            };
            match Change::from_watch_event(ev) {
                Ok(Change::Expired) => {
                    tracing::info!(
                        kind = res.kind,
                        "resourceVersion expired (410); listing again"
                    );
                    version = None;
                    if tx.send((res, Change::Expired)).await.is_err() {
                        return;
                    }
                    break;
                }
                Ok(change) => {
                    if let Some(v) = change_version(&change) {
                        version = Some(v);
                    }
                    backoff.reset();
                    if tx.send((res, change)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = res.kind, error = %e, "watch error event");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

fn change_version(c: &Change) -> Option<String> {
    match c {
        Change::Applied(o) | Change::Deleted(o) => o["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        Change::Bookmark { resource_version } => Some(resource_version.clone()),
        _ => None,
    }
}

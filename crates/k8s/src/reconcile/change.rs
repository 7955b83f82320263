//! One step of a watch: a full list, an object added/modified/deleted, a bookmark, or the
//! news that the resourceVersion expired (HTTP 410 Gone, as a watch `ERROR` event or as the
//! status of a request).

use kube::core::WatchEvent;
use serde_json::Value;

/// A change to the objects of one resource.
#[derive(Debug, Clone)]
pub enum Change {
    /// Every object, as a list returned them (first sync, or relist after expiry).
    Listed {
        /// The items.
        items: Vec<Value>,
        /// The list's resourceVersion: where the watch resumes.
        resource_version: String,
        /// The API does not serve the resource (CRD not installed): no objects, retried.
        absent: bool,
    },
    /// `ADDED` or `MODIFIED`.
    Applied(Value),
    /// `DELETED` (the object's last state).
    Deleted(Value),
    /// `BOOKMARK`: nothing changed up to this resourceVersion.
    Bookmark {
        /// Where to resume.
        resource_version: String,
    },
    /// The resourceVersion is too old (410 Gone): list again.
    Expired,
}

/// A watch `ERROR` event other than expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("watch error {code} {reason}: {message}")]
pub struct ChangeError {
    /// HTTP status code the API put in the event.
    pub code: u16,
    /// Its reason (`Expired`, `InternalError`, …).
    pub reason: String,
    /// Its message.
    pub message: String,
}

impl Change {
    /// Reads one watch event as the API server sends it (one JSON line of a watch stream).
    pub fn from_watch_event(ev: WatchEvent<Value>) -> Result<Change, ChangeError> {
        Ok(match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => Change::Applied(o),
            WatchEvent::Deleted(o) => Change::Deleted(o),
            WatchEvent::Bookmark(b) => Change::Bookmark {
                resource_version: b.metadata.resource_version,
            },
            WatchEvent::Error(s) if s.code == 410 => Change::Expired,
            WatchEvent::Error(s) => {
                return Err(ChangeError {
                    code: s.code,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                })
            }
        })
    }

    /// Reads a list response (`{"metadata":{"resourceVersion":..},"items":[..]}`).
    pub fn from_list(list: &Value) -> Change {
        Change::Listed {
            items: list["items"].as_array().cloned().unwrap_or_default(),
            resource_version: list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            absent: false,
        }
    }
}

//! What the controller tells users about each object: the `Accepted` condition on the
//! `status` of Palisade's own kinds, and a Kubernetes Event (kubectl describe shows it)
//! when an object is refused or, after that, accepted again. Pure: the caller supplies the
//! time.

use super::Key;
use crate::convert::Parsed;
use crate::resources::Resource;
use serde_json::{json, Value};

/// The longest message put in an Event (the API server keeps up to 1 KiB there).
pub const EVENT_MESSAGE_MAX: usize = 1024;
/// The longest condition message (the CRD schema allows 32 KiB).
pub const CONDITION_MESSAGE_MAX: usize = 32 * 1024;

/// A condition on a Palisade object's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `True` or `False`.
    pub status: &'static str,
    /// `Accepted` or `Invalid`.
    pub reason: &'static str,
    /// What was found.
    pub message: String,
}

/// One object's status update and/or Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Which object.
    pub key: Key,
    /// Its resource.
    pub resource: &'static Resource,
    /// Its uid (Events reference it).
    pub uid: String,
    /// The generation judged.
    pub generation: i64,
    /// Whether it is enforced.
    pub accepted: bool,
    /// `Accepted`, or the problems.
    pub message: String,
    /// Patch `status` (Palisade's kinds only).
    pub write_status: bool,
    /// An Event to create: (type, reason).
    pub event: Option<(&'static str, &'static str)>,
}

/// The message an accepted object gets.
pub const ACCEPTED_MESSAGE: &str = "valid; enforced";

/// (generation, accepted, message) the API should show for `parsed`.
pub(super) fn wanted(parsed: &Parsed, generation: i64) -> (i64, bool, String) {
    if parsed.is_valid() {
        (generation, true, ACCEPTED_MESSAGE.to_string())
    } else {
        (
            generation,
            false,
            truncate(&parsed.error_summary(), CONDITION_MESSAGE_MAX),
        )
    }
}

/// The (observedGeneration, accepted, message) an object's status already shows.
pub(super) fn shown_status(obj: &Value) -> Option<(i64, bool, String)> {
    let status = obj.get("status")?;
    let cond = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?;
    Some((
        cond["observedGeneration"]
            .as_i64()
            .or_else(|| status["observedGeneration"].as_i64())?,
        cond["status"] == "True",
        cond["message"].as_str().unwrap_or("").to_string(),
    ))
}

pub(super) fn build(
    res: &'static Resource,
    key: &Key,
    uid: &str,
    generation: i64,
    parsed: &Parsed,
    reported: Option<&(i64, bool, String)>,
) -> Report {
    let (generation, accepted, message) = wanted(parsed, generation);
    let event = match (accepted, reported) {
        (false, _) => Some(("Warning", "Invalid")),
        (true, Some((_, false, _))) => Some(("Normal", "Accepted")),
        (true, _) => None,
    };
    Report {
        key: key.clone(),
        resource: res,
        uid: uid.to_string(),
        generation,
        accepted,
        message,
        write_status: res.palisade_owned,
        event,
    }
}

impl Report {
    /// The condition.
    pub fn condition(&self) -> Condition {
        Condition {
            status: if self.accepted { "True" } else { "False" },
            reason: if self.accepted { "Accepted" } else { "Invalid" },
            message: self.message.clone(),
        }
    }

    /// The merge patch for the status subresource; `now` is RFC 3339.
    pub fn status_patch(&self, now: &str) -> Value {
        let c = self.condition();
        json!({
            "status": {
                "observedGeneration": self.generation,
                "conditions": [{
                    "type": "Accepted",
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": now,
                    "observedGeneration": self.generation,
                }]
            }
        })
    }

    /// A `v1 Event` about the object, or `None` when none is owed. Events of cluster-scoped
    /// objects go to `default`, as Kubernetes does. `unique` makes the name unique.
    pub fn event_object(&self, now: &str, unique: u64, instance: &str) -> Option<Value> {
        let (ty, reason) = self.event?;
        let ns = if self.key.namespace.is_empty() {
            "default"
        } else {
            &self.key.namespace
        };
        let mut involved = json!({
            "apiVersion": self.resource.api_version(),
            "kind": self.resource.kind,
            "name": self.key.name,
            "uid": self.uid,
        });
        if !self.key.namespace.is_empty() {
            involved["namespace"] = json!(self.key.namespace);
        }
        let message = if self.accepted {
            "accepted: the object is valid and enforced".to_string()
        } else {
            truncate(
                &format!(
                    "refused (not enforced; other objects are): {}",
                    self.message
                ),
                EVENT_MESSAGE_MAX,
            )
        };
        Some(json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{}.{unique:x}", self.key.name),
                "namespace": ns,
            },
            "involvedObject": involved,
            "type": ty,
            "reason": reason,
            "message": message,
            "source": {"component": "palisade-controller"},
            "reportingComponent": "palisade.dev/controller",
            "reportingInstance": instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// RFC 3339 UTC with seconds (`2024-05-01T12:00:00Z`) from seconds since the epoch, the
/// form `metav1.Time` takes.
pub fn rfc3339(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let secs = epoch_seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_metav1() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        let s = "é".repeat(10);
        let t = truncate(&s, 8);
        assert_eq!(t, "éé...");
    }
}

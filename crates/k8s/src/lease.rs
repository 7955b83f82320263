//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it: the holder
//! renews every few seconds; another replica takes over once `renewTime +
//! leaseDurationSeconds` has passed. Writes use the Lease's resourceVersion, so two
//! replicas racing for it cannot both win. The decision is pure ([`decide`]); [`LeaseLock`]
//! does the I/O.

use kube::core::params::{GetParams, PostParams};
use kube::core::Request;
use kube::Client;
use serde_json::{json, Value};

/// What a replica should do about the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds it.
    Follow {
        /// The holder.
        holder: String,
    },
}

/// The Lease fields the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// `spec.holderIdentity`.
    pub holder: Option<String>,
    /// `spec.renewTime`, seconds since the epoch.
    pub renew_time: Option<i64>,
    /// `spec.leaseDurationSeconds`.
    pub duration_secs: i64,
    /// `spec.leaseTransitions`.
    pub transitions: i64,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
}

impl LeaseView {
    /// Reads a Lease object.
    pub fn from_object(o: &Value) -> LeaseView {
        let spec = &o["spec"];
        LeaseView {
            holder: spec["holderIdentity"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            renew_time: spec["renewTime"].as_str().and_then(parse_rfc3339),
            duration_secs: spec["leaseDurationSeconds"].as_i64().unwrap_or(15),
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
            resource_version: o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        }
    }
}

/// The decision for replica `me` at `now` (seconds since the epoch).
pub fn decide(lease: &LeaseView, me: &str, now: i64) -> Decision {
    match &lease.holder {
        Some(h) if h == me => Decision::Renew,
        Some(h) => {
            let expired = lease
                .renew_time
                .is_none_or(|t| t + lease.duration_secs < now);
            if expired {
                Decision::Acquire
            } else {
                Decision::Follow { holder: h.clone() }
            }
        }
        None => Decision::Acquire,
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2024-05-01T12:00:00.123456Z`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let rest = rest
        .strip_prefix('.')
        .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(rest);
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// A MicroTime (`2024-05-01T12:00:00.000000Z`).
pub fn micro_time(epoch_seconds: i64) -> String {
    let s = crate::reconcile::rfc3339(epoch_seconds);
    format!("{}.000000Z", s.trim_end_matches('Z'))
}

/// One replica's hold on a Lease.
#[derive(Clone)]
pub struct LeaseLock {
    /// The client.
    pub client: Client,
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration_secs: i64,
}

impl LeaseLock {
    fn collection(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        )
    }

    fn body(&self, now: i64, acquire: Option<i64>, transitions: i64, rv: Option<&str>) -> Value {
        let mut o = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_secs,
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            }
        });
        if let Some(a) = acquire {
            o["spec"]["acquireTime"] = json!(micro_time(a));
        }
        if let Some(rv) = rv {
            o["metadata"]["resourceVersion"] = json!(rv);
        }
        o
    }

    /// Takes or renews the Lease; `Ok(true)` when this replica leads afterwards. A lost
    /// race (409 Conflict) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self, now: i64) -> Result<bool, kube::Error> {
        let req = Request::new(self.collection());
        let current = match self
            .client
            .request::<Value>(
                req.get(&self.name, &GetParams::default())
                    .map_err(kube::Error::BuildRequest)?,
            )
            .await
        {
            Ok(o) => Some(o),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(e),
        };
        let result = match current {
            None => {
                let body = serde_json::to_vec(&self.body(now, Some(now), 0, None))
                    .map_err(kube::Error::SerdeError)?;
                self.client
                    .request::<Value>(
                        req.create(&PostParams::default(), body)
                            .map_err(kube::Error::BuildRequest)?,
                    )
                    .await
            }
            Some(o) => {
                let view = LeaseView::from_object(&o);
                let (acquire, transitions) = match decide(&view, &self.identity, now) {
                    Decision::Follow { holder } => {
                        tracing::debug!(%holder, "following the leader");
                        return Ok(false);
                    }
                    Decision::Renew => (
                        o["spec"]["acquireTime"].as_str().and_then(parse_rfc3339),
                        view.transitions,
                    ),
                    Decision::Acquire => (Some(now), view.transitions + 1),
                };
                let body = self.body(now, acquire, transitions, Some(&view.resource_version));
                let body = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
                self.client
                    .request::<Value>(
                        req.replace(&self.name, &PostParams::default(), body)
                            .map_err(kube::Error::BuildRequest)?,
                    )
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: Option<&str>, renew: Option<i64>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_string),
            renew_time: renew,
            duration_secs: 15,
            transitions: 2,
            resource_version: "7".into(),
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(&view(None, None), "a", 100), Decision::Acquire);
        assert_eq!(
            decide(&view(Some("a"), Some(99)), "a", 100),
            Decision::Renew
        );
        assert_eq!(
            decide(&view(Some("b"), Some(90)), "a", 100),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(&view(Some("b"), Some(80)), "a", 100),
            Decision::Acquire
        );
    }

    #[test]
    fn times_round_trip() {
        let t = 1_767_225_599;
        assert_eq!(parse_rfc3339(&micro_time(t)), Some(t));
        assert_eq!(parse_rfc3339("2025-12-31T23:59:59Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-01-01T01:59:59+02:00"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
        let lease = json!({"metadata": {"resourceVersion": "9"},
            "spec": {"holderIdentity": "x", "renewTime": "2025-12-31T23:59:59.123456Z",
                "leaseDurationSeconds": 20}});
        let v = LeaseView::from_object(&lease);
        assert_eq!(v.renew_time, Some(t));
        assert_eq!(v.duration_secs, 20);
        assert_eq!(v.resource_version, "9");
    }
}

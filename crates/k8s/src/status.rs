//! Writing what the controller found back to the API: the status subresource of
//! Palisade's objects (a JSON merge patch) and `v1 Event`s.

use crate::reconcile::Report;
use kube::core::params::{Patch, PatchParams, PostParams};
use kube::core::Request;
use kube::Client;
use serde_json::Value;

/// The collection path of `report`'s object (namespaced when it is).
fn collection(report: &Report) -> String {
    let res = report.resource;
    let base = if res.group.is_empty() {
        format!("/api/{}", res.version)
    } else {
        format!("/apis/{}/{}", res.group, res.version)
    };
    if report.key.namespace.is_empty() {
        format!("{base}/{}", res.plural)
    } else {
        format!("{base}/namespaces/{}/{}", report.key.namespace, res.plural)
    }
}

/// Delivers one report: patches the status (when the kind has one) and creates the Event
/// (when one is owed). An object deleted meanwhile (404) counts as delivered.
pub async fn deliver(
    client: &Client,
    report: &Report,
    now: &str,
    unique: u64,
    instance: &str,
) -> Result<(), kube::Error> {
    if report.write_status {
        let req = Request::new(collection(report))
            .patch_subresource(
                "status",
                &report.key.name,
                &PatchParams::default(),
                &Patch::Merge(report.status_patch(now)),
            )
            .map_err(kube::Error::BuildRequest)?;
        match client.request::<Value>(req).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    if let Some(ev) = report.event_object(now, unique, instance) {
        let ns = ev["metadata"]["namespace"].as_str().unwrap_or("default");
        let body = serde_json::to_vec(&ev).map_err(kube::Error::SerdeError)?;
        let req = Request::new(format!("/api/v1/namespaces/{ns}/events"))
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        match client.request::<Value>(req).await {
            Ok(_) => {}
            // The namespace is being deleted: nobody will read the Event.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {
                tracing::debug!(object = %report.key, code = s.code, "event not recorded");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! Shared identities and member status: each member publishes its workloads under
//! `identities/<cluster>`, attached to a lease it keeps alive (so they expire when it stops),
//! and writes its status (enforced revision, applied-at, error) under `status/<cluster>`
//! on every heartbeat and whenever what it enforces changes.

use crate::connect::within;
use crate::error::{FederationError, Result};
use crate::member::{Health, MemberSettings};
use crate::push::now_us;
use crate::status::MemberStatus;
use etcd_client::PutOptions;
use palisade_policy::model::RemoteWorkload;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// The value under `identities/<cluster>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDoc {
    /// The publishing cluster.
    pub cluster: String,
    /// Its workloads.
    pub workloads: Vec<RemoteWorkload>,
}

/// Parses a cluster's identity document; every workload must name that cluster and carry
/// parseable IPs.
pub fn parse(cluster: &str, bytes: &[u8]) -> std::result::Result<IdentityDoc, String> {
    let doc: IdentityDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not an identity document: {e}"))?;
    if doc.cluster != cluster {
        return Err(format!("document names cluster {:?}", doc.cluster));
    }
    for w in &doc.workloads {
        if w.cluster != cluster {
            return Err(format!(
                "workload {}/{} names cluster {:?}",
                w.namespace, w.name, w.cluster
            ));
        }
        if let Some(bad) = w
            .ips
            .iter()
            .find(|i| i.parse::<std::net::IpAddr>().is_err())
        {
            return Err(format!(
                "workload {}/{}: {bad:?} is not an IP",
                w.namespace, w.name
            ));
        }
    }
    Ok(doc)
}

/// Keeps the identities and the status published, reconnecting as needed.
pub(crate) async fn publish_loop(
    settings: MemberSettings,
    mut local: watch::Receiver<Vec<RemoteWorkload>>,
    mut enforced: watch::Receiver<Option<(u64, i64)>>,
    health: watch::Receiver<Health>,
    health_tx: watch::Sender<Health>,
    mut leading: watch::Receiver<bool>,
) {
    loop {
        if !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            e = session(&settings, &mut local, &mut enforced, &health) => {
                tracing::warn!(error = %e, "federation: cannot publish identities/status; retrying");
                health_tx.send_modify(|h| h.last_error = Some(format!("publishing: {e}")));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = stepped_down(&mut leading) => {
                tracing::info!("federation: no longer this cluster's publisher; stopped publishing");
            }
        }
    }
}

/// Resolves when `leading` turns false; never when its sender is gone (the last value,
/// true, stands).
async fn stepped_down(leading: &mut watch::Receiver<bool>) {
    if leading.wait_for(|l| !*l).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn session(
    settings: &MemberSettings,
    local: &mut watch::Receiver<Vec<RemoteWorkload>>,
    enforced: &mut watch::Receiver<Option<(u64, i64)>>,
    health: &watch::Receiver<Health>,
) -> FederationError {
    match run(settings, local, enforced, health).await {
        Ok(()) => FederationError::Config("publisher stopped".into()),
        Err(e) => e,
    }
}

async fn run(
    settings: &MemberSettings,
    local: &mut watch::Receiver<Vec<RemoteWorkload>>,
    enforced: &mut watch::Receiver<Option<(u64, i64)>>,
    health: &watch::Receiver<Health>,
) -> Result<()> {
    let t = settings.etcd.timeout;
    let ttl = settings.identity_ttl_secs.max(2);
    let layout = &settings.layout;
    let name = &settings.cluster.name;
    let mut client = settings.etcd.connect().await?;
    let lease = within(t, client.lease_grant(ttl, None)).await?.id();
    let (mut keeper, mut acks) = within(t, client.lease_keep_alive(lease)).await?;
    let put_ids = |workloads: Vec<RemoteWorkload>| {
        let doc = IdentityDoc {
            cluster: name.clone(),
            workloads,
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    };
    let status = |enforced: Option<(u64, i64)>, h: &Health| {
        let st = MemberStatus {
            cluster: name.clone(),
            labels: settings.cluster.labels.clone(),
            enforced_revision: enforced.map(|e| e.0),
            applied_at_us: enforced.map(|e| e.1),
            seen_revision: h.seen_revision,
            error: h.refused.clone(),
            heartbeat_us: now_us(),
            refused_claims: h.refused_claims.clone(),
        };
        serde_json::to_vec(&st).unwrap_or_default()
    };
    let body = put_ids(local.borrow_and_update().clone());
    within(
        t,
        client.put(
            layout.identity(name),
            body,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await?;
    let mut beat = tokio::time::interval(Duration::from_millis((ttl as u64 * 1000) / 3));
    loop {
        tokio::select! {
            _ = beat.tick() => {
                within(t, keeper.keep_alive()).await?;
                match within(t, acks.message()).await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(FederationError::Config("identity lease expired".into())),
                }
            }
            r = local.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let body = put_ids(local.borrow_and_update().clone());
                within(t, client.put(layout.identity(name), body, Some(PutOptions::new().with_lease(lease)))).await?;
                continue;
            }
            r = enforced.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
        }
        let body = status(*enforced.borrow_and_update(), &health.borrow());
        within(t, client.put(layout.member(name), body, None)).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_documents_must_name_their_cluster() {
        let w = |c: &str, ip: &str| RemoteWorkload {
            cluster: c.into(),
            namespace: "ml".into(),
            name: "trainer".into(),
            ips: vec![ip.into()],
            ..Default::default()
        };
        let ok = serde_json::to_vec(&IdentityDoc {
            cluster: "east".into(),
            workloads: vec![w("east", "10.1.0.5")],
        })
        .unwrap();
        assert_eq!(parse("east", &ok).unwrap().workloads.len(), 1);
        assert!(parse("west", &ok).is_err());
        let bad_ip = serde_json::to_vec(&IdentityDoc {
            cluster: "east".into(),
            workloads: vec![w("east", "not-an-ip")],
        })
        .unwrap();
        assert!(parse("east", &bad_ip).unwrap_err().contains("not an IP"));
        let mixed = serde_json::to_vec(&IdentityDoc {
            cluster: "east".into(),
            workloads: vec![w("west", "10.1.0.5")],
        })
        .unwrap();
        assert!(parse("east", &mixed).is_err());
        assert!(parse("east", b"{").is_err());
    }
}

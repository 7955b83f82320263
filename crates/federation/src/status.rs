//! Per-member status: what each member writes under `status/<cluster>` (the revision it
//! enforces, when it applied it, its last error), and `palisade federation status`, which
//! reads them all and shows lag and drift against the current revision.

use crate::connect::{within, EtcdOptions};
use crate::error::Result;
use crate::layout::{KeyKind, Layout};
use crate::push::now_us;
use crate::revision::parse_pointer;
use etcd_client::GetOptions;
// Member names, their errors and problem keys are whatever a writer under the prefix put
// there (each member writes its own status): printed escaped.
use palisade_policy::diag::printable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member's heartbeat is stale after this long.
pub const STALE_AFTER_US: i64 = 15_000_000;

/// What a member reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Cluster name.
    pub cluster: String,
    /// Cluster labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The global policy revision it enforces (`None`: none yet).
    #[serde(default)]
    pub enforced_revision: Option<u64>,
    /// When it applied that revision (µs since the epoch).
    #[serde(default)]
    pub applied_at_us: Option<i64>,
    /// The newest revision it has seen the pointer at.
    #[serde(default)]
    pub seen_revision: Option<u64>,
    /// Why the seen revision is not enforced, or the last federation error.
    #[serde(default)]
    pub error: Option<String>,
    /// When it wrote this (µs since the epoch).
    pub heartbeat_us: i64,
    /// Other members' address claims it refuses right now (contested, outside their
    /// networks…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_claims: Vec<String>,
}

/// One member as `federation status` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    /// What it reported.
    #[serde(flatten)]
    pub status: MemberStatus,
    /// Revisions behind the current one.
    pub lag: Option<u64>,
    /// Enforcing something other than the current revision, failing, or silent.
    pub drift: bool,
    /// No heartbeat for [`STALE_AFTER_US`].
    pub stale: bool,
}

/// The whole federation's state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationStatus {
    /// The set.
    pub set: String,
    /// The current revision (`None`: nothing pushed, or the pointer is unreadable).
    pub current_revision: Option<u64>,
    /// Revisions stored.
    pub revisions: Vec<u64>,
    /// Problems found under the prefix (garbage keys, bad pointer, bad member records).
    pub problems: Vec<String>,
    /// Members.
    pub members: Vec<MemberReport>,
    /// Read from one etcd member without quorum: may be stale.
    pub serializable_read: bool,
}

/// Reads the federation's state; without quorum, falls back to a serializable read (what
/// the reachable member has) and says so.
pub async fn read(opts: &EtcdOptions, layout: &Layout, set: &str) -> Result<FederationStatus> {
    let mut client = opts.connect_with(false).await?;
    let get = |serializable: bool| {
        let mut o = GetOptions::new().with_prefix();
        if serializable {
            o = o.with_serializable();
        }
        o
    };
    let (resp, serializable_read) =
        match within(opts.timeout, client.get(layout.prefix(), Some(get(false)))).await {
            Ok(r) => (r, false),
            Err(_) => {
                let r = within(opts.timeout, client.get(layout.prefix(), Some(get(true)))).await?;
                (r, true)
            }
        };
    let mut st = FederationStatus {
        set: set.to_string(),
        current_revision: None,
        revisions: Vec::new(),
        problems: Vec::new(),
        members: Vec::new(),
        serializable_read,
    };
    let mut members = Vec::new();
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).to_string();
        match layout.classify(kv.key()) {
            KeyKind::Current => match parse_pointer(kv.value()) {
                Ok(n) => st.current_revision = Some(n),
                Err(e) => st.problems.push(format!("{key}: {e}")),
            },
            KeyKind::Revision(n) => st.revisions.push(n),
            KeyKind::Identities(_) => {}
            KeyKind::Member(c) => match serde_json::from_slice::<MemberStatus>(kv.value()) {
                Ok(m) if m.cluster == c => members.push(m),
                Ok(m) => st
                    .problems
                    .push(format!("{key}: status names cluster {:?}", m.cluster)),
                Err(e) => st.problems.push(format!("{key}: not a member status: {e}")),
            },
            KeyKind::Unknown => st.problems.push(format!("{key}: unexpected key (ignored)")),
        }
    }
    if let Some(cur) = st.current_revision {
        if !st.revisions.contains(&cur) {
            st.problems.push(format!(
                "current points at revision {cur}, which is not stored"
            ));
        }
    }
    let now = now_us();
    for m in &members {
        if m.heartbeat_us.saturating_sub(now) > STALE_AFTER_US {
            st.problems.push(format!(
                "{}: heartbeat {:.0}s in the future (clock skew?); shown as stale",
                layout.member(&m.cluster),
                m.heartbeat_us.saturating_sub(now) as f64 / 1e6
            ));
        }
    }
    st.members = members
        .into_iter()
        .map(|m| report(m, st.current_revision, now))
        .collect();
    Ok(st)
}

fn report(m: MemberStatus, current: Option<u64>, now: i64) -> MemberReport {
    let lag = match (current, m.enforced_revision) {
        (Some(c), Some(e)) => Some(c.saturating_sub(e)),
        (Some(c), None) => Some(c),
        _ => None,
    };
    // A heartbeat from the future (a member's clock ahead, or a made-up time) says nothing
    // about whether the member is alive: it would never go stale.
    let stale = now.saturating_sub(m.heartbeat_us) > STALE_AFTER_US
        || m.heartbeat_us.saturating_sub(now) > STALE_AFTER_US;
    let drift = m.enforced_revision != current || m.error.is_some() || stale;
    MemberReport {
        status: m,
        lag,
        drift,
        stale,
    }
}

/// The table `federation status` prints.
pub fn render_table(st: &FederationStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let cur = st
        .current_revision
        .map(|c| c.to_string())
        .unwrap_or_else(|| "none".into());
    let _ = writeln!(
        out,
        "federation set {}: current revision {cur} ({} stored)",
        st.set,
        st.revisions.len()
    );
    if st.serializable_read {
        let _ = writeln!(
            out,
            "warning: etcd has no quorum; read from one member, may be stale"
        );
    }
    for p in &st.problems {
        let _ = writeln!(out, "problem: {}", printable(p));
    }
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>5} {:<6} {:<26} ERROR",
        "CLUSTER", "REVISION", "LAG", "DRIFT", "APPLIED"
    );
    for m in &st.members {
        let s = &m.status;
        let rev = s
            .enforced_revision
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        let lag = m.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        let drift = match (m.drift, m.stale) {
            (_, true) => "stale",
            (true, _) => "yes",
            _ => "no",
        };
        let applied = s
            .applied_at_us
            .map(|t| format!("{:.1}s ago", now_us().saturating_sub(t) as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {rev:>9} {lag:>5} {drift:<6} {applied:<26} {}",
            printable(&s.cluster),
            printable(s.error.as_deref().unwrap_or(""))
        );
    }
    for m in &st.members {
        for c in &m.status.refused_claims {
            let _ = writeln!(
                out,
                "refused by {}: {}",
                printable(&m.status.cluster),
                printable(c)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_and_drift_follow_the_current_revision() {
        let now = 100_000_000;
        let m = |rev: Option<u64>, err: Option<&str>, hb: i64| MemberStatus {
            cluster: "a".into(),
            enforced_revision: rev,
            error: err.map(str::to_string),
            heartbeat_us: hb,
            ..Default::default()
        };
        let r = report(m(Some(5), None, now), Some(5), now);
        assert_eq!((r.lag, r.drift, r.stale), (Some(0), false, false));
        let r = report(m(Some(3), None, now), Some(5), now);
        assert_eq!((r.lag, r.drift), (Some(2), true));
        let r = report(m(Some(5), Some("bad revision 6"), now), Some(5), now);
        assert!(r.drift);
        let r = report(m(Some(5), None, now - STALE_AFTER_US - 1), Some(5), now);
        assert!(r.stale && r.drift);
    }

    /// A member's heartbeat is its own clock. On the old code one an hour ahead (or a status
    /// written with a made-up time) never went stale, so a member that stopped long ago was
    /// shown in sync forever.
    #[test]
    fn a_heartbeat_from_the_future_is_stale() {
        let now = 100_000_000_000;
        let m = MemberStatus {
            cluster: "a".into(),
            enforced_revision: Some(5),
            heartbeat_us: now + 3_600_000_000,
            ..Default::default()
        };
        let r = report(m.clone(), Some(5), now);
        assert!(r.stale && r.drift, "{r:?}");
        // A little skew is fine.
        let r = report(
            MemberStatus {
                heartbeat_us: now + 1_000_000,
                ..m.clone()
            },
            Some(5),
            now,
        );
        assert!(!r.stale && !r.drift, "{r:?}");
        // Made-up extremes do not wrap around into "fresh".
        for hb in [i64::MIN, i64::MAX] {
            let r = report(
                MemberStatus {
                    heartbeat_us: hb,
                    ..m.clone()
                },
                Some(5),
                now,
            );
            assert!(r.stale, "{hb}");
        }
    }

    /// Each member writes its own status: on the old code its error (and its name, and any
    /// key listed as a problem) went to the operator's terminal raw, so an escape sequence
    /// drove it and a line break printed a made-up member line.
    #[test]
    fn the_table_escapes_what_members_wrote() {
        let evil =
            "x\u{1b}]0;pwned\u{7}\u{1b}[2J\nsouth                        7     0 no     0.1s ago";
        let st = FederationStatus {
            set: "s".into(),
            current_revision: Some(7),
            revisions: vec![7],
            problems: vec![format!("/palisade/federation/s/junk{evil}: unexpected key")],
            members: vec![report(
                MemberStatus {
                    cluster: format!("east{evil}"),
                    enforced_revision: Some(7),
                    error: Some(evil.into()),
                    heartbeat_us: now_us(),
                    ..Default::default()
                },
                Some(7),
                now_us(),
            )],
            serializable_read: false,
        };
        let out = render_table(&st);
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        // Header, problem, column titles, one member: no made-up line.
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(!out.lines().any(|l| l.starts_with("south")), "{out}");
    }
}

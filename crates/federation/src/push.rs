//! `palisade federation push` and `rollback`: one immutable revision document and the move of
//! the `current` pointer, in one etcd transaction guarded by compare-and-swap on the pointer.
//! Readers see either the old revision or the new one, never part of one. The same
//! transaction deletes revisions older than the newest `keep` ones, so the store does not
//! grow with every push; revision numbers still only grow.

use crate::connect::{within, EtcdOptions};
use crate::error::{FederationError, Result};
use crate::layout::{KeyKind, Layout};
use crate::revision::{
    parse_member_networks, parse_pointer, parse_revision, validate_files, RevisionDoc, RevisionFile,
};
use crate::signing::{self, SigningKey};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use std::collections::BTreeMap;

/// Largest revision document written (etcd refuses requests over 1.5 MiB by default).
pub const MAX_REVISION_BYTES: usize = 1_400_000;

/// Revisions kept by default (the newest ones); older ones are deleted by the push that
/// makes them fall out, so `rollback` reaches this many revisions back.
pub const DEFAULT_KEEP_REVISIONS: u64 = 100;

/// What a push or rollback wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The new revision.
    pub revision: u64,
    /// Global policies in it.
    pub policies: usize,
}

/// Validates `files` and writes them as the next revision, keeping the newest `keep`
/// revisions (at least 1).
pub async fn push(
    opts: &EtcdOptions,
    layout: &Layout,
    files: Vec<RevisionFile>,
    keep: u64,
) -> Result<Pushed> {
    push_with_networks(opts, layout, files, None, keep).await
}

/// [`push`], declaring the networks each member may claim addresses in (`CLUSTER: [CIDR…]`).
/// `None` keeps those of the current revision, so a push of policies alone does not drop
/// them; `Some` of an empty map removes them.
pub async fn push_with_networks(
    opts: &EtcdOptions,
    layout: &Layout,
    files: Vec<RevisionFile>,
    networks: Option<BTreeMap<String, Vec<String>>>,
    keep: u64,
) -> Result<Pushed> {
    push_signed(opts, layout, files, networks, keep, None).await
}

/// [`push_with_networks`], signing the revision with `signer` when given
/// ([`crate::signing`]).
pub async fn push_signed(
    opts: &EtcdOptions,
    layout: &Layout,
    files: Vec<RevisionFile>,
    networks: Option<BTreeMap<String, Vec<String>>>,
    keep: u64,
    signer: Option<&SigningKey>,
) -> Result<Pushed> {
    let policies = validate_files(&files).map_err(FederationError::Invalid)?;
    if let Some(n) = &networks {
        parse_member_networks(n).map_err(|e| FederationError::Revision(e.join("\n")))?;
    }
    let revision = retry_transient(opts, || async {
        let mut client = opts.connect().await?;
        write_revision(
            &mut client,
            opts,
            layout,
            files.clone(),
            networks.clone(),
            None,
            keep,
            signer,
        )
        .await
    })
    .await?;
    Ok(Pushed { revision, policies })
}

/// Writes a new revision with the policies of revision `rev` (which must be a valid one, and
/// still kept), keeping the newest `keep` revisions.
pub async fn rollback(opts: &EtcdOptions, layout: &Layout, rev: u64, keep: u64) -> Result<Pushed> {
    rollback_signed(opts, layout, rev, keep, None).await
}

/// [`rollback`], signing the new revision with `signer` when given.
pub async fn rollback_signed(
    opts: &EtcdOptions,
    layout: &Layout,
    rev: u64,
    keep: u64,
    signer: Option<&SigningKey>,
) -> Result<Pushed> {
    retry_transient(opts, || rollback_once(opts, layout, rev, keep, signer)).await
}

async fn rollback_once(
    opts: &EtcdOptions,
    layout: &Layout,
    rev: u64,
    keep: u64,
    signer: Option<&SigningKey>,
) -> Result<Pushed> {
    let mut client = opts.connect().await?;
    let resp = within(opts.timeout, client.get(layout.revision(rev), None)).await?;
    let kv = resp.kvs().first().ok_or_else(|| {
        FederationError::Revision(format!(
            "there is no revision {rev} (never written, or older than the kept ones)"
        ))
    })?;
    // Signing it again must not sign what a writer of the prefix put there: with a key,
    // only a revision that key signed (as revision `rev` of this set) is restored.
    if let Some(k) = signer {
        k.check_own(layout.set(), rev, kv.value()).map_err(|why| {
            FederationError::Revision(format!(
                "revision {rev} cannot be rolled back to with this signing key: {why}; push the policy files instead"
            ))
        })?;
    }
    let parsed = parse_revision(rev, kv.value()).map_err(|e| {
        FederationError::Revision(format!(
            "revision {rev} cannot be rolled back to:\n{}",
            e.join("\n")
        ))
    })?;
    let doc: RevisionDoc = serde_json::from_slice(&signing::document(kv.value()))
        .map_err(|e| FederationError::Revision(format!("revision {rev}: {e}")))?;
    // The policies of `rev`; the member networks stay those of the current revision.
    let revision = write_revision(
        &mut client,
        opts,
        layout,
        doc.files,
        None,
        Some(rev),
        keep,
        signer,
    )
    .await?;
    Ok(Pushed {
        revision,
        policies: parsed.policies.len(),
    })
}

/// The highest revision number stored (0: none).
pub async fn latest_revision(
    client: &mut Client,
    opts: &EtcdOptions,
    layout: &Layout,
) -> Result<u64> {
    let resp = within(
        opts.timeout,
        client.get(
            layout.revisions(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        ),
    )
    .await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| match layout.classify(kv.key()) {
            KeyKind::Revision(n) => Some(n),
            _ => None,
        })
        .max()
        .unwrap_or(0))
}

#[allow(clippy::too_many_arguments)]
async fn write_revision(
    client: &mut Client,
    opts: &EtcdOptions,
    layout: &Layout,
    files: Vec<RevisionFile>,
    networks: Option<BTreeMap<String, Vec<String>>>,
    rolled_back_from: Option<u64>,
    keep: u64,
    signer: Option<&SigningKey>,
) -> Result<u64> {
    for _ in 0..5 {
        let cur = within(opts.timeout, client.get(layout.current(), None)).await?;
        let cur_mod = cur.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0);
        let member_networks = match &networks {
            Some(n) => n.clone(),
            None => current_networks(client, opts, layout, cur.kvs().first(), signer).await?,
        };
        // A stored number at u64::MAX (garbage under the prefix) must not wrap to revision 0,
        // a pointer members refuse.
        let next = latest_revision(client, opts, layout)
            .await?
            .checked_add(1)
            .ok_or_else(|| {
                FederationError::Revision(
                    "the highest stored revision number is the largest there is; delete that key"
                        .into(),
                )
            })?;
        if let Some(k) = signer {
            check_jump(client, opts, layout, next, k).await?;
        }
        let doc = RevisionDoc {
            revision: next,
            created_at_us: now_us(),
            rolled_back_from,
            files: files.clone(),
            member_networks,
        };
        let mut body = serde_json::to_vec(&doc)
            .map_err(|e| FederationError::Revision(format!("cannot encode revision: {e}")))?;
        if let Some(k) = signer {
            // The revision the pointer names now: the signature covers it and the number.
            let previous = cur
                .kvs()
                .first()
                .and_then(|kv| parse_pointer(kv.value()).ok())
                .unwrap_or(0);
            body = k.seal(layout.set(), next, previous, &body);
        }
        if body.len() > MAX_REVISION_BYTES {
            return Err(FederationError::Revision(format!(
                "the revision is {} bytes; etcd takes at most {MAX_REVISION_BYTES}",
                body.len()
            )));
        }
        let pointer_unchanged = if cur_mod == 0 {
            Compare::create_revision(layout.current(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(layout.current(), CompareOp::Equal, cur_mod)
        };
        let mut ops = vec![
            TxnOp::put(layout.revision(next), body, None),
            TxnOp::put(layout.current(), next.to_string(), None),
        ];
        if let Some((from, to)) = pruned_range(layout, next, keep) {
            ops.push(TxnOp::delete(
                from,
                Some(DeleteOptions::new().with_range(to)),
            ));
        }
        let txn = Txn::new()
            .when([
                pointer_unchanged,
                Compare::create_revision(layout.revision(next), CompareOp::Equal, 0),
            ])
            .and_then(ops);
        if within(opts.timeout, client.txn(txn)).await?.succeeded() {
            return Ok(next);
        }
    }
    Err(FederationError::Conflict)
}

/// Furthest a signed revision's number may lie past the newest revision its key signed.
/// Members refuse a signed revision numbered below the one they applied, and the hub numbers
/// past every stored key; unchecked, a writer of the prefix storing a key near `u64::MAX`
/// had the hub sign the largest number there is, after which it could sign nothing members
/// take again.
pub const MAX_REVISION_JUMP: u64 = 1_000_000;

/// The numbers of the revisions stored, newest first.
async fn stored_revisions(
    client: &mut Client,
    opts: &EtcdOptions,
    layout: &Layout,
) -> Result<Vec<u64>> {
    let keys = within(
        opts.timeout,
        client.get(
            layout.revisions(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        ),
    )
    .await?;
    let mut stored: Vec<u64> = keys
        .kvs()
        .iter()
        .filter_map(|kv| match layout.classify(kv.key()) {
            KeyKind::Revision(n) => Some(n),
            _ => None,
        })
        .collect();
    stored.sort_unstable_by(|a, b| b.cmp(a));
    Ok(stored)
}

/// Revisions looked at (newest first) for the newest one the key signed.
const OWN_REVISION_SCAN: usize = 200;

/// Refuses to sign revision `next` when it lies more than [`MAX_REVISION_JUMP`] past the
/// newest stored revision `key` signed (0 when none).
async fn check_jump(
    client: &mut Client,
    opts: &EtcdOptions,
    layout: &Layout,
    next: u64,
    key: &SigningKey,
) -> Result<()> {
    if next <= MAX_REVISION_JUMP {
        return Ok(());
    }
    let stored = stored_revisions(client, opts, layout).await?;
    let mut own = 0;
    for n in stored.iter().copied().take(OWN_REVISION_SCAN) {
        let resp = within(opts.timeout, client.get(layout.revision(n), None)).await?;
        if resp
            .kvs()
            .first()
            .is_some_and(|kv| key.check_own(layout.set(), n, kv.value()).is_ok())
        {
            own = n;
            break;
        }
    }
    if next - own > MAX_REVISION_JUMP {
        let highest = stored.first().copied().unwrap_or(0);
        return Err(FederationError::Revision(format!(
            "the next revision would be {next}, more than {MAX_REVISION_JUMP} past the newest revision this key signed ({own}): revision {highest} is stored but not signed by it (written by hand, or by someone pushing the numbers towards the largest there is); delete {} and push again",
            layout.revision(highest)
        )));
    }
    Ok(())
}

/// The member networks in force: those the revision `current` names declares; when the
/// pointer or that document is garbage (members then keep their last good revision), those
/// of the newest stored revision that parses. None at all only when no revision parses.
/// With a `signer`, only revisions it signed count (members refuse the others, and copying
/// networks from one into a new signed revision would sign what any writer of the prefix
/// chose); when revisions are stored but none is its own, the push is refused rather than
/// dropping the networks silently.
async fn current_networks(
    client: &mut Client,
    opts: &EtcdOptions,
    layout: &Layout,
    current: Option<&etcd_client::KeyValue>,
    signer: Option<&SigningKey>,
) -> Result<BTreeMap<String, Vec<String>>> {
    // Unsigned, no pointer means no revision in force. Signed, a deleted pointer must not
    // drop the networks either: the newest own revision stored still says them.
    if current.is_none() && signer.is_none() {
        return Ok(BTreeMap::new());
    }
    let networks_of = |n: u64, bytes: &[u8]| {
        if let Some(k) = signer {
            k.check_own(layout.set(), n, bytes).ok()?;
        }
        serde_json::from_slice::<RevisionDoc>(&signing::document(bytes))
            .ok()
            .filter(|d| d.revision == n && parse_member_networks(&d.member_networks).is_ok())
            .map(|d| d.member_networks)
    };
    let pointed = current.and_then(|kv| parse_pointer(kv.value()).ok());
    if let Some(n) = pointed {
        let resp = within(opts.timeout, client.get(layout.revision(n), None)).await?;
        if let Some(found) = resp.kvs().first().and_then(|d| networks_of(n, d.value())) {
            return Ok(found);
        }
    }
    let mut stored = stored_revisions(client, opts, layout).await?;
    stored.retain(|n| Some(*n) != pointed);
    let stored_is_empty = stored.is_empty();
    for n in stored {
        let resp = within(opts.timeout, client.get(layout.revision(n), None)).await?;
        if let Some(found) = resp.kvs().first().and_then(|d| networks_of(n, d.value())) {
            return Ok(found);
        }
    }
    if let Some(k) = signer.filter(|_| current.is_some() || !stored_is_empty) {
        return Err(FederationError::Revision(format!(
            "no stored revision is signed by this signing key (key {}), so the member networks in force are not known; give them (--member-network) or --clear-member-networks",
            k.key_id()
        )));
    }
    Ok(BTreeMap::new())
}

/// The key range `[from, to)` of the revisions that fall out when `next` is written and the
/// newest `keep` (at least 1) stay: every revision below `next + 1 - keep`. Revision keys are
/// zero-padded, so the range holds exactly those numbers.
fn pruned_range(layout: &Layout, next: u64, keep: u64) -> Option<(String, String)> {
    let first_kept = next.saturating_sub(keep.max(1) - 1);
    (first_kept > 1).then(|| (layout.revision(0), layout.revision(first_kept)))
}

/// Retries `f` while etcd answers "unavailable" (a leader election in progress, a member
/// just gone), for up to twice the request timeout. A write that committed but whose answer
/// was lost is retried too and then lands as one more identical revision, never a partial one.
async fn retry_transient<T, F, Fut>(opts: &EtcdOptions, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = std::time::Instant::now() + opts.timeout * 2;
    loop {
        match f().await {
            Err(e) if is_transient(&e) && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "etcd unavailable; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

/// gRPC UNAVAILABLE (code 14): leader changes, no leader, an endpoint going away.
fn is_transient(e: &FederationError) -> bool {
    const UNAVAILABLE: i32 = 14;
    matches!(e, FederationError::Etcd(etcd_client::Error::GRpcStatus(s)) if s.code() as i32 == UNAVAILABLE)
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_revisions_and_never_the_one_written() {
        let l = Layout::new("prod");
        assert_eq!(pruned_range(&l, 1, 100), None);
        assert_eq!(pruned_range(&l, 100, 100), None);
        // Writing 101 with 100 kept: revision 1 goes.
        assert_eq!(
            pruned_range(&l, 101, 100),
            Some((l.revision(0), l.revision(2)))
        );
        // keep 0 is taken as 1: only the revision written stays.
        assert_eq!(pruned_range(&l, 5, 0), Some((l.revision(0), l.revision(5))));
        assert_eq!(pruned_range(&l, 5, 1), Some((l.revision(0), l.revision(5))));
        // The largest number (an unsigned push past a key stored by hand near it): the
        // old code computed `next + 1`, which wrapped to 0 in release (nothing pruned, the
        // store kept growing) and panicked in debug builds.
        assert_eq!(
            pruned_range(&l, u64::MAX, 100),
            Some((l.revision(0), l.revision(u64::MAX - 99)))
        );
        // The range never reaches non-numeric keys under revisions/.
        let (_, to) = pruned_range(&l, 500, 3).unwrap();
        assert!(to.as_str() < format!("{}a", l.revisions()).as_str());
    }
}

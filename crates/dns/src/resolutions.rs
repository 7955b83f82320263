//! What each pod resolved: (pod IP, name, answer IP, expiry) records.
//!
//! The DNS proxy records every address it lets a pod use; the kernel's FQDN sets are filled
//! from these records, the egress gateway asks them whether a pod's connection to an IP
//! for a name agrees with what that pod resolved, and they are saved to disk so that a
//! restarted proxy (or a rebuilt ruleset) does not forget IPs that are still open.
//!
//! Bounded: at most `max_per_name` IPs per (pod, name) (the soonest to expire gives way, as
//! a rotating CDN would have it), `max_per_pod` per pod and `max_records` in all (beyond
//! either, new records are refused and counted, so a flood of answers cannot grow memory
//! without end, and one pod resolving random names under a wildcard it may use cannot take
//! the room the other pods' answers need).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One open address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The pod's address.
    pub pod: IpAddr,
    /// The name it asked for (normalised).
    pub name: String,
    /// An address the answer gave.
    pub ip: IpAddr,
    /// When it stops being open (Unix time, milliseconds).
    pub expires_ms: u64,
}

impl Record {
    /// Time left at `now_ms`.
    pub fn remaining(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.expires_ms.saturating_sub(now_ms))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Inner {
    /// pod → name → (IP, expiry).
    by_pod: HashMap<IpAddr, HashMap<String, Vec<(IpAddr, u64)>>>,
    /// Records held per pod (live or not yet pruned).
    per_pod: HashMap<IpAddr, usize>,
    total: usize,
    refused: u64,
}

impl Inner {
    /// Accounts for `n` records of `pod` removed.
    fn removed(&mut self, pod: IpAddr, n: usize) {
        if n == 0 {
            return;
        }
        self.total -= n;
        if let Some(c) = self.per_pod.get_mut(&pod) {
            *c -= n;
            if *c == 0 {
                self.per_pod.remove(&pod);
            }
        }
    }

    /// Frees one record's room for `pod` when every room is taken: from the pod holding the
    /// most records, if it holds at least two more than `pod` (its expired records first,
    /// else its soonest to expire). So pods that each stay within their own bound cannot
    /// together keep every other pod's answers from being opened; the largest holders give
    /// way. Only runs at the global bound.
    fn make_room_for(&mut self, pod: IpAddr, now: u64, evicted: &mut Vec<Record>) -> bool {
        let mine = self.per_pod.get(&pod).copied().unwrap_or(0);
        let Some((&largest, &held)) = self
            .per_pod
            .iter()
            .filter(|(p, _)| **p != pod)
            .max_by_key(|(_, n)| **n)
        else {
            return false;
        };
        if held < mine + 2 {
            return false;
        }
        let before = self.total;
        self.prune_pod(largest, now);
        if self.total < before {
            return true;
        }
        let Some(names) = self.by_pod.get_mut(&largest) else {
            return false;
        };
        let soonest = names
            .iter()
            .flat_map(|(name, list)| list.iter().enumerate().map(move |(i, r)| (r.1, name, i)))
            .min_by_key(|(e, _, _)| *e)
            .map(|(_, name, i)| (name.clone(), i));
        let Some((name, i)) = soonest else {
            return false;
        };
        if let Some(list) = names.get_mut(&name) {
            let (ip, expires_ms) = list.swap_remove(i);
            if expires_ms > now {
                evicted.push(Record {
                    pod: largest,
                    name: name.clone(),
                    ip,
                    expires_ms,
                });
            }
            if list.is_empty() {
                names.remove(&name);
            }
        }
        if names.is_empty() {
            self.by_pod.remove(&largest);
        }
        self.removed(largest, 1);
        true
    }

    /// Whether `pod` still holds `ip` live for some name: its kernel element (one per
    /// (pod, IP) in each set whose pattern matches a name) may serve that name too.
    fn holds_ip(&self, pod: IpAddr, ip: IpAddr, now: u64) -> bool {
        self.by_pod.get(&pod).is_some_and(|names| {
            names
                .values()
                .any(|list| list.iter().any(|(i, e)| *i == ip && *e > now))
        })
    }

    /// Drops `pod`'s expired records.
    fn prune_pod(&mut self, pod: IpAddr, now: u64) {
        let mut gone = 0;
        if let Some(names) = self.by_pod.get_mut(&pod) {
            names.retain(|_, list| {
                let before = list.len();
                list.retain(|(_, e)| *e > now);
                gone += before - list.len();
                !list.is_empty()
            });
            if names.is_empty() {
                self.by_pod.remove(&pod);
            }
        }
        self.removed(pod, gone);
    }
}

/// The records, shared by the proxy, the kernel updater and the egress gateway.
#[derive(Debug)]
pub struct Resolutions {
    inner: Mutex<Inner>,
    max_per_name: usize,
    max_per_pod: usize,
    max_records: usize,
    dirty: std::sync::atomic::AtomicBool,
}

impl Resolutions {
    /// Empty, with the given bounds (each at least 1); a pod may hold up to a tenth of
    /// `max_records` (at least `max_per_name`) unless [`with_max_per_pod`](Self::with_max_per_pod)
    /// says otherwise.
    pub fn new(max_per_name: usize, max_records: usize) -> Self {
        let max_records = max_records.max(1);
        let max_per_name = max_per_name.max(1);
        Resolutions {
            inner: Mutex::new(Inner::default()),
            max_per_name,
            max_per_pod: (max_records / 10).max(max_per_name),
            max_records,
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The same, holding at most `n` (at least 1) records per pod.
    pub fn with_max_per_pod(mut self, n: usize) -> Self {
        self.max_per_pod = n.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is
        // a single push or retain): keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `pod` may use `ip` for `name` for `valid` from `now_ms`. Returns whether
    /// it was recorded (false when the pod's or the global bound is reached).
    pub fn record(&self, pod: IpAddr, name: &str, ip: IpAddr, valid: Duration, now: u64) -> bool {
        self.record_evicting(pod, name, ip, valid, now).0
    }

    /// As [`Resolutions::record`], also returning the live records that gave way to it (the
    /// soonest to expire of the name beyond `max_per_name`, or of the largest holder at the
    /// overall bound): their kernel elements must be closed too, or the bounds would bound
    /// only this table while the kernel kept every address ever answered open for its TTL.
    pub fn record_evicting(
        &self,
        pod: IpAddr,
        name: &str,
        ip: IpAddr,
        valid: Duration,
        now: u64,
    ) -> (bool, Vec<Record>) {
        self.record_in_answer(pod, name, ip, valid, now, &[])
    }

    /// As [`Resolutions::record_evicting`], for `ip`, one of the addresses `answer` gave
    /// `pod` for `name` (all recorded in turn): no address of that same answer gives way to
    /// it. The client got them all and most connect to the first, so when an answer holds
    /// more than `max_per_name` addresses, its first ones stay recorded (and open) and the
    /// rest are refused, rather than each later one closing an earlier one as it comes.
    pub fn record_in_answer(
        &self,
        pod: IpAddr,
        name: &str,
        ip: IpAddr,
        valid: Duration,
        now: u64,
        answer: &[IpAddr],
    ) -> (bool, Vec<Record>) {
        let mut evicted = Vec::new();
        let expires = now.saturating_add(valid.as_millis() as u64);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.lock();
        let inner = &mut *g;
        let mut gone = 0;
        if let Some(list) = inner.by_pod.get_mut(&pod).and_then(|m| m.get_mut(name)) {
            let before = list.len();
            list.retain(|(_, e)| *e > now);
            gone = before - list.len();
            if let Some(entry) = list.iter_mut().find(|(i, _)| *i == ip) {
                entry.1 = entry.1.max(expires);
                inner.removed(pod, gone);
                return (true, evicted);
            }
            if list.len() >= self.max_per_name {
                // The soonest to expire gives way, unless it came in this same answer.
                let pos = (0..list.len())
                    .filter(|&i| !answer.contains(&list[i].0))
                    .min_by_key(|&i| list[i].1);
                let Some(pos) = pos else {
                    inner.removed(pod, gone);
                    inner.refused += 1;
                    return (false, evicted);
                };
                let (old, expires_ms) = list.swap_remove(pos);
                evicted.push(Record {
                    pod,
                    name: name.to_string(),
                    ip: old,
                    expires_ms,
                });
                gone += 1;
            }
        }
        inner.removed(pod, gone);
        if inner
            .per_pod
            .get(&pod)
            .is_some_and(|c| *c >= self.max_per_pod)
        {
            inner.prune_pod(pod, now);
            if inner
                .per_pod
                .get(&pod)
                .is_some_and(|c| *c >= self.max_per_pod)
            {
                inner.refused += 1;
                evicted.retain(|g| !inner.holds_ip(g.pod, g.ip, now));
                return (false, evicted);
            }
        }
        if inner.total >= self.max_records && !inner.make_room_for(pod, now, &mut evicted) {
            inner.refused += 1;
            evicted.retain(|g| !inner.holds_ip(g.pod, g.ip, now));
            return (false, evicted);
        }
        inner
            .by_pod
            .entry(pod)
            .or_default()
            .entry(name.to_string())
            .or_default()
            .push((ip, expires));
        inner.total += 1;
        *inner.per_pod.entry(pod).or_default() += 1;
        // An address the pod still holds for another name stays open.
        evicted.retain(|g| !inner.holds_ip(g.pod, g.ip, now));
        (true, evicted)
    }

    /// Whether `pod` resolved `name` to `ip` and it has not expired.
    pub fn allows(&self, pod: IpAddr, name: &str, ip: IpAddr, now: u64) -> bool {
        let g = self.lock();
        g.by_pod
            .get(&pod)
            .and_then(|m| m.get(name))
            .is_some_and(|l| l.iter().any(|(i, e)| *i == ip && *e > now))
    }

    /// Whether any live record is held for `pod` (its DNS goes through this proxy).
    pub fn knows(&self, pod: IpAddr, now: u64) -> bool {
        let g = self.lock();
        g.by_pod
            .get(&pod)
            .is_some_and(|m| m.values().any(|l| l.iter().any(|(_, e)| *e > now)))
    }

    /// The live addresses `pod` resolved for `name`.
    pub fn ips(&self, pod: IpAddr, name: &str, now: u64) -> Vec<IpAddr> {
        let g = self.lock();
        g.by_pod
            .get(&pod)
            .and_then(|m| m.get(name))
            .map(|l| {
                l.iter()
                    .filter(|(_, e)| *e > now)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every live record (expired ones are dropped on the way).
    pub fn live(&self, now: u64) -> Vec<Record> {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut out = Vec::new();
        let mut removed = Vec::new();
        inner.by_pod.retain(|pod, names| {
            let mut gone = 0;
            names.retain(|name, list| {
                let before = list.len();
                list.retain(|(_, e)| *e > now);
                gone += before - list.len();
                for (ip, e) in list.iter() {
                    out.push(Record {
                        pod: *pod,
                        name: name.clone(),
                        ip: *ip,
                        expires_ms: *e,
                    });
                }
                !list.is_empty()
            });
            removed.push((*pod, gone));
            !names.is_empty()
        });
        for (pod, n) in removed {
            inner.removed(pod, n);
        }
        out
    }

    /// Removes every record whose address `closed` names and returns them, so their kernel
    /// elements can be removed too. For addresses that came inside the cluster after they
    /// were opened (a new pod took an address an allowed name once resolved to, a new
    /// `spec.clusterNetworks`, a state file saved before the rule): kept, the record stayed
    /// open to them for up to its TTL (a day) and every resync put its element back.
    pub fn forget(&self, closed: impl Fn(IpAddr) -> bool) -> Vec<Record> {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut out = Vec::new();
        let mut removed = Vec::new();
        inner.by_pod.retain(|pod, names| {
            let before = out.len();
            names.retain(|name, list| {
                list.retain(|(ip, e)| {
                    if closed(*ip) {
                        out.push(Record {
                            pod: *pod,
                            name: name.clone(),
                            ip: *ip,
                            expires_ms: *e,
                        });
                        false
                    } else {
                        true
                    }
                });
                !list.is_empty()
            });
            removed.push((*pod, out.len() - before));
            !names.is_empty()
        });
        for (pod, n) in removed {
            inner.removed(pod, n);
        }
        if !out.is_empty() {
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    /// Number of records held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.lock().total
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records refused because the pod's or the global bound was reached.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Whether records changed since the last [`save`](Self::save) (and clears the flag).
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the live records to `path` (JSON lines), atomically: a temporary file renamed
    /// over the old one, so a crash leaves either the old or the new state.
    pub fn save(&self, path: &Path, now: u64) -> std::io::Result<usize> {
        let records = self.live(now);
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for r in &records {
                serde_json::to_writer(&mut f, r)?;
                f.write_all(b"\n")?;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(records.len())
    }

    /// Adds the still-live records saved in `path` (a missing file is an empty state; lines
    /// that do not parse are skipped and counted). Returns (loaded, skipped).
    pub fn load(&self, path: &Path, now: u64) -> std::io::Result<(usize, usize)> {
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut loaded, mut skipped) = (0, 0);
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) if r.expires_ms > now => {
                    if self.record(r.pod, &r.name, r.ip, r.remaining(now), now) {
                        loaded += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
        Ok((loaded, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_expire_and_belong_to_one_pod_and_name() {
        let r = Resolutions::new(8, 100);
        let (p, q) = (ip("10.0.0.1"), ip("10.0.0.2"));
        assert!(r.record(
            p,
            "hub.test",
            ip("192.0.2.1"),
            Duration::from_secs(10),
            1_000
        ));
        assert!(r.allows(p, "hub.test", ip("192.0.2.1"), 5_000));
        assert!(
            !r.allows(q, "hub.test", ip("192.0.2.1"), 5_000),
            "another pod"
        );
        assert!(
            !r.allows(p, "other.test", ip("192.0.2.1"), 5_000),
            "another name"
        );
        assert!(!r.allows(p, "hub.test", ip("192.0.2.1"), 11_000), "expired");
        assert!(r.knows(p, 5_000) && !r.knows(q, 5_000) && !r.knows(p, 11_000));
        assert!(r.live(11_000).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn a_fresh_answer_extends_and_the_cap_evicts_the_soonest_to_expire() {
        let r = Resolutions::new(2, 100);
        let p = ip("10.0.0.1");
        r.record(p, "cdn.test", ip("192.0.2.1"), Duration::from_secs(5), 0);
        r.record(p, "cdn.test", ip("192.0.2.2"), Duration::from_secs(50), 0);
        r.record(p, "cdn.test", ip("192.0.2.1"), Duration::from_secs(30), 0);
        assert!(r.allows(p, "cdn.test", ip("192.0.2.1"), 20_000), "extended");
        r.record(p, "cdn.test", ip("192.0.2.3"), Duration::from_secs(40), 0);
        let mut ips = r.ips(p, "cdn.test", 0);
        ips.sort();
        assert_eq!(ips, vec![ip("192.0.2.2"), ip("192.0.2.3")]);
        assert_eq!(r.len(), 2);
    }

    /// A record that gave way to the `maxIpsPerName` cap (or to another pod at the overall
    /// bound) was forgotten here while its kernel element stayed open for its TTL (up to a
    /// day): a pod whose answers for one name rotate through fresh addresses kept every one
    /// of them open, beyond any bound (an unbounded kernel set; addresses the bounds say are
    /// closed). Now the records that gave way are handed back so their elements are closed.
    #[test]
    fn records_that_give_way_are_handed_back_for_closing() {
        let r = Resolutions::new(2, 100);
        let p = ip("10.0.0.1");
        let day = Duration::from_secs(86_400);
        for (i, secs) in [(1u8, 600u64), (2, 500)] {
            let (ok, gone) = r.record_evicting(
                p,
                "rot.test",
                IpAddr::from([198, 51, 100, i]),
                Duration::from_secs(secs),
                0,
            );
            assert!(ok && gone.is_empty());
        }
        let (ok, gone) = r.record_evicting(p, "rot.test", ip("198.51.100.3"), day, 0);
        assert!(ok);
        assert_eq!(
            gone,
            vec![Record {
                pod: p,
                name: "rot.test".into(),
                ip: ip("198.51.100.2"),
                expires_ms: 500_000,
            }]
        );
        // At the overall bound: the largest holder's soonest to expire, still live.
        let r = Resolutions::new(4, 3).with_max_per_pod(3);
        for i in 0..3u8 {
            let ttl = Duration::from_secs(100 + u64::from(i));
            assert!(r.record(
                p,
                &format!("n{i}.test"),
                IpAddr::from([192, 0, 2, i]),
                ttl,
                0
            ));
        }
        let (ok, gone) = r.record_evicting(ip("10.0.0.2"), "a.test", ip("192.0.2.50"), day, 0);
        assert!(ok);
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].pod, gone[0].ip), (p, ip("192.0.2.0")));
        // An address the pod still holds for another name is not handed back: its
        // element may be what lets the other name through.
        let r = Resolutions::new(1, 100);
        assert!(r.record(p, "a.cdn.test", ip("192.0.2.9"), day, 0));
        assert!(r.record(p, "b.cdn.test", ip("192.0.2.9"), day, 0));
        let (ok, gone) = r.record_evicting(p, "a.cdn.test", ip("192.0.2.10"), day, 0);
        assert!(ok && gone.is_empty(), "{gone:?}");
    }

    /// An answer with more addresses than `maxIpsPerName`: each address recorded in turn
    /// made the soonest to expire give way, and that was an earlier address of the same
    /// answer, whose kernel element was then closed. The client got the whole answer and
    /// connects to its first address, which was closed before the reply left (on the old
    /// code 192.0.2.1 and .2 were handed back for closing and .3, .4 kept). Now the answer's
    /// first addresses are kept, the ones beyond the cap refused; older answers still give
    /// way.
    #[test]
    fn an_answer_larger_than_the_cap_keeps_its_first_addresses() {
        let r = Resolutions::new(2, 100);
        let p = ip("10.0.0.1");
        let old = ip("198.51.100.1");
        assert!(r.record(p, "many.test", old, Duration::from_secs(5), 0));
        let answer: Vec<IpAddr> = (1..=4u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let ttl = Duration::from_secs(60);
        let mut closed = Vec::new();
        let mut kept = Vec::new();
        for a in &answer {
            let (ok, gone) = r.record_in_answer(p, "many.test", *a, ttl, 1_000, &answer);
            closed.extend(gone.into_iter().map(|g| g.ip));
            if ok {
                kept.push(*a);
            }
        }
        assert_eq!(
            closed,
            vec![old],
            "only the older answer's address gives way"
        );
        assert_eq!(kept, answer[..2].to_vec());
        let mut ips = r.ips(p, "many.test", 1_000);
        ips.sort();
        assert_eq!(ips, answer[..2].to_vec());
        assert_eq!(r.refused(), 2);
        // The next answer (another set of addresses) takes their place as before.
        let next = [ip("203.0.113.1")];
        let (ok, gone) = r.record_in_answer(p, "many.test", next[0], ttl, 2_000, &next);
        assert!(ok);
        assert_eq!(gone.len(), 1);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_global_bound_refuses_new_records() {
        let r = Resolutions::new(4, 3);
        for i in 0..10u8 {
            r.record(
                ip("10.0.0.1"),
                &format!("n{i}.test"),
                IpAddr::from([192, 0, 2, i]),
                Duration::from_secs(60),
                0,
            );
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.refused(), 7);
    }

    /// Ten pods each within their own bound (a tenth of the total) filled the global bound:
    /// on the old code every other pod's answers were refused, nothing opened for them, for
    /// as long as the ten kept resolving. Now the largest holder gives way.
    #[test]
    fn pods_within_their_bound_cannot_together_shut_out_the_others() {
        let r = Resolutions::new(4, 100);
        for p in 1..=10u8 {
            for i in 0..10u8 {
                assert!(r.record(
                    IpAddr::from([10, 0, 0, p]),
                    &format!("r{i}.wild.test"),
                    IpAddr::from([192, 0, 2, i]),
                    Duration::from_secs(60 + u64::from(i)),
                    0,
                ));
            }
        }
        assert_eq!(r.len(), 100);
        let late = ip("10.0.0.99");
        assert!(r.record(
            late,
            "a.test",
            ip("198.51.100.1"),
            Duration::from_secs(60),
            0
        ));
        assert!(r.allows(late, "a.test", ip("198.51.100.1"), 1));
        assert_eq!(r.len(), 100, "the global bound holds");
        // One of the ten lost its soonest to expire (r0), the rest is kept.
        let lost: Vec<u8> = (1..=10u8)
            .filter(|p| {
                !r.allows(
                    IpAddr::from([10, 0, 0, *p]),
                    "r0.wild.test",
                    ip("192.0.2.0"),
                    1,
                )
            })
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        // A pod as large as the others gets no room at their expense.
        assert!(!r.record(
            ip("10.0.0.2"),
            "more.wild.test",
            ip("192.0.2.77"),
            Duration::from_secs(60),
            0
        ));
        assert_eq!(r.live(1).len(), 100, "counts agree");
    }

    #[test]
    fn one_pod_cannot_take_the_room_of_the_others() {
        let r = Resolutions::new(4, 100).with_max_per_pod(5);
        let (greedy, other) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for i in 0..50u8 {
            r.record(
                greedy,
                &format!("r{i}.wild.test"),
                IpAddr::from([192, 0, 2, i]),
                Duration::from_secs(60),
                0,
            );
        }
        assert_eq!(r.len(), 5, "the greedy pod holds its share only");
        assert_eq!(r.refused(), 45);
        for i in 0..5u8 {
            assert!(r.record(
                other,
                &format!("n{i}.test"),
                IpAddr::from([198, 51, 100, i]),
                Duration::from_secs(120),
                0
            ));
        }
        // A known address is still extended at the cap; its expired records make room.
        assert!(r.record(
            greedy,
            "r0.wild.test",
            ip("192.0.2.0"),
            Duration::from_secs(90),
            0
        ));
        assert!(r.record(
            greedy,
            "late.wild.test",
            ip("192.0.2.200"),
            Duration::from_secs(60),
            61_000
        ));
        assert!(r.allows(greedy, "late.wild.test", ip("192.0.2.200"), 61_000));
        assert!(r.allows(greedy, "r0.wild.test", ip("192.0.2.0"), 61_000));
        assert_eq!(
            r.live(61_000).len(),
            2 + 5,
            "expired records pruned; counts agree"
        );
        assert_eq!(r.len(), 7);
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("palisade-res-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolutions.jsonl");
        let r = Resolutions::new(8, 100);
        r.record(
            ip("10.0.0.1"),
            "a.test",
            ip("192.0.2.1"),
            Duration::from_secs(60),
            0,
        );
        r.record(
            ip("10.0.0.1"),
            "b.test",
            ip("192.0.2.2"),
            Duration::from_secs(1),
            0,
        );
        assert_eq!(r.save(&path, 0).unwrap(), 2);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("not json\n");
        std::fs::write(&path, text).unwrap();
        let back = Resolutions::new(8, 100);
        assert_eq!(
            back.load(&path, 2_000).unwrap(),
            (1, 1),
            "expired dropped, junk skipped"
        );
        assert!(back.allows(ip("10.0.0.1"), "a.test", ip("192.0.2.1"), 2_000));
        assert_eq!(
            Resolutions::new(1, 1).load(&dir.join("none"), 0).unwrap(),
            (0, 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! A bounded, non-blocking event queue for the data path.
//!
//! Producers (packet handlers, gateways) call [`EventSender::try_send`], which never blocks:
//! when the queue is full the event is dropped and counted, so a slow disk can never stall
//! traffic. One consumer (the store writer) takes events in batches with
//! [`EventReceiver::recv_batch`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::Event;

/// Counters of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Events accepted into the queue.
    pub sent: u64,
    /// Events dropped by [`EventSender::try_send`] because the queue was full or the
    /// receiver was gone.
    pub dropped: u64,
    /// Events waiting in the queue now.
    pub queued: usize,
    /// Maximum number of queued events.
    pub capacity: usize,
}

struct State {
    items: VecDeque<Event>,
    senders: usize,
    receiver_alive: bool,
    /// Queue length at which the waiting receiver wants a wake-up; 0 when not waiting.
    wanted: usize,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the queue inconsistent; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> ChannelStats {
        let queued = self.lock().items.len();
        ChannelStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued,
            capacity: self.capacity,
        }
    }
}

/// Creates a channel holding at most `capacity` events (at least 1).
pub fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(1 << 16)),
            senders: 1,
            receiver_alive: true,
            wanted: 0,
        }),
        ready: Condvar::new(),
        capacity,
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    (
        EventSender {
            shared: Arc::clone(&shared),
        },
        EventReceiver { shared },
    )
}

/// The producing end; cheap to clone, never blocks.
pub struct EventSender {
    shared: Arc<Shared>,
}

impl EventSender {
    /// Queues `event`, or drops it and counts the drop if the queue is full or the
    /// receiver is gone. Returns whether it was queued. Never blocks on the consumer.
    pub fn try_send(&self, event: Event) -> bool {
        match self.try_send_or_return(event) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Like [`try_send`](Self::try_send), but hands the event back instead of dropping it
    /// (not counted as a drop). For producers that may wait and retry, such as a replay.
    // Handing the event back by value keeps the full-queue path free of allocation.
    #[allow(clippy::result_large_err)]
    pub fn try_send_or_return(&self, event: Event) -> Result<(), Event> {
        let mut st = self.shared.lock();
        if !st.receiver_alive || st.items.len() >= self.shared.capacity {
            return Err(event);
        }
        st.items.push_back(event);
        let wake = st.wanted != 0 && st.items.len() >= st.wanted;
        if wake {
            st.wanted = 0;
        }
        drop(st);
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Queues all of `events` under one lock (emptying the vector), dropping and counting
    /// those that do not fit. Returns how many were queued. Producers with many events per
    /// second batch them this way instead of taking the lock for each.
    pub fn try_send_many(&self, events: &mut Vec<Event>) -> usize {
        if events.is_empty() {
            return 0;
        }
        let mut st = self.shared.lock();
        let room = if st.receiver_alive {
            self.shared.capacity.saturating_sub(st.items.len())
        } else {
            0
        };
        let n = room.min(events.len());
        let dropped = events.len() - n;
        st.items.extend(events.drain(..n));
        let wake = n > 0 && st.wanted != 0 && st.items.len() >= st.wanted;
        if wake {
            st.wanted = 0;
        }
        drop(st);
        events.clear();
        self.shared.sent.fetch_add(n as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.shared
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if wake {
            self.shared.ready.notify_one();
        }
        n
    }

    /// Counters of the channel.
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }

    /// A handle that reads the channel's counters (for metrics) without being a sender:
    /// holding it does not keep the channel open.
    pub fn watch(&self) -> ChannelWatch {
        ChannelWatch {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Reads a channel's counters; see [`EventSender::watch`].
#[derive(Clone)]
pub struct ChannelWatch {
    shared: Arc<Shared>,
}

impl ChannelWatch {
    /// Counters of the channel.
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }
}

impl std::fmt::Debug for ChannelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWatch")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        EventSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.senders -= 1;
        let last = st.senders == 0;
        drop(st);
        if last {
            self.shared.ready.notify_all();
        }
    }
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The consuming end.
pub struct EventReceiver {
    shared: Arc<Shared>,
}

impl EventReceiver {
    /// Waits until `max` events are queued (or the whole capacity, if smaller), `timeout`
    /// passes, or every sender is gone; then takes up to `max` events. May return an empty
    /// vector.
    pub fn recv_batch(&self, max: usize, timeout: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        self.recv_batch_into(&mut out, max, timeout);
        out
    }

    /// Like [`recv_batch`](Self::recv_batch), appending to `out` (so its allocation can be
    /// reused). Returns how many events were appended.
    pub fn recv_batch_into(&self, out: &mut Vec<Event>, max: usize, timeout: Duration) -> usize {
        let max = max.max(1);
        let target = max.min(self.shared.capacity);
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.shared.lock();
        while st.items.len() < target && st.senders > 0 {
            st.wanted = target;
            st = match deadline {
                None => self
                    .shared
                    .ready
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    self.shared
                        .ready
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        st.wanted = 0;
        let n = st.items.len().min(max);
        out.extend(st.items.drain(..n));
        n
    }

    /// True when every sender is gone and nothing is queued: no event will ever arrive.
    pub fn is_closed(&self) -> bool {
        let st = self.shared.lock();
        st.senders == 0 && st.items.is_empty()
    }

    /// Counters of the channel.
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiver_alive = false;
        st.items.clear();
    }
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_queue_under_one_lock_and_count_what_does_not_fit() {
        use crate::{DnsInfo, EventBody, Timestamp};
        let (tx, rx) = channel(3);
        let mk = |i: u64| {
            Event::new(
                format!("e{i}"),
                Timestamp(i as i64),
                EventBody::Dns(DnsInfo::default()),
            )
        };
        let mut batch: Vec<Event> = (0..5).map(mk).collect();
        assert_eq!(tx.try_send_many(&mut batch), 3);
        assert!(batch.is_empty());
        let st = tx.stats();
        assert_eq!((st.sent, st.dropped), (3, 2));
        let got = rx.recv_batch(10, std::time::Duration::from_millis(10));
        assert_eq!(
            got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e0", "e1", "e2"]
        );
    }

    use super::*;
    use crate::{DnsInfo, EventBody, Timestamp};
    use std::thread;

    fn ev(i: u64) -> Event {
        let body = EventBody::Dns(DnsInfo {
            query: format!("q{i}.example.com"),
            ..DnsInfo::default()
        });
        Event::new(i.to_string(), Timestamp(i as i64), body)
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EventSender>();
        check::<EventReceiver>();
    }

    #[test]
    fn drops_are_counted_exactly_when_consumer_stalls() {
        let (tx, rx) = channel(10);
        let accepted = (0..25).filter(|&i| tx.try_send(ev(i))).count();
        assert_eq!(accepted, 10);
        let s = tx.stats();
        assert_eq!((s.sent, s.dropped, s.queued), (10, 15, 10));
        let batch = rx.recv_batch(100, Duration::from_millis(1));
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert!(tx.try_send(ev(99)));
        assert_eq!(rx.stats().sent, 11);
        assert_eq!(rx.stats().dropped, 15);
    }

    #[test]
    fn concurrent_producers_against_stalled_consumer() {
        let (tx, rx) = channel(100);
        let handles: Vec<_> = (0..4)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || (0..1000).filter(|&i| tx.try_send(ev(p * 1000 + i))).count())
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 100);
        let s = rx.stats();
        assert_eq!((s.sent, s.dropped, s.queued), (100, 3900, 100));
    }

    #[test]
    fn try_send_or_return_hands_back_without_counting() {
        let (tx, _rx) = channel(1);
        assert!(tx.try_send_or_return(ev(1)).is_ok());
        let back = tx.try_send_or_return(ev(2)).unwrap_err();
        assert_eq!(back.id, "2");
        assert_eq!(tx.stats().dropped, 0);
    }

    #[test]
    fn batch_waits_for_target_then_returns_early() {
        let (tx, rx) = channel(1000);
        let producer = thread::spawn(move || {
            for i in 0..50 {
                assert!(tx.try_send(ev(i)));
            }
            tx
        });
        let start = Instant::now();
        let batch = rx.recv_batch(50, Duration::from_secs(30));
        assert_eq!(batch.len(), 50);
        assert!(start.elapsed() < Duration::from_secs(10));
        let tx = producer.join().unwrap();
        // Timeout with a partial batch.
        assert!(tx.try_send(ev(7)));
        let batch = rx.recv_batch(50, Duration::from_millis(20));
        assert_eq!(batch.len(), 1);
        assert!(!rx.is_closed());
        drop(tx);
        assert!(rx.is_closed());
        assert!(rx.recv_batch(50, Duration::MAX).is_empty());
    }

    #[test]
    fn sending_after_receiver_dropped_counts_drop() {
        let (tx, rx) = channel(10);
        drop(rx);
        assert!(!tx.try_send(ev(1)));
        assert_eq!(tx.stats().dropped, 1);
    }
}

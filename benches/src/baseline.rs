//! The hand-written baseline of the core round trip: the least code that
//! does psession's correlation by hand, to measure `psession-core` against.
//!
//! It speaks the same wire protocol on the same messages: a
//! [`serde_json::Value`] object whose `"sid"` field holds a positive
//! integer that fits in `u32` (an integral float such as `7.0` counts, as
//! it does for psession and for a JavaScript peer). It keeps
//!
//! - a slab of waiting entries: the sid of a send is its slab key + 1, so a
//!   reply finds its entry by indexing, with no map;
//! - a queue of outbound messages, tagged with their sid;
//! - a deadline heap with lazy deletion: a reply or a cancellation leaves
//!   the entry's heap item behind (skipped when it surfaces, recognised by
//!   a token), and the heap is rebuilt from the live entries when stale
//!   items outnumber live ones, so it stays bounded by the number of
//!   waiting entries;
//! - a queue of timed-out sids (the failures a caller polls).
//!
//! What it does not do, and psession does: sessions (several round trips
//! on one sid, and their idle expiry), ports (one sid space per peer),
//! sessions opened by the peer, retries, dropping queued transmissions of
//! sends that ended, events, counters and statistics. Those are the cost of
//! psession's features; the benchmarks show how much that is.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use psession_core::Message;
use serde_json::Value;
use slab::Slab;

/// The field that carries the sid (psession's default).
pub const SID_FIELD: &str = "sid";

/// One send waiting for its reply.
struct Waiting {
    /// Tells this entry's heap item apart from those of earlier entries
    /// that used the same slab key.
    token: u64,
    deadline: Instant,
}

/// A heap item: when, which entry (token), and its slab key.
type Deadline = Reverse<(Instant, u64, u32)>;

/// The baseline correlator: tags outgoing messages with a fresh sid, waits
/// for the reply carrying it, and times the wait out.
pub struct Correlator {
    waiting: Slab<Waiting>,
    deadlines: BinaryHeap<Deadline>,
    outbound: VecDeque<Value>,
    timed_out: VecDeque<u32>,
    next_token: u64,
    timeout: Duration,
    dropped: u64,
}

impl Correlator {
    /// A correlator whose sends wait `timeout` for their reply.
    pub fn new(timeout: Duration) -> Self {
        Correlator {
            waiting: Slab::new(),
            deadlines: BinaryHeap::new(),
            outbound: VecDeque::new(),
            timed_out: VecDeque::new(),
            next_token: 0,
            timeout,
            dropped: 0,
        }
    }

    /// Tags `message` with a fresh sid, queues it for transmission and
    /// arms its deadline. Returns the sid, or `None` if the message is not
    /// a JSON object (it cannot carry a sid).
    pub fn send(&mut self, mut message: Value, now: Instant) -> Option<u32> {
        if !message.is_object() {
            return None;
        }
        let entry = self.waiting.vacant_entry();
        let key = u32::try_from(entry.key()).ok().filter(|&k| k < u32::MAX)?;
        let sid = key + 1;
        message.set_sid(SID_FIELD, sid);
        self.next_token += 1;
        let deadline = now + self.timeout;
        entry.insert(Waiting {
            token: self.next_token,
            deadline,
        });
        self.deadlines
            .push(Reverse((deadline, self.next_token, key)));
        self.outbound.push_back(message);
        Some(sid)
    }

    /// The next message to hand to the transport.
    pub fn poll_transmit(&mut self) -> Option<Value> {
        self.outbound.pop_front()
    }

    /// Handles a message from the peer at `now`: first times out every
    /// send whose deadline has passed (so a reply after its deadline is not
    /// a reply), then, if the message carries the sid of a waiting send,
    /// completes that send and returns its sid and the reply. Anything else
    /// (not a session message, an unknown sid) is counted and dropped.
    pub fn handle_inbound(&mut self, message: Value, now: Instant) -> Option<(u32, Value)> {
        self.handle_timeout(now);
        let Some(sid) = sid_of(&message) else {
            self.dropped += 1;
            return None;
        };
        let key = (sid - 1) as usize;
        if !self.waiting.contains(key) {
            self.dropped += 1;
            return None;
        }
        self.remove(key);
        Some((sid, message))
    }

    /// Ends the send waiting with `sid` without a reply. Returns whether it
    /// was waiting.
    pub fn cancel(&mut self, sid: u32) -> bool {
        let Some(key) = sid.checked_sub(1).map(|k| k as usize) else {
            return false;
        };
        if !self.waiting.contains(key) {
            return false;
        }
        self.remove(key);
        true
    }

    /// Times out every send whose deadline is at or before `now`; their
    /// sids are then returned by [`poll_timed_out`](Self::poll_timed_out).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, token, key))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let current = self
                .waiting
                .get(key as usize)
                .is_some_and(|w| w.token == token);
            if current {
                self.waiting.remove(key as usize);
                self.timed_out.push_back(key + 1);
            }
        }
        self.compact();
    }

    /// The next send that timed out, by sid.
    pub fn poll_timed_out(&mut self) -> Option<u32> {
        self.timed_out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called
    /// (stale heap items on top are discarded on the way).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, token, key))) = self.deadlines.peek() {
            if self
                .waiting
                .get(key as usize)
                .is_some_and(|w| w.token == token)
            {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Sends waiting for their reply.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Items in the deadline heap, live and stale.
    pub fn heap_len(&self) -> usize {
        self.deadlines.len()
    }

    /// Inbound messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Removes a waiting entry; its heap item goes stale.
    fn remove(&mut self, key: usize) {
        self.waiting.remove(key);
        self.compact();
    }

    /// Rebuilds the heap from the live entries when stale items outnumber
    /// them (the same rule as psession's timer queue).
    fn compact(&mut self) {
        if self.deadlines.len() > 2 * self.waiting.len() + 64 {
            let live: Vec<Deadline> = self
                .waiting
                .iter()
                .map(|(key, w)| Reverse((w.deadline, w.token, key as u32)))
                .collect();
            self.deadlines = BinaryHeap::from(live);
        }
    }
}

/// The sid a message carries, read by psession's own JSON reader (a
/// positive integer that fits in `u32`; an integral float counts), so both
/// contenders pay exactly the same JSON work.
pub fn sid_of(message: &Value) -> Option<u32> {
    message.sid(SID_FIELD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply_to(request: &Value, body: &str) -> Value {
        json!({ "sid": request["sid"].clone(), "body": body })
    }

    #[test]
    fn a_reply_completes_the_entry_with_its_sid() {
        let t0 = Instant::now();
        let mut c = Correlator::new(Duration::from_secs(5));
        let a = c.send(json!({"query": "a"}), t0).unwrap();
        let b = c.send(json!({"query": "b"}), t0).unwrap();
        assert_ne!(a, b);
        let (ta, tb) = (c.poll_transmit().unwrap(), c.poll_transmit().unwrap());
        assert_eq!(
            (ta["sid"].as_u64(), ta["query"].as_str()),
            (Some(a as u64), Some("a"))
        );
        assert_eq!(tb["sid"], b);
        assert!(c.poll_transmit().is_none());

        // Answered out of order: each reply completes its own entry.
        let (sid, reply) = c.handle_inbound(reply_to(&tb, "B"), t0).unwrap();
        assert_eq!((sid, reply["body"].as_str()), (b, Some("B")));
        assert_eq!(c.waiting(), 1);
        // A second reply to b, garbage and an unknown sid are dropped.
        assert!(c.handle_inbound(reply_to(&tb, "B"), t0).is_none());
        assert!(c.handle_inbound(json!({"sid": "1"}), t0).is_none());
        assert!(c
            .handle_inbound(json!({"sid": 4_000_000_000u64}), t0)
            .is_none());
        assert!(c.handle_inbound(json!([1]), t0).is_none());
        assert_eq!(c.dropped(), 4);
        // An integral float is a sid, as for psession.
        let float = json!({"sid": a as f64, "body": "A"});
        assert_eq!(c.handle_inbound(float, t0).unwrap().0, a);
        assert_eq!(c.waiting(), 0);
        assert!(c.send(json!("text"), t0).is_none());
    }

    #[test]
    fn deadlines_fire_and_a_late_reply_is_dropped() {
        let t0 = Instant::now();
        let mut c = Correlator::new(Duration::from_secs(5));
        let a = c.send(json!({}), t0).unwrap();
        let b = c.send(json!({}), t0 + Duration::from_secs(1)).unwrap();
        let request_a = c.poll_transmit().unwrap();
        assert_eq!(c.next_deadline(), Some(t0 + Duration::from_secs(5)));
        c.handle_timeout(t0 + Duration::from_secs(4));
        assert_eq!(c.poll_timed_out(), None);
        c.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(c.poll_timed_out(), Some(a));
        assert_eq!(c.poll_timed_out(), None);
        // Past b's deadline, its reply is not a reply: b times out first.
        assert!(c.handle_inbound(reply_to(&request_a, ""), t0).is_none());
        let late = json!({"sid": b});
        assert!(c
            .handle_inbound(late, t0 + Duration::from_secs(6))
            .is_none());
        assert_eq!(c.poll_timed_out(), Some(b));
        assert_eq!((c.waiting(), c.next_deadline()), (0, None));
    }

    #[test]
    fn stale_heap_items_are_dropped() {
        let t0 = Instant::now();
        let mut c = Correlator::new(Duration::from_secs(60));
        // Entries that never get an answer stay in the heap...
        let pending: Vec<u32> = (0..100).map(|_| c.send(json!({}), t0).unwrap()).collect();
        // ...while many round trips and cancellations leave stale items.
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i));
            let sid = c.send(json!({"i": i}), now).unwrap();
            let request = c.outbound.pop_back().unwrap();
            if i % 2 == 0 {
                assert_eq!(
                    c.handle_inbound(reply_to(&request, ""), now).unwrap().0,
                    sid
                );
            } else {
                assert!(c.cancel(sid));
                assert!(!c.cancel(sid));
            }
            assert!(c.heap_len() <= 2 * c.waiting() + 65, "{}", c.heap_len());
        }
        assert_eq!(c.waiting(), 100);
        // The stale items never fire: only the 100 pending sends time out.
        c.handle_timeout(t0 + Duration::from_secs(3600));
        let fired: Vec<u32> = std::iter::from_fn(|| c.poll_timed_out()).collect();
        assert_eq!(fired, pending);
        assert_eq!((c.waiting(), c.heap_len()), (0, 0));
    }
}

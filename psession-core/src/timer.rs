//! The deadline queue: one lazily-updated binary heap for every session.
//!
//! Each session has at most one *valid* entry, remembered in its [`Armed`]
//! (deadline and token). Moving a session's deadline earlier pushes a new
//! entry and orphans the old one; moving it later does nothing, and the
//! early entry is pushed again at the right time when it surfaces. That
//! keeps the hot path (a send arms a deadline, the reply pushes it back)
//! at one cheap push. Orphaned entries are skipped when they surface, and
//! the heap is rebuilt when they outnumber the live ones, so memory stays
//! bounded by the number of sessions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Internal time: nanoseconds since the manager's first input. `NEVER`
/// stands for "no deadline".
pub(crate) const NEVER: u64 = u64::MAX;

/// The entry a session holds in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Armed {
    /// When its entry fires (`NEVER`: no entry).
    pub(crate) at: u64,
    token: u32,
}

impl Default for Armed {
    fn default() -> Self {
        Armed {
            at: NEVER,
            token: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) at: u64,
    /// Which arming of the session this is. A `u32` keeps an entry at 16
    /// bytes; after 2^32 armings a token repeats, and an orphaned entry may
    /// then pass for current, which is harmless: a surfacing entry only
    /// acts once the session's real deadline has passed (see `fire_due`).
    token: u32,
    pub(crate) key: u32,
}

impl Entry {
    /// Whether this entry is the one `armed` refers to.
    pub(crate) fn is_current(&self, armed: &Armed) -> bool {
        armed.token == self.token
    }
}

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    next_token: u32,
}

impl TimerQueue {
    /// Makes sure `key`'s entry fires no later than `deadline`.
    pub(crate) fn arm(&mut self, armed: &mut Armed, key: u32, deadline: u64) {
        if deadline >= armed.at {
            return;
        }
        self.next_token = self.next_token.wrapping_add(1);
        armed.at = deadline;
        armed.token = self.next_token;
        self.heap.push(Reverse(Entry {
            at: deadline,
            token: self.next_token,
            key,
        }));
    }

    /// Forgets `armed`'s entry (it will be skipped when it surfaces).
    pub(crate) fn disarm(armed: &mut Armed) {
        *armed = Armed::default();
    }

    pub(crate) fn peek(&self) -> Option<Entry> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    pub(crate) fn pop(&mut self) {
        self.heap.pop();
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    /// Whether orphaned entries outnumber `live` enough to rebuild.
    pub(crate) fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + 64
    }

    /// Rebuilds the heap from the live sessions' entries.
    pub(crate) fn rebuild(&mut self, live: impl Iterator<Item = (u32, Armed)>) {
        let entries: Vec<_> = live
            .filter(|(_, armed)| armed.at != NEVER)
            .map(|(key, armed)| {
                Reverse(Entry {
                    at: armed.at,
                    token: armed.token,
                    key,
                })
            })
            .collect();
        self.heap = BinaryHeap::from(entries);
    }
}

/// Converts a duration to internal nanoseconds, saturating at `NEVER`.
pub(crate) fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(NEVER)
}

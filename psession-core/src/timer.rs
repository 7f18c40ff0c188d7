//! The deadline queue: one lazily-updated binary heap for the whole
//! manager.
//!
//! It holds two kinds of entries:
//!
//! - **sends**: the deadline (timeout, or end of the pause between retries)
//!   of the send under a key of the manager's `Waiting` slab. Each key has
//!   at most one *valid* entry, whose time the queue keeps per key
//!   (`sends`), and which is no later than the deadline of the send that
//!   holds the key. A send that ends leaves its key's entry behind, and the
//!   next send under the same key (the slab hands the last freed key out
//!   first) finds it armed no later than its own deadline: a send only
//!   pushes an entry when its deadline is earlier than what is armed, so
//!   round trips on a session cost the queue nothing most of the time.
//! - **ports**: each port keeps its sessions in a list by last activity
//!   (see `manager/idle.rs`), and since one port has one
//!   `session_max_life`, the first idle session of that list is the next
//!   of them to expire. The port has at most one valid entry, remembered in
//!   its [`Armed`], no later than that expiry. So an idle session costs the
//!   queue nothing, however many there are.
//!
//! When a valid entry surfaces, it acts only if the deadline it stands for
//! is exactly its time; an early one is pushed again at the real deadline
//! (even if that has passed too), so deadlines fire in their order.
//! Orphaned entries are skipped when they surface, and dropped when they
//! outnumber the live ones, so memory stays bounded by the number of
//! sessions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Internal time: nanoseconds since the manager's first input. `NEVER`
/// stands for "no deadline".
pub(crate) const NEVER: u64 = u64::MAX;

/// The entry a port holds in the queue for its idle list.
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

/// What an entry is for.
pub(crate) enum Target {
    /// The deadline of the send under this key of the `Waiting` slab.
    Send(u32),
    /// The idle expiry of the port at this index.
    Port(u32),
}

/// One entry: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) at: u64,
    /// 0 for a send (its key's entry is known by its time); for a port,
    /// which arming of the port this is, always odd. A port's tokens repeat
    /// after 2^31 armings, and an orphaned entry may then pass for current,
    /// which is harmless: a surfacing entry only acts on a deadline that is
    /// exactly its time (see `fire_due`).
    token: u32,
    key: u32,
}

const PORT: u32 = 1;

impl Entry {
    #[inline]
    pub(crate) fn target(&self) -> Target {
        if self.token & PORT == PORT {
            Target::Port(self.key)
        } else {
            Target::Send(self.key)
        }
    }

    /// Whether this port entry is the one `armed` refers to.
    #[inline]
    pub(crate) fn is_current(&self, armed: &Armed) -> bool {
        armed.token == self.token
    }
}

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    next_token: u32,
    /// When the valid entry of each key of the `Waiting` slab fires
    /// (`NEVER`: none), indexed by key.
    sends: Vec<u64>,
}

impl TimerQueue {
    /// Makes sure the entry of `key` of the `Waiting` slab fires no later
    /// than `deadline`.
    #[inline]
    pub(crate) fn arm_send(&mut self, key: u32, deadline: u64) {
        let index = key as usize;
        if index >= self.sends.len() {
            self.sends.resize(index + 1, NEVER);
        }
        if deadline < self.sends[index] {
            self.sends[index] = deadline;
            self.heap.push(Reverse(Entry {
                at: deadline,
                token: 0,
                key,
            }));
        }
    }

    /// Whether this send entry is its key's valid one.
    #[inline]
    pub(crate) fn is_current_send(&self, entry: &Entry) -> bool {
        self.sends.get(entry.key as usize) == Some(&entry.at)
    }

    /// Forgets the entry of `key` of the `Waiting` slab (it will be skipped
    /// when it surfaces).
    pub(crate) fn disarm_send(&mut self, key: u32) {
        if let Some(at) = self.sends.get_mut(key as usize) {
            *at = NEVER;
        }
    }

    /// Makes sure port `index`'s entry fires no later than `deadline`.
    #[inline]
    pub(crate) fn arm(&mut self, armed: &mut Armed, index: u32, deadline: u64) {
        if deadline >= armed.at {
            return;
        }
        self.next_token = self.next_token.wrapping_add(2);
        armed.at = deadline;
        armed.token = self.next_token | PORT;
        self.heap.push(Reverse(Entry {
            at: deadline,
            token: armed.token,
            key: index,
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

    /// Whether orphaned entries may outnumber the `live` ones enough to
    /// drop them.
    #[inline]
    pub(crate) fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + 64
    }

    /// Empties the queue, disarming every key of the `Waiting` slab and
    /// letting `disarm_port` disarm the ports (for when nothing is live).
    pub(crate) fn clear(&mut self, mut disarm_port: impl FnMut(&Entry, u32)) {
        for Reverse(entry) in self.heap.drain() {
            match entry.target() {
                Target::Send(key) => self.sends[key as usize] = NEVER,
                Target::Port(index) => disarm_port(&entry, index),
            }
        }
    }

    /// Takes every entry out, for [`rebuild`](Self::rebuild).
    pub(crate) fn take(&mut self) -> Vec<Reverse<Entry>> {
        std::mem::take(&mut self.heap).into_vec()
    }

    /// Rebuilds the queue from what is live, in place (no allocation: what
    /// is live was in the queue):
    ///
    /// - one entry for each key of `held` (the keys of the `Waiting` slab
    ///   that hold a send) that is armed; the keys no send holds are
    ///   disarmed;
    /// - the port entries that `port_is_current` keeps (it disarms the
    ///   others as it sees fit).
    pub(crate) fn rebuild(
        &mut self,
        mut entries: Vec<Reverse<Entry>>,
        held: impl Iterator<Item = u32>,
        is_held: impl Fn(u32) -> bool,
        mut port_is_current: impl FnMut(&Entry, u32) -> bool,
    ) {
        let sends = &mut self.sends;
        entries.retain(|Reverse(entry)| match entry.target() {
            Target::Send(key) => {
                if !is_held(key) {
                    sends[key as usize] = NEVER;
                }
                false
            }
            Target::Port(index) => port_is_current(entry, index),
        });
        entries.extend(held.filter_map(|key| {
            let at = *sends.get(key as usize)?;
            (at != NEVER).then_some(Reverse(Entry { at, token: 0, key }))
        }));
        self.heap = BinaryHeap::from(entries);
    }
}

/// Converts a duration to internal nanoseconds, saturating at `NEVER`.
pub(crate) fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(NEVER)
}

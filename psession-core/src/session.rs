//! The state the core keeps for one session and its waiting send.
//!
//! An idle session is one [`Slot`] of 48 bytes and nothing else: its sid
//! map entry aside, no heap entry, no allocation. What only some sessions
//! need lives in slabs of its own, reached by a `u32` key from the slot:
//! the send waiting on it ([`Waiting`]), that send's retry state
//! ([`Retry`], from the `Waiting`) and its queue of unread messages.

use std::num::NonZeroU64;

use slab::Slab;

use crate::error::SessionError;
use crate::id::SessionId;
use crate::port::{NIL, OUT};

/// One live session.
pub(crate) struct Slot {
    /// The generation and two flags (see [`Tag`]).
    tag: Tag,
    pub(crate) last_activity: u64,
    /// Index of its port in the manager's port slab. (The port lives as
    /// long as its sessions: destroying it closes them first.)
    pub(crate) port: u32,
    pub(crate) sid: u32,
    /// Neighbours in the port's creation-order list.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Neighbours in the port's idle list (by last activity, oldest first;
    /// see `manager/idle.rs`); `idle_prev` is `OUT` when the session is not
    /// in it.
    pub(crate) idle_prev: u32,
    pub(crate) idle_next: u32,
    /// Key of the send waiting on it in the manager's `Waiting` slab, or
    /// `NIL`.
    pub(crate) waiting: u32,
    /// Key of its queue of messages for `recv` in the manager's inbox slab,
    /// or `NIL`. Most sessions never queue one; the queue is made on first
    /// use and kept until the session closes.
    pub(crate) inbox: u32,
}

/// A session's generation (bits 2..64) and its two flags (bits 0 and 1),
/// in one word.
///
/// The generation is the manager's count of sessions opened so far, so it
/// tells a session apart from every earlier one that used the same slab
/// key: a handle whose generation differs is stale. It has 62 bits, and
/// the count goes back to 1 after 2^62 - 1 sessions: at a billion sessions
/// a second that takes 146 years, so a stale handle that reaches a session
/// of its own generation does not happen in practice.
///
/// The word is never zero (generations start at 1): the slab's entry uses
/// that niche for its vacant case, so a slot takes 48 bytes in the slab,
/// not 56.
#[derive(Clone, Copy)]
struct Tag(NonZeroU64);

const INCOMING: u64 = 1;
const LATE_PENDING: u64 = 2;
const FLAGS: u32 = 2;

/// The largest generation; the one after it is 1.
pub(crate) const MAX_GENERATION: u64 = (1 << (64 - FLAGS)) - 1;

impl Slot {
    pub(crate) fn new(
        generation: u64,
        incoming: bool,
        port: u32,
        sid: u32,
        prev: u32,
        now: u64,
    ) -> Slot {
        debug_assert!((1..=MAX_GENERATION).contains(&generation));
        let word = generation << FLAGS | if incoming { INCOMING } else { 0 };
        Slot {
            tag: Tag(NonZeroU64::new(word).unwrap_or(NonZeroU64::MIN)),
            last_activity: now,
            port,
            sid,
            prev,
            next: NIL,
            idle_prev: OUT,
            idle_next: NIL,
            waiting: NIL,
            inbox: NIL,
        }
    }

    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.tag.0.get() >> FLAGS
    }

    /// Opened by the peer.
    #[inline]
    pub(crate) fn incoming(&self) -> bool {
        self.tag.0.get() & INCOMING != 0
    }

    /// A send on it ended without a reply and nothing has arrived since:
    /// the next unsolicited message is counted as a late reply.
    #[inline]
    pub(crate) fn late_pending(&self) -> bool {
        self.tag.0.get() & LATE_PENDING != 0
    }

    #[inline]
    pub(crate) fn set_late_pending(&mut self, late: bool) {
        let word = self.tag.0.get() & !LATE_PENDING | if late { LATE_PENDING } else { 0 };
        // The generation bits are untouched, and they are not all zero.
        self.tag = Tag(NonZeroU64::new(word).unwrap_or(self.tag.0));
    }

    /// Whether a send waits on it.
    #[inline]
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting != NIL
    }
}

/// The live session `session` points to, or [`SessionError::Invalid`].
///
/// A free function over the slab (rather than a `Manager` method) so that
/// callers can hold the slot while using the manager's other fields.
#[inline]
pub(crate) fn live_slot(
    sessions: &mut Slab<Slot>,
    session: SessionId,
) -> Result<&mut Slot, SessionError> {
    sessions
        .get_mut(session.key as usize)
        .filter(|slot| slot.generation() == session.generation)
        .ok_or_else(|| SessionError::Invalid)
}

/// The send waiting on a session, in the manager's `Waiting` slab; its key
/// there is the `key` of its [`SendId`](crate::SendId). 24 bytes, in the
/// slab too (the number is never zero: the slab uses that niche).
///
/// Its deadline is armed in the deadline queue under the same key (see
/// `timer.rs`).
pub(crate) struct Waiting {
    /// Slab key of its session.
    pub(crate) session: u32,
    /// Key of its [`Retry`] in the manager's retry slab while retries
    /// remain (`NO_RETRY` otherwise), and in the top bit whether it is
    /// between a timed-out attempt and the next one.
    retry: u32,
    /// Send numbers start at 1.
    number: NonZeroU64,
    /// When the current attempt times out or, while backing off, when the
    /// next attempt goes out.
    pub(crate) deadline: u64,
}

const BACKING_OFF: u32 = 1 << 31;
const NO_RETRY: u32 = BACKING_OFF - 1;

impl Waiting {
    /// A send numbered `number` (at least 1), waiting until `deadline`,
    /// with its retry state under `retry` of the retry slab, if it has one
    /// (its keys stay below 2^31 - 1: that many retry states, each with a
    /// copy of its message, would take over 80 GB).
    pub(crate) fn new(session: u32, number: u64, deadline: u64, retry: Option<u32>) -> Waiting {
        debug_assert!(number > 0 && retry.is_none_or(|key| key < NO_RETRY));
        Waiting {
            session,
            retry: retry.map_or(NO_RETRY, |key| key & NO_RETRY),
            number: NonZeroU64::new(number).unwrap_or(NonZeroU64::MIN),
            deadline,
        }
    }

    #[inline]
    pub(crate) fn number(&self) -> u64 {
        self.number.get()
    }

    /// Key of its retry state, while retries remain.
    #[inline]
    pub(crate) fn retry(&self) -> Option<u32> {
        let key = self.retry & NO_RETRY;
        (key != NO_RETRY).then_some(key)
    }

    /// Forgets its retry state (the last retry has gone out).
    pub(crate) fn clear_retry(&mut self) {
        self.retry = NO_RETRY;
    }

    /// Between a timed-out attempt and the next one.
    pub(crate) fn backing_off(&self) -> bool {
        self.retry & BACKING_OFF != 0
    }

    pub(crate) fn set_backing_off(&mut self, backing_off: bool) {
        self.retry = self.retry & NO_RETRY | if backing_off { BACKING_OFF } else { 0 };
    }
}

/// What a send with retries left needs to transmit again. Kept apart from
/// [`Waiting`] so that sends without retries carry no copy and no
/// allocation.
pub(crate) struct Retry<M> {
    /// Transmissions still to make.
    pub(crate) left: u32,
    pub(crate) timeout_ns: u64,
    pub(crate) interval_ns: u64,
    pub(crate) message: M,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slab's entry, as `slab` declares it: a vacant place holds the
    /// key of the next one.
    #[allow(dead_code)]
    enum SlabEntry<T> {
        Vacant(usize),
        Occupied(T),
    }

    #[test]
    fn an_idle_session_takes_48_bytes_in_the_slab() {
        assert_eq!(std::mem::size_of::<Slot>(), 48);
        assert_eq!(std::mem::size_of::<SlabEntry<Slot>>(), 48);
        assert_eq!(std::mem::size_of::<SlabEntry<Waiting>>(), 24);
    }

    #[test]
    fn a_waiting_sends_retry_key_and_pause_flag_stay_apart() {
        let mut waiting = Waiting::new(1, 7, 100, Some(5));
        assert_eq!((waiting.retry(), waiting.backing_off()), (Some(5), false));
        waiting.set_backing_off(true);
        assert_eq!((waiting.retry(), waiting.backing_off()), (Some(5), true));
        waiting.clear_retry();
        waiting.set_backing_off(false);
        assert_eq!((waiting.retry(), waiting.backing_off()), (None, false));
        assert_eq!(Waiting::new(1, 7, 100, None).retry(), None);
        assert_eq!(waiting.number(), 7);
    }

    #[test]
    fn the_flags_leave_the_generation_alone() {
        for generation in [1, 2, 12345, MAX_GENERATION] {
            for incoming in [false, true] {
                let mut slot = Slot::new(generation, incoming, 3, 7, NIL, 0);
                for late in [true, false, true] {
                    slot.set_late_pending(late);
                    assert_eq!(slot.generation(), generation);
                    assert_eq!(slot.incoming(), incoming);
                    assert_eq!(slot.late_pending(), late);
                }
            }
        }
    }
}

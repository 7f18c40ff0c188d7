//! Where a waiting send's outcome lands: a cell owned by its session and
//! shared with the manager while the send waits, so that the send's future
//! takes its reply without the manager's lock.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use psession_core::SessionError;

/// The outcome of a session's current send, and the waker of the future
/// waiting for it. A session has at most one waiting send, so one cell
/// serves all its sends, one after another.
///
/// Lock order: the manager's lock, then a cell's (the manager completes a
/// send under its own lock; a future only ever takes the cell's).
pub(crate) struct SendCell<M> {
    inner: Mutex<Slot<M>>,
}

struct Slot<M> {
    waker: Option<Waker>,
    outcome: Option<Result<M, SessionError>>,
}

impl<M> Default for SendCell<M> {
    fn default() -> Self {
        SendCell {
            inner: Mutex::new(Slot {
                waker: None,
                outcome: None,
            }),
        }
    }
}

impl<M> SendCell<M> {
    fn lock(&self) -> MutexGuard<'_, Slot<M>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Readies the cell for a new send waited for by `waker`: an outcome
    /// left by an earlier send whose future was dropped unread is dropped.
    pub(crate) fn reset(&self, waker: &Waker) {
        let mut slot = self.lock();
        slot.outcome = None;
        slot.waker = Some(waker.clone());
    }

    /// Stores the outcome and returns the waker to wake (once every lock is
    /// released).
    pub(crate) fn complete(&self, outcome: Result<M, SessionError>) -> Option<Waker> {
        let mut slot = self.lock();
        slot.outcome = Some(outcome);
        slot.waker.take()
    }

    /// The outcome, or `Pending` with `cx`'s waker registered.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<M, SessionError>> {
        let mut slot = self.lock();
        if let Some(outcome) = slot.outcome.take() {
            return Poll::Ready(outcome);
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

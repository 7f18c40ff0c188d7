//! The manager's driver task: one timer, re-armed to the core's next
//! deadline. No timer per send and no polling loop.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use psession_core::Message;

use crate::runtime::Runtime;
use crate::shared::{Effects, Shared, FLUSH_ROUNDS};

/// Fires the core's deadlines as they fall due, until the manager is
/// dropped.
pub(crate) async fn drive<R: Runtime, M: Message + Send + 'static>(shared: Arc<Shared<M>>) {
    let mut sleep: Option<(Instant, Pin<Box<R::Sleep>>)> = None;
    poll_fn(|cx| loop {
        let mut effects = Effects::default();
        let (next, handoff) = {
            let mut state = shared.lock();
            if state.closed {
                // A flush handed over before the drop still drains, in order.
                let handoff = state.take_flush_handoff();
                drop(state);
                if handoff {
                    shared.flush(FLUSH_ROUNDS);
                }
                return Poll::Ready(());
            }
            // Taken first so that `collect` does not wake this very task;
            // with nothing armed, `collect` arms the next deadline.
            state.timer.waker = None;
            state.timer.armed = None;
            let now = (shared.now)();
            state.core.handle_timeout(now);
            state.collect(&shared, now, &mut effects);
            let next = state.timer.armed;
            state.timer.waker = Some(cx.waker().clone());
            (next, state.take_flush_handoff())
        };
        shared.apply(effects);
        if handoff {
            // If more is left, it is handed back to this task, which is
            // woken: other tasks run in between.
            shared.flush(FLUSH_ROUNDS);
        }
        let Some(deadline) = next else {
            sleep = None;
            return Poll::Pending;
        };
        let timer = match &mut sleep {
            Some((at, timer)) if *at == deadline => timer,
            _ => {
                &mut sleep
                    .insert((deadline, Box::pin(R::sleep_until(deadline))))
                    .1
            }
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The deadline passed: a fresh timer for whatever comes next.
        sleep = None;
    })
    .await
}

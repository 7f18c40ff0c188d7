//! The clock: moving it (forward, back, days, to the next deadline) and
//! checking `poll_timeout`.

use super::*;

impl Harness {
    pub(super) fn handle_timeout(&mut self) -> Step {
        let mut step = Step::timed();
        step.handle_timeout = true;
        let ((), step) = self.call(step, |m, now| m.handle_timeout(now));
        step
    }

    pub(super) fn tick(&mut self, tick: Tick, handle: bool, check: bool) {
        let mut quiet = false;
        match tick {
            Tick::Forward(d) => self.t.wall = self.t.wall.saturating_add(d).min(MAX_WALL),
            Tick::Back(d) => self.t.wall = self.t.wall.saturating_sub(d),
            Tick::ToDeadline(offset) => {
                let next = self.next_deadline();
                let expected = self.t.expected_timeout();
                ensure!(
                    next == expected,
                    "poll_timeout {next:?}, expected {expected:?}"
                );
                let Some(next) = next else { return };
                let at = nanos(next.duration_since(self.t.base));
                // Just before the earliest deadline, nothing may happen.
                let now = self.t.instant(self.t.now).expect("representable");
                quiet = offset < 0 && next > now;
                self.t.wall = at.saturating_add_signed(offset).min(MAX_WALL);
            }
        }
        if !handle {
            return;
        }
        let transmits = self.m.stats().queued_transmits;
        let step = self.handle_timeout();
        if quiet {
            ensure!(
                step.events.is_empty() && self.m.stats().queued_transmits == transmits,
                "something fired 1 ns before poll_timeout's deadline: {:?}",
                step.events
            );
        }
        self.end(step);
        if check {
            let next = self.next_deadline();
            let now = self.t.instant(self.t.now);
            ensure!(
                next.is_none() || next > now,
                "after handle_timeout({now:?}), poll_timeout still says {next:?}"
            );
            let expected = self.t.expected_timeout();
            ensure!(
                next == expected,
                "poll_timeout {next:?}, expected {expected:?}"
            );
        }
    }

    /// `poll_timeout`, after checking that `timeout_lower_bound` (asked
    /// first: `poll_timeout` repairs the queue) is no later, and that it
    /// equals `poll_timeout`'s answer right after.
    fn next_deadline(&mut self) -> Option<Instant> {
        let bound = self.m.timeout_lower_bound();
        let next = self.m.poll_timeout();
        ensure!(
            next.is_none_or(|next| bound.is_some_and(|bound| bound <= next)),
            "timeout_lower_bound {bound:?} comes after poll_timeout {next:?}"
        );
        // Once repaired, the bound is exact (the drivers rely on this to
        // ask `poll_timeout` at most once per input).
        let repaired = self.m.timeout_lower_bound();
        ensure!(
            repaired == next,
            "after poll_timeout {next:?}, timeout_lower_bound says {repaired:?}"
        );
        next
    }

    pub(super) fn check_timeout(&mut self) {
        let next = self.next_deadline();
        let expected = self.t.expected_timeout();
        ensure!(
            next == expected,
            "poll_timeout {next:?}, expected {expected:?}"
        );
    }
}

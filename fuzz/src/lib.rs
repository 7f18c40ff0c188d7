//! # psession-fuzz
//!
//! A fuzz harness for [`psession_core`]: [`run`] decodes arbitrary bytes
//! into a script of API calls, inbound messages (arbitrary bytes, parsed as
//! JSON where they parse, and odd sids) and clock moves (small steps, none,
//! backwards, jumps of days, to just before and at the next deadline), runs
//! it against a [`psession_core::Manager`] on a virtual clock, and panics
//! with a message starting `psession-fuzz: invariant violated:` when an
//! invariant breaks:
//!
//! 1. every send ends exactly once (reply, timeout, cancel, abort,
//!    transport failure, withdrawal, port destroyed, ...), and at the end,
//!    after everything is cleared, every send has ended;
//! 2. no deadline fires early or is missed: a send times out only once its
//!    last attempt's wait is over, an idle session expires only after
//!    `session_max_life`, nothing due survives an input that takes `now`,
//!    `poll_timeout` is exactly the earliest deadline, nothing happens 1 ns
//!    before it, and after `handle_timeout(now)` it lies after `now`;
//! 3. no leak: once everything is ended the stats report zero sessions,
//!    sends, queued messages, transmissions, events and timer entries, and
//!    at every step they equal what the harness counted;
//! 4. stale handles are refused with `Invalid` / `NoSuchPort` / `false` and
//!    never touch the session or send that reused their sid or slot;
//! 5. no panic, and memory within the caps (incoming sessions per port,
//!    queued messages per session, sids per port);
//!
//! and, on the way, that sids are allocated and recycled as documented and
//! that the transport gets exactly the transmissions that came due.
//!
//! See `fuzz/README.md` for how to run it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod checks;
mod harness;
pub mod script;
mod step;
mod track;
mod tracker;
#[cfg(test)]
mod violations;

/// Decodes `data` into a script and runs it, panicking if an invariant
/// breaks. Every byte string is a valid input.
pub fn run(data: &[u8]) {
    let script = script::Script::decode(data);
    if let Some(harness) = harness::Harness::new(&script) {
        harness.run(&script);
    }
}

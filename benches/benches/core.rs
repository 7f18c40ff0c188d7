//! `psession-core` on its hot paths, each next to the hand-written baseline
//! correlator (`psession_benches::baseline`: a slab of waiting entries, an
//! outbound queue, a deadline heap, the same `"sid"` tagging of the same
//! JSON) doing the same work, in the same criterion group.
//!
//! `core_round_trip` (per cycle, `Throughput::Elements(1)`):
//! - `json_floor`: the JSON work any correlator does on a cycle and nothing
//!   else: clone the request, insert its sid, build the peer's reply with
//!   that sid, read the sid back. Both sides below pay it.
//! - `psession_reuse/N`: on one open session: `send` (a clone of
//!   `{"query":"getDeviceList"}`), `poll_transmit`, the peer's reply (a
//!   clone of `{"status":"ok"}` given the transmitted message's sid),
//!   `handle_inbound`, `poll_event` (the `Reply`).
//! - `psession_open_end/N`: the same on a session opened for the cycle and
//!   ended after it (`open_session` ... `end`, `poll_event` the `Closed`).
//! - `baseline/N`: the same cycle on the baseline (a fresh sid per request:
//!   it has no sessions, so it is the reference for both psession ids).
//!
//!   `N` other sends wait meanwhile (0, 10,000, 1,000,000), built before the
//!   timed loop: psession spreads them over ports of 50,000 sessions (many
//!   peers), the measured session being on the default port.
//!
//! `timers`:
//! - `arm_disarm/{psession,baseline}`: `send` (arms the deadline),
//!   `poll_transmit`, `cancel` (disarms it), poll the failure. Cancelling
//!   rather than answering keeps inbound parsing out of it.
//! - `handle_timeout/{psession,baseline}/N` (N = 1,000, 100,000, 1,000,000;
//!   `Throughput::Elements(N)`): N sends made 1 µs apart, all past their
//!   deadline; only `handle_timeout` and draining the N failures are timed
//!   (`iter_batched`, `PerIteration`: building and dropping are not).
//!
//! `hostile_peer` (`Throughput::Elements(1024)`, a stream of 1,024 messages
//! per iteration, cloned untimed; each dispatched with `handle_inbound`,
//! events drained):
//! - `garbage/{psession,baseline}`: JSON that is not a session message (no
//!   sid, sids that are strings, null, arrays, objects, 0, negative,
//!   fractional, beyond `u32`, non-objects). psession hands each back.
//! - `unknown_sids/{psession,baseline}`: valid sids nobody opened (some
//!   near `u32::MAX`), a flood of incoming sessions against the port's
//!   `max_incoming_sessions` (1,024, already reached): psession drops each
//!   with `Event::Dropped`; the baseline misses its lookup and drops it.
//!
//! The clock is virtual (`t0 + 1 µs` per step): the core never reads one.
//! `PSESSION_BENCH_QUICK=1` runs briefly (see `psession_benches::criterion`);
//! the `handle_timeout` ids take 10 flat samples in both modes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use psession_benches::baseline;
use psession_benches::core_cycle::{
    answer, answer_body, baseline_expired, baseline_fire, baseline_with_load, config,
    psession_expired, psession_fire, request, Baseline, Clock, Psession, DAY,
};
use psession_core::{Manager, Message, Routed};
use serde_json::{json, Value};

/// Sends that wait while the measured cycle runs, for `core_round_trip`.
const LOADS: [usize; 3] = [0, 10_000, 1_000_000];
/// Expired sends `handle_timeout` fires at once.
const EXPIRED: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Messages per iteration in `hostile_peer`.
const STREAM: usize = 1024;

/// `core_round_trip`: one request/reply cycle, psession next to the
/// baseline, with more and more other sends waiting.
fn core_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_round_trip");
    group.throughput(Throughput::Elements(1));

    // The JSON work any correlator does on this cycle, and nothing else:
    // copy the request, tag it, the peer's reply, read its sid.
    let (message, body) = (request(), answer_body());
    group.bench_function("json_floor", |b| {
        b.iter(|| {
            let mut request = message.clone();
            request.set_sid(baseline::SID_FIELD, 1);
            let reply = answer(&body, &request);
            black_box(baseline::sid_of(&reply));
            reply
        })
    });

    for load in LOADS {
        let mut psession = Psession::new(load);
        let session = psession.open();
        group.bench_function(BenchmarkId::new("psession_reuse", load), |b| {
            b.iter(|| psession.round_trip(session))
        });
        group.bench_function(BenchmarkId::new("psession_open_end", load), |b| {
            b.iter(|| psession.open_round_trip_end())
        });
        assert_eq!(psession.manager.stats().waiting_sends, load);
        drop(psession);

        let mut baseline = Baseline::new(load);
        group.bench_function(BenchmarkId::new("baseline", load), |b| {
            b.iter(|| baseline.round_trip())
        });
        assert_eq!(baseline.correlator.waiting(), load);
    }
    group.finish();
}

/// `timers`: arming and disarming a deadline, and firing expired sends.
fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");

    // Arm and disarm: a send on an open session (arms its deadline), its
    // transmission taken, then cancelled (disarms it) and the failure
    // polled. No reply, so no inbound parsing; the JSON work is the request
    // copy and its tag, as in `core_round_trip/json_floor`'s first half.
    // The baseline pushes a heap item per send and leaves it stale on
    // cancel (compacting now and then); psession re-arms lazily: while the
    // earlier deadline of its slot for waiting sends (which the session's
    // next send takes again) is still queued, a send only compares.
    group.throughput(Throughput::Elements(1));
    {
        let mut psession = Psession::new(0);
        let session = psession.open();
        group.bench_function("arm_disarm/psession", |b| {
            b.iter(|| psession.arm_disarm(session))
        });
        let mut baseline = Baseline::new(0);
        group.bench_function("arm_disarm/baseline", |b| b.iter(|| baseline.arm_disarm()));
    }

    // handle_timeout: N sends, sent 1 µs apart, all past their deadline.
    // Only handle_timeout and draining the N failures are timed; building
    // the manager (and dropping it) is not.
    let timeout = Duration::from_secs(60);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for n in EXPIRED {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("handle_timeout/psession", n), |b| {
            b.iter_batched(
                || psession_expired(n, timeout),
                |(mut manager, at)| {
                    assert_eq!(psession_fire(&mut manager, at), n);
                    manager
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("handle_timeout/baseline", n), |b| {
            b.iter_batched(
                || baseline_expired(n, timeout),
                |(mut correlator, at)| {
                    assert_eq!(baseline_fire(&mut correlator, at), n);
                    correlator
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Messages that are JSON but not session messages: no sid, a sid of the
/// wrong type, zero, negative, fractional or beyond `u32`, not an object.
fn garbage() -> Vec<Value> {
    let kinds = [
        json!({"type": "hello"}),
        json!({"sid": "7", "query": "getDeviceList"}),
        json!({"sid": -1}),
        json!({"sid": 0}),
        json!({"sid": 1.5}),
        json!({"sid": null}),
        json!({"sid": [1]}),
        json!({"sid": {"n": 1}}),
        json!({"sid": 4_294_967_296u64}),
        json!({"sid": u64::MAX}),
        json!({"sid": 1e300}),
        json!({"session": 1, "payload": "x"}),
        json!([1, 2, 3]),
        json!("sid"),
        json!(42),
        json!(null),
    ];
    kinds.iter().cycle().take(STREAM).cloned().collect()
}

/// Session messages with sids nobody opened: from the peer, each would open
/// an incoming session (some near `u32::MAX`).
fn unknown_sids() -> Vec<Value> {
    (0..STREAM as u32)
        .map(|i| {
            let sid = if i % 8 == 0 {
                u32::MAX - i
            } else {
                100_000 + i.wrapping_mul(7919)
            };
            json!({"sid": sid, "type": "command"})
        })
        .collect()
}

/// Sessions (psession: incoming, opened by the peer up to the default
/// `max_incoming_sessions`; baseline: waiting sends) that are live while a
/// hostile stream is dispatched. Their sids are 1..=1024, below every sid
/// of [`unknown_sids`].
const LIVE: u32 = 1024;

/// `hostile_peer`: dispatching what a hostile or broken peer sends.
fn hostile_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile_peer");
    group.throughput(Throughput::Elements(STREAM as u64));
    for (name, stream) in [("garbage", garbage()), ("unknown_sids", unknown_sids())] {
        // psession at its incoming limit: each unknown sid is dropped
        // (Event::Dropped, IncomingLimit), garbage is handed back.
        let mut clock = Clock::new();
        let mut manager: Manager = Manager::new(config(DAY)).expect("config");
        let port = manager.default_port();
        for sid in 1..=LIVE {
            let now = clock.tick();
            let routed = manager.handle_inbound(port, json!({"sid": sid}), now);
            assert!(matches!(routed, Routed::Opened(_)));
        }
        while manager.poll_event().is_some() {}
        group.bench_function(BenchmarkId::new(name, "psession"), |b| {
            b.iter_batched(
                || stream.clone(),
                |stream| {
                    for message in stream {
                        let now = clock.tick();
                        black_box(manager.handle_inbound(port, message, now));
                        while let Some(event) = manager.poll_event() {
                            black_box(event);
                        }
                    }
                },
                BatchSize::PerIteration,
            )
        });
        let stats = manager.stats();
        assert_eq!(
            (stats.live_sessions, stats.queued_events),
            (LIVE as usize, 0)
        );

        let mut clock = Clock::new();
        let mut correlator = baseline_with_load(DAY, LIVE as usize, &mut clock);
        group.bench_function(BenchmarkId::new(name, "baseline"), |b| {
            b.iter_batched(
                || stream.clone(),
                |stream| {
                    for message in stream {
                        let now = clock.tick();
                        black_box(correlator.handle_inbound(message, now));
                    }
                },
                BatchSize::PerIteration,
            )
        });
        assert_eq!(correlator.waiting(), LIVE as usize);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = psession_benches::criterion();
    targets = core_round_trip, timers, hostile_peer
}
criterion_main!(benches);

//! Async round trips through psession's drivers, next to the same work done
//! by a hand-written correlator and by tarpc, on Tokio and on smol.
//!
//! Every contender wires a client and a server back to back in memory with
//! bounded channels of [`CAPACITY`] messages, and carries the same JSON
//! messages (`request` and [`answer`] of
//! `psession_benches::oneshot_correlator`) with a `"sid"` field written by
//! the client side and read back to match the reply. Every contender is a
//! `psession_benches::round_trip::RoundTrip`, and every turn is that
//! module's `turn`: the same request, the same check of the reply. The
//! contenders:
//!
//! - `psession`: `psession_benches::wiring::pair`: two `SessionManager`s,
//!   each with a `Sender::channel`
//!   whose `Outbound` a forwarder task dispatches into the other's default
//!   port (the README's "Quick look"). The server takes each session from
//!   `server.events()` and spawns a task that `recv`s each request and
//!   `post`s the answer; it ends its side after the request marked
//!   `"last"`. The client `send`s on a `Session`.
//! - `oneshot_correlator`: `psession_benches::oneshot_correlator`: a
//!   `HashMap<sid, oneshot::Sender>` behind a mutex, a reader task routing
//!   replies by sid, and one server task answering every request.
//! - `oneshot_correlator_timeout`: the same correlator, each request
//!   wrapped in the runtime's timeout of psession's default send timeout
//!   (`psession_default_timeout`) with
//!   [`send_within`](psession_benches::oneshot_correlator::on_tokio::Conversation::send_within)
//!   (`Limited`): what the correlator costs once it does that part of psession's job.
//!   Context only: the targets are against the plain correlator.
//! - `tarpc` (Tokio only): a `#[tarpc::service]` over
//!   `tarpc::transport::channel::bounded`, served as tarpc documents it
//!   (`BaseChannel::execute`, one spawned task per request), with the
//!   client's dispatch task spawned. tarpc correlates by its own request
//!   id; the sid is still written into the request and copied into the
//!   reply, so the JSON work is the same. tarpc is not runtime-neutral: its
//!   client and server keep deadlines in `tokio_util`'s `DelayQueue`, which
//!   needs Tokio's timer, so it has no smol variant.
//!
//! Two workloads, each in group `async_round_trip` (Tokio) and
//! `async_round_trip_smol`:
//!
//! - `sequential/<contender>`: one conversation, one turn after another;
//!   the time of one turn (request out, reply back). Tokio: a
//!   current-thread runtime for every task. smol: the turns run in a task
//!   on smol's global executor, with every other task (psession's
//!   forwarders, server and driver task, the baselines' reader and
//!   server); the bench thread only waits for the run (`smol::block_on`).
//! - `sessions_1000x100/<contender>`: 1,000 conversations at once, each
//!   doing 100 turns (then ending); the time of the whole batch of 100,000
//!   round trips (criterion's throughput is per round trip). Tokio: a
//!   multi-threaded runtime with 2 workers (the CI machine's cores) for
//!   every contender. smol: the 1,000 tasks on smol's global executor
//!   (one thread unless `SMOL_THREADS` says otherwise). With 1,000
//!   conversations answered at once, the servers' replies wait for room in
//!   their 64-message channels: psession's `post`s as the baselines'
//!   `send`s.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, Bencher, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use psession_benches::oneshot_correlator::{answer, on_smol, on_tokio, psession_default_timeout};
use psession_benches::quick;
use psession_benches::round_trip::{smol_batch, tokio_batch, turn, RoundTrip};
use psession_benches::wiring::{pair, Wiring, CAPACITY};
use psession_smol::Smol;
use psession_tokio::Tokio;
use serde_json::Value;

/// Concurrent conversations of the batch workload.
const SESSIONS: u64 = 1_000;
/// Turns per conversation of the batch workload.
const TURNS: u64 = 100;

/// tarpc's side of the comparison: a service with one RPC, a turn.
mod with_tarpc {
    use super::{answer, CAPACITY};
    use futures::{FutureExt, StreamExt};
    use serde_json::Value;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::{client, context};

    #[tarpc::service]
    pub trait Turns {
        /// Answers one request.
        async fn turn(request: Value) -> Value;
    }

    #[derive(Clone)]
    struct TurnServer;

    impl Turns for TurnServer {
        async fn turn(self, _: context::Context, request: Value) -> Value {
            let mut reply = answer(&request);
            reply["sid"] = request["sid"].clone();
            reply
        }
    }

    /// A client whose server runs in spawned tasks (inside a Tokio runtime).
    pub fn wire() -> TurnsClient {
        let (client_side, server_side) = tarpc::transport::channel::bounded(CAPACITY);
        let server = BaseChannel::with_defaults(server_side)
            .execute(TurnServer.serve())
            .for_each(|response| async move {
                drop(tokio::spawn(response));
            });
        drop(tokio::spawn(server));
        let client::NewClient { client, dispatch } =
            TurnsClient::new(client::Config::default(), client_side);
        drop(tokio::spawn(dispatch.map(drop)));
        client
    }
}

/// A tarpc "conversation": the sid is written into each request like
/// everyone else's, though tarpc matches the reply by its own id.
struct TarpcConversation {
    client: with_tarpc::TurnsClient,
    sid: u64,
}

impl RoundTrip for TarpcConversation {
    type Error = tarpc::client::RpcError;

    fn round_trip(
        &mut self,
        mut request: Value,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send + '_ {
        request["sid"] = self.sid.into();
        self.client.turn(tarpc::context::current(), request)
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Sets the group up for the sequential workload.
fn sequential(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sampling_mode(SamplingMode::Auto);
    group.throughput(Throughput::Elements(1));
}

/// Sets the group up for the batch workload: each iteration is long (0.1 s
/// to 1 s), so every sample runs the same number of them (flat sampling);
/// the full mode takes 20 samples in 16 s (one batch per sample at worst),
/// the quick mode criterion's minimum, 10.
fn batch(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(SESSIONS * TURNS));
    if !quick() {
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(16));
    }
}

/// Times `iters` turns of one conversation on `contender`, on `rt` (a
/// current-thread runtime); the turns go on from one call to the next.
fn tokio_sequential(
    b: &mut Bencher<'_>,
    rt: &tokio::runtime::Runtime,
    mut contender: impl RoundTrip,
) {
    let mut next = 0;
    b.iter_custom(|iters| {
        rt.block_on(async {
            let start = Instant::now();
            for t in next..next + iters {
                turn(&mut contender, t, false).await;
            }
            next += iters;
            start.elapsed()
        })
    });
}

/// [`tokio_sequential`] on smol: the turns run in a task on the global
/// executor, with every other task, so that no turn waits for another
/// thread to wake up; the contender moves into each run's task and back.
fn smol_sequential<C: RoundTrip + 'static>(b: &mut Bencher<'_>, contender: C) {
    let mut contender = Some(contender);
    let mut next = 0;
    b.iter_custom(|iters| {
        let mut c = contender.take().unwrap();
        let first = next;
        let (c, elapsed) = smol::block_on(smol::spawn(async move {
            let start = Instant::now();
            for t in first..first + iters {
                turn(&mut c, t, false).await;
            }
            (c, start.elapsed())
        }));
        contender = Some(c);
        next += iters;
        elapsed
    });
}

/// Times `iters` batches on `rt`: each runs [`SESSIONS`] conversations
/// on contenders made by `open` (inside the runtime) at once.
fn tokio_batches<C: RoundTrip + 'static>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut open: impl FnMut() -> C,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        rt.block_on(tokio_batch(SESSIONS, TURNS, &mut open));
    }
    start.elapsed()
}

/// [`tokio_batches`] on smol's global executor.
fn smol_batches<C: RoundTrip + 'static>(iters: u64, mut open: impl FnMut() -> C) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        smol::block_on(smol_batch(SESSIONS, TURNS, &mut open));
    }
    start.elapsed()
}

fn on_tokio_runtime(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_round_trip");

    sequential(&mut group);
    group.bench_function("sequential/psession", |b| {
        let rt = current_thread();
        let wiring: Wiring<Tokio> = rt.block_on(async { pair() });
        tokio_sequential(b, &rt, wiring.open());
    });
    group.bench_function("sequential/oneshot_correlator", |b| {
        let rt = current_thread();
        let client = rt.block_on(async { on_tokio::wired(CAPACITY) });
        tokio_sequential(b, &rt, client.conversation());
    });
    group.bench_function("sequential/oneshot_correlator_timeout", |b| {
        let rt = current_thread();
        let client = rt.block_on(async { on_tokio::wired(CAPACITY) });
        tokio_sequential(b, &rt, client.limited(psession_default_timeout()));
    });
    group.bench_function("sequential/tarpc", |b| {
        let rt = current_thread();
        let client = rt.block_on(async { with_tarpc::wire() });
        tokio_sequential(b, &rt, TarpcConversation { client, sid: 1 });
    });

    batch(&mut group);
    group.bench_function("sessions_1000x100/psession", |b| {
        let rt = multi_thread();
        let wiring: Wiring<Tokio> = rt.block_on(async { pair() });
        b.iter_custom(|iters| tokio_batches(&rt, iters, || wiring.open()));
    });
    group.bench_function("sessions_1000x100/oneshot_correlator", |b| {
        let rt = multi_thread();
        let client = rt.block_on(async { on_tokio::wired(CAPACITY) });
        b.iter_custom(|iters| tokio_batches(&rt, iters, || client.conversation()));
    });
    group.bench_function("sessions_1000x100/oneshot_correlator_timeout", |b| {
        let rt = multi_thread();
        let client = rt.block_on(async { on_tokio::wired(CAPACITY) });
        let limit = psession_default_timeout();
        b.iter_custom(|iters| tokio_batches(&rt, iters, || client.limited(limit)));
    });
    group.bench_function("sessions_1000x100/tarpc", |b| {
        let rt = multi_thread();
        let client = rt.block_on(async { with_tarpc::wire() });
        let sids = Arc::new(AtomicU64::new(1));
        b.iter_custom(|iters| {
            tokio_batches(&rt, iters, || {
                let client = client.clone();
                let sid = sids.fetch_add(1, Ordering::Relaxed);
                TarpcConversation { client, sid }
            })
        });
    });
    group.finish();
}

fn on_smol_runtime(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_round_trip_smol");

    sequential(&mut group);
    group.bench_function("sequential/psession", |b| {
        let wiring: Wiring<Smol> = pair();
        smol_sequential(b, wiring.open());
    });
    group.bench_function("sequential/oneshot_correlator", |b| {
        smol_sequential(b, on_smol::wired(CAPACITY).conversation());
    });
    group.bench_function("sequential/oneshot_correlator_timeout", |b| {
        let limited = on_smol::wired(CAPACITY).limited(psession_default_timeout());
        smol_sequential(b, limited);
    });

    batch(&mut group);
    group.bench_function("sessions_1000x100/psession", |b| {
        let wiring: Wiring<Smol> = pair();
        b.iter_custom(|iters| smol_batches(iters, || wiring.open()));
    });
    group.bench_function("sessions_1000x100/oneshot_correlator", |b| {
        let client = on_smol::wired(CAPACITY);
        b.iter_custom(|iters| smol_batches(iters, || client.conversation()));
    });
    group.bench_function("sessions_1000x100/oneshot_correlator_timeout", |b| {
        let client = on_smol::wired(CAPACITY);
        let limit = psession_default_timeout();
        b.iter_custom(|iters| smol_batches(iters, || client.limited(limit)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = psession_benches::criterion();
    targets = on_tokio_runtime, on_smol_runtime
}
criterion_main!(benches);

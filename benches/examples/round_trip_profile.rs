//! A fixed number of async round trips, for instruction counts under
//! `valgrind --tool=callgrind` (which criterion's timing loop would blur):
//!
//! ```sh
//! cargo build --release -p psession-benches --example round_trip_profile
//! valgrind --tool=callgrind target/release/examples/round_trip_profile psession 20000
//! valgrind --tool=callgrind target/release/examples/round_trip_profile correlator 20000
//! ```
//!
//! The first argument is the contender (`psession`, `correlator`, or
//! `timeout`: the correlator with psession's default send timeout, 60 s,
//! on each request), the second the number of sequential turns, on a
//! current-thread Tokio runtime, wired by `psession_benches::wiring` as in
//! `benches/async_round_trip.rs`. A third argument
//! `batch` runs that many conversations of 100 turns at once instead; a
//! fourth argument `mt` runs on a multi-threaded runtime with 2 workers
//! (`WORKERS=n` for another number: `WORKERS=1` runs the same scheduler
//! without a second core, which tells contention apart from work).
//! `SHARDS=n` wires n independent psession client/server pairs and opens
//! the conversations on them in turn: an estimate of what splitting a
//! manager's state n ways could buy, without writing it (each pair also
//! has channels and forwarders of its own). `CLIENTS=c SERVERS=s` (each
//! `SHARDS` by default) splits one side only: c client managers and s
//! server managers joined by max(c, s) links, a channel pair and a port at
//! each end per link.
//! `REPS=n` repeats a batch n times (at most 1,000 conversations per batch:
//! the server's port takes 1,024 incoming sessions at once).

use psession_benches::oneshot_correlator::{on_tokio, psession_default_timeout};
use psession_benches::round_trip::{tokio_batch, turn, RoundTrip};
use psession_benches::wiring::{wire, Wiring, CAPACITY};
use psession_tokio::Tokio;

/// Turns per conversation of a batch.
const TURNS: u64 = 100;

/// The number in environment variable `name`, else `default`.
fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The workers of the multi-threaded runtime: `WORKERS`, else 2.
fn workers() -> usize {
    env_number("WORKERS", 2)
}

/// Independent client and server pairs for psession: `SHARDS`, else 1.
fn shards() -> usize {
    env_number("SHARDS", 1).max(1)
}

/// How many batches to run: `REPS`, else 1.
fn reps() -> usize {
    env_number("REPS", 1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let contender = args.get(1).map_or("psession", String::as_str).to_owned();
    let n: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let batch = args.get(3).is_some_and(|a| a == "batch");
    let rt = if args.get(4).is_some_and(|a| a == "mt") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers())
            .enable_time()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    rt.block_on(async move {
        match contender.as_str() {
            "psession" => {
                let (clients, servers) = (
                    env_number("CLIENTS", shards()),
                    env_number("SERVERS", shards()),
                );
                let wiring: Wiring<Tokio> = wire(clients, servers);
                profile(|| wiring.open(), n, batch).await;
            }
            "correlator" => {
                let client = on_tokio::wired(CAPACITY);
                profile(|| client.conversation(), n, batch).await;
            }
            "timeout" => {
                let client = on_tokio::wired(CAPACITY);
                let limit = psession_default_timeout();
                profile(|| client.limited(limit), n, batch).await;
            }
            other => panic!("unknown contender {other}"),
        }
    });
}

/// `n` turns of one conversation made by `open`; with `batch`, `n`
/// conversations of [`TURNS`] turns at once, `REPS` times.
async fn profile<C: RoundTrip + 'static>(mut open: impl FnMut() -> C, n: u64, batch: bool) {
    if !batch {
        let mut contender = open();
        for t in 0..n {
            turn(&mut contender, t, false).await;
        }
        return;
    }
    for _ in 0..reps() {
        tokio_batch(n, TURNS, &mut open).await;
    }
}

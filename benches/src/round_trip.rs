//! One turn of a conversation, the same for every contender of the async
//! round-trip benchmarks: build the request of the turn, send it, wait for
//! the reply, check that it answers that turn.
//!
//! Each contender is a [`RoundTrip`]: a psession [`Session`], the
//! hand-written correlator's
//! [`Conversation`](crate::oneshot_correlator::on_tokio::Conversation), the
//! same with a time limit on each request
//! ([`Limited`](crate::oneshot_correlator::on_tokio::Limited)), or, in
//! `benches/async_round_trip.rs`, a tarpc client. The trait hands back the
//! contender's own send future, so [`turn`] awaits exactly what a
//! hand-written loop over that contender would.

use std::fmt::Debug;
use std::future::Future;

use psession_tokio::{Session, SessionError};
use serde_json::Value;

use crate::oneshot_correlator::request;

/// Sends one request and waits for its reply.
pub trait RoundTrip: Send {
    /// Why a request got no reply.
    type Error: Debug;

    /// The contender's send of `request`, waiting for the reply.
    fn round_trip(
        &mut self,
        request: Value,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send + '_;
}

/// psession: `Session::send` (the same type on Tokio and on smol).
impl RoundTrip for Session {
    type Error = SessionError;

    fn round_trip(
        &mut self,
        request: Value,
    ) -> impl Future<Output = Result<Value, SessionError>> + Send + '_ {
        self.send(request)
    }
}

/// Turn `turn` of a conversation on `contender` (`last` marks the final
/// one: the psession server then ends its side): panics if the request
/// fails or the reply answers another turn.
pub async fn turn(contender: &mut impl RoundTrip, turn: u64, last: bool) {
    let reply = contender.round_trip(request(turn, last)).await.unwrap();
    assert_eq!(
        reply["turn"].as_u64(),
        Some(turn),
        "a reply reached the wrong waiter"
    );
}

/// A whole conversation of `turns` turns on `contender`, the last marked.
pub async fn conversation(mut contender: impl RoundTrip, turns: u64) {
    for t in 0..turns {
        turn(&mut contender, t, t + 1 == turns).await;
    }
}

/// `conversations` conversations of `turns` turns, each on a contender
/// made by `open`, all at once in tasks spawned on Tokio (so inside a
/// Tokio runtime); returns when every one has ended.
pub async fn tokio_batch<C: RoundTrip + 'static>(
    conversations: u64,
    turns: u64,
    mut open: impl FnMut() -> C,
) {
    let tasks: Vec<_> = (0..conversations)
        .map(|_| tokio::spawn(conversation(open(), turns)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// [`tokio_batch`] on smol's global executor.
pub async fn smol_batch<C: RoundTrip + 'static>(
    conversations: u64,
    turns: u64,
    mut open: impl FnMut() -> C,
) {
    let tasks: Vec<_> = (0..conversations)
        .map(|_| smol::spawn(conversation(open(), turns)))
        .collect();
    for task in tasks {
        task.await;
    }
}

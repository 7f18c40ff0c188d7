//! The hand-written baseline of the `async_round_trip` benchmarks: what an
//! application would write instead of psession to match replies to
//! requests by sid, and the JSON workload every contender of those
//! benchmarks carries.
//!
//! The correlator is a `HashMap<u64, oneshot::Sender<Value>>` behind a
//! [`std::sync::Mutex`]: a request registers a oneshot under its sid,
//! writes the sid into the message and pushes it into a bounded in-memory
//! channel; a reader task reads the peer's messages, takes the sid out of
//! each and completes the oneshot registered under it. The peer is
//! [`on_tokio::serve`] (or [`on_smol::serve`]): one task that answers each
//! request with [`answer`], copying its sid. Nothing else: no timeout, no
//! retry, no incoming sessions, no cleanup of a waiter whose reply never
//! comes. That is the floor psession's bookkeeping is measured against.
//!
//! [`Conversation::send_within`](on_tokio::Conversation::send_within) is
//! the same request with a time limit, as an application that needs the
//! job psession does (every psession send has a timeout, 60 s by default)
//! would write it: the runtime's timeout around the wait, and the waiter
//! taken out of the map when it fires. It is a second baseline, for
//! context; the targets are measured against the plain one.
//!
//! Two flavours with the same API: [`on_tokio`] (Tokio's `mpsc` and
//! `oneshot`) and [`on_smol`] (`async-channel`, which smol re-exports, and
//! `futures-channel`'s runtime-neutral `oneshot`).

use serde_json::{json, Value};

/// The request of turn `turn` of a conversation; `last` marks its final
/// turn (the psession server then ends its side of the session).
pub fn request(turn: u64, last: bool) -> Value {
    json!({ "command": "turn", "turn": turn, "last": last })
}

/// The server's reply to `request`, without its sid (each contender writes
/// the sid its own way).
pub fn answer(request: &Value) -> Value {
    json!({ "status": "ok", "turn": request["turn"] })
}

/// The limit the correlator with timeouts puts on each request in the
/// benchmarks: psession's default send timeout, which every psession send
/// of the benchmarks runs with.
pub fn psession_default_timeout() -> std::time::Duration {
    psession_core::ManagerConfig::default()
        .defaults
        .session_timeout
}

/// The sid of a message: its `"sid"` field, if it is a positive integer.
fn sid_of(message: &Value) -> Option<u64> {
    message
        .get("sid")
        .and_then(Value::as_u64)
        .filter(|&sid| sid != 0)
}

/// Registered waiters by sid.
type Pending<T> = std::sync::Mutex<std::collections::HashMap<u64, T>>;

/// Locks `pending`, ignoring poisoning (a waiter never panics under it).
fn lock<T>(pending: &Pending<T>) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, T>> {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a request got no reply: the channel to the peer closed, or the
/// reader dropped the waiter (the reply stream ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the in-memory channel closed")
    }
}

impl std::error::Error for Closed {}

/// Why a request with a time limit got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// See [`Closed`].
    Closed,
    /// No reply within the limit; the waiter is gone from the map.
    TimedOut,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Closed => Closed.fmt(f),
            Failed::TimedOut => f.write_str("no reply in time"),
        }
    }
}

impl std::error::Error for Failed {}

macro_rules! correlator {
    (
        $(#[$doc:meta])*
        $name:ident,
        to_peer: $tx:ty,
        from_peer: $rx:ty,
        oneshot: $oneshot:path,
        recv: |$r:ident| $recv:expr,
        spawn: |$task:ident| $spawn:expr,
        within: |$limit:ident, $wait:ident| $within:expr,
        channel: |$capacity:ident| $channel:expr $(,)?
    ) => {
        $(#[$doc])*
        pub mod $name {
            use std::collections::HashMap;
            use std::sync::atomic::{AtomicU64, Ordering};
            use std::sync::{Arc, Mutex};

            use serde_json::Value;

            use $oneshot as oneshot;

            use super::{answer, lock, sid_of, Closed, Failed, Pending};

            /// The client side: allocates sids, registers waiters, sends.
            /// Cheap to clone. Dropping every clone (and every
            /// [`Conversation`]) closes the channel to the peer.
            #[derive(Clone)]
            pub struct Client {
                pending: Arc<Pending<oneshot::Sender<Value>>>,
                next_sid: Arc<AtomicU64>,
                to_peer: $tx,
            }

            impl Client {
                /// A client that writes requests into `to_peer` and routes
                /// the replies it reads from `from_peer` (in a reader task
                /// it spawns, which ends with that channel).
                pub fn new(to_peer: $tx, from_peer: $rx) -> Self {
                    let pending: Arc<Pending<oneshot::Sender<Value>>> =
                        Arc::new(Mutex::new(HashMap::new()));
                    let routes = pending.clone();
                    let $task = async move {
                        // Tokio's receiver needs `mut`, async-channel's does not.
                        #[allow(unused_mut)]
                        let mut $r = from_peer;
                        while let Some(reply) = $recv {
                            route(&routes, reply);
                        }
                        // The peer is gone: fail whoever still waits.
                        lock(&routes).clear();
                    };
                    $spawn;
                    Client {
                        pending,
                        next_sid: Arc::new(AtomicU64::new(1)),
                        to_peer,
                    }
                }

                /// A conversation with a sid of its own, kept for all its
                /// turns (sids are never reused).
                pub fn conversation(&self) -> Conversation {
                    Conversation {
                        sid: self.next_sid.fetch_add(1, Ordering::Relaxed),
                        client: self.clone(),
                    }
                }

                /// A conversation whose every request gives up after
                /// `limit` ([`Conversation::send_within`]).
                pub fn limited(&self, limit: std::time::Duration) -> Limited {
                    Limited {
                        conversation: self.conversation(),
                        limit,
                    }
                }

                /// How many requests wait for their reply.
                pub fn waiting(&self) -> usize {
                    lock(&self.pending).len()
                }
            }

            /// Completes the waiter registered under the reply's sid; a
            /// reply nobody waits for is dropped. Returns whether it
            /// reached a waiter.
            fn route(pending: &Pending<oneshot::Sender<Value>>, reply: Value) -> bool {
                let waiter = sid_of(&reply).and_then(|sid| lock(pending).remove(&sid));
                match waiter {
                    Some(waiter) => waiter.send(reply).is_ok(),
                    None => false,
                }
            }

            /// One conversation: one sid, one request waiting at a time
            /// (`send` takes `&mut self`).
            pub struct Conversation {
                sid: u64,
                client: Client,
            }

            impl Conversation {
                /// The sid written into this conversation's requests.
                pub fn sid(&self) -> u64 {
                    self.sid
                }

                /// Writes the sid into `request`, sends it and waits for
                /// the reply that carries the same sid.
                pub async fn send(&mut self, mut request: Value) -> Result<Value, Closed> {
                    let (waiter, reply) = oneshot::channel();
                    lock(&self.client.pending).insert(self.sid, waiter);
                    request["sid"] = self.sid.into();
                    if self.client.to_peer.send(request).await.is_err() {
                        lock(&self.client.pending).remove(&self.sid);
                        return Err(Closed);
                    }
                    reply.await.map_err(|_| Closed)
                }

                /// [`send`](Self::send), giving up after `limit`: the
                /// waiter is then taken out of the map, so nothing leaks.
                /// A conversation keeps its sid for every turn, so a reply
                /// that comes after its request gave up answers the
                /// conversation's next request if one waits by then (as in
                /// psession, whose protocol also carries only the sid).
                pub async fn send_within(
                    &mut self,
                    request: Value,
                    limit: std::time::Duration,
                ) -> Result<Value, Failed> {
                    let $limit = limit;
                    let $wait = self.send(request);
                    // Bound first, so that the wait's borrow of `self`
                    // ends before the waiter is taken out.
                    let outcome = $within;
                    match outcome {
                        Some(Ok(reply)) => Ok(reply),
                        Some(Err(Closed)) => Err(Failed::Closed),
                        None => {
                            lock(&self.client.pending).remove(&self.sid);
                            Err(Failed::TimedOut)
                        }
                    }
                }
            }

            impl crate::round_trip::RoundTrip for Conversation {
                type Error = Closed;

                fn round_trip(
                    &mut self,
                    request: Value,
                ) -> impl std::future::Future<Output = Result<Value, Closed>> + Send + '_ {
                    self.send(request)
                }
            }

            /// A conversation whose every request gives up after `limit`
            /// ([`Conversation::send_within`]).
            pub struct Limited {
                /// The conversation.
                pub conversation: Conversation,
                /// How long each request waits for its reply.
                pub limit: std::time::Duration,
            }

            impl crate::round_trip::RoundTrip for Limited {
                type Error = Failed;

                fn round_trip(
                    &mut self,
                    request: Value,
                ) -> impl std::future::Future<Output = Result<Value, Failed>> + Send + '_ {
                    self.conversation.send_within(request, self.limit)
                }
            }

            /// A client wired to [`serve`] over two bounded channels of
            /// `capacity` messages, both tasks spawned (so inside the
            /// runtime).
            pub fn wired(capacity: usize) -> Client {
                let $capacity = capacity;
                let (to_server, from_client) = $channel;
                let (to_client, from_server) = $channel;
                let $task = serve(from_client, to_client);
                $spawn;
                Client::new(to_server, from_server)
            }

            /// The `send_within` test on this runtime: a request to a
            /// peer that reads it and never answers gives up after
            /// `short`, and one to [`serve`] gets its reply within `long`
            /// (see `tests::check_send_within`).
            #[cfg(test)]
            pub(crate) async fn check_send_within(
                short: std::time::Duration,
                long: std::time::Duration,
            ) {
                let $capacity = 8;
                let (to_peer, requests) = $channel;
                let (_replies, from_peer) = $channel;
                let client = Client::new(to_peer, from_peer);
                let silent = client.limited(short);
                let answered = wired(8).limited(long);
                super::tests::check_send_within(silent, || client.waiting(), answered).await;
                #[allow(unused_mut)]
                let mut $r = requests;
                assert!($recv.is_some(), "the request went out");
            }

            /// The peer: answers every request read from `requests` with
            /// [`answer`], copying its sid, into `replies`; ends when
            /// either channel closes.
            pub async fn serve(requests: $rx, replies: $tx) {
                #[allow(unused_mut)]
                let mut $r = requests;
                while let Some(request) = $recv {
                    let mut reply = answer(&request);
                    reply["sid"] = request["sid"].clone();
                    if replies.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
}

correlator! {
    /// The correlator on Tokio: `tokio::sync::mpsc` bounded channels and
    /// `tokio::sync::oneshot` waiters; the reader task is `tokio::spawn`ed
    /// (so [`Client::new`](on_tokio::Client::new) must run inside a
    /// runtime).
    on_tokio,
    to_peer: tokio::sync::mpsc::Sender<Value>,
    from_peer: tokio::sync::mpsc::Receiver<Value>,
    oneshot: tokio::sync::oneshot,
    recv: |rx| rx.recv().await,
    spawn: |task| drop(tokio::spawn(task)),
    within: |limit, wait| tokio::time::timeout(limit, wait).await.ok(),
    channel: |capacity| tokio::sync::mpsc::channel(capacity),
}

correlator! {
    /// The correlator on smol: `async-channel` bounded channels (smol's
    /// `smol::channel`) and `futures-channel`'s `oneshot`, which is
    /// runtime-neutral and, like Tokio's, a single allocation holding one
    /// value and one waker (a `bounded(1)` async-channel would be a
    /// general MPMC queue with event listeners: heavier than what an
    /// application would pick for a single reply). The reader task runs on
    /// smol's global executor.
    on_smol,
    to_peer: smol::channel::Sender<Value>,
    from_peer: smol::channel::Receiver<Value>,
    oneshot: futures_channel::oneshot,
    recv: |rx| rx.recv().await.ok(),
    spawn: |task| smol::spawn(task).detach(),
    within: |limit, wait| {
        smol::future::or(async { Some(wait.await) }, async {
            smol::Timer::after(limit).await;
            None
        })
        .await
    },
    channel: |capacity| smol::channel::bounded(capacity),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::round_trip::RoundTrip;

    /// Three conversations wait at once; the test plays the peer and
    /// answers in reverse order: each waiter must get the reply to its own
    /// request.
    #[test]
    fn out_of_order_replies_reach_their_waiters_on_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (to_peer, mut requests) = tokio::sync::mpsc::channel(8);
            let (replies, from_peer) = tokio::sync::mpsc::channel(8);
            let client = on_tokio::Client::new(to_peer, from_peer);
            let waiters: Vec<_> = (0..3)
                .map(|turn| {
                    let mut conversation = client.conversation();
                    tokio::spawn(async move {
                        let reply = conversation.send(request(turn, false)).await.unwrap();
                        (conversation.sid(), turn, reply)
                    })
                })
                .collect();
            let mut received = Vec::new();
            for _ in 0..3 {
                received.push(requests.recv().await.unwrap());
            }
            assert_eq!(client.waiting(), 3);
            for request in received.iter().rev() {
                let mut reply = answer(request);
                reply["sid"] = request["sid"].clone();
                replies.send(reply).await.unwrap();
            }
            for waiter in waiters {
                let (sid, turn, reply) = waiter.await.unwrap();
                assert_eq!(reply["sid"], sid);
                assert_eq!(reply["turn"], turn);
            }
            assert_eq!(client.waiting(), 0);
        });
    }

    #[test]
    fn out_of_order_replies_reach_their_waiters_on_smol() {
        smol::block_on(async {
            let (to_peer, requests) = smol::channel::bounded(8);
            let (replies, from_peer) = smol::channel::bounded(8);
            let client = on_smol::Client::new(to_peer, from_peer);
            let waiters: Vec<_> = (0..3)
                .map(|turn| {
                    let mut conversation = client.conversation();
                    smol::spawn(async move {
                        let reply = conversation.send(request(turn, false)).await.unwrap();
                        (conversation.sid(), turn, reply)
                    })
                })
                .collect();
            let mut received = Vec::new();
            for _ in 0..3 {
                received.push(requests.recv().await.unwrap());
            }
            assert_eq!(client.waiting(), 3);
            // A reply for a sid nobody waits for is dropped, not misrouted.
            replies
                .send(serde_json::json!({ "sid": 999, "turn": 0 }))
                .await
                .unwrap();
            for request in received.iter().rev() {
                let mut reply = answer(request);
                reply["sid"] = request["sid"].clone();
                replies.send(reply).await.unwrap();
            }
            for waiter in waiters {
                let (sid, turn, reply) = waiter.await;
                assert_eq!(reply["sid"], sid);
                assert_eq!(reply["turn"], turn);
            }
            assert_eq!(client.waiting(), 0);
        });
    }

    /// What the `send_within` tests check on either runtime: `silent`,
    /// whose peer never answers, fails with `TimedOut` after its limit and
    /// leaves no waiter behind (`waiting`); `answered`, whose peer is
    /// `serve`, gets its reply.
    pub(super) async fn check_send_within(
        mut silent: impl RoundTrip<Error = Failed>,
        waiting: impl Fn() -> usize,
        mut answered: impl RoundTrip<Error = Failed>,
    ) {
        let outcome = silent.round_trip(request(0, false)).await;
        assert_eq!(outcome, Err(Failed::TimedOut));
        assert_eq!(waiting(), 0, "the waiter is gone");
        let reply = answered.round_trip(request(7, false)).await;
        assert_eq!(reply.unwrap()["turn"], 7);
    }

    /// The silent peer's limit, and the answered one's.
    const SHORT: Duration = Duration::from_millis(5);
    const LONG: Duration = Duration::from_secs(60);

    /// Runs on Tokio's real clock: paused time would need Tokio's
    /// `test-util` in this crate, which would then also be built into the
    /// benchmarks (it takes a lock on every timed park of the runtime).
    #[test]
    fn send_within_gives_up_and_forgets_the_waiter_on_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(on_tokio::check_send_within(SHORT, LONG));
    }

    #[test]
    fn send_within_gives_up_and_forgets_the_waiter_on_smol() {
        smol::block_on(on_smol::check_send_within(SHORT, LONG));
    }

    /// The peer task answers with the request's sid.
    #[test]
    fn serve_copies_the_sid() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = on_tokio::wired(8);
            let mut a = client.conversation();
            let mut b = client.conversation();
            for turn in 0..3 {
                let ra = a.send(request(turn, false)).await.unwrap();
                let rb = b.send(request(turn + 10, turn == 2)).await.unwrap();
                assert_eq!(
                    (ra["sid"].as_u64(), ra["turn"].as_u64()),
                    (Some(a.sid()), Some(turn))
                );
                assert_eq!(
                    (rb["sid"].as_u64(), rb["turn"].as_u64()),
                    (Some(b.sid()), Some(turn + 10))
                );
            }
        });
    }
}

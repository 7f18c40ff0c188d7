//! One conversation: the owned [`Session`] and its cloneable
//! [`SessionHandle`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use psession_core::{Cause, Message, PortId, Routed, SendId, SendOptions, SessionError, SessionId};

use serde_json::Value;

use crate::outcome::SendCell;
use crate::sender::Sender;
use crate::shared::Shared;

/// One conversation on one port, owned by the code that talks on it.
///
/// Created by [`SessionManager::create_session`](crate::SessionManager::create_session)
/// or [`Port::create_session`](crate::Port::create_session), or handed over by
/// the events stream when the peer opens one
/// ([`ManagerEvent::Incoming`](crate::ManagerEvent::Incoming)).
///
/// `send` takes `&mut self`, so only one send can wait on a session at a
/// time. To cancel, abort or time out a waiting send from another task, use
/// a [`SessionHandle`] from [`handle`](Self::handle). Dropping the session
/// ends it (the seed's `session.end()`).
///
/// ```no_run
/// # async fn demo(manager: psession_driver::SessionManager<impl psession_driver::Runtime>)
/// #     -> Result<(), psession_core::SessionError> {
/// use serde_json::json;
///
/// let mut session = manager.create_session("default")?;
/// let response = session.send(json!({ "command": "turn on the light" })).await?;
/// if response["status"] == "needPassword" {
///     let result = session.send(json!({ "password": "123456" })).await?;
///     println!("{result}");
/// }
/// session.end();
/// # Ok(()) }
/// ```
pub struct Session<M: Message + Send + 'static = Value> {
    handle: SessionHandle<M>,
    sender: Sender<M>,
    /// Where the outcome of each of its sends lands (made by the first).
    cell: Option<Arc<SendCell<M>>>,
}

impl<M: Message + Send + 'static> fmt::Debug for Session<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Session").field(&self.handle.id).finish()
    }
}

impl<M: Message + Send + 'static> Session<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, id: SessionId, sender: Sender<M>) -> Self {
        Session {
            handle: SessionHandle { shared, id },
            sender,
            cell: None,
        }
    }

    /// The session's sid on its port (seed: `session.id`).
    pub fn id(&self) -> u32 {
        self.handle.id.sid()
    }

    /// The full handle id: port, sid and generation.
    pub fn session_id(&self) -> SessionId {
        self.handle.id
    }

    /// The port the session belongs to (seed: `session.port`).
    pub fn port(&self) -> PortId {
        self.handle.id.port()
    }

    /// A cloneable handle, to cancel, abort, time out or end this session
    /// from another task.
    pub fn handle(&self) -> SessionHandle<M> {
        self.handle.clone()
    }

    /// Sends `message` and waits for the reply, with the port's timeout and
    /// retry settings (seed: `await session.send(message)`).
    ///
    /// Fails with [`SessionError::Timeout`], [`SessionError::Cancelled`],
    /// [`SessionError::Aborted`], [`SessionError::Invalid`] or
    /// [`SessionError::Transport`]. Dropping the future withdraws the send;
    /// the session stays open.
    pub async fn send(&mut self, message: M) -> Result<M, SessionError> {
        self.send_with(message, SendOptions::default()).await
    }

    /// Like [`send`](Self::send), with per-send options overriding the
    /// port's (seed: `session.send(message, { timeout, retryCount,
    /// retryInterval })`).
    ///
    /// ```no_run
    /// # async fn demo(mut session: psession_driver::Session<serde_json::Value>)
    /// #     -> Result<(), psession_core::SessionError> {
    /// use psession_core::SendOptions;
    /// use serde_json::json;
    /// use std::time::Duration;
    ///
    /// // Seed: { retryCount: 3, retryInterval: 500 }: four transmissions at most.
    /// let options = SendOptions::default().retries(3, Duration::from_millis(500));
    /// let reply = session.send_with(json!({ "command": "status" }), options).await?;
    /// # let _ = reply; Ok(()) }
    /// ```
    pub async fn send_with(&mut self, message: M, options: SendOptions) -> Result<M, SessionError> {
        // No wait for room in a queued transport: the send is registered
        // at once, so its timeout, cancel, abort and destroy all apply.
        SendFuture {
            handle: &self.handle,
            cell: self.cell.get_or_insert_with(Default::default),
            start: Some((message, options)),
            send: None,
        }
        .await
    }

    /// Sends `message` on the session without waiting for an answer. On a
    /// port with a [`Sender::channel`] it first waits for room in the queue
    /// (backpressure); if the port goes away meanwhile it fails with
    /// [`SessionError::Invalid`].
    pub async fn post(&self, message: M) -> Result<(), SessionError> {
        let id = self.handle.id;
        let shared = &self.handle.shared;
        let mut ready = std::pin::pin!(self.sender.ready());
        // Wait for room, but not past the session's end: a closing session
        // wakes the posts registered for it.
        let mut waiting = PendingPost {
            shared,
            id,
            key: None,
        };
        let permit = poll_fn(|cx| match ready.as_mut().poll(cx) {
            Poll::Ready(permit) => Poll::Ready(Some(permit)),
            Poll::Pending if !shared.register_poster(id, &mut waiting.key, cx.waker()) => {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        })
        .await;
        // Its registration is forgotten in the same round under the lock.
        let registered = waiting.key.take();
        let posted = shared.run(|state, now| {
            if let Some(key) = registered {
                state.forget_poster(id, key);
            }
            state.core.post(id, message, now)
        });
        if let (Ok(()), Some(permit)) = (&posted, permit) {
            permit.commit();
        }
        posted
    }

    /// The next message the peer sent on this session while no send was
    /// waiting: how the answering side reads requests (seed:
    /// `session.on("next")`). Fails with [`SessionError::Invalid`] once the
    /// session has ended, expired or lost its port.
    pub async fn recv(&mut self) -> Result<M, SessionError> {
        let id = self.handle.id;
        let shared = &self.handle.shared;
        let mut reader = PendingRecv {
            shared,
            id,
            done: false,
        };
        let message = poll_fn(|cx| shared.poll_recv(id, cx)).await;
        reader.done = true;
        message
    }

    /// Fails the waiting send, if any, with [`SessionError::Cancelled`].
    pub fn cancel(&self) -> Result<(), SessionError> {
        self.handle.cancel()
    }

    /// Fails the waiting send, if any, with [`SessionError::Aborted`].
    pub fn abort(&self, cause: impl Into<Option<Cause>>) -> Result<(), SessionError> {
        self.handle.abort(cause)
    }

    /// Fails the waiting send, if any, with [`SessionError::Timeout`] now.
    pub fn timeout(&self) -> Result<(), SessionError> {
        self.handle.timeout()
    }

    /// Whether the session is still open.
    pub fn is_live(&self) -> bool {
        self.handle.is_live()
    }

    /// Ends the session (seed: `session.end()`); the same as dropping it.
    pub fn end(self) {}
}

impl<M: Message + Send + 'static> Drop for Session<M> {
    fn drop(&mut self) {
        let id = self.handle.id;
        let shared = &self.handle.shared;
        if let Ok((_, effects)) = shared.run_deferred(|state, _| state.core.end(id)) {
            shared.apply_in_drop(effects);
        }
    }
}

/// A send: it starts at its first poll, registering that poll's waker in
/// the same round under the lock, then waits for its outcome. Dropped
/// before the outcome, it withdraws the send.
struct SendFuture<'a, M: Message + Send + 'static> {
    handle: &'a SessionHandle<M>,
    cell: &'a Arc<SendCell<M>>,
    /// The message and options, until the send starts.
    start: Option<(M, SendOptions)>,
    /// The send, once started and until its outcome is taken.
    send: Option<SendId>,
}

impl<M: Message + Send + 'static> Unpin for SendFuture<'_, M> {}

impl<M: Message + Send + 'static> Future for SendFuture<'_, M> {
    type Output = Result<M, SessionError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = &this.handle.shared;
        if this.send.is_some() {
            let outcome = this.cell.poll(cx);
            if outcome.is_ready() {
                this.send = None;
            }
            return outcome;
        }
        let Some((message, options)) = this.start.take() else {
            return Poll::Ready(Err(SessionError::Invalid));
        };
        let (id, cell) = (this.handle.id, this.cell);
        cell.reset(cx.waker());
        let started =
            shared.run_deferred(|state, now| state.start_send(id, message, options, now, cell));
        let (send, effects) = match started {
            Ok(started) => started,
            Err(error) => return Poll::Ready(Err(error)),
        };
        match send {
            Ok(send) => {
                // Set before anything of the application runs (a sender may
                // panic): from here the send is withdrawn if dropped.
                this.send = Some(send);
                let look_again = effects.may_answer_at_once();
                shared.apply(effects);
                if look_again {
                    // A closure sender may have brought the outcome
                    // already: return it now rather than on a second poll
                    // (a caller polling once would lose it).
                    let outcome = cell.poll(cx);
                    if outcome.is_ready() {
                        this.send = None;
                    }
                    return outcome;
                }
                // The waker is registered: the outcome wakes this task.
                Poll::Pending
            }
            Err(error) => {
                shared.apply(effects);
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<M: Message + Send + 'static> Drop for SendFuture<'_, M> {
    fn drop(&mut self) {
        if let Some(send) = self.send {
            self.handle.shared.withdraw(send);
        }
    }
}

/// Forgets a post's registration when it stops waiting for room.
struct PendingPost<'a, M: Message + Send + 'static> {
    shared: &'a Arc<Shared<M>>,
    id: SessionId,
    /// Its slot among the session's waiting posts, once registered.
    key: Option<usize>,
}

impl<M: Message + Send + 'static> Drop for PendingPost<'_, M> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.forget_poster(self.id, key);
        }
    }
}

/// Forgets the reader's waker when a `recv` future is dropped.
struct PendingRecv<'a, M: Message + Send + 'static> {
    shared: &'a Arc<Shared<M>>,
    id: SessionId,
    done: bool,
}

impl<M: Message + Send + 'static> Drop for PendingRecv<'_, M> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.forget_reader(self.id);
        }
    }
}

/// A cloneable, non-owning handle to a session: what
/// [`SessionManager::get_session`](crate::SessionManager::get_session)
/// returns, and what another task uses to cancel a waiting send.
///
/// Dropping a handle does not end the session.
///
/// ```no_run
/// # async fn demo(mut session: psession_driver::Session) {
/// use psession_core::Cause;
/// use serde_json::json;
///
/// // A watchdog elsewhere may give up on the conversation at any time.
/// let handle = session.handle();
/// std::thread::spawn(move || {
///     let _ = handle.abort(Cause::msg("operator pressed stop"));
/// });
/// match session.send(json!({ "command": "long job" })).await {
///     Ok(reply) => println!("{reply}"),
///     Err(error) => println!("stopped: {error}"),
/// }
/// # }
/// ```
pub struct SessionHandle<M: Message + Send + 'static = Value> {
    shared: Arc<Shared<M>>,
    id: SessionId,
}

impl<M: Message + Send + 'static> Clone for SessionHandle<M> {
    fn clone(&self) -> Self {
        SessionHandle {
            shared: self.shared.clone(),
            id: self.id,
        }
    }
}

impl<M: Message + Send + 'static> fmt::Debug for SessionHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionHandle").field(&self.id).finish()
    }
}

impl<M: Message + Send + 'static> SessionHandle<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, id: SessionId) -> Self {
        SessionHandle { shared, id }
    }

    /// The session's sid on its port.
    pub fn id(&self) -> u32 {
        self.id.sid()
    }

    /// The full handle id: port, sid and generation.
    pub fn session_id(&self) -> SessionId {
        self.id
    }

    /// The port the session belongs to.
    pub fn port(&self) -> PortId {
        self.id.port()
    }

    /// Delivers an inbound message to this session (seed:
    /// `session.next(message)`): it completes the waiting send, or waits
    /// for the session's `recv`.
    pub fn next(&self, message: M) -> Result<Routed<M>, SessionError> {
        let id = self.id;
        self.shared
            .run(|state, now| state.core.deliver(id, message, now))
    }

    /// Fails the waiting send, if any, with [`SessionError::Cancelled`].
    pub fn cancel(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared.run(|state, now| state.core.cancel(id, now))
    }

    /// Fails the waiting send, if any, with [`SessionError::Aborted`]
    /// carrying `cause` (seed: `session.abort(reason)`).
    pub fn abort(&self, cause: impl Into<Option<Cause>>) -> Result<(), SessionError> {
        let (id, cause) = (self.id, cause.into());
        self.shared
            .run(|state, now| state.core.abort(id, cause, now))
    }

    /// Fails the waiting send, if any, with [`SessionError::Timeout`] now,
    /// without retries.
    pub fn timeout(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared.run(|state, now| state.core.timeout(id, now))
    }

    /// Ends the session; its waiting send fails with
    /// [`SessionError::Cancelled`].
    pub fn end(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared.run(|state, _| state.core.end(id))
    }

    /// Whether the session is still open.
    pub fn is_live(&self) -> bool {
        let state = self.shared.lock();
        !state.closed && state.core.is_live(self.id)
    }

    /// Whether a send waits on the session.
    pub fn is_waiting(&self) -> bool {
        let state = self.shared.lock();
        !state.closed && state.core.is_waiting(self.id)
    }
}

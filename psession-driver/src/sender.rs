//! How a port hands messages to its transport: a closure, or a bounded
//! outbound queue the application drains into its socket.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use psession_core::{Cause, Message, SendId, SessionError};
use serde_json::Value;
use slab::Slab;

use crate::wakers::Wakers;

type SendFn<M> = dyn Fn(M) -> Result<(), Cause> + Send + Sync;

/// The transport of a port (the seed's `sender`).
///
/// Two kinds, both first-class:
///
/// - [`Sender::from_fn`]: a closure called with each message, like the
///   seed's `sender: (message) => ws.send(...)`. It is called outside the
///   manager's lock, one message at a time and in order, so it may call back
///   into the manager. It should not block: push into a socket's write
///   queue, not wait for the network. (A closure has no way to push back;
///   when the peer may be slower than your producers, use a channel.)
/// - [`Sender::channel`]: a bounded queue and its [`Outbound`] stream, which
///   the application forwards to its socket. When the queue is full, `post`
///   waits for room, so a slow socket slows its posters down instead of
///   growing memory. A `send` never waits for room: its transmission joins
///   the queue at once and its timeout runs from then, so cancel, abort,
///   timeout and `destroy` apply to it as to any waiting send. The queue
///   thus holds at most `capacity` posts plus the transmissions of the sends
///   still waiting (one per session, with its retries); transmissions of
///   sends that have ended are dropped from a full queue.
///
/// [`Sender::none`] is a port without transport: every send on it fails with
/// [`SessionError::Transport`].
///
/// ```
/// use psession_driver::Sender;
/// use serde_json::Value;
///
/// // A closure: here it just prints; a real one writes to a socket, and
/// // `?` turns an `io::Error` into the send's `Transport` error.
/// let printing = Sender::from_fn(|message: Value| {
///     println!("-> {message}");
///     Ok(())
/// });
///
/// // A queue of at most 64 messages and the stream that drains it.
/// let (queued, outbound) = Sender::<Value>::channel(64);
/// # let _ = (printing, queued, outbound);
/// ```
pub struct Sender<M: Message + Send + 'static = Value>(Kind<M>);

enum Kind<M: Message + Send + 'static> {
    Fn(Arc<SendFn<M>>),
    Queue(Arc<Queue<M>>),
    None,
}

impl<M: Message + Send + 'static> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Sender(match &self.0 {
            Kind::Fn(f) => Kind::Fn(f.clone()),
            Kind::Queue(q) => {
                // No lock: the driver clones a sender per transmission.
                q.senders.fetch_add(1, Ordering::Relaxed);
                Kind::Queue(q.clone())
            }
            Kind::None => Kind::None,
        })
    }
}

impl<M: Message + Send + 'static> Drop for Sender<M> {
    fn drop(&mut self) {
        if let Kind::Queue(queue) = &self.0 {
            let wake = {
                if queue.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
                    return;
                }
                // The last one: no clone can follow (it takes a live one).
                let mut state = queue.lock();
                state.senders_gone = true;
                state.wake_if_closed()
            };
            wake.into_iter().for_each(Waker::wake);
        }
    }
}

impl<M: Message + Send + 'static> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Fn(_) => f.write_str("Sender::Fn(..)"),
            Kind::Queue(q) => write!(f, "Sender::Queue(capacity {})", q.capacity),
            Kind::None => f.write_str("Sender::None"),
        }
    }
}

impl<M: Message + Send + 'static> Sender<M> {
    /// A sender that calls `send` with each message. An error fails the
    /// send that produced the message with [`SessionError::Transport`]
    /// (`?` converts `io::Error`, `String` and `&str` into a [`Cause`]; wrap
    /// other errors with [`Cause::new`]).
    pub fn from_fn<F>(send: F) -> Self
    where
        F: Fn(M) -> Result<(), Cause> + Send + Sync + 'static,
    {
        Sender(Kind::Fn(Arc::new(send)))
    }

    /// A bounded outbound queue (at least one message) and the stream that
    /// drains it.
    ///
    /// Give the `Sender` to one port (or several) and forward the
    /// [`Outbound`] to the socket. The stream ends, after what is queued,
    /// when every port using it is destroyed (or the manager dropped), or
    /// when every clone of the `Sender` is dropped before any port used it.
    /// If the `Outbound` is dropped, later transmissions fail with a
    /// transport error. If a new port takes the channel over before the
    /// stream has ended, what the ports that left had queued and nobody
    /// read is dropped: it never reaches the new port's peer.
    pub fn channel(capacity: usize) -> (Self, Outbound<M>) {
        let queue = Arc::new(Queue {
            capacity: capacity.max(1),
            senders: AtomicUsize::new(1),
            epoch: AtomicU64::new(0),
            inner: Mutex::new(QueueState {
                items: VecDeque::new(),
                reader: None,
                writers: Slab::new(),
                waiting: VecDeque::new(),
                next_seq: 0,
                reader_gone: false,
                ended: false,
                ports: 0,
                attached: false,
                senders_gone: false,
                purge_at: capacity.max(1),
                reserved: 0,
                owner: 0,
            }),
        });
        (
            Sender(Kind::Queue(queue.clone())),
            Outbound { queue: Some(queue) },
        )
    }

    /// A sender without transport: every send through it fails.
    pub fn none() -> Self {
        Sender(Kind::None)
    }

    /// Hands one message to the transport; `send` is the send it belongs
    /// to (`None` for a post), `epoch` the queue's [`epoch`](Self::epoch)
    /// when the message was taken from the core. `Ok(true)` asks the caller
    /// to [`purge`](Self::purge) the queue, which has grown long.
    pub(crate) fn transmit(
        &self,
        message: M,
        send: Option<SendId>,
        epoch: u64,
    ) -> Result<bool, Cause> {
        match &self.0 {
            Kind::Fn(f) => {
                // A panicking sender fails its message, not the caller (which
                // may be a destructor, or the driver task).
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(message)))
                    .unwrap_or_else(|_| Err(Cause::msg("the sender panicked")))
                    .map(|()| false)
            }
            Kind::Queue(queue) => queue.push(Item { message, send }, epoch),
            Kind::None => Err(Cause::msg("the port has no sender")),
        }
    }

    /// Whether this is a [`channel`](Self::channel) sender, whose
    /// transmissions are pushed under the manager's lock (no application
    /// code runs there: the wake-ups are handed back).
    pub(crate) fn is_queue(&self) -> bool {
        matches!(self.0, Kind::Queue(_))
    }

    /// [`transmit`](Self::transmit) for a channel sender, called with the
    /// manager's lock held (lock order: core, then queue): the message
    /// joins the queue now, and the waker of its reader (or, if refused, of
    /// the posts given the freed room) is added to `wake` for the caller to
    /// wake once the manager's lock is released. A sender of another kind
    /// refuses it.
    pub(crate) fn push_locked(
        &self,
        message: M,
        send: Option<SendId>,
        wake: &mut impl Extend<Waker>,
    ) -> Result<bool, Cause> {
        match &self.0 {
            Kind::Queue(queue) => {
                let epoch = queue.epoch.load(Ordering::Relaxed);
                queue.push_deferred(Item { message, send }, epoch, wake)
            }
            _ => Err(Cause::msg("not a channel sender")),
        }
    }

    /// Waits until the transport has room for one more post, and reserves
    /// it (or until it never will have room again, in which case the post's
    /// transmission fails).
    pub(crate) fn ready(&self) -> Ready<'_, M> {
        Ready {
            queue: match &self.0 {
                Kind::Queue(queue) => Some(queue),
                _ => None,
            },
            key: None,
        }
    }

    /// Drops queued transmissions of sends for which `waiting` is false.
    /// (Asked for by [`transmit`](Self::transmit) when the queue has grown
    /// to twice its length after the last purge.)
    /// Called with the core's lock held (the lock order is core, then
    /// queue; queue code never takes the core's lock). Returns the posts
    /// given the room it freed, to wake once the core's lock is released.
    #[must_use]
    pub(crate) fn purge(&self, waiting: impl Fn(SendId) -> bool) -> Wakers {
        let Kind::Queue(queue) = &self.0 else {
            return Wakers::default();
        };
        let mut state = queue.lock();
        state.items.retain(|item| item.send.is_none_or(&waiting));
        state.purge_at = (2 * state.items.len()).max(queue.capacity);
        state.grant(queue.capacity)
    }

    /// Records that a port of manager `owner` sends through this sender.
    /// Fails if its outbound stream has already ended or been dropped, or
    /// if another manager's ports use it. A port that takes the channel
    /// over after its last port left drops what that one left unread.
    pub(crate) fn attach(&self, owner: u64) -> Result<(), SessionError> {
        if let Kind::Queue(queue) = &self.0 {
            let mut state = queue.lock();
            if state.ended || state.reader_gone {
                return Err(SessionError::Config(
                    "this sender's outbound stream has ended; create a new channel",
                ));
            }
            if state.ports > 0 && state.owner != owner {
                return Err(SessionError::Config(
                    "a channel sender serves the ports of one manager only",
                ));
            }
            if state.attached && state.ports == 0 {
                // A port takes over a channel whose last port left: what
                // that port left queued was for its own peer, not this
                // one's. (Posts waiting for room were woken when it left.)
                state.items.clear();
                state.purge_at = queue.capacity;
            }
            state.owner = owner;
            state.ports += 1;
            state.attached = true;
        }
        Ok(())
    }

    /// Records that a port no longer sends through this sender; the last
    /// one to go ends the outbound stream (after what is queued) and
    /// releases posts waiting for room.
    pub(crate) fn detach(&self) {
        self.detach_deferred().into_iter().for_each(Waker::wake);
    }

    /// [`detach`](Self::detach), leaving the wake-ups to the caller (who
    /// may hold the manager's lock: lock order core, then queue).
    #[must_use]
    pub(crate) fn detach_deferred(&self) -> Vec<Waker> {
        if let Kind::Queue(queue) = &self.0 {
            let mut state = queue.lock();
            state.ports = state.ports.saturating_sub(1);
            if state.ports == 0 {
                queue.epoch.fetch_add(1, Ordering::Relaxed);
            }
            // Posts of the port's sessions wait here: let them see that
            // their session is gone.
            let mut wake = state.take_writers();
            wake.extend(state.wake_if_closed());
            wake
        } else {
            Vec::new()
        }
    }

    /// Which generation of ports the queue serves: it changes whenever the
    /// last port leaves, so that a message of a destroyed port never reaches
    /// a port that takes the channel over.
    pub(crate) fn epoch(&self) -> u64 {
        match &self.0 {
            Kind::Queue(queue) => queue.epoch.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Gives back the room reserved by a post that will not be pushed.
    pub(crate) fn release(&self) {
        if let Kind::Queue(queue) = &self.0 {
            let writers = {
                let mut state = queue.lock();
                state.reserved = state.reserved.saturating_sub(1);
                state.grant(queue.capacity)
            };
            writers.wake_all();
        }
    }
}

struct Queue<M: Message + Send + 'static> {
    capacity: usize,
    /// Live `Sender` clones of this queue (counted without the lock; the
    /// last drop records it in [`QueueState::senders_gone`]).
    senders: AtomicUsize,
    /// Bumped (under the lock) when the last port leaves; read without it
    /// (see [`Sender::epoch`]).
    epoch: AtomicU64,
    inner: Mutex<QueueState<M>>,
}

/// A queued transmission: the message, and the send it belongs to.
struct Item<M> {
    message: M,
    send: Option<SendId>,
}

struct QueueState<M> {
    items: VecDeque<Item<M>>,
    reader: Option<Waker>,
    /// Posts waiting for room; each future owns its slot until it is done.
    writers: Slab<Writer>,
    /// Their keys and arrival numbers, in arrival order: freed room goes to
    /// the first. An entry whose writer has left (its key may since belong
    /// to a newer post, with another number) is skipped, and such entries
    /// are compacted away when they pile up.
    waiting: VecDeque<(usize, u64)>,
    /// The next post's arrival number.
    next_seq: u64,
    reader_gone: bool,
    /// The stream has yielded its final `None`.
    ended: bool,
    /// Ports sending through this queue.
    ports: usize,
    /// Whether any port ever did.
    attached: bool,
    /// The last `Sender` clone of this queue is gone.
    senders_gone: bool,
    /// Length at which the next push drops transmissions of ended sends.
    purge_at: usize,
    /// Room promised to posts that have passed `ready()` and whose
    /// transmissions are not pushed yet.
    reserved: usize,
    /// The manager whose ports use the queue (its sends are purged).
    owner: u64,
}

impl<M> QueueState<M> {
    fn has_room(&self, capacity: usize) -> bool {
        self.items.len() + self.reserved < capacity
    }

    /// No more messages can come: every port left, or no port ever came
    /// and no sender is left to bring one.
    fn is_closed(&self) -> bool {
        (self.attached && self.ports == 0) || self.senders_gone
    }

    /// If closed, the reader and every writer, to wake outside the lock.
    fn wake_if_closed(&mut self) -> Vec<Waker> {
        if !self.is_closed() {
            return Vec::new();
        }
        let mut wake = self.take_writers();
        wake.extend(self.reader.take());
        wake
    }

    /// Wakes every waiting post (the queue closed, or a port left): each
    /// looks at its state again.
    fn take_writers(&mut self) -> Vec<Waker> {
        self.writers
            .iter_mut()
            .filter_map(|(_, writer)| writer.waker.take())
            .collect()
    }

    /// Hands the free room to the posts waiting longest, one place each,
    /// and returns their wakers: a freed place wakes one post, not all.
    fn grant(&mut self, capacity: usize) -> Wakers {
        let mut wake = Wakers::default();
        while self.has_room(capacity) {
            let Some((key, seq)) = self.waiting.pop_front() else {
                break;
            };
            let Some(writer) = self.writers.get_mut(key) else {
                continue;
            };
            if writer.granted || writer.seq != seq {
                continue;
            }
            writer.granted = true;
            self.reserved += 1;
            if let Some(waker) = writer.waker.take() {
                wake.push(waker);
            }
        }
        wake
    }

    /// Registers a post waiting for room, last in line.
    fn wait(&mut self, waker: Waker) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.writers.insert(Writer {
            waker: Some(waker),
            granted: false,
            seq,
        });
        self.waiting.push_back((key, seq));
        if self.waiting.len() > 2 * self.writers.len() + 16 {
            let writers = &self.writers;
            self.waiting.retain(|&(key, seq)| {
                writers
                    .get(key)
                    .is_some_and(|writer| !writer.granted && writer.seq == seq)
            });
        }
        key
    }
}

/// A post waiting for room in a queue.
struct Writer {
    waker: Option<Waker>,
    /// A place was reserved for it ([`QueueState::grant`]): it is its own.
    granted: bool,
    /// Its arrival number: its entry in `waiting` is the one with it.
    seq: u64,
}

impl<M: Message + Send + 'static> Queue<M> {
    fn lock(&self) -> MutexGuard<'_, QueueState<M>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, item: Item<M>, epoch: u64) -> Result<bool, Cause> {
        let mut wake = Wakers::default();
        let pushed = self.push_deferred(item, epoch, &mut wake);
        wake.wake_all();
        pushed
    }

    /// [`push`](Self::push), leaving the wake-ups to the caller.
    fn push_deferred(
        &self,
        item: Item<M>,
        epoch: u64,
        wake: &mut impl Extend<Waker>,
    ) -> Result<bool, Cause> {
        let mut state = self.lock();
        if item.send.is_none() {
            state.reserved = state.reserved.saturating_sub(1);
        }
        let refused = if state.reader_gone {
            Some("the port's outbound stream was dropped")
        } else if state.ended {
            Some("the port's outbound stream has ended")
        } else if epoch != self.epoch.load(Ordering::Relaxed) {
            Some("the port was destroyed")
        } else {
            None
        };
        if let Some(refused) = refused {
            // The post's place is free again: it goes to the next in line.
            wake.extend(state.grant(self.capacity));
            return Err(Cause::msg(refused));
        }
        state.items.push_back(item);
        wake.extend(state.reader.take());
        Ok(state.items.len() >= state.purge_at)
    }

    /// Takes the next message, and the writers to wake if that made room.
    fn pop(&self, state: &mut QueueState<M>) -> (Option<M>, Wakers) {
        let message = state.items.pop_front().map(|item| item.message);
        if state.items.is_empty() {
            state.purge_at = self.capacity;
        }
        let writers = if message.is_some() {
            state.grant(self.capacity)
        } else {
            Wakers::default()
        };
        (message, writers)
    }
}

/// The future of [`Sender::ready`]; frees its waiting slot when dropped.
pub(crate) struct Ready<'a, M: Message + Send + 'static> {
    queue: Option<&'a Arc<Queue<M>>>,
    key: Option<usize>,
}

impl<'a, M: Message + Send + 'static> Future for Ready<'a, M> {
    type Output = Permit<'a, M>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<'a, M>> {
        let this = self.get_mut();
        let Some(queue) = this.queue else {
            return Poll::Ready(Permit(None));
        };
        let mut state = queue.lock();
        let open = !(state.reader_gone || state.ended || state.is_closed());
        // Room handed to this post while it waited is already reserved.
        let granted = match this.key {
            Some(key) if state.writers[key].granted => {
                state.writers.remove(key);
                this.key = None;
                true
            }
            _ => false,
        };
        if granted || !open || state.has_room(queue.capacity) {
            if let Some(key) = this.key.take() {
                state.writers.remove(key);
            }
            match (open, granted) {
                (true, true) => {}
                (true, false) => state.reserved += 1,
                (false, true) => state.reserved = state.reserved.saturating_sub(1),
                (false, false) => {}
            }
            return Poll::Ready(Permit(open.then_some(queue)));
        }
        match this.key {
            Some(key) => state.writers[key].waker = Some(cx.waker().clone()),
            None => this.key = Some(state.wait(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl<M: Message + Send + 'static> Drop for Ready<'_, M> {
    fn drop(&mut self) {
        if let (Some(queue), Some(key)) = (self.queue, self.key.take()) {
            let mut state = queue.lock();
            // Room handed to it that it will not use goes to the next post.
            let next = if state.writers.remove(key).granted {
                state.reserved = state.reserved.saturating_sub(1);
                state.grant(queue.capacity)
            } else {
                Wakers::default()
            };
            drop(state);
            next.wake_all();
        }
    }
}

/// Room reserved in a queue for one post. Dropped unused, it gives the room
/// back; [`Permit::commit`] hands it to the post's transmission, whose push
/// releases it.
pub(crate) struct Permit<'a, M: Message + Send + 'static>(Option<&'a Arc<Queue<M>>>);

impl<M: Message + Send + 'static> Permit<'_, M> {
    /// The post is queued for transmission: its push releases the room.
    pub(crate) fn commit(mut self) {
        self.0 = None;
    }
}

impl<M: Message + Send + 'static> Drop for Permit<'_, M> {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            let writers = {
                let mut state = queue.lock();
                state.reserved = state.reserved.saturating_sub(1);
                state.grant(queue.capacity)
            };
            writers.wake_all();
        }
    }
}

/// The stream of messages a port with a [`Sender::channel`] transmits, in
/// order. Forward each one to the port's socket.
///
/// It ends when every port using the queue is destroyed (or the manager is
/// dropped), after the messages already queued.
///
/// ```
/// # async fn forward(mut outbound: psession_driver::Outbound) {
/// while let Some(message) = outbound.recv().await {
///     // socket.write_all(message.to_string().as_bytes()).await?;
///     # let _ = message;
/// }
/// # }
/// ```
pub struct Outbound<M: Message + Send + 'static = Value> {
    queue: Option<Arc<Queue<M>>>,
}

impl<M: Message + Send + 'static> fmt::Debug for Outbound<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Outbound(..)")
    }
}

impl<M: Message + Send + 'static> Outbound<M> {
    /// The next message to transmit, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<M> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes a message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<M> {
        let queue = self.queue.as_ref()?;
        let (message, writers) = queue.pop(&mut queue.lock());
        writers.wake_all();
        message
    }

    /// How many messages wait in the queue.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.lock().items.len())
    }

    /// Whether no message waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<M>> {
        let Some(queue) = self.queue.as_ref() else {
            return Poll::Ready(None);
        };
        let (message, writers) = {
            let mut state = queue.lock();
            let (message, writers) = queue.pop(&mut state);
            if message.is_none() {
                if !state.is_closed() {
                    match &state.reader {
                        Some(reader) if reader.will_wake(cx.waker()) => {}
                        _ => state.reader = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
                state.ended = true;
            }
            (message, writers)
        };
        writers.wake_all();
        if message.is_none() {
            self.queue = None;
        }
        Poll::Ready(message)
    }
}

impl<M: Message + Send + 'static> Stream for Outbound<M> {
    type Item = M;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<M: Message + Send + 'static> Drop for Outbound<M> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            let (items, writers) = {
                let mut state = queue.lock();
                state.reader_gone = true;
                (std::mem::take(&mut state.items), state.take_writers())
            };
            drop(items);
            writers.into_iter().for_each(Waker::wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Posts that give up while another waits leave nothing in the line:
    /// it stays within its compaction bound.
    #[test]
    fn abandoned_posts_leave_nothing_in_the_line() {
        let (sender, _outbound) = Sender::<Value>::channel(1);
        let Kind::Queue(queue) = &sender.0 else {
            unreachable!("a channel sender has a queue")
        };
        let fill = Item {
            message: Value::Null,
            send: None,
        };
        queue.push(fill, 0).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut held = Box::pin(sender.ready());
        assert!(held.as_mut().poll(&mut cx).is_pending());
        for _ in 0..1000 {
            let mut abandoned = Box::pin(sender.ready());
            assert!(abandoned.as_mut().poll(&mut cx).is_pending());
        }
        let state = queue.lock();
        assert_eq!(state.writers.len(), 1);
        assert!(
            state.waiting.len() <= 2 * state.writers.len() + 17,
            "{} entries for one waiting post",
            state.waiting.len()
        );
    }
}

//! The one core behind its lock, and how its outputs reach the application:
//! waking futures, filling the events queue, calling the senders. Nothing
//! of the application runs while the lock is held.
//!
//! Lock order: the core's lock may be held while an outbound queue's lock is
//! taken, never the other way round. (A channel's transmissions are pushed
//! into its queue under the core's lock; its reader is woken after.)

use foldhash::{HashMap, HashMapExt};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use psession_core::{
    Cause, CloseReason, Event, Manager, Message, PortId, SendId, SessionError, SessionId,
};
use slab::Slab;

use crate::events::ManagerEvent;
use crate::outcome::SendCell;
use crate::sender::Sender;
use crate::session::Session;
use crate::wakers::Wakers;

/// The error every operation gets once the last manager handle is dropped.
pub(crate) fn manager_dropped() -> SessionError {
    SessionError::Aborted(Some(Cause::msg("the session manager was dropped")))
}

/// Most informational events kept for the events stream. Incoming sessions
/// are always kept while they live (the ports' incoming caps bound them).
pub(crate) const EVENTS_CAPACITY: usize = 1024;

/// How many batches a caller transmits before handing the rest to the
/// driver task, so that no caller is kept busy sending everyone's messages.
pub(crate) const FLUSH_ROUNDS: usize = 4;

/// State shared by every handle of one manager.
pub(crate) struct Shared<M: Message + Send + 'static> {
    state: Mutex<State<M>>,
    /// The runtime's clock.
    pub(crate) now: fn() -> Instant,
    /// The sid field, readable without the lock.
    pub(crate) id_field: Box<str>,
    /// Live `SessionManager` handles; the last one shuts the manager down.
    pub(crate) handles: AtomicUsize,
    /// Tells this manager apart from others (a channel serves one only).
    pub(crate) id: u64,
}

/// Source of manager ids.
static NEXT_MANAGER: AtomicU64 = AtomicU64::new(1);

pub(crate) struct State<M: Message + Send + 'static> {
    pub(crate) core: Manager<M>,
    pub(crate) default_sender: Sender<M>,
    pub(crate) ports: HashMap<PortId, PortEntry<M>>,
    /// The cells of waiting sends, at their [`SendId::index`].
    sends: Vec<Option<Waiting<M>>>,
    /// Entries pushed out of `sends` by a newer send at the same index: a
    /// send that ended inside the very core call that started the newer
    /// one (its deadline passed), whose outcome the same round's
    /// `collect` brings. Almost always empty.
    displaced: Vec<Waiting<M>>,
    readers: HashMap<SessionId, Waker>,
    /// Posts waiting for room in a queue, woken when their session closes.
    posters: HashMap<SessionId, Posters>,
    pub(crate) events: EventQueue<M>,
    pub(crate) timer: TimerSlot,
    /// Transmissions of closure senders taken from the core, waiting for
    /// the flusher (a channel's join its queue in `collect`).
    outbox: VecDeque<Outgoing<M>>,
    /// Whether someone is flushing `outbox` (only one at a time, so that
    /// messages leave in order).
    flushing: bool,
    /// The flusher handed the rest of the outbox to the driver task.
    pub(crate) flush_handoff: bool,
    /// Senders to detach once the flusher at work when the manager was
    /// dropped has drained the outbox.
    detach_later: Vec<Sender<M>>,
    pub(crate) closed: bool,
}

/// A named port's transport and name.
pub(crate) struct PortEntry<M: Message + Send + 'static> {
    pub(crate) sender: Sender<M>,
    pub(crate) name: std::sync::Arc<str>,
}

/// The posts of one session waiting for room. Most sessions have one at a
/// time: it is kept inline (key [`Posters::FIRST`]), the others in a slab.
#[derive(Default)]
struct Posters {
    first: Option<Waker>,
    more: Slab<Waker>,
}

impl Posters {
    /// The key of the inline post (slab keys are far below it).
    const FIRST: usize = usize::MAX;

    /// Registers a post, or refreshes its waker if `key` is still its own.
    fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        match *key {
            Some(Self::FIRST) if self.first.is_some() => self.first = Some(waker.clone()),
            Some(k) if k != Self::FIRST && self.more.contains(k) => {
                self.more[k] = waker.clone();
            }
            _ if self.first.is_none() => {
                self.first = Some(waker.clone());
                *key = Some(Self::FIRST);
            }
            _ => *key = Some(self.more.insert(waker.clone())),
        }
    }

    /// Forgets the post registered under `key`; returns whether none is
    /// left.
    fn forget(&mut self, key: usize) -> bool {
        if key == Self::FIRST {
            self.first = None;
        } else if self.more.contains(key) {
            self.more.remove(key);
        }
        self.first.is_none() && self.more.is_empty()
    }

    fn wake_into(self, wake: &mut Wakers) {
        wake.extend(self.first);
        wake.extend(self.more.into_iter().map(|(_, waker)| waker));
    }
}

/// A waiting send and the cell its outcome goes to.
struct Waiting<M> {
    send: SendId,
    cell: Arc<SendCell<M>>,
}

struct Outgoing<M: Message + Send + 'static> {
    sender: Sender<M>,
    port: PortId,
    session: SessionId,
    send: Option<SendId>,
    message: M,
    /// The queue's epoch when the message left the core.
    epoch: u64,
}

/// The driver task's wake-up: when the core's next deadline moves earlier
/// than the one the task sleeps until, the task is woken to re-arm.
#[derive(Default)]
pub(crate) struct TimerSlot {
    pub(crate) waker: Option<Waker>,
    /// The deadline the driver task sleeps until (or is about to: it is
    /// woken when this moves earlier).
    pub(crate) armed: Option<Instant>,
}

/// Events waiting for the [`Events`](crate::Events) stream.
pub(crate) struct EventQueue<M: Message + Send + 'static> {
    /// In order; an incoming session is queued by id, its `Session` kept in
    /// `sessions` so that it can leave in O(1) when it closes unread.
    items: VecDeque<Queued<M>>,
    sessions: HashMap<SessionId, Session<M>>,
    /// Ids in `items` whose session already left.
    stale: usize,
    pub(crate) waker: Option<Waker>,
    /// Bumped by each `events()` call; older streams end.
    pub(crate) epoch: u64,
    /// Informational events discarded because the queue was full.
    pub(crate) discarded: u64,
}

enum Queued<M: Message + Send + 'static> {
    Incoming(SessionId),
    Other(ManagerEvent<M>),
}

impl<M: Message + Send + 'static> EventQueue<M> {
    fn new() -> Self {
        EventQueue {
            items: VecDeque::new(),
            sessions: HashMap::new(),
            stale: 0,
            waker: None,
            epoch: 0,
            discarded: 0,
        }
    }

    fn push(&mut self, event: ManagerEvent<M>, effects: &mut Effects<M>) {
        match event {
            ManagerEvent::Incoming(session) => {
                let id = session.session_id();
                self.sessions.insert(id, session);
                self.items.push_back(Queued::Incoming(id));
            }
            other => {
                let informational = self.items.len() - self.sessions.len() - self.stale;
                if informational >= EVENTS_CAPACITY {
                    self.discarded += 1;
                    return;
                }
                self.items.push_back(Queued::Other(other));
            }
        }
        effects.wake(self.waker.take());
    }

    /// Takes the next event for the stream.
    pub(crate) fn pop(&mut self) -> Option<ManagerEvent<M>> {
        loop {
            match self.items.pop_front()? {
                Queued::Other(event) => return Some(event),
                Queued::Incoming(id) => match self.sessions.remove(&id) {
                    Some(session) => return Some(ManagerEvent::Incoming(session)),
                    None => self.stale -= 1,
                },
            }
        }
    }

    /// Removes the queued `Incoming` of a session that has closed.
    fn remove_incoming(&mut self, session: SessionId, effects: &mut Effects<M>) {
        let Some(stale) = self.sessions.remove(&session) else {
            return;
        };
        // Its drop takes the lock: after the lock is released.
        effects.drop_later.push(stale);
        self.stale += 1;
        if self.stale > 64 && self.stale > self.sessions.len() {
            let sessions = &self.sessions;
            self.items.retain(|queued| match queued {
                Queued::Incoming(id) => sessions.contains_key(id),
                Queued::Other(_) => true,
            });
            self.stale = 0;
        }
    }

    /// Takes everything (at shutdown), to drop outside the lock.
    fn take_all(&mut self) -> (VecDeque<Queued<M>>, HashMap<SessionId, Session<M>>) {
        self.stale = 0;
        (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.sessions),
        )
    }
}

/// What to do once the lock is released.
#[must_use]
pub(crate) struct Effects<M: Message + Send + 'static> {
    wake: Wakers,
    flush: bool,
    drop_later: Vec<Session<M>>,
    /// Senders released under the lock, dropped after it.
    drop_senders: Vec<Sender<M>>,
}

impl<M: Message + Send + 'static> Default for Effects<M> {
    fn default() -> Self {
        Effects {
            wake: Wakers::default(),
            flush: false,
            drop_later: Vec::new(),
            drop_senders: Vec::new(),
        }
    }
}

impl<M: Message + Send + 'static> Effects<M> {
    /// Whether applying them calls a closure sender or drops sessions:
    /// application code that may answer a send at once, before the call
    /// that made them returns. (Wakers are left out: the common wake-up,
    /// a channel's reader, only schedules a task; a waker that itself
    /// answered would be one more turn, never a lost wake-up.)
    pub(crate) fn may_answer_at_once(&self) -> bool {
        self.flush || !self.drop_later.is_empty()
    }

    pub(crate) fn wake(&mut self, waker: Option<Waker>) {
        if let Some(waker) = waker {
            self.wake.push(waker);
        }
    }
}

impl<M: Message + Send + 'static> Shared<M> {
    pub(crate) fn new(
        core: Manager<M>,
        default_sender: Sender<M>,
        now: fn() -> Instant,
    ) -> Result<Arc<Self>, SessionError> {
        let id = NEXT_MANAGER.fetch_add(1, Ordering::Relaxed);
        default_sender.attach(id)?;
        let id_field = core.session_id_name().into();
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                core,
                default_sender,
                ports: HashMap::new(),
                sends: Vec::new(),
                displaced: Vec::new(),
                readers: HashMap::new(),
                posters: HashMap::new(),
                events: EventQueue::new(),
                timer: TimerSlot::default(),
                outbox: VecDeque::new(),
                flushing: false,
                flush_handoff: false,
                detach_later: Vec::new(),
                closed: false,
            }),
            now,
            id_field,
            handles: AtomicUsize::new(1),
            id,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sid of `message`, if it is a session message.
    pub(crate) fn sid_of(&self, message: &M) -> Option<u32> {
        message.sid(&self.id_field).filter(|&sid| sid != 0)
    }

    /// Runs `f` on the state with the current time, then, with the lock
    /// released, wakes whoever the core's outputs concern and transmits
    /// what it queued. Fails with *Aborted* once the manager is dropped.
    pub(crate) fn run<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State<M>, Instant) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        let (out, effects) = self.run_deferred(f)?;
        self.apply(effects);
        out
    }

    /// [`run`](Self::run), leaving the effects to the caller (who may need
    /// to set up a drop guard before running them).
    pub(crate) fn run_deferred<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State<M>, Instant) -> Result<T, SessionError>,
    ) -> Result<(Result<T, SessionError>, Effects<M>), SessionError> {
        let now = (self.now)();
        let mut effects = Effects::default();
        let mut state = self.lock();
        if state.closed {
            return Err(manager_dropped());
        }
        let out = f(&mut state, now);
        state.collect(self, now, &mut effects);
        Ok((out, effects))
    }

    /// Runs what [`State::collect`] decided, outside the lock.
    pub(crate) fn apply(self: &Arc<Self>, effects: Effects<M>) {
        self.apply_with(effects, FLUSH_ROUNDS);
    }

    /// [`apply`](Self::apply) for destructors: the senders are left to the
    /// driver task, so no application code runs inside a `drop`.
    pub(crate) fn apply_in_drop(self: &Arc<Self>, effects: Effects<M>) {
        self.apply_with(effects, 0);
    }

    /// Wakes, drops, then transmits at most `rounds` batches itself and
    /// hands the rest to the driver task.
    fn apply_with(self: &Arc<Self>, effects: Effects<M>, rounds: usize) {
        let Effects {
            wake,
            flush,
            drop_later,
            drop_senders,
        } = effects;
        wake.wake_all();
        drop(drop_later);
        drop(drop_senders);
        if flush {
            self.flush(rounds);
        }
    }

    /// Hands queued transmissions to their senders, in order, for at most
    /// `rounds` batches, then hands the rest (and `flushing`) to the driver
    /// task. Only the owner of `flushing` calls it. Once the manager is
    /// dropped, it drains everything itself.
    pub(crate) fn flush(self: &Arc<Self>, rounds: usize) {
        let mut guard = FlushGuard(self, true);
        let mut batch = VecDeque::new();
        let mut round = 0;
        loop {
            let mut dropped = Vec::new();
            {
                let mut state = self.lock();
                if state.outbox.is_empty() {
                    state.flushing = false;
                    guard.1 = false;
                    let detach = std::mem::take(&mut state.detach_later);
                    drop(state);
                    detach.iter().for_each(Sender::detach);
                    return;
                }
                // Once the manager is dropped, whoever flushes drains it all.
                // Otherwise the driver task takes over, decided under the
                // same lock as `closed`, so a shutdown cannot slip between.
                if round == rounds && !state.closed {
                    guard.1 = false;
                    state.flush_handoff = true;
                    let driver = state.timer.waker.take();
                    drop(state);
                    if let Some(driver) = driver {
                        driver.wake();
                    }
                    return;
                }
                round += 1;
                std::mem::swap(&mut batch, &mut state.outbox);
                // Sends that have ended and messages of destroyed ports are
                // not transmitted. (What is dropped may hold the last clone
                // of a sender: those are dropped outside the lock.)
                let (core, closed) = (&state.core, state.closed);
                batch.retain(|out| {
                    let keep = core.port_name(out.port).is_some()
                        && out
                            .send
                            .is_none_or(|send| !closed && core.is_send_waiting(send));
                    if !keep {
                        dropped.push((out.sender.clone(), out.send.is_none()));
                    }
                    keep
                });
            }
            for (sender, post) in dropped {
                if post {
                    sender.release();
                }
            }
            let mut failed = Vec::new();
            for out in batch.drain(..) {
                match out.sender.transmit(out.message, out.send, out.epoch) {
                    Ok(false) => {}
                    Ok(true) => {
                        let state = self.lock();
                        let waiting = |send| !state.closed && state.core.is_send_waiting(send);
                        let granted = out.sender.purge(waiting);
                        drop(state);
                        granted.wake_all();
                    }
                    Err(cause) => failed.push((out.port, out.session, out.send, cause)),
                }
            }
            if !failed.is_empty() {
                self.report_failures(failed);
            }
        }
    }

    /// Fails the sends whose transmission failed; reports failed posts.
    fn report_failures(self: &Arc<Self>, failed: Vec<(PortId, SessionId, Option<SendId>, Cause)>) {
        let now = (self.now)();
        let mut effects = Effects::default();
        {
            let mut state = self.lock();
            for (port, session, send, cause) in failed {
                match send {
                    Some(send) => {
                        state.core.handle_transmit_error(send, cause, now);
                    }
                    None => {
                        let event = ManagerEvent::TransmitFailed {
                            port,
                            sid: session.sid(),
                            error: SessionError::Transport(cause),
                        };
                        state.events.push(event, &mut effects);
                    }
                }
            }
            // We own `flushing`: `collect` leaves new transmissions in the
            // outbox for the flush loop.
            state.collect(self, now, &mut effects);
        }
        effects.flush = false;
        self.apply(effects);
    }

    /// Forgets a send whose future was dropped, withdrawing it from the
    /// core if it still waits.
    pub(crate) fn withdraw(self: &Arc<Self>, send: SendId) {
        let now = (self.now)();
        let mut effects = Effects::default();
        {
            let mut state = self.lock();
            state.forget_send(send);
            if !state.closed {
                state.core.withdraw(send, now);
                state.collect(self, now, &mut effects);
            }
        }
        // Runs in the send future's destructor.
        self.apply_in_drop(effects);
    }

    /// Waits for the next message of `session` (its `recv`).
    pub(crate) fn poll_recv(
        &self,
        session: SessionId,
        cx: &mut Context<'_>,
    ) -> Poll<Result<M, SessionError>> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(Err(manager_dropped()));
        }
        match state.core.recv(session) {
            Ok(Some(message)) => Poll::Ready(Ok(message)),
            Ok(None) => {
                state.readers.insert(session, cx.waker().clone());
                Poll::Pending
            }
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// Registers (or refreshes, through `key`) a post of `session` waiting
    /// for room, to be woken if the session closes. Returns whether the
    /// session is live (checked under the same lock, so a close cannot slip
    /// in between unnoticed).
    pub(crate) fn register_poster(
        &self,
        session: SessionId,
        key: &mut Option<usize>,
        waker: &Waker,
    ) -> bool {
        let mut state = self.lock();
        if state.closed || !state.core.is_live(session) {
            return false;
        }
        state
            .posters
            .entry(session)
            .or_default()
            .register(key, waker);
        true
    }

    /// Forgets the post of `session` registered under `key`.
    pub(crate) fn forget_poster(&self, session: SessionId, key: usize) {
        self.lock().forget_poster(session, key);
    }

    /// Forgets the reader of `session` (its `recv` future was dropped).
    pub(crate) fn forget_reader(&self, session: SessionId) {
        self.lock().readers.remove(&session);
    }

    /// The last manager handle is gone: fail every waiting send with
    /// *Aborted*, end every session, end the events and outbound streams,
    /// release the senders, and let the driver task finish.
    pub(crate) fn shut_down(self: &Arc<Self>) {
        let now = (self.now)();
        let mut effects = Effects::default();
        let events = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state
                .core
                .abort_all(Some(Cause::msg("the session manager was dropped")), now);
            state.core.clear();
            state.collect(self, now, &mut effects);
            state.fail_registered_sends(&mut effects);
            state.closed = true;
            effects.wake(state.timer.waker.take());
            effects.wake(state.events.waker.take());
            effects
                .wake
                .extend(state.readers.drain().map(|(_, waker)| waker));
            let mut senders: Vec<Sender<M>> =
                state.ports.drain().map(|(_, entry)| entry.sender).collect();
            // Released too: a closure holding one of our ports would
            // otherwise keep this state alive forever.
            senders.push(std::mem::replace(&mut state.default_sender, Sender::none()));
            // Whoever flushes now (a flusher already at work: another
            // thread, the driver task, or a sender that dropped the manager;
            // else this call) drains the outbox in order, posts included,
            // then detaches the senders.
            // Channel senders have nothing in the outbox (their
            // transmissions joined their queues under this lock): detach
            // them now, under the same lock as `closed`, so that whoever
            // the wake-ups below run can take the channel over at once.
            let (queues, others): (Vec<_>, Vec<_>) =
                senders.into_iter().partition(Sender::is_queue);
            for queue in &queues {
                effects.wake.extend(queue.detach_deferred());
            }
            effects.drop_senders = queues;
            state.detach_later = others;
            effects.flush = !std::mem::replace(&mut state.flushing, true) || effects.flush;
            state.events.take_all()
        };
        self.apply(effects);
        // Sessions in the queue end themselves on drop: outside the lock.
        drop(events);
    }
}

/// Releases `flushing` if a sender panics, so later transmissions still go.
struct FlushGuard<'a, M: Message + Send + 'static>(&'a Arc<Shared<M>>, bool);

impl<M: Message + Send + 'static> Drop for FlushGuard<'_, M> {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().flushing = false;
        }
    }
}

impl<M: Message + Send + 'static> State<M> {
    /// The sender of `port`, if the port is live.
    pub(crate) fn sender_of(&self, port: PortId) -> Option<&Sender<M>> {
        if port == self.core.default_port() {
            Some(&self.default_sender)
        } else {
            self.ports.get(&port).map(|entry| &entry.sender)
        }
    }

    /// A handle on the sender of `port`; a port that is gone has none.
    fn sender_for(&self, port: PortId) -> Sender<M> {
        self.sender_of(port).cloned().unwrap_or_else(Sender::none)
    }

    /// Starts a send in the core whose outcome goes to `cell` (already
    /// [`reset`](SendCell::reset) with the waker of the future waiting).
    pub(crate) fn start_send(
        &mut self,
        session: SessionId,
        message: M,
        options: psession_core::SendOptions,
        now: Instant,
        cell: &Arc<SendCell<M>>,
    ) -> Result<SendId, SessionError> {
        let send = self.core.send(session, message, options, now)?;
        let index = send.index();
        if index >= self.sends.len() {
            self.sends.resize_with(index + 1, || None);
        }
        let waiting = Waiting {
            send,
            cell: cell.clone(),
        };
        // The core may have ended another send in this call (it fires what
        // is due first) and given its index to this one: that send's
        // outcome is still to be collected.
        if let Some(ended) = self.sends[index].replace(waiting) {
            self.displaced.push(ended);
        }
        Ok(send)
    }

    /// Takes the entry of `send`, if it is still there.
    fn forget_send(&mut self, send: SendId) -> Option<Waiting<M>> {
        if let Some(slot) = self.sends.get_mut(send.index()) {
            if slot.as_ref().is_some_and(|waiting| waiting.send == send) {
                return slot.take();
            }
        }
        let displaced = self.displaced.iter().position(|w| w.send == send)?;
        Some(self.displaced.swap_remove(displaced))
    }

    /// Fails whatever send is still registered (at shutdown, after the
    /// core has failed every waiting send: none should be), so that no
    /// future can wait for an outcome that will never come.
    fn fail_registered_sends(&mut self, effects: &mut Effects<M>) {
        let left = self
            .sends
            .drain(..)
            .flatten()
            .chain(self.displaced.drain(..));
        for waiting in left {
            effects.wake(waiting.cell.complete(Err(manager_dropped())));
        }
    }

    /// Forgets the post of `session` registered under `key`.
    pub(crate) fn forget_poster(&mut self, session: SessionId, key: usize) {
        if let Some(posters) = self.posters.get_mut(&session) {
            if posters.forget(key) {
                self.posters.remove(&session);
            }
        }
    }

    /// Takes the flush the previous flusher handed to the driver task.
    pub(crate) fn take_flush_handoff(&mut self) -> bool {
        std::mem::take(&mut self.flush_handoff)
    }

    /// Takes every output of the core: transmits, completes sends, wakes
    /// readers, queues events, and wakes the driver task if the next
    /// deadline now comes before its wake-up. `now` is the time of
    /// the call that produced the outputs.
    ///
    /// A transmission through a channel sender joins its queue here, under
    /// the lock (no application code runs: the queue's reader is woken with
    /// the effects), so it needs no second round through the outbox. Those
    /// of closure senders, which are application code, wait in the outbox
    /// for the flusher.
    pub(crate) fn collect(
        &mut self,
        shared: &Arc<Shared<M>>,
        now: Instant,
        effects: &mut Effects<M>,
    ) {
        // First, since a refused push fails its send with an event.
        while let Some(transmit) = self.core.poll_transmit() {
            self.transmit(transmit, now, effects);
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Reply { send, message, .. } => self.complete(send, Ok(message), effects),
                Event::SendFailed { send, error, .. } => self.complete(send, Err(error), effects),
                Event::Readable { session } => effects.wake(self.readers.remove(&session)),
                Event::Incoming { session } => {
                    let sender = self.sender_for(session.port());
                    let session = Session::new(shared.clone(), session, sender);
                    self.events.push(ManagerEvent::Incoming(session), effects);
                }
                Event::Closed { session, reason } => {
                    effects.wake(self.readers.remove(&session));
                    // Its posts waiting for room must see that it is gone.
                    if let Some(posters) = self.posters.remove(&session) {
                        posters.wake_into(&mut effects.wake);
                    }
                    self.events.remove_incoming(session, effects);
                    if reason == CloseReason::Expired {
                        let event = ManagerEvent::Expired {
                            port: session.port(),
                            sid: session.sid(),
                        };
                        self.events.push(event, effects);
                    }
                }
                Event::Dropped { port, sid, reason } => {
                    self.events
                        .push(ManagerEvent::Dropped { port, sid, reason }, effects);
                }
                _ => {}
            }
        }
        if !self.outbox.is_empty() && !self.flushing {
            self.flushing = true;
            effects.flush = true;
        }
        self.pull_timer_earlier(effects);
    }

    /// Moves `timer.armed` to the core's next deadline if that now comes
    /// first, waking the driver task to sleep until it. With `armed` at
    /// `None` (the driver task itself, after firing what was due), this
    /// sets it to the next deadline, whatever it is.
    ///
    /// The next deadline can only have come before `armed` if the deadline
    /// queue's head (a lower bound, O(1)) does: only then is the exact
    /// answer, which may repair the queue, worth asking.
    fn pull_timer_earlier(&mut self, effects: &mut Effects<M>) {
        let earlier = |at: Instant, armed: Option<Instant>| armed.is_none_or(|armed| at < armed);
        let Some(bound) = self.core.timeout_lower_bound() else {
            return;
        };
        if !earlier(bound, self.timer.armed) {
            return;
        }
        if let Some(deadline) = self.core.poll_timeout() {
            if earlier(deadline, self.timer.armed) {
                self.timer.armed = Some(deadline);
                effects.wake(self.timer.waker.take());
            }
        }
    }

    /// Hands one transmission to its channel now, or queues it in the
    /// outbox for the flusher.
    fn transmit(
        &mut self,
        transmit: psession_core::Transmit<M>,
        now: Instant,
        effects: &mut Effects<M>,
    ) {
        let psession_core::Transmit {
            port,
            session,
            send,
            message,
        } = transmit;
        // A port that is gone (destroyed by the same call) sends nothing.
        let Some(sender) = self.sender_of(port) else {
            return;
        };
        if !sender.is_queue() {
            let sender = sender.clone();
            self.outbox.push_back(Outgoing {
                port,
                session,
                send,
                message,
                epoch: sender.epoch(),
                sender,
            });
            return;
        }
        let error = match sender.push_locked(message, send, &mut effects.wake) {
            Ok(false) => return,
            Ok(true) => {
                let (core, closed) = (&self.core, self.closed);
                let granted = sender.purge(|send| !closed && core.is_send_waiting(send));
                effects.wake.extend(granted);
                return;
            }
            Err(cause) => cause,
        };
        match send {
            Some(send) => {
                self.core.handle_transmit_error(send, error, now);
            }
            None => {
                let event = ManagerEvent::TransmitFailed {
                    port,
                    sid: session.sid(),
                    error: SessionError::Transport(error),
                };
                self.events.push(event, effects);
            }
        }
    }

    fn complete(
        &mut self,
        send: SendId,
        outcome: Result<M, SessionError>,
        effects: &mut Effects<M>,
    ) {
        if let Some(waiting) = self.forget_send(send) {
            effects.wake(waiting.cell.complete(outcome));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline post and the slab's keep their keys apart: each post
    /// forgets its own registration only, and a close wakes every one.
    #[test]
    fn posters_keep_their_own_keys() {
        let waker = Waker::noop();
        let mut posters = Posters::default();
        let (mut a, mut b, mut c) = (None, None, None);
        posters.register(&mut a, waker);
        posters.register(&mut b, waker);
        assert_eq!(a, Some(Posters::FIRST));
        assert_ne!(b, a);
        // Refreshing keeps the key.
        posters.register(&mut b, waker);
        assert_ne!(b, Some(Posters::FIRST));
        assert!(!posters.forget(a.take().unwrap()));
        posters.register(&mut c, waker);
        assert_eq!(c, Some(Posters::FIRST), "the inline place is free again");
        assert!(!posters.forget(b.take().unwrap()));
        let mut wake = Wakers::default();
        posters.wake_into(&mut wake);
        assert_eq!(wake.into_iter().count(), 1, "c is woken");
        let mut posters = Posters::default();
        posters.register(&mut a, waker);
        assert!(posters.forget(a.take().unwrap()), "none left");
    }
}

//! The application's handle on everything: [`SessionManager`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use psession_core::{
    Cause, Manager, ManagerConfig, Message, PortId, PortOptions, Routed, SendOptions, SessionError,
    Stats,
};
use serde_json::Value;

use crate::events::Events;
use crate::port::{dispatch_to, open_session, AsPort, Port};
use crate::runtime::Runtime;
use crate::sender::Sender;
use crate::session::{Session, SessionHandle};
use crate::shared::{manager_dropped, PortEntry, Shared};
use crate::timer::drive;

/// Owns every port and session of one application (seed: `SessionManager`).
///
/// Cheap to clone, `Send + Sync`, usable from many tasks. It runs one
/// driver task on its runtime, which fires deadlines; when the last clone
/// is dropped the task stops, every waiting send fails with
/// [`SessionError::Aborted`], and the events and outbound streams end.
///
/// Use it through `psession_tokio::SessionManager` or
/// `psession_smol::SessionManager`, which fix the runtime `R`.
///
/// ```no_run
/// # fn demo<R: psession_driver::Runtime>() -> Result<(), psession_core::SessionError> {
/// use psession_core::ManagerConfig;
/// use psession_driver::{SessionManager, Sender};
/// use serde_json::Value;
/// use std::time::Duration;
///
/// let manager = SessionManager::<R>::new(
///     ManagerConfig::default().session_timeout(Duration::from_secs(5)),
///     Sender::from_fn(|message: Value| {
///         println!("to the peer: {message}");
///         Ok(())
///     }),
/// )?;
/// # let _ = manager; Ok(()) }
/// ```
pub struct SessionManager<R: Runtime, M: Message + Send + 'static = Value> {
    shared: Arc<Shared<M>>,
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime, M: Message + Send + 'static> Clone for SessionManager<R, M> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        SessionManager {
            shared: self.shared.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R: Runtime, M: Message + Send + 'static> Drop for SessionManager<R, M> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.shut_down();
        }
    }
}

impl<R: Runtime, M: Message + Send + 'static> fmt::Debug for SessionManager<R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("session_id_name", &self.shared.id_field)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> SessionManager<R, Value> {
    /// A manager of JSON messages (seed: `new SessionManager({ sender,
    /// ...options })`): `config` holds the options, `sender` is the
    /// transport of the `"default"` port.
    ///
    /// Spawns the manager's driver task, so it must be called where the
    /// runtime can spawn (for Tokio: inside a runtime); otherwise it fails
    /// with [`SessionError::Config`].
    pub fn new(config: ManagerConfig, sender: Sender<Value>) -> Result<Self, SessionError> {
        Self::with_messages(config, sender)
    }
}

impl<R: Runtime, M: Message + Send + 'static> SessionManager<R, M> {
    /// A manager of any message type that can carry a sid (see
    /// [`Message`]); [`new`](SessionManager::new) is this for JSON.
    pub fn with_messages(config: ManagerConfig, sender: Sender<M>) -> Result<Self, SessionError> {
        let core = Manager::new(config)?;
        let shared = Shared::new(core, sender, R::now)?;
        if let Err(error) = R::spawn(drive::<R, M>(shared.clone())) {
            shared.shut_down();
            return Err(SessionError::Config(error));
        }
        Ok(SessionManager {
            shared,
            runtime: PhantomData,
        })
    }

    /// The `"default"` port, which sends through the manager's sender.
    pub fn default_port(&self) -> Port<M> {
        let id = self.shared.lock().core.default_port();
        self.port_handle(id, psession_core::DEFAULT_PORT.into())
    }

    /// Creates a port for one peer, with its own sender and sid space
    /// (seed: `manager.createPort(name, { sender, ...options })`). Options
    /// left unset keep the manager's. A taken name fails with
    /// [`SessionError::PortExists`].
    pub fn create_port(
        &self,
        name: impl Into<String>,
        sender: Sender<M>,
        options: PortOptions,
    ) -> Result<Port<M>, SessionError> {
        let name: String = name.into();
        let label: Arc<str> = name.as_str().into();
        let entry_name = label.clone();
        let owner = self.shared.id;
        let id = self.shared.run(|state, _| {
            let id = state.core.create_port(&name, options)?;
            // Under the lock, so that a concurrent destroy cannot detach
            // before this attach (lock order: core, then queue).
            if let Err(error) = sender.attach(owner) {
                state.core.destroy_port(id)?;
                return Err(error);
            }
            let entry = PortEntry {
                sender: sender.clone(),
                name: entry_name,
            };
            state.ports.insert(id, entry);
            Ok(id)
        });
        // Dropped outside the lock: a closure sender may own sessions.
        drop(sender);
        Ok(self.port_handle(id?, label))
    }

    /// The port with this name, if it exists.
    pub fn port(&self, name: &str) -> Option<Port<M>> {
        let state = self.shared.lock();
        let id = state.core.port(name)?;
        let label = match state.ports.get(&id) {
            Some(entry) => entry.name.clone(),
            None => name.into(),
        };
        drop(state);
        Some(self.port_handle(id, label))
    }

    fn port_handle(&self, id: PortId, name: Arc<str>) -> Port<M> {
        Port {
            shared: self.shared.clone(),
            id,
            name,
        }
    }

    /// Opens a session on a port, by name, [`Port`] or [`PortId`] (seed:
    /// `manager.createSession("default")`).
    pub fn create_session(&self, port: impl AsPort) -> Result<Session<M>, SessionError> {
        match self.resolve(&port) {
            Some(id) => open_session(&self.shared, id),
            None if self.shared.lock().closed => Err(manager_dropped()),
            None => Err(SessionError::NoSuchPort),
        }
    }

    /// Whether `message` is a session message: its sid field holds an
    /// integer in `1..=u32::MAX` (seed: `manager.isSession(message)`).
    pub fn is_session(&self, message: &M) -> bool {
        self.shared.sid_of(message).is_some()
    }

    /// The live session on `port` that `message` belongs to (seed:
    /// `manager.getSession(message, port)`); pass the message to it with
    /// [`SessionHandle::next`]. `None` for a non-session message or an
    /// unknown sid ([`dispatch`](Self::dispatch) opens incoming sessions
    /// for those).
    pub fn get_session(&self, message: &M, port: impl AsPort) -> Option<SessionHandle<M>> {
        let state = self.shared.lock();
        if state.closed {
            return None;
        }
        let port = port.resolve(&state.core)?;
        let id = state.core.session_for(port, message)?;
        drop(state);
        Some(SessionHandle::new(self.shared.clone(), id))
    }

    /// Routes a message that arrived from `port`'s peer in one call: a
    /// reply completes its send, a message for a live session waits for its
    /// `recv`, a new sid opens an incoming session (delivered by
    /// [`events`](Self::events)), and a non-session message comes back as
    /// [`Routed::NotSession`] for the application. Never fails; what a live
    /// port dropped is counted and reported as
    /// [`ManagerEvent::Dropped`](crate::ManagerEvent::Dropped). A session
    /// message for a port name that does not exist comes back as
    /// `Routed::Dropped(DropReason::NoSuchPort)`.
    ///
    /// ```no_run
    /// # fn demo(manager: psession_driver::SessionManager<impl psession_driver::Runtime>) {
    /// use psession_core::Routed;
    /// use serde_json::json;
    ///
    /// let inbound = json!({ "sid": 3, "status": "ok" });
    /// if let Routed::NotSession(message) = manager.dispatch("device-1", inbound) {
    ///     println!("not a session message: {message}");
    /// }
    /// # }
    /// ```
    pub fn dispatch(&self, port: impl AsPort, message: M) -> Routed<M> {
        let port = self.resolve(&port);
        dispatch_to(&self.shared, port, message)
    }

    /// The stream of events: incoming sessions, expired sessions, dropped
    /// messages, failed posts. Calling it again ends the previous stream.
    pub fn events(&self) -> Events<M> {
        let mut state = self.shared.lock();
        state.events.epoch += 1;
        let old = state.events.waker.take();
        let epoch = state.events.epoch;
        drop(state);
        if let Some(old) = old {
            old.wake();
        }
        Events {
            shared: self.shared.clone(),
            epoch,
        }
    }

    /// Informational events discarded because nobody read the events
    /// stream and its queue was full.
    pub fn discarded_events(&self) -> u64 {
        self.shared.lock().events.discarded
    }

    /// A one-shot session on `port`: open, send, wait for the reply, end.
    pub async fn request(&self, port: impl AsPort, message: M) -> Result<M, SessionError> {
        self.request_with(port, message, SendOptions::default())
            .await
    }

    /// [`request`](Self::request) with per-send options.
    pub async fn request_with(
        &self,
        port: impl AsPort,
        message: M,
        options: SendOptions,
    ) -> Result<M, SessionError> {
        let mut session = self.create_session(port)?;
        session.send_with(message, options).await
    }

    /// Fails every waiting send with [`SessionError::Cancelled`].
    pub fn cancel(&self) -> Result<(), SessionError> {
        self.shared.run(|state, now| {
            state.core.cancel_all(now);
            Ok(())
        })
    }

    /// Fails every waiting send with [`SessionError::Aborted`] carrying
    /// `cause`.
    pub fn abort(&self, cause: impl Into<Option<Cause>>) -> Result<(), SessionError> {
        let cause = cause.into();
        self.shared.run(move |state, now| {
            state.core.abort_all(cause, now);
            Ok(())
        })
    }

    /// Fails every waiting send with [`SessionError::Timeout`].
    pub fn timeout(&self) -> Result<(), SessionError> {
        self.shared.run(|state, now| {
            state.core.timeout_all(now);
            Ok(())
        })
    }

    /// Ends every session of every port (waiting sends fail with
    /// [`SessionError::Cancelled`]); the ports stay.
    pub fn clear(&self) -> Result<(), SessionError> {
        self.shared.run(|state, _| {
            state.core.clear();
            Ok(())
        })
    }

    /// The manager's counters, summed over its ports.
    pub fn stats(&self) -> Stats {
        self.shared.lock().core.stats()
    }

    /// The field that carries the sid (seed: `sessionIdName`).
    pub fn session_id_name(&self) -> &str {
        &self.shared.id_field
    }

    fn resolve(&self, port: &impl AsPort) -> Option<PortId> {
        let state = self.shared.lock();
        if state.closed {
            return None;
        }
        port.resolve(&state.core)
    }
}

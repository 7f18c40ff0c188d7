//! Ports: one remote peer each, with its own sender and sid space.

use std::fmt;
use std::sync::Arc;

use psession_core::{
    Cause, DropReason, Manager, Message, PortId, PortStats, Routed, SendOptions, SessionError,
};
use serde_json::Value;

use crate::session::Session;
use crate::shared::Shared;

/// Anything that names a port: its name (`"default"`, `"client-7"`), a
/// [`Port`], or a [`PortId`]. The seed passes port names as strings; so
/// can you.
pub trait AsPort {
    /// The live port this names in `core`, if any.
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId>;
}

impl AsPort for PortId {
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId> {
        core.port_name(*self).map(|_| *self)
    }
}

impl AsPort for str {
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId> {
        core.port(self)
    }
}

impl AsPort for String {
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId> {
        core.port(self)
    }
}

impl<N: Message + Send + 'static> AsPort for Port<N> {
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId> {
        self.id.resolve(core)
    }
}

impl<T: AsPort + ?Sized> AsPort for &T {
    fn resolve<M: Message>(&self, core: &Manager<M>) -> Option<PortId> {
        (**self).resolve(core)
    }
}

/// A handle to one port (seed: the value `createPort` returns). Cheap to
/// clone; dropping it does nothing, [`destroy`](Self::destroy) removes the
/// port.
///
/// ```no_run
/// # async fn demo(manager: psession_driver::SessionManager<impl psession_driver::Runtime>)
/// #     -> Result<(), psession_core::SessionError> {
/// use psession_core::PortOptions;
/// use psession_driver::Sender;
/// use serde_json::{json, Value};
///
/// let (sender, mut outbound) = Sender::<Value>::channel(64);
/// let port = manager.create_port("device-1", sender, PortOptions::default())?;
/// // ... forward `outbound` to the device's socket ...
/// let reply = port.request(json!({ "command": "status" })).await?;
/// port.destroy()?; // every send still waiting on it fails with Aborted
/// # let _ = (reply, outbound.try_recv()); Ok(()) }
/// ```
pub struct Port<M: Message + Send + 'static = Value> {
    pub(crate) shared: Arc<Shared<M>>,
    pub(crate) id: PortId,
    pub(crate) name: Arc<str>,
}

impl<M: Message + Send + 'static> Clone for Port<M> {
    fn clone(&self) -> Self {
        Port {
            shared: self.shared.clone(),
            id: self.id,
            name: self.name.clone(),
        }
    }
}

impl<M: Message + Send + 'static> fmt::Debug for Port<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl<M: Message + Send + 'static> Port<M> {
    /// The port's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a session on this port (seed: `manager.createSession(port)`).
    pub fn create_session(&self) -> Result<Session<M>, SessionError> {
        open_session(&self.shared, self.id)
    }

    /// A one-shot session: open, send, wait for the reply, end.
    pub async fn request(&self, message: M) -> Result<M, SessionError> {
        self.request_with(message, SendOptions::default()).await
    }

    /// [`request`](Self::request) with per-send options.
    pub async fn request_with(&self, message: M, options: SendOptions) -> Result<M, SessionError> {
        self.create_session()?.send_with(message, options).await
    }

    /// Routes a message that arrived from this port's peer; see
    /// [`SessionManager::dispatch`](crate::SessionManager::dispatch).
    pub fn dispatch(&self, message: M) -> Routed<M> {
        dispatch_to(&self.shared, Some(self.id), message)
    }

    /// Destroys the port: its sessions end and every send still waiting on
    /// it fails with [`SessionError::Aborted`] (seed: `port.destroy()`). A
    /// channel sender's outbound stream ends after what is queued (once no
    /// other port uses it). Destroying `"default"` replaces it with a fresh
    /// default port that keeps the manager's sender.
    pub fn destroy(&self) -> Result<(), SessionError> {
        let id = self.id;
        // Detached under the same lock as the port leaves the core, before
        // anyone woken by the destroy can attach a new port to the channel
        // (which must see that this one has left).
        let mut wake = Vec::new();
        let entry = self.shared.run(|state, _| {
            state.core.destroy_port(id)?;
            let entry = state.ports.remove(&id);
            if let Some(entry) = &entry {
                wake = entry.sender.detach_deferred();
            }
            Ok(entry)
        })?;
        wake.into_iter().for_each(std::task::Waker::wake);
        drop(entry);
        Ok(())
    }

    /// Fails every send waiting on this port with [`SessionError::Cancelled`].
    pub fn cancel(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared
            .run(|state, now| state.core.cancel_port(id, now))
    }

    /// Fails every send waiting on this port with [`SessionError::Aborted`]
    /// carrying `cause`.
    pub fn abort(&self, cause: impl Into<Option<Cause>>) -> Result<(), SessionError> {
        let (id, cause) = (self.id, cause.into());
        self.shared
            .run(|state, now| state.core.abort_port(id, cause, now))
    }

    /// Fails every send waiting on this port with [`SessionError::Timeout`].
    pub fn timeout(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared
            .run(|state, now| state.core.timeout_port(id, now))
    }

    /// Ends every session of this port (waiting sends fail with
    /// [`SessionError::Cancelled`]); the port stays.
    pub fn clear(&self) -> Result<(), SessionError> {
        let id = self.id;
        self.shared.run(|state, _| state.core.clear_port(id))
    }

    /// The port's counters: live, incoming and waiting sessions, dropped
    /// messages and more.
    pub fn stats(&self) -> Result<PortStats, SessionError> {
        let id = self.id;
        self.shared.run(|state, _| state.core.port_stats(id))
    }

    /// Whether the port still exists.
    pub fn is_live(&self) -> bool {
        let state = self.shared.lock();
        !state.closed && state.core.port_name(self.id).is_some()
    }
}

/// Opens a session on `port` with the port's sender.
pub(crate) fn open_session<M: Message + Send + 'static>(
    shared: &Arc<Shared<M>>,
    port: PortId,
) -> Result<Session<M>, SessionError> {
    let (id, sender) = shared.run(|state, now| {
        let id = state.core.open_session(port, now)?;
        let sender = state
            .sender_of(port)
            .cloned()
            .ok_or(SessionError::NoSuchPort)?;
        Ok((id, sender))
    })?;
    Ok(Session::new(shared.clone(), id, sender))
}

/// Routes an inbound message; `port` is `None` when no port had its name.
pub(crate) fn dispatch_to<M: Message + Send + 'static>(
    shared: &Arc<Shared<M>>,
    port: Option<PortId>,
    message: M,
) -> Routed<M> {
    // A non-session message (heartbeats, telemetry: often most of the
    // traffic) comes back without the manager's lock or the clock.
    let Some(sid) = shared.sid_of(&message) else {
        return Routed::NotSession(message);
    };
    let Some(port) = port else {
        return Routed::Dropped(DropReason::NoSuchPort);
    };
    shared
        .run(|state, now| Ok(state.core.handle_session_message(port, sid, message, now)))
        // A dropped manager routes nothing.
        .unwrap_or(Routed::Dropped(DropReason::NoSuchPort))
}

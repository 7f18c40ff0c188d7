//! Ports, and the operations that act on every session of a port or of the
//! whole manager.

use std::time::Instant;

use super::{Manager, DEFAULT_PORT};
use crate::config::PortOptions;
use crate::error::{Cause, SessionError};
use crate::event::CloseReason;
use crate::id::PortId;
use crate::message::Message;
use crate::port::{Port, NIL};

impl<M: Message> Manager<M> {
    /// The `"default"` port, created with the manager.
    pub fn default_port(&self) -> PortId {
        self.default_port
    }

    /// Creates a port: one peer, with its own sid space and settings.
    ///
    /// Fails with [`SessionError::PortExists`] if the name is taken, or
    /// [`SessionError::Config`] if the options are unusable.
    pub fn create_port(
        &mut self,
        name: &str,
        options: PortOptions,
    ) -> Result<PortId, SessionError> {
        if self.port_names.contains_key(name) {
            return Err(SessionError::PortExists(name.to_owned()));
        }
        let settings = options.apply(&self.defaults);
        settings.validate()?;
        self.port_generation = self.port_generation.wrapping_add(1);
        let generation = self.port_generation;
        let index = self
            .ports
            .insert(Port::new(name.into(), generation, settings)) as u32;
        self.port_names.insert(name.into(), index);
        Ok(PortId { index, generation })
    }

    /// The port with this name.
    pub fn port(&self, name: &str) -> Option<PortId> {
        let &index = self.port_names.get(name)?;
        Some(PortId {
            index,
            generation: self.ports[index as usize].generation,
        })
    }

    /// The name of a port, if it still exists.
    pub fn port_name(&self, port: PortId) -> Option<&str> {
        self.port_ref(port).ok().map(|p| &*p.name)
    }

    pub(super) fn port_ref(&self, port: PortId) -> Result<&Port, SessionError> {
        self.ports
            .get(port.index as usize)
            .filter(|p| p.generation == port.generation)
            .ok_or_else(|| SessionError::NoSuchPort)
    }

    /// Destroys a port: every send waiting on it fails with
    /// [`SessionError::Aborted`], every session on it closes
    /// ([`CloseReason::PortDestroyed`]), and its queued transmissions are
    /// discarded. Its handle is refused from then on and its name is free.
    ///
    /// Destroying the default port replaces it with a fresh, empty one
    /// (a new [`default_port`](Self::default_port) handle), so a manager
    /// always has one.
    pub fn destroy_port(&mut self, port: PortId) -> Result<(), SessionError> {
        self.close_port_sessions(
            port,
            CloseReason::PortDestroyed,
            SessionError::Aborted(None),
        )?;
        let removed = self.ports.remove(port.index as usize);
        self.port_names.remove(&removed.name);
        self.transmits.retain(|t| t.port != port);
        if port == self.default_port {
            self.default_port = self.create_port(DEFAULT_PORT, PortOptions::default())?;
        }
        Ok(())
    }

    /// Ends every session on a port; waiting sends fail with
    /// [`SessionError::Cancelled`] ([`CloseReason::Cleared`]).
    pub fn clear_port(&mut self, port: PortId) -> Result<(), SessionError> {
        self.close_port_sessions(port, CloseReason::Cleared, SessionError::Cancelled)
    }

    fn close_port_sessions(
        &mut self,
        port: PortId,
        reason: CloseReason,
        error: SessionError,
    ) -> Result<(), SessionError> {
        let mut key = self.port_ref(port)?.oldest;
        while key != NIL {
            let next = self.sessions[key as usize].next;
            self.close(key, reason, &error);
            key = next;
        }
        Ok(())
    }

    /// Fails every send waiting on a port with [`SessionError::Cancelled`];
    /// the sessions stay open.
    pub fn cancel_port(&mut self, port: PortId, now: Instant) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Cancelled, now)
    }

    /// Fails every send waiting on a port with [`SessionError::Aborted`]
    /// carrying `cause`; the sessions stay open.
    pub fn abort_port(
        &mut self,
        port: PortId,
        cause: Option<Cause>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Aborted(cause), now)
    }

    /// Fails every send waiting on a port with [`SessionError::Timeout`]
    /// at once, without retries; the sessions stay open.
    pub fn timeout_port(&mut self, port: PortId, now: Instant) -> Result<(), SessionError> {
        self.fail_port(port, SessionError::Timeout, now)
    }

    fn fail_port(
        &mut self,
        port: PortId,
        error: SessionError,
        now: Instant,
    ) -> Result<(), SessionError> {
        let now = self.advance(now);
        let mut key = self.port_ref(port)?.oldest;
        while key != NIL {
            self.fail_waiting(key, Some(&error), now);
            key = self.sessions[key as usize].next;
        }
        Ok(())
    }

    /// Fails every waiting send of every port with [`SessionError::Cancelled`].
    pub fn cancel_all(&mut self, now: Instant) {
        self.fail_all(SessionError::Cancelled, now);
    }

    /// Fails every waiting send of every port with [`SessionError::Aborted`].
    pub fn abort_all(&mut self, cause: Option<Cause>, now: Instant) {
        self.fail_all(SessionError::Aborted(cause), now);
    }

    /// Fails every waiting send of every port with [`SessionError::Timeout`].
    pub fn timeout_all(&mut self, now: Instant) {
        self.fail_all(SessionError::Timeout, now);
    }

    fn fail_all(&mut self, error: SessionError, now: Instant) {
        let now = self.advance(now);
        let keys: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, slot)| slot.is_waiting())
            .map(|(key, _)| key as u32)
            .collect();
        for key in keys {
            self.fail_waiting(key, Some(&error), now);
        }
    }

    /// Ends every session of every port (ports stay); waiting sends fail
    /// with [`SessionError::Cancelled`].
    pub fn clear(&mut self) {
        let keys: Vec<u32> = self.sessions.iter().map(|(key, _)| key as u32).collect();
        for key in keys {
            self.close(key, CloseReason::Cleared, &SessionError::Cancelled);
        }
    }
}

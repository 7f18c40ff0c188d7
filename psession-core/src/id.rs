//! Handles: small copyable ids for ports, sessions and sends.
//!
//! Every handle carries a generation, so a handle to something that has
//! ended is refused with [`SessionError::Invalid`](crate::SessionError)
//! instead of reaching whatever reuses its slot or its sid.

use std::fmt;

/// A port of a [`Manager`](crate::Manager).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortId({}#{})", self.index, self.generation)
    }
}

/// A session: a port, a sid, and the generation that tells this session
/// apart from any later one with the same sid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    pub(crate) port: PortId,
    pub(crate) sid: u32,
    pub(crate) key: u32,
    pub(crate) generation: u64,
}

impl SessionId {
    /// The session id written into its messages.
    pub fn sid(&self) -> u32 {
        self.sid
    }

    /// The port the session belongs to.
    pub fn port(&self) -> PortId {
        self.port
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionId(sid {} on {:?}, #{})",
            self.sid, self.port, self.generation
        )
    }
}

/// One send on a session: its completion ([`Event::Reply`] or
/// [`Event::SendFailed`]) and its transmissions carry this id.
///
/// [`Event::Reply`]: crate::Event::Reply
/// [`Event::SendFailed`]: crate::Event::SendFailed
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SendId {
    pub(crate) key: u32,
    pub(crate) number: u64,
}

impl SendId {
    /// A small index, unique among the sends waiting at one time: a driver
    /// may keep its per-send state in a `Vec` at this index instead of a
    /// map. An ended send's index goes to a later send, so check the whole
    /// `SendId` before trusting what sits there.
    ///
    /// ```
    /// use psession_core::{Manager, ManagerConfig, SendOptions};
    /// use serde_json::json;
    /// use std::time::Instant;
    ///
    /// let now = Instant::now();
    /// let mut core = Manager::new(ManagerConfig::default()).unwrap();
    /// let port = core.default_port();
    /// let a = core.open_session(port, now).unwrap();
    /// let b = core.open_session(port, now).unwrap();
    /// let first = core.send(a, json!({}), SendOptions::default(), now).unwrap();
    /// let second = core.send(b, json!({}), SendOptions::default(), now).unwrap();
    /// assert_ne!(first.index(), second.index());
    /// ```
    pub fn index(&self) -> usize {
        self.key as usize
    }
}

impl fmt::Debug for SendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendId({})", self.number)
    }
}

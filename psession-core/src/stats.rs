//! Counters a user can read, per port and for the whole manager.

/// Running totals of things that happened (they only go up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages that arrived for a session with no send waiting after a send
    /// on it had timed out.
    pub late_replies: u64,
    /// Inbound messages dropped, for any [`DropReason`](crate::DropReason).
    pub dropped_messages: u64,
    /// Peer-opened sessions refused because of `max_incoming_sessions`
    /// (also counted in `dropped_messages`).
    pub incoming_refused: u64,
    /// Sessions ended because they stayed idle for `session_max_life`.
    pub expired_sessions: u64,
    /// Sessions ended by the overflow policy to reuse their sid.
    pub recycled_sessions: u64,
}

/// What one port holds now, and its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Live sessions (opened here or by the peer).
    pub live_sessions: u32,
    /// Live sessions opened by the peer.
    pub incoming_sessions: u32,
    /// Sends waiting for a reply (including those between retries).
    pub waiting_sends: u32,
    /// What happened on this port so far.
    pub counters: Counters,
}

/// What the whole manager holds now, and its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ports, including `"default"`.
    pub ports: usize,
    /// Live sessions on every port.
    pub live_sessions: usize,
    /// Sends waiting for a reply on every port.
    pub waiting_sends: usize,
    /// Messages queued for `recv` on every session.
    pub queued_messages: usize,
    /// Transmissions not yet taken with `poll_transmit`.
    pub queued_transmits: usize,
    /// Events not yet taken with `poll_event`.
    pub queued_events: usize,
    /// Entries in the deadline queue (live and not yet discarded).
    pub timer_entries: usize,
    /// What happened on every port so far (destroyed ports included).
    pub counters: Counters,
}

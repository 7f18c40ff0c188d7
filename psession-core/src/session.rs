//! The state the core keeps for one session and its waiting send.

use std::collections::VecDeque;

use crate::id::PortId;
use crate::timer::Armed;

/// One live session.
pub(crate) struct Slot<M> {
    pub(crate) generation: u64,
    pub(crate) port: PortId,
    pub(crate) sid: u32,
    /// Opened by the peer.
    pub(crate) incoming: bool,
    /// A send on it timed out and nothing has arrived since: the next
    /// unsolicited message is counted as a late reply.
    pub(crate) late_pending: bool,
    /// Neighbours in the port's creation-order list.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) last_activity: u64,
    pub(crate) timer: Armed,
    pub(crate) waiting: Option<Box<Waiting<M>>>,
    /// Messages that arrived with no send waiting, for `recv`.
    pub(crate) inbox: VecDeque<M>,
}

impl<M> Slot<M> {
    /// When this session next needs attention: its send's deadline, or its
    /// expiry when idle.
    pub(crate) fn deadline(&self, max_life_ns: u64) -> u64 {
        match &self.waiting {
            Some(waiting) => waiting.phase.deadline(),
            None => self.last_activity.saturating_add(max_life_ns),
        }
    }
}

/// The send waiting on a session.
pub(crate) struct Waiting<M> {
    pub(crate) number: u64,
    pub(crate) phase: Phase,
    pub(crate) retries_left: u32,
    pub(crate) timeout_ns: u64,
    pub(crate) retry_interval_ns: u64,
    /// The message to transmit again; kept only while retries remain.
    pub(crate) retained: Option<M>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    /// Transmitted; waiting for the reply until `deadline`.
    Awaiting { deadline: u64 },
    /// Timed out; transmitting again at `until`.
    Backoff { until: u64 },
}

impl Phase {
    pub(crate) fn deadline(self) -> u64 {
        match self {
            Phase::Awaiting { deadline } => deadline,
            Phase::Backoff { until } => until,
        }
    }
}

//! One port: its settings, its sid space and the list of its sessions.

use foldhash::HashMap;
use foldhash::HashMapExt;

use crate::config::PortSettings;
use crate::stats::{Counters, PortStats};
use crate::timer::{nanos, Armed};

/// "No session" in the intrusive session lists.
pub(crate) const NIL: u32 = u32::MAX;

/// `idle_prev` of a session that is not in its port's idle list.
pub(crate) const OUT: u32 = NIL - 1;

pub(crate) struct Port {
    pub(crate) name: Box<str>,
    pub(crate) generation: u32,
    pub(crate) settings: PortSettings,
    /// `settings`' durations in nanoseconds, as the hot path uses them.
    pub(crate) timeout_ns: u64,
    pub(crate) max_life_ns: u64,
    pub(crate) retry_interval_ns: u64,
    /// Live sessions by sid.
    pub(crate) sids: HashMap<u32, u32>,
    /// Oldest and newest session (slab keys) of the creation-order list.
    pub(crate) oldest: u32,
    pub(crate) newest: u32,
    /// First and last session (slab keys) of the idle list: the sessions
    /// with no send waiting, by last activity, oldest first. The first is
    /// the next to expire.
    pub(crate) idle_head: u32,
    pub(crate) idle_tail: u32,
    /// The deadline queue's entry for the idle list: no later than its
    /// head's expiry while the list is not empty.
    pub(crate) timer: Armed,
    /// Next sid to try when allocating.
    cursor: u32,
    /// Live sessions whose sid this side could allocate.
    allocatable_used: u32,
    pub(crate) incoming: u32,
    pub(crate) waiting: u32,
    pub(crate) counters: Counters,
}

impl Port {
    pub(crate) fn new(name: Box<str>, generation: u32, settings: PortSettings) -> Self {
        Port {
            name,
            generation,
            timeout_ns: nanos(settings.session_timeout),
            max_life_ns: nanos(settings.session_max_life),
            retry_interval_ns: nanos(settings.retry_interval),
            cursor: first_sid(&settings),
            settings,
            sids: HashMap::new(),
            oldest: NIL,
            newest: NIL,
            idle_head: NIL,
            idle_tail: NIL,
            timer: Armed::default(),
            allocatable_used: 0,
            incoming: 0,
            waiting: 0,
            counters: Counters::default(),
        }
    }

    /// Whether this side allocates `sid`.
    pub(crate) fn allocates(&self, sid: u32) -> bool {
        sid <= self.settings.max_session_count && self.settings.partition.allows(sid)
    }

    /// Whether every sid this side allocates is taken.
    pub(crate) fn is_full(&self) -> bool {
        self.allocatable_used
            >= self
                .settings
                .partition
                .capacity(self.settings.max_session_count)
    }

    /// The next free sid at or after the cursor, wrapping. Only call when
    /// the port is not full (then one exists).
    pub(crate) fn next_free_sid(&mut self) -> u32 {
        loop {
            let sid = self.cursor;
            self.cursor = match sid.checked_add(self.step()) {
                Some(next) if next <= self.settings.max_session_count => next,
                _ => first_sid(&self.settings),
            };
            if !self.sids.contains_key(&sid) {
                return sid;
            }
        }
    }

    fn step(&self) -> u32 {
        match self.settings.partition {
            crate::SidPartition::All => 1,
            _ => 2,
        }
    }

    /// Records a new live session.
    pub(crate) fn add(&mut self, sid: u32, key: u32, incoming: bool) {
        self.sids.insert(sid, key);
        if self.allocates(sid) {
            self.allocatable_used += 1;
        }
        if incoming {
            self.incoming += 1;
        }
    }

    /// Forgets a live session.
    pub(crate) fn remove(&mut self, sid: u32, incoming: bool) {
        self.sids.remove(&sid);
        if self.allocates(sid) {
            self.allocatable_used -= 1;
        }
        if incoming {
            self.incoming -= 1;
        }
    }

    pub(crate) fn stats(&self) -> PortStats {
        PortStats {
            live_sessions: self.sids.len() as u32,
            incoming_sessions: self.incoming,
            waiting_sends: self.waiting,
            counters: self.counters,
        }
    }
}

fn first_sid(settings: &PortSettings) -> u32 {
    match settings.partition {
        crate::SidPartition::Even => 2,
        _ => 1,
    }
}

//! What the harness records about ports, sessions and sends, and the
//! reference rules it computes them with (sid parsing, tagging, capacity).

use std::collections::VecDeque;
use std::time::Duration;

use psession_core::{Counters, PortId, SendId, SessionId};
use serde_json::Value;

use crate::script::PortCfg;

/// Duration to nanoseconds, saturating as the manager does.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The sid a JSON message carries in `field` (SPEC 1): a positive integer
/// that fits in `u32` (an integral float counts); anything else is none.
pub fn ref_sid(message: &Value, field: &str) -> Option<u32> {
    let Value::Number(number) = message.as_object()?.get(field)? else {
        return None;
    };
    if let Some(n) = number.as_u64() {
        return u32::try_from(n).ok().filter(|&n| n > 0);
    }
    if number.is_i64() {
        return None;
    }
    let f = number.as_f64()?;
    (f.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u32)
}

/// `message` with `field` set to `sid`, if it is an object.
pub fn tagged(message: &Value, field: &str, sid: u32) -> Option<Value> {
    let mut object = message.as_object()?.clone();
    object.insert(field.to_owned(), Value::from(sid));
    Some(Value::Object(object))
}

/// A port the harness has seen.
#[derive(Debug)]
pub struct PortTrack {
    /// Its handle.
    pub id: PortId,
    /// Its name.
    pub name: &'static str,
    /// Its settings.
    pub cfg: PortCfg,
    /// Not destroyed.
    pub alive: bool,
    /// The next sid to try, as the manager's allocator keeps it.
    pub(crate) cursor: u32,
    pub(crate) counters: Counters,
}

impl PortTrack {
    /// A new port.
    pub fn new(id: PortId, name: &'static str, cfg: PortCfg) -> Self {
        let cursor = first_sid(&cfg);
        PortTrack {
            id,
            name,
            cfg,
            alive: true,
            cursor,
            counters: Counters::default(),
        }
    }

    /// Whether this side allocates `sid`.
    pub fn allocates(&self, sid: u32) -> bool {
        sid <= self.cfg.max_count && self.cfg.partition.allows(sid)
    }

    /// How many sids this side allocates.
    pub fn capacity(&self) -> u32 {
        capacity(&self.cfg)
    }
}

pub(crate) fn first_sid(cfg: &PortCfg) -> u32 {
    match cfg.partition {
        psession_core::SidPartition::Even => 2,
        _ => 1,
    }
}

/// How many sids a port with `cfg` allocates.
pub fn capacity(cfg: &PortCfg) -> u32 {
    match cfg.partition {
        psession_core::SidPartition::All => cfg.max_count,
        psession_core::SidPartition::Odd => cfg.max_count.div_ceil(2),
        psession_core::SidPartition::Even => cfg.max_count / 2,
    }
}

/// Whether the manager accepts these settings.
pub fn valid(cfg: &PortCfg) -> bool {
    capacity(cfg) > 0 && cfg.inbox > 0
}

/// Where a send is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Waiting for its reply.
    Pending,
    /// Ended with an event (reply or failure).
    Ended,
    /// Withdrawn (ends without an event).
    Withdrawn,
}

/// A send the harness made.
#[derive(Debug)]
pub struct SendTrack {
    /// Its session.
    pub session: SessionId,
    pub(crate) sent_at: u64,
    pub(crate) timeout: u64,
    pub(crate) interval: u64,
    /// Retries it may make.
    pub retries: u32,
    /// Where it is.
    pub state: SendState,
    /// The manager's clock at the last input that fired deadlines while
    /// the send waited (`None`: none yet).
    pub(crate) fired_through: Option<u64>,
    /// The tagged message the transport must get.
    pub message: Value,
    /// Transmissions of it the transport got.
    pub transmissions: u64,
    /// Transmissions of it queued since the transmissions were last taken.
    pub queued: u64,
}

impl SendTrack {
    /// Its deadlines in order: each attempt's timeout, then the end of the
    /// pause before the next attempt; the last one is the final timeout.
    fn schedule(&self) -> impl Iterator<Item = u64> + '_ {
        let mut at = self.sent_at;
        (0..=2 * u64::from(self.retries)).map(move |i| {
            at = at.saturating_add(if i % 2 == 0 {
                self.timeout
            } else {
                self.interval
            });
            at
        })
    }

    /// How many retries went out (were queued) when the clock moved from
    /// `from` (`None`: before the send) to `to`: each pause `k` that ended
    /// in between, unless attempt `k + 1`'s own wait was over by `to` too.
    pub fn retries_queued(&self, from: Option<u64>, to: u64) -> u64 {
        let schedule: Vec<u64> = self.schedule().collect();
        schedule[1..]
            .chunks(2)
            .filter(|pair| {
                let (pause_end, next_deadline) = (pair[0], pair[1]);
                from.is_none_or(|from| pause_end > from) && pause_end <= to && next_deadline > to
            })
            .count() as u64
    }

    /// When its last attempt times out.
    pub fn final_deadline(&self) -> u64 {
        self.schedule().last().unwrap_or(u64::MAX)
    }

    /// Its next deadline: the first one not yet fired.
    pub(crate) fn current_deadline(&self) -> Option<u64> {
        match self.fired_through {
            None => self.schedule().next(),
            Some(t) => self.schedule().find(|&d| d > t),
        }
    }
}

/// A session the harness has seen.
#[derive(Debug)]
pub struct SessTrack {
    /// Its port.
    pub port: PortId,
    /// Its sid.
    pub sid: u32,
    /// Opened by the peer.
    pub incoming: bool,
    /// Still open.
    pub live: bool,
    /// Its last activity (manager clock).
    pub last: u64,
    /// The send waiting on it.
    pub pending: Option<SendId>,
    /// Messages waiting for `recv`, oldest first.
    pub inbox: VecDeque<Value>,
    /// A send ended without its reply since the last message: the next
    /// queued message counts as a late reply.
    pub late_pending: bool,
}

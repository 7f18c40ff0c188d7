//! Settings: the manager's defaults and the per-port options that override them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::SessionError;
use crate::id::SessionId;

/// Which session ids a port allocates for the sessions it opens.
///
/// When both peers open sessions on one channel, give one side `Odd` and the
/// other `Even` (as HTTP/2 does with stream ids) so that their sids never
/// collide. `All` is what the TypeScript library does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SidPartition {
    /// Every sid from 1 to `max_session_count`.
    #[default]
    All,
    /// Only odd sids (1, 3, 5, ...).
    Odd,
    /// Only even sids (2, 4, 6, ...).
    Even,
}

impl SidPartition {
    /// Whether this side may allocate `sid` (ignoring the upper bound).
    pub fn allows(self, sid: u32) -> bool {
        match self {
            SidPartition::All => sid != 0,
            SidPartition::Odd => sid % 2 == 1,
            SidPartition::Even => sid != 0 && sid.is_multiple_of(2),
        }
    }

    /// How many sids in `1..=max` this side may allocate.
    pub(crate) fn capacity(self, max: u32) -> u32 {
        match self {
            SidPartition::All => max,
            SidPartition::Odd => max.div_ceil(2),
            SidPartition::Even => max / 2,
        }
    }
}

/// One live session offered to a custom overflow policy.
#[derive(Debug, Clone, Copy)]
pub struct OverflowCandidate {
    /// The session's handle.
    pub session: SessionId,
    /// Its session id.
    pub sid: u32,
    /// When it last saw activity (a send, a post, a delivered message).
    pub last_activity: Instant,
    /// Whether a send is waiting on it.
    pub waiting: bool,
    /// Whether the peer opened it.
    pub incoming: bool,
}

/// A custom overflow policy: given the port's name and its recyclable
/// sessions, oldest first, return the sid to recycle, or `None` to refuse
/// the new session. The seed's `onSessionOverflow`.
///
/// It runs inside the core (under the adapters' lock): it must not call
/// back into the manager.
pub type OverflowHandler = Arc<dyn Fn(&str, &[OverflowCandidate]) -> Option<u32> + Send + Sync>;

/// What to do when a port has no free session id for a new session.
#[derive(Clone, Default)]
pub enum OverflowPolicy {
    /// End the earliest-created session of the port (its waiting send fails
    /// with [`SessionError::Cancelled`]) and reuse its sid. The default.
    #[default]
    RecycleOldest,
    /// Refuse the new session with [`SessionError::Exhausted`].
    Reject,
    /// Let a function choose the sid to recycle.
    Custom(OverflowHandler),
}

impl OverflowPolicy {
    /// A custom policy from a function, like the seed's `onSessionOverflow`.
    ///
    /// ```
    /// use psession_core::OverflowPolicy;
    /// // Always recycle the most recently created session instead.
    /// let policy = OverflowPolicy::custom(|_port, sessions| sessions.last().map(|s| s.sid));
    /// # let _ = policy;
    /// ```
    pub fn custom(
        choose: impl Fn(&str, &[OverflowCandidate]) -> Option<u32> + Send + Sync + 'static,
    ) -> Self {
        OverflowPolicy::Custom(Arc::new(choose))
    }
}

impl fmt::Debug for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverflowPolicy::RecycleOldest => f.write_str("RecycleOldest"),
            OverflowPolicy::Reject => f.write_str("Reject"),
            OverflowPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Settings of one port: the manager's defaults, overridden by the port's
/// [`PortOptions`].
#[derive(Debug, Clone)]
pub struct PortSettings {
    /// How long a send waits for a reply per attempt. Default 60 s.
    pub session_timeout: Duration,
    /// How long a session may stay idle (no activity, no send waiting)
    /// before it is ended as expired. Default 600 s.
    pub session_max_life: Duration,
    /// Highest sid this side allocates; sids go 1..=this and wrap.
    /// Default 65535.
    pub max_session_count: u32,
    /// What to do when every sid is in use. Default: recycle the oldest.
    pub overflow: OverflowPolicy,
    /// How many times a timed-out send is transmitted again. Default 0.
    pub retry_count: u32,
    /// Pause between a timed-out attempt and the next. Default 1 s.
    pub retry_interval: Duration,
    /// Which sids this side allocates. Default: all.
    pub partition: SidPartition,
    /// Most sessions the peer may have opened on this port at once; further
    /// ones are dropped and counted. Default 1024.
    pub max_incoming_sessions: u32,
    /// Most messages queued on one session for `recv`; beyond it the oldest
    /// is dropped and counted. Default 64.
    pub inbox_capacity: u32,
}

impl Default for PortSettings {
    fn default() -> Self {
        PortSettings {
            session_timeout: Duration::from_secs(60),
            session_max_life: Duration::from_secs(600),
            max_session_count: 65535,
            overflow: OverflowPolicy::RecycleOldest,
            retry_count: 0,
            retry_interval: Duration::from_secs(1),
            partition: SidPartition::All,
            max_incoming_sessions: 1024,
            inbox_capacity: 64,
        }
    }
}

impl PortSettings {
    pub(crate) fn validate(&self) -> Result<(), SessionError> {
        if self.partition.capacity(self.max_session_count) == 0 {
            return Err(SessionError::Config(
                "max_session_count leaves no session id for this partition",
            ));
        }
        if self.inbox_capacity == 0 {
            return Err(SessionError::Config("inbox_capacity must be at least 1"));
        }
        Ok(())
    }
}

/// Configuration of a manager: the sid field name and the defaults of every
/// port (including the `"default"` port).
///
/// ```
/// use psession_core::ManagerConfig;
/// use std::time::Duration;
///
/// let config = ManagerConfig::default()
///     .session_id_name("sessionId")
///     .session_timeout(Duration::from_secs(5))
///     .max_session_count(1000);
/// assert_eq!(config.session_id_name, "sessionId");
/// assert_eq!(config.defaults.session_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The JSON field that carries the sid. Default `"sid"`.
    pub session_id_name: String,
    /// Settings every port starts from.
    pub defaults: PortSettings,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            session_id_name: "sid".to_owned(),
            defaults: PortSettings::default(),
        }
    }
}

impl ManagerConfig {
    /// Sets the field that carries the sid (seed: `sessionIdName`).
    pub fn session_id_name(mut self, name: impl Into<String>) -> Self {
        self.session_id_name = name.into();
        self
    }

    /// Applies port options to the defaults.
    pub fn with(mut self, options: PortOptions) -> Self {
        self.defaults = options.apply(&self.defaults);
        self
    }
}

/// Per-port overrides of the manager's [`PortSettings`]; every field left
/// `None` keeps the manager's value.
///
/// ```
/// use psession_core::{PortOptions, SidPartition};
/// use std::time::Duration;
///
/// let options = PortOptions::default()
///     .session_timeout(Duration::from_millis(500))
///     .partition(SidPartition::Odd);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct PortOptions {
    /// Overrides [`PortSettings::session_timeout`].
    pub session_timeout: Option<Duration>,
    /// Overrides [`PortSettings::session_max_life`].
    pub session_max_life: Option<Duration>,
    /// Overrides [`PortSettings::max_session_count`].
    pub max_session_count: Option<u32>,
    /// Overrides [`PortSettings::overflow`].
    pub overflow: Option<OverflowPolicy>,
    /// Overrides [`PortSettings::retry_count`].
    pub retry_count: Option<u32>,
    /// Overrides [`PortSettings::retry_interval`].
    pub retry_interval: Option<Duration>,
    /// Overrides [`PortSettings::partition`].
    pub partition: Option<SidPartition>,
    /// Overrides [`PortSettings::max_incoming_sessions`].
    pub max_incoming_sessions: Option<u32>,
    /// Overrides [`PortSettings::inbox_capacity`].
    pub inbox_capacity: Option<u32>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl PortOptions {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$name = Some(value);
                self
            })*

            /// These options applied on top of `base`.
            pub fn apply(&self, base: &PortSettings) -> PortSettings {
                PortSettings {
                    $($name: self.$name.clone().unwrap_or_else(|| base.$name.clone()),)*
                }
            }
        }

        impl ManagerConfig {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.defaults.$name = value;
                self
            })*
        }
    };
}

setters! {
    /// Sets the per-attempt reply timeout (seed: `sessionTimeout`).
    session_timeout: Duration;
    /// Sets the idle lifetime of a session (seed: `sessionMaxLife`).
    session_max_life: Duration;
    /// Sets the highest sid allocated (seed: `maxSessionCount`).
    max_session_count: u32;
    /// Sets the overflow policy (seed: `onSessionOverflow`).
    overflow: OverflowPolicy;
    /// Sets how many times a timed-out send is retried (seed: `retryCount`).
    retry_count: u32;
    /// Sets the pause before each retry (seed: `retryInterval`).
    retry_interval: Duration;
    /// Sets which sids this side allocates.
    partition: SidPartition;
    /// Sets the cap on peer-opened sessions per port.
    max_incoming_sessions: u32;
    /// Sets the cap on messages queued per session for `recv`.
    inbox_capacity: u32;
}

/// Options of one send, overriding its port's settings.
///
/// ```
/// use psession_core::SendOptions;
/// use std::time::Duration;
///
/// // Seed: session.send(msg, { retryCount: 3, retryInterval: 500 })
/// let options = SendOptions::default().retries(3, Duration::from_millis(500));
/// assert_eq!(options.retry_count, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Reply timeout of each attempt (seed: `timeout`).
    pub timeout: Option<Duration>,
    /// Extra transmissions after a timeout (seed: `retryCount`).
    pub retry_count: Option<u32>,
    /// Pause before each extra transmission (seed: `retryInterval`).
    pub retry_interval: Option<Duration>,
}

impl SendOptions {
    /// Sets the reply timeout of each attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the retry count and the pause before each retry.
    pub fn retries(mut self, count: u32, interval: Duration) -> Self {
        self.retry_count = Some(count);
        self.retry_interval = Some(interval);
        self
    }
}

//! The one error type of psession, and the cause an abort may carry.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a session operation failed, or how a waiting send ended without a reply.
///
/// The first four kinds are the TypeScript library's error classes
/// (`SessionTimeoutError`, `SessionCancelError`, `SessionInvalidError`,
/// `SessionAbortError`); the others are what a Rust caller also needs to
/// tell apart.
///
/// ```
/// use psession_core::{Cause, SessionError};
///
/// let err = SessionError::Aborted(Some(Cause::msg("link lost")));
/// assert_eq!(err.to_string(), "session aborted: link lost");
/// assert!(matches!(err, SessionError::Aborted(_)));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No reply arrived before the send's deadline (after every retry), or
    /// the send was timed out by hand. Seed: `SessionTimeoutError`.
    #[error("session timed out waiting for a reply")]
    Timeout,
    /// The send was cancelled: by `cancel`, by `end`, by `clear`, or because
    /// its session was recycled to make room. Seed: `SessionCancelError`.
    #[error("session cancelled")]
    Cancelled,
    /// The session (or port) a handle points to is gone: ended, expired,
    /// recycled or destroyed. A stale handle never reaches a newer session.
    /// Seed: `SessionInvalidError`.
    #[error("session is no longer valid")]
    Invalid,
    /// The send was aborted, by `abort` or because its port was destroyed
    /// (the async drivers also use it when their manager is dropped), with
    /// the cause when one was given.
    /// Seed: `SessionAbortError`.
    #[error("session aborted{}", .0.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
    Aborted(#[source] Option<Cause>),
    /// The transport (the port's sender) failed to hand the message on. The
    /// send fails at once and is not retried.
    #[error("transport failed: {0}")]
    Transport(#[source] Cause),
    /// A send is already waiting on this session; only one may wait at a time.
    #[error("a send is already waiting on this session")]
    Busy,
    /// Every session id of the port is in use and the overflow policy chose
    /// not to recycle one.
    #[error("no free session id on this port")]
    Exhausted,
    /// The message cannot carry a session id (for JSON: it is not an object).
    #[error("message cannot carry a session id")]
    Untaggable,
    /// A typed helper could not serialize the request or deserialize the
    /// reply (the cause is the serde error).
    #[error("message could not be encoded or decoded: {0}")]
    Codec(#[source] Cause),
    /// No port has this name or handle.
    #[error("no such port")]
    NoSuchPort,
    /// A port with this name already exists.
    #[error("a port named {0:?} already exists")]
    PortExists(String),
    /// The options given are not usable (the message says which one).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

/// The cause carried by [`SessionError::Aborted`] and
/// [`SessionError::Transport`]: any error, shared cheaply between every send
/// it fails.
///
/// ```
/// use psession_core::Cause;
///
/// let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
/// let cause = Cause::new(io);
/// assert_eq!(cause.to_string(), "pipe closed");
/// assert!(cause.downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync + 'static>);

impl Cause {
    /// Wraps any error as a cause.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        Cause(Arc::new(error))
    }

    /// A cause that is just a message.
    pub fn msg(text: impl Into<String>) -> Self {
        Cause(Arc::from(Box::<dyn StdError + Send + Sync>::from(
            text.into(),
        )))
    }

    /// The original error, if it is of type `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Cause::msg(text)
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Cause::msg(text)
    }
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Self {
        Cause::new(error)
    }
}

impl From<Box<dyn StdError + Send + Sync + 'static>> for Cause {
    fn from(error: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        Cause(Arc::from(error))
    }
}

/// For senders that cannot fail (`Result<(), Infallible>`).
impl From<std::convert::Infallible> for Cause {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

//! How the servers admit connections: at most a set number at once, each
//! named by its address and a connection number, and counted until its
//! task ends.

use crate::log::Log;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The connections a server has admitted.
#[derive(Clone)]
pub(crate) struct Clients {
    shared: Arc<Shared>,
}

struct Shared {
    max: usize,
    connected: AtomicUsize,
    numbered: AtomicU64,
}

impl Clients {
    /// At most `max` connections at once.
    pub(crate) fn new(max: usize) -> Self {
        Clients {
            shared: Arc::new(Shared {
                max,
                connected: AtomicUsize::new(0),
                numbered: AtomicU64::new(0),
            }),
        }
    }

    /// Connections admitted and not yet ended.
    pub(crate) fn connected(&self) -> usize {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Admits a connection from `peer`, named `<prefix><peer>#<number>`
    /// (the number keeps a quick reconnection from the same address apart
    /// from the connection it replaces), or logs why not: `max`
    /// connections already.
    pub(crate) fn admit(&self, peer: SocketAddr, prefix: &str, log: &Log) -> Option<Admitted> {
        // Only the accept loop admits, so the check and the count agree.
        if self.connected() >= self.shared.max {
            log.line(format!(
                "connection from {peer} refused: {} clients already",
                self.shared.max
            ));
            return None;
        }
        self.shared.connected.fetch_add(1, Ordering::SeqCst);
        let number = self.shared.numbered.fetch_add(1, Ordering::SeqCst) + 1;
        Some(Admitted {
            name: format!("{prefix}{peer}#{number}"),
            shared: self.shared.clone(),
        })
    }
}

/// One admitted connection: counted until it is dropped (at the end of the
/// connection's task, however it ends).
pub(crate) struct Admitted {
    /// The connection's name (its port's name).
    pub(crate) name: String,
    shared: Arc<Shared>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.connected.fetch_sub(1, Ordering::SeqCst);
    }
}

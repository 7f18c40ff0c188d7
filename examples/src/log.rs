//! Where the examples' servers and clients write what they do.
//!
//! A [`Log`] is a cheap, cloneable line sink. The programs use
//! [`Log::stdout`]; tests use [`Log::capture`] and wait for the lines they
//! expect with [`LogLines::wait_for`].

use smol::channel::{Receiver, Sender};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// A line sink, shared by a program's tasks.
#[derive(Clone)]
pub struct Log {
    prefix: Arc<str>,
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    Stdout,
    Capture(Sender<String>),
}

impl Log {
    /// Prints each line to standard output as `[prefix] line`.
    pub fn stdout(prefix: &str) -> Self {
        Log {
            prefix: prefix.into(),
            sink: Sink::Stdout,
        }
    }

    /// Collects each line (as `[prefix] line`) for a test to read.
    pub fn capture(prefix: &str) -> (Self, LogLines) {
        let (sender, receiver) = smol::channel::unbounded();
        let log = Log {
            prefix: prefix.into(),
            sink: Sink::Capture(sender),
        };
        (log, LogLines { receiver })
    }

    /// The same sink with another prefix (a client's name, say).
    pub fn named(&self, prefix: &str) -> Self {
        Log {
            prefix: prefix.into(),
            sink: self.sink.clone(),
        }
    }

    /// Writes one line.
    pub fn line(&self, line: impl Display) {
        let line = format!("[{}] {line}", self.prefix);
        match &self.sink {
            Sink::Stdout => println!("{line}"),
            // A test that stopped reading has what it needs.
            Sink::Capture(sender) => drop(sender.try_send(line)),
        }
    }
}

/// The lines a [`Log::capture`] collected, in order.
pub struct LogLines {
    receiver: Receiver<String>,
}

impl LogLines {
    /// How long [`wait_for`](Self::wait_for) waits: generous, so a slow
    /// machine never fails a test, and only a missing line ever waits this
    /// long.
    pub const PATIENCE: Duration = Duration::from_secs(20);

    /// Waits for the next line containing `needle` (skipping the others) and
    /// returns it. Panics after [`PATIENCE`](Self::PATIENCE), listing the
    /// lines it skipped. Works on any runtime.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let mut skipped = Vec::new();
        let deadline = smol::Timer::after(Self::PATIENCE);
        let search = async {
            while let Ok(line) = self.receiver.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
                skipped.push(line);
            }
            None
        };
        let found = smol::future::or(search, async {
            deadline.await;
            None
        })
        .await;
        match found {
            Some(line) => line,
            None => panic!("no log line contains {needle:?}; saw {skipped:#?}"),
        }
    }

    /// Every line logged so far and not yet read.
    pub fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }
}

/// `text` cut to 120 bytes (on a character boundary) for a log line, so a
/// peer's 4 KiB message does not become a 4 KiB line.
///
/// ```
/// use psession_examples::log::short;
///
/// assert_eq!(short("getTime"), "getTime");
/// assert_eq!(short("é".repeat(100)).len(), 120 + '…'.len_utf8());
/// ```
pub fn short(text: impl Display) -> String {
    cut(text, 120)
}

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// appended when something was cut.
pub fn cut(text: impl Display, max: usize) -> String {
    let mut text = text.to_string();
    if text.len() > max {
        let end = (0..=max).rev().find(|&i| text.is_char_boundary(i));
        text.truncate(end.unwrap_or(0));
        text.push('…');
    }
    text
}

//! The seed's socket example: a TCP time server and its client, on smol.
//!
//! The wire is newline-delimited JSON: one object per line. **The server**
//! ([`TimeServer`]) gives every connected client its own port
//! (`client_<address>#<connection number>`), whose sender is a bounded channel
//! ([`Sender::channel`]) drained by a writer task into the socket. It
//! routes each line with `port.dispatch`; the sessions clients open arrive
//! on the manager's events stream (seed: `session:create`), and each is
//! answered once and ended, as the seed's `getTime` handler does:
//!
//! ```text
//! client → {"sid":1,"command":"getTime"}
//! server ← {"sid":1,"status":"success","time":"2026-11-25T14:02:11.512Z"}
//! ```
//!
//! A bad line (not JSON, not an object, a wrong-typed sid) is logged and
//! skipped; a line longer than [`MAX_FRAME_BYTES`] ends the connection
//! before it is read into memory. When a client leaves, its port is aborted
//! and destroyed.
//!
//! **The client** ([`TimeClient`]) sends each request as a one-shot session
//! (`manager.request`) and routes the server's lines back into its manager.
//!
//! Run it in two terminals:
//!
//! ```text
//! cargo run --bin tcp-server -- 127.0.0.1:3000
//! cargo run --bin tcp-client -- 127.0.0.1:3000
//! ```

use crate::clients::{Admitted, Clients};
use crate::log::{short, Log};
use crate::wire::{parse_frame, MAX_FRAME_BYTES};
use psession_smol::{
    Cause, ManagerConfig, Outbound, PortOptions, Routed, Sender, Session, SessionError,
    SessionManager, SidPartition, Stats,
};
use serde_json::{json, Value};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{AsyncToSocketAddrs, TcpListener, TcpStream};
use smol::Task;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Messages queued for one connection's socket (replies are posted, so a
/// client that stops reading makes its handlers wait, not memory grow).
const OUTBOX_MESSAGES: usize = 64;

/// Most requests queued unread on one session (the core drops the oldest
/// beyond it); each session is answered once. With the session cap and
/// [`MAX_FRAME_BYTES`], one client can make the server hold at most 32
/// queued requests of at most 4 KiB of text each (under 3 MiB once parsed:
/// a JSON value in memory can take 20 times its text).
const INBOX_PER_SESSION: u32 = 1;

/// How long a client that closed its writing half may wait for the answers
/// to what it sent before (`echo '...' | nc -N host port` does this).
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a session a client opened may stay unanswered before the
    /// server lets go of it (seed: `sessionTimeout: 10000`).
    pub session_max_life: Duration,
    /// Most sessions one client may have open at once; more are dropped
    /// and counted.
    pub max_sessions_per_client: u32,
    /// Most connections at once; more are closed as soon as they arrive.
    pub max_clients: usize,
    /// A client that sends nothing for this long is disconnected (a peer
    /// that vanished without closing its connection is let go).
    pub idle_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            session_max_life: Duration::from_secs(10),
            max_sessions_per_client: 32,
            max_clients: 256,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A running TCP time server. Dropping it stops accepting new clients.
pub struct TimeServer {
    local_addr: SocketAddr,
    manager: SessionManager,
    clients: Clients,
    _accept: Task<()>,
}

impl TimeServer {
    /// Binds `addr` (port 0 picks a free one) and starts serving on smol's
    /// global executor.
    pub async fn bind(
        addr: impl AsyncToSocketAddrs,
        options: ServerOptions,
        log: Log,
    ) -> std::io::Result<TimeServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let config = ManagerConfig::default()
            .session_max_life(options.session_max_life)
            .max_incoming_sessions(options.max_sessions_per_client)
            .inbox_capacity(INBOX_PER_SESSION);
        let manager = SessionManager::new(config, Sender::none()).map_err(std::io::Error::other)?;
        let clients = Clients::new(options.max_clients);
        // It ends with the manager, once the server and every connection
        // are gone.
        smol::spawn(answer_sessions(manager.clone(), log.clone())).detach();
        let accept = smol::spawn(accept_clients(
            listener,
            manager.clone(),
            options,
            clients.clone(),
            log.clone(),
        ));
        log.line(format!("listening on {local_addr}"));
        Ok(TimeServer {
            local_addr,
            manager,
            clients,
            _accept: accept,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Clients connected now.
    pub fn connected_clients(&self) -> usize {
        self.clients.connected()
    }

    /// The manager's counters: with no client connected, only the default
    /// port is left and nothing is live or waiting.
    pub fn stats(&self) -> Stats {
        self.manager.stats()
    }
}

async fn accept_clients(
    listener: TcpListener,
    manager: SessionManager,
    options: ServerOptions,
    clients: Clients,
    log: Log,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(admitted) = clients.admit(peer, "client_", &log) else {
                    continue;
                };
                let connection = serve_client(
                    stream,
                    admitted,
                    manager.clone(),
                    options.idle_timeout,
                    log.clone(),
                );
                smol::spawn(connection).detach();
            }
            Err(error) => {
                log.line(format!("accept failed: {error}"));
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_client(
    stream: TcpStream,
    admitted: Admitted,
    manager: SessionManager,
    idle_timeout: Duration,
    log: Log,
) {
    let name = &admitted.name;
    let (sender, outbound) = Sender::channel(OUTBOX_MESSAGES);
    let port = match manager.create_port(name.as_str(), sender, PortOptions::default()) {
        Ok(port) => port,
        Err(error) => {
            log.line(format!("{name}: refused, no port: {error}"));
            return;
        }
    };
    log.line(format!("{name} connected"));
    // It ends once the port is destroyed and what was queued is written.
    let writer = smol::spawn(write_lines(stream.clone(), outbound));

    let mut lines = BufReader::new(stream.clone());
    let reason = loop {
        let line = smol::future::or(read_line(&mut lines), async {
            smol::Timer::after(idle_timeout).await;
            Err(format!("silent for {idle_timeout:?}"))
        });
        let line = match line.await {
            Ok(Some(line)) => line,
            Ok(None) => break "closed".to_owned(),
            Err(error) => break error,
        };
        match parse_frame(&line, manager.session_id_name()) {
            Ok(message) => match port.dispatch(message) {
                Routed::NotSession(message) => log.line(format!(
                    "{name}: plain message (not a session): {}",
                    short(&message)
                )),
                Routed::Dropped(reason) => {
                    log.line(format!("{name}: session message dropped: {reason:?}"))
                }
                Routed::Reply(_) | Routed::Queued(_) | Routed::Opened(_) => {}
            },
            Err(bad) => log.line(format!("{name}: bad line ignored: {bad}")),
        }
    };
    if reason == "closed" {
        // The client may only have closed its writing half: give the
        // sessions it opened a moment to be answered.
        let deadline = Instant::now() + HALF_CLOSE_GRACE;
        while port.stats().is_ok_and(|stats| stats.live_sessions > 0) && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    }
    let _ = port.abort(Cause::msg(format!("{name} disconnected")));
    let _ = port.destroy();
    // Let the writer flush the answers, but never wait long for a peer.
    smol::future::or(writer, async {
        smol::Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    log.line(format!(
        "{name} disconnected ({reason}); its port is destroyed"
    ));
}

/// Reads one line (without its newline). `Ok(None)` at the end of the
/// stream; an error for a read error or a line longer than
/// [`MAX_FRAME_BYTES`], which is never read into memory whole.
async fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    let limit = MAX_FRAME_BYTES as u64 + 1;
    let read = (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| format!("read error: {error}"))?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_FRAME_BYTES {
        return Err(format!("a line longer than {MAX_FRAME_BYTES} bytes"));
    }
    Ok(Some(line))
}

/// Writes each message of `outbound` as one line.
async fn write_lines(mut stream: TcpStream, mut outbound: Outbound) {
    while let Some(message) = outbound.recv().await {
        let mut line = message.to_string();
        line.push('\n');
        if stream.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// The seed's `session:create` handler: answers each session a client
/// opens, once, and ends it.
async fn answer_sessions(manager: SessionManager, log: Log) {
    let mut events = manager.events();
    drop(manager); // the stream ends when the server's manager goes
    while let Some(session) = events.next_session().await {
        smol::spawn(answer_once(session, log.clone())).detach();
    }
}

async fn answer_once(mut session: Session, log: Log) {
    // An unanswered session ends when it expires (session_max_life).
    let Ok(request) = session.recv().await else {
        return;
    };
    let reply = answer(&request);
    log.line(format!(
        "session {}: {} -> {}",
        session.id(),
        short(&request["command"]),
        reply["status"]
    ));
    if let Err(error) = session.post(reply).await {
        log.line(format!("session {}: reply not sent: {error}", session.id()));
    }
}

/// The server's answer to one request.
pub fn answer(request: &Value) -> Value {
    match request["command"].as_str() {
        Some("getTime") => json!({
            "status": "success",
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        }),
        _ => json!({ "status": "error", "reason": "unknown command" }),
    }
}

/// What can go wrong for a [`TimeClient`] request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The session failed (timeout, connection closed, ...).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The server answered with an error.
    #[error("the server refused: {0}")]
    Refused(String),
}

/// A connected TCP time client. Dropping it closes the connection.
pub struct TimeClient {
    manager: SessionManager,
    _connection: Task<()>,
}

impl TimeClient {
    /// Connects to `addr`; each request waits at most `session_timeout`
    /// for its answer.
    pub async fn connect(
        addr: impl AsyncToSocketAddrs,
        session_timeout: Duration,
        log: Log,
    ) -> std::io::Result<TimeClient> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, outbound) = Sender::channel(OUTBOX_MESSAGES);
        // Odd sids: a reply arriving after its request timed out is then
        // dropped as UnknownSid instead of opening a session nobody reads.
        let config = ManagerConfig::default()
            .session_timeout(session_timeout)
            .partition(SidPartition::Odd);
        let manager = SessionManager::new(config, sender).map_err(std::io::Error::other)?;
        let writer = smol::spawn(write_lines(stream.clone(), outbound));
        let reader = read_from_server(stream, manager.clone(), log.clone());
        let client = manager.clone();
        let connection = smol::spawn(async move {
            let reason = reader.await;
            // Nothing can answer any more. Cancelling the writer drops the
            // outbound stream, so every later request fails at once with
            // Transport; then what waits fails now, not at its timeout.
            // (`cancel().await`, not a drop: dropping a task only schedules
            // its cancellation, and the stream could outlive the log line.
            // Logged last: whoever reads the line sees all of that done.)
            writer.cancel().await;
            let _ = client.abort(Cause::msg(format!("connection {reason}")));
            log.line(format!("connection {reason}"));
        });
        Ok(TimeClient {
            manager,
            _connection: connection,
        })
    }

    /// Sends one request as a one-shot session and returns the answer.
    pub async fn request(&self, message: Value) -> Result<Value, SessionError> {
        self.manager
            .request(self.manager.default_port(), message)
            .await
    }

    /// Asks the server for its time (RFC 3339, UTC).
    pub async fn get_time(&self) -> Result<String, ClientError> {
        let answer = self.request(json!({ "command": "getTime" })).await?;
        match (answer["status"].as_str(), answer["time"].as_str()) {
            (Some("success"), Some(time)) => Ok(time.to_owned()),
            _ => Err(ClientError::Refused(answer.to_string())),
        }
    }

    /// The client's session manager.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

/// Routes every line from the server into the client's manager, until the
/// connection ends; returns why it ended.
async fn read_from_server(stream: TcpStream, manager: SessionManager, log: Log) -> String {
    let port = manager.default_port();
    let mut lines = BufReader::new(stream);
    let reason = loop {
        let line = match read_line(&mut lines).await {
            Ok(Some(line)) => line,
            Ok(None) => break "closed".to_owned(),
            Err(error) => break error,
        };
        match parse_frame(&line, manager.session_id_name()) {
            Ok(message) => {
                if let Routed::NotSession(message) = port.dispatch(message) {
                    log.line(format!("server says: {}", short(&message)));
                }
            }
            Err(bad) => log.line(format!("bad line from the server ignored: {bad}")),
        }
    };
    reason
}

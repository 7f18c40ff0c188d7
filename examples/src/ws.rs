//! The seed's quick start: a WebSocket device server and its client, on
//! Tokio with `tokio-tungstenite`.
//!
//! **The server** ([`DeviceServer`]) gives every connected client its own
//! psession port, named by the client's address and a connection number
//! (`127.0.0.1:50312#7`). Every frame a client sends is checked
//! ([`parse_frame`]) and routed with one call, `port.dispatch`:
//!
//! - a session the client opens (`{"sid":1,"type":"query",...}`) arrives as
//!   [`ManagerEvent::Incoming`]; the server answers its query
//!   (`getDeviceList`, `getDeviceDetails`, `getDeviceStatus`) and ends its
//!   side of the session. Nothing on the wire says when the client is done
//!   with a session, so this is how the server lets go of it; the client's
//!   next turn on the same session (same sid) simply opens it again here;
//! - a non-session `{"type":"command","command":"getStatus"}` makes the
//!   server open a session of its own to that client and hold a two-turn
//!   conversation on it: `processing` (the client acknowledges), the work,
//!   then `completed` (the client acknowledges again);
//! - a bad frame is logged with the reason, answered with a non-session
//!   `{"type":"error",...}`, and ignored;
//! - when the client disconnects, its port is aborted and destroyed, so
//!   anything still waiting on that client fails at once.
//!
//! **The client** ([`DeviceClient`]) routes what the server sends through
//! its own manager, answers the server's command sessions, and offers the
//! quick start's conversation ([`DeviceClient::device_list_then_details`]).
//!
//! Both sides open sessions on the same connection, so their sids must
//! never collide: clients allocate odd sids ([`SidPartition::Odd`]) and the
//! server even ones ([`SidPartition::Even`]), as in HTTP/2.
//!
//! Run it in two terminals:
//!
//! ```text
//! cargo run --bin ws-server -- 127.0.0.1:8080
//! cargo run --bin ws-client -- ws://127.0.0.1:8080
//! ```

use crate::clients::{Admitted, Clients};
use crate::log::{short, Log};
use crate::wire::{parse_frame, MAX_FRAME_BYTES};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use psession_tokio::{
    Cause, ManagerConfig, ManagerEvent, PortOptions, Routed, SendOptions, Sender, Session,
    SessionError, SessionManager, SidPartition, Stats,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;

/// Frames queued for one connection's socket. A peer that stops reading
/// fills it, and further sends to it fail with `Transport` instead of
/// growing memory.
const OUTBOX_FRAMES: usize = 256;

/// Most commands one client may have running at once; more are refused
/// with an error message, so a client cannot make the server hold an
/// unbounded number of tasks and sessions.
pub const MAX_COMMANDS_PER_CLIENT: usize = 16;

/// Longest command name the server accepts.
const MAX_COMMAND_NAME: usize = 64;

/// Most sessions one client may have open on the server at once (each
/// lives until it has been idle for [`ServerOptions::session_max_life`]).
pub const MAX_SESSIONS_PER_CLIENT: u32 = 32;

/// Most messages queued unread on one session (the core drops the oldest
/// beyond it). A query session needs one; a retransmission replaces it.
/// With the caps on sessions and commands and [`MAX_FRAME_BYTES`], one
/// client can make the server hold at most 48 queued messages of at most
/// 4 KiB of text each (about 4 MiB once parsed: a JSON value in memory can
/// take 20 times its text).
const INBOX_PER_SESSION: u32 = 1;

/// Most bytes tungstenite may buffer for one connection's socket (pongs
/// included): a client that sends but never reads cannot grow it further.
const MAX_WRITE_BUFFER: usize = 1 << 20;

/// The devices the server knows, as `(id, name, kind)`.
pub const DEVICES: [(&str, &str, &str); 3] = [
    ("lamp-1", "Desk lamp", "light"),
    ("thermo-1", "Hall thermostat", "thermostat"),
    ("cam-3", "Gate camera", "camera"),
];

/// The device behind a slow link: details about it take
/// [`ServerOptions::slow_device_delay`].
pub const SLOW_DEVICE: &str = "cam-3";

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long the server waits for a client to acknowledge each step of
    /// a command (seed: `sessionTimeout: 10000`).
    pub session_timeout: Duration,
    /// How long a session the client opened may stay unanswered on the
    /// server (waiting for a retransmission, say) before it expires. The
    /// server ends every session it has answered at once.
    pub session_max_life: Duration,
    /// The simulated work between a command's `processing` and its
    /// `completed` (the seed waits 1 s).
    pub command_work: Duration,
    /// How long details about [`SLOW_DEVICE`] take.
    pub slow_device_delay: Duration,
    /// A client that sends nothing for this long is disconnected (a peer
    /// that vanished without closing its connection is let go).
    pub idle_timeout: Duration,
    /// Most connections at once; more are closed as soon as they arrive.
    pub max_clients: usize,
    /// How long a new connection may take to complete the WebSocket
    /// handshake.
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            session_timeout: Duration::from_secs(10),
            session_max_life: Duration::from_secs(10),
            command_work: Duration::from_secs(1),
            slow_device_delay: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            max_clients: 256,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A running WebSocket device server. Dropping it stops accepting new
/// clients; connected clients are served until they leave.
pub struct DeviceServer {
    local_addr: SocketAddr,
    manager: SessionManager,
    clients: Clients,
    accept: JoinHandle<()>,
}

impl DeviceServer {
    /// Binds `addr` (port 0 picks a free one) and starts serving. Must be
    /// called inside a Tokio runtime.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        options: ServerOptions,
        log: Log,
    ) -> std::io::Result<DeviceServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let config = ManagerConfig::default()
            .session_timeout(options.session_timeout)
            .session_max_life(options.session_max_life)
            .partition(SidPartition::Even)
            .max_incoming_sessions(MAX_SESSIONS_PER_CLIENT)
            .inbox_capacity(INBOX_PER_SESSION);
        // Every session lives on a client's port; the default port sends
        // nowhere.
        let manager = SessionManager::new(config, Sender::none()).map_err(std::io::Error::other)?;
        let clients = Clients::new(options.max_clients);
        // It ends with the manager, once the server and every connection
        // are gone.
        tokio::spawn(answer_incoming_sessions(
            manager.clone(),
            options.clone(),
            log.clone(),
        ));
        let accept = tokio::spawn(accept_clients(
            listener,
            manager.clone(),
            options,
            clients.clone(),
            log.clone(),
        ));
        log.line(format!("listening on ws://{local_addr}"));
        Ok(DeviceServer {
            local_addr,
            manager,
            clients,
            accept,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now (including those still in their handshake).
    pub fn connected_clients(&self) -> usize {
        self.clients.connected()
    }

    /// The manager's counters: with no client connected, only the default
    /// port is left and nothing is live or waiting.
    pub fn stats(&self) -> Stats {
        self.manager.stats()
    }
}

impl Drop for DeviceServer {
    fn drop(&mut self) {
        self.accept.abort();
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
                let Some(admitted) = clients.admit(peer, "", &log) else {
                    continue;
                };
                let connection = Connection {
                    manager: manager.clone(),
                    options: options.clone(),
                    log: log.clone(),
                    admitted,
                    commands: Arc::new(Semaphore::new(MAX_COMMANDS_PER_CLIENT)),
                };
                tokio::spawn(connection.serve(stream));
            }
            Err(error) => {
                log.line(format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The WebSocket limits both sides use: a frame larger than the examples'
/// wire format allows is refused by tungstenite before it is buffered.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

/// One connected client, on the server.
struct Connection {
    manager: SessionManager,
    options: ServerOptions,
    log: Log,
    /// Counts the connection; its name is the client's port's name.
    admitted: Admitted,
    /// One permit per command running for this client.
    commands: Arc<Semaphore>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let client = self.admitted.name.clone();
        let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
        let limit = self.options.handshake_timeout;
        let ws = match tokio::time::timeout(limit, handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(error)) => {
                self.log
                    .line(format!("client {client}: handshake failed: {error}"));
                return;
            }
            Err(_) => {
                self.log.line(format!(
                    "client {client}: no handshake within {limit:?}; closed"
                ));
                return;
            }
        };
        let (sink, frames) = ws.split();
        let (outbox, mut writer) = spawn_writer(sink);
        let to_client = outbox.clone();
        let port = match self.manager.create_port(
            client.as_str(),
            Sender::from_fn(move |message: Value| queue_frame(&to_client, &message)),
            PortOptions::default(),
        ) {
            Ok(port) => port,
            Err(error) => {
                self.log
                    .line(format!("client {client}: refused, no port: {error}"));
                writer.abort();
                return;
            }
        };
        self.log.line(format!("client {client} connected"));

        // A connection that can no longer be written to (a write error, or
        // tungstenite's write buffer full) is ended too.
        let reason = tokio::select! {
            reason = self.read_frames(frames, &port, &outbox) => reason,
            _ = &mut writer => "its socket cannot be written to".to_owned(),
        };

        // Fail whatever still waits on this client, then free its port.
        let _ = port.abort(Cause::msg(format!("client {client} disconnected")));
        let _ = port.destroy();
        // Finish the close handshake, but never wait long for a peer.
        if !writer.is_finished() {
            let _ = outbox.try_send(Frame::Close(None));
            if tokio::time::timeout(Duration::from_secs(1), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
        self.log.line(format!(
            "client {client} disconnected ({reason}); its port is destroyed"
        ));
    }

    /// Routes every frame from the client until it leaves; returns why.
    async fn read_frames(
        &self,
        mut frames: SplitStream<WebSocketStream<TcpStream>>,
        port: &psession_tokio::Port,
        outbox: &mpsc::Sender<Frame>,
    ) -> String {
        let client = port.name();
        loop {
            let next = tokio::time::timeout(self.options.idle_timeout, frames.next()).await;
            let bytes = match next {
                Ok(Some(Ok(Frame::Text(text)))) => text.as_bytes().to_vec(),
                Ok(Some(Ok(Frame::Binary(bytes)))) => bytes.to_vec(),
                Ok(Some(Ok(Frame::Close(_))) | None) => return "closed".to_owned(),
                Ok(Some(Ok(_))) => continue, // pings are answered by tungstenite
                Ok(Some(Err(error))) => return format!("connection error: {error}"),
                Err(_) => return format!("silent for {:?}", self.options.idle_timeout),
            };
            let message = match parse_frame(&bytes, self.manager.session_id_name()) {
                Ok(message) => message,
                Err(bad) => {
                    self.log
                        .line(format!("client {client}: bad frame ignored: {bad}"));
                    let error = json!({ "type": "error", "error": bad.to_string() });
                    let _ = queue_frame(outbox, &error);
                    continue;
                }
            };
            match port.dispatch(message) {
                Routed::NotSession(message) => self.handle_plain(port, outbox, message),
                Routed::Dropped(reason) => self.log.line(format!(
                    "client {client}: session message dropped: {reason:?}"
                )),
                Routed::Reply(_) | Routed::Queued(_) | Routed::Opened(_) => {}
            }
        }
    }

    /// A non-session message: a `command` starts a server-side session.
    /// Its optional `"id"` (an integer) is echoed in every message about it.
    fn handle_plain(
        &self,
        port: &psession_tokio::Port,
        outbox: &mpsc::Sender<Frame>,
        message: Value,
    ) {
        let client = port.name();
        if message["type"] != "command" {
            self.log.line(format!(
                "client {client}: message ignored (neither a session nor a command): {}",
                short(&message)
            ));
            return;
        }
        let id = message["id"].as_u64().map_or(Value::Null, Value::from);
        let refuse = |reason: String| {
            self.log
                .line(format!("client {client}: command refused: {reason}"));
            let error = json!({ "type": "error", "error": reason, "id": id });
            let _ = queue_frame(outbox, &error);
        };
        let command = match message["command"].as_str() {
            Some(command) if !command.is_empty() && command.len() <= MAX_COMMAND_NAME => command,
            _ => {
                return refuse(format!(
                    "a command needs a name of 1 to {MAX_COMMAND_NAME} bytes"
                ))
            }
        };
        let Ok(permit) = self.commands.clone().try_acquire_owned() else {
            return refuse(format!(
                "{command:?}: {MAX_COMMANDS_PER_CLIENT} commands already running"
            ));
        };
        self.log
            .line(format!("client {client}: command {command:?} received"));
        let command = Command {
            port: port.clone(),
            name: command.to_owned(),
            id,
            work: self.options.command_work,
            log: self.log.clone(),
        };
        tokio::spawn(async move {
            command.run().await;
            drop(permit);
        });
    }
}

/// A command a client asked for, run on a session the server opens.
struct Command {
    port: psession_tokio::Port,
    name: String,
    id: Value,
    work: Duration,
    log: Log,
}

impl Command {
    /// The seed's command handling: open a session to the client, report
    /// `processing`, do the work, report `completed`, end the session. Each
    /// step waits for the client's acknowledgement.
    async fn run(self) {
        let client = self.port.name();
        let name = &self.name;
        let outcome = async {
            let mut session = self.port.create_session()?;
            let sid = session.id();
            self.log
                .line(format!("session {sid} to {client}: {name:?} processing"));
            session.send(self.update("processing", None)).await?;
            tokio::time::sleep(self.work).await;
            let result = format!("command \"{name}\" executed");
            session.send(self.update("completed", Some(result))).await?;
            self.log.line(format!(
                "session {sid} to {client}: {name:?} completed and acknowledged"
            ));
            Ok::<(), SessionError>(())
        }
        .await;
        if let Err(error) = outcome {
            self.log
                .line(format!("command {name:?} for {client} failed: {error}"));
        }
    }

    fn update(&self, status: &str, result: Option<String>) -> Value {
        let mut update = json!({
            "type": "response",
            "command": self.name,
            "id": self.id,
            "status": status,
        });
        if let Some(result) = result {
            update["result"] = result.into();
        }
        update
    }
}

/// Takes every session a client opens and answers its queries.
async fn answer_incoming_sessions(manager: SessionManager, options: ServerOptions, log: Log) {
    let mut events = manager.events();
    drop(manager); // the events stream ends when the server's manager goes
    while let Some(event) = events.next().await {
        match event {
            ManagerEvent::Incoming(session) => {
                tokio::spawn(answer_queries(session, options.clone(), log.clone()));
            }
            ManagerEvent::TransmitFailed { error, .. } => {
                log.line(format!("a reply could not be sent: {error}"));
            }
            // Dropped messages are logged where they are dispatched;
            // expired sessions are normal.
            _ => {}
        }
    }
}

/// Answers the query of one session the client opened, then ends the
/// session (by dropping it). A request asking for a simulated loss
/// (`"simulateLoss": n`) has its first n deliveries on the session ignored:
/// the session waits for the retransmission, and expires after
/// `session_max_life` if none comes.
async fn answer_queries(mut session: Session, options: ServerOptions, log: Log) {
    // Deliveries ignored so far on this session, for requests asking for a
    // simulated loss (`"simulateLoss": n` ignores the first n).
    let mut ignored = 0;
    while let Ok(request) = session.recv().await {
        let query = request["query"].as_str().unwrap_or("");
        let lose = request["simulateLoss"].as_u64().unwrap_or(0);
        if ignored < lose {
            ignored += 1;
            log.line(format!(
                "session {}: {} delivery {ignored} ignored (simulated loss)",
                session.id(),
                short(query),
            ));
            continue;
        }
        let device = request["deviceId"].as_str();
        if query == "getDeviceDetails"
            && device == Some(SLOW_DEVICE)
            && !sleep_while_live(&session, options.slow_device_delay).await
        {
            return;
        }
        let reply = answer_query(&request);
        let _ = session.post(reply).await;
        return;
    }
}

/// Sleeps for `delay`, unless the session ends first (its client has
/// gone): then returns `false` at once, so no task outlives its client.
async fn sleep_while_live(session: &Session, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    while tokio::time::Instant::now() < deadline {
        if !session.is_live() {
            return false;
        }
        let step = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(step.min(Duration::from_millis(50))).await;
    }
    session.is_live()
}

/// The server's answer to one query.
pub fn answer_query(request: &Value) -> Value {
    let find = |id: Option<&str>| DEVICES.iter().find(|(device, ..)| Some(*device) == id);
    match request["query"].as_str() {
        Some("getDeviceList") => json!({
            "type": "result",
            "devices": DEVICES
                .iter()
                .map(|(id, name, _)| json!({ "id": id, "name": name }))
                .collect::<Vec<_>>(),
        }),
        Some("getDeviceDetails") => match find(request["deviceId"].as_str()) {
            Some((id, name, kind)) => json!({
                "type": "result",
                "device": { "id": id, "name": name, "kind": kind, "online": true, "firmware": "2.4.1" },
            }),
            None => json!({ "type": "error", "error": "unknown device" }),
        },
        Some("getDeviceStatus") => match find(request["deviceId"].as_str()) {
            Some((id, ..)) => json!({ "type": "result", "deviceId": id, "status": "ok" }),
            None => json!({ "type": "error", "error": "unknown device" }),
        },
        _ => json!({ "type": "error", "error": "unknown query" }),
    }
}

/// Starts the task that writes one connection's frames, and returns its
/// bounded queue.
fn spawn_writer<S>(
    mut sink: SplitSink<WebSocketStream<S>, Frame>,
) -> (mpsc::Sender<Frame>, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut frames) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            let closing = matches!(frame, Frame::Close(_));
            if sink.send(frame).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (outbox, writer)
}

/// Queues one message as a text frame; a full or closed queue is a
/// transport failure of that message.
fn queue_frame(outbox: &mpsc::Sender<Frame>, message: &Value) -> Result<(), Cause> {
    outbox
        .try_send(Frame::text(message.to_string()))
        .map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Cause::msg("the peer is not reading"),
            mpsc::error::TrySendError::Closed(_) => Cause::msg("the connection is closed"),
        })
}

/// What can go wrong for a [`DeviceClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server did not complete the WebSocket handshake in time.
    #[error("the server did not complete the handshake within {0:?}")]
    ConnectTimeout(Duration),
    /// A session failed (timeout, abort, ...).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The server answered with something this client did not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The server refused the command (too many running, a bad name).
    #[error("the server refused the command: {0}")]
    Refused(String),
    /// The connection is closed, or closed before the command completed.
    #[error("the connection is closed")]
    Closed,
    /// The command did not complete within [`ClientOptions::command_timeout`].
    #[error("command {0:?} did not complete in time")]
    CommandTimeout(String),
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a send waits for the server's reply (seed: 5 s).
    pub session_timeout: Duration,
    /// How long [`DeviceClient::command`] waits for the command to complete.
    pub command_timeout: Duration,
    /// How long [`DeviceClient::connect`] waits for the server's handshake.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            session_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The result of a command the server ran for this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDone {
    /// The command's name.
    pub command: String,
    /// The server's `result` text.
    pub result: String,
}

/// What the client shares with its reader and its command task: whether
/// the connection is closed, and who waits for which command (by id).
#[derive(Default)]
struct Connected {
    closed: AtomicBool,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<CommandDone, ClientError>>>>,
}

impl Connected {
    /// Hands the outcome of command `id` to whoever waits for it.
    fn finish(&self, id: Option<u64>, outcome: Result<CommandDone, ClientError>) {
        let waiter = id.and_then(|id| self.waiting.lock().expect("lock").remove(&id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
    }

    /// Marks the connection closed and tells every waiter.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiting.lock().expect("lock").clear();
    }
}

/// A connected WebSocket client. Dropping it closes the connection.
pub struct DeviceClient {
    manager: SessionManager,
    outbox: mpsc::Sender<Frame>,
    connected: Arc<Connected>,
    command_timeout: Duration,
    log: Log,
    reader: JoinHandle<()>,
    commands: JoinHandle<()>,
}

impl DeviceClient {
    /// Connects to `url` (`ws://host:port`, or just `host:port`).
    pub async fn connect(
        url: &str,
        options: ClientOptions,
        log: Log,
    ) -> Result<DeviceClient, ClientError> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("ws://{url}")
        };
        let connecting =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true);
        let (ws, _) = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| ClientError::ConnectTimeout(options.connect_timeout))??;
        let (sink, frames) = ws.split();
        // The writer ends by itself once the client and its manager are gone.
        let (outbox, _writer) = spawn_writer(sink);
        let connected = Arc::new(Connected::default());
        let (to_server, state) = (outbox.clone(), connected.clone());
        let sender = Sender::from_fn(move |message: Value| {
            if state.closed.load(Ordering::SeqCst) {
                return Err(Cause::msg("the connection is closed"));
            }
            queue_frame(&to_server, &message)
        });
        let config = ManagerConfig::default()
            .session_timeout(options.session_timeout)
            .partition(SidPartition::Odd);
        let manager = SessionManager::new(config, sender)?;
        let reader = tokio::spawn(read_from_server(
            frames,
            manager.clone(),
            connected.clone(),
            log.clone(),
        ));
        let commands = tokio::spawn(acknowledge_commands(
            manager.clone(),
            connected.clone(),
            log.clone(),
        ));
        log.line(format!("connected to {url}"));
        Ok(DeviceClient {
            manager,
            outbox,
            connected,
            command_timeout: options.command_timeout,
            log,
            reader,
            commands,
        })
    }

    /// The client's log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The client's session manager (its default port is the connection).
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// Opens a session to the server.
    pub fn session(&self) -> Result<Session, SessionError> {
        self.manager.create_session(self.manager.default_port())
    }

    /// The quick start's conversation: on one session, asks for the device
    /// list, then for the details of the first device. Returns both
    /// replies.
    pub async fn device_list_then_details(&self) -> Result<(Value, Value), ClientError> {
        let mut session = self.session()?;
        let list = session
            .send(json!({ "type": "query", "query": "getDeviceList" }))
            .await?;
        let Some(first) = list["devices"][0]["id"].as_str() else {
            return Err(ClientError::Unexpected(short(&list)));
        };
        self.log.line(format!(
            "session {}: {} devices, asking about {first}",
            session.id(),
            list["devices"].as_array().map_or(0, Vec::len)
        ));
        let details = session
            .send(json!({ "type": "query", "query": "getDeviceDetails", "deviceId": first }))
            .await?;
        self.log.line(format!(
            "session {}: {first} is {:?}, firmware {}",
            session.id(),
            details["device"]["name"].as_str().unwrap_or("?"),
            details["device"]["firmware"]
        ));
        Ok((list, details))
    }

    /// Sends one query on a new session with these send options, and
    /// returns the reply.
    pub async fn query(&self, query: Value, options: SendOptions) -> Result<Value, ClientError> {
        let mut session = self.session()?;
        Ok(session.send_with(query, options).await?)
    }

    /// Sends the non-session `{"type":"command","command":name,"id":n}` and
    /// waits until the server's command session reports it completed (this
    /// client acknowledges each step as it comes), or the server refuses it.
    pub async fn command(&self, name: &str) -> Result<CommandDone, ClientError> {
        let id = self.connected.next_id.fetch_add(1, Ordering::SeqCst);
        let (done, outcome) = oneshot::channel();
        self.connected
            .waiting
            .lock()
            .expect("lock")
            .insert(id, done);
        // Checked after registering: a close either sees the waiter or is
        // seen here.
        if self.connected.closed.load(Ordering::SeqCst) {
            self.connected.finish(Some(id), Err(ClientError::Closed));
        } else {
            let command = json!({ "type": "command", "command": name, "id": id });
            if let Err(error) = queue_frame(&self.outbox, &command) {
                self.connected
                    .finish(Some(id), Err(SessionError::Transport(error).into()));
            } else {
                self.log.line(format!("command {name:?} sent"));
            }
        }
        match tokio::time::timeout(self.command_timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.connected.waiting.lock().expect("lock").remove(&id);
                Err(ClientError::CommandTimeout(name.to_owned()))
            }
        }
    }

    /// Closes the connection with a WebSocket close handshake, waiting at
    /// most two seconds for the server's close frame.
    pub async fn close(mut self) {
        let handshake = async {
            if self.outbox.send(Frame::Close(None)).await.is_ok() {
                let _ = (&mut self.reader).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), handshake).await;
    }
}

impl Drop for DeviceClient {
    fn drop(&mut self) {
        // The writer is left to send what is queued (a close frame, say);
        // it ends when the queue's senders are gone.
        self.reader.abort();
        self.commands.abort();
    }
}

/// Routes every frame from the server into the client's manager.
async fn read_from_server(
    mut frames: SplitStream<WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>,
    manager: SessionManager,
    connected: Arc<Connected>,
    log: Log,
) {
    let port = manager.default_port();
    let reason = loop {
        let bytes = match frames.next().await {
            Some(Ok(Frame::Text(text))) => text.as_bytes().to_vec(),
            Some(Ok(Frame::Binary(bytes))) => bytes.to_vec(),
            Some(Ok(Frame::Close(_))) | None => break "closed".to_owned(),
            Some(Ok(_)) => continue,
            Some(Err(error)) => break format!("connection error: {error}"),
        };
        let message = match parse_frame(&bytes, manager.session_id_name()) {
            Ok(message) => message,
            Err(bad) => {
                log.line(format!("bad frame from the server ignored: {bad}"));
                continue;
            }
        };
        match port.dispatch(message) {
            Routed::NotSession(message) if message["type"] == "error" => {
                log.line(format!("server says: {}", short(&message)));
                let reason = message["error"].as_str().unwrap_or("no reason given");
                let refused = ClientError::Refused(reason.to_owned());
                connected.finish(message["id"].as_u64(), Err(refused));
            }
            Routed::NotSession(message) => log.line(format!("server says: {}", short(&message))),
            Routed::Dropped(reason) => {
                log.line(format!("message from the server dropped: {reason:?}"))
            }
            Routed::Reply(_) | Routed::Queued(_) | Routed::Opened(_) => {}
        }
    };
    // Nothing can answer any more: refuse new sends, fail what waits now
    // (not at its timeout), and end every session. (Logged last: whoever
    // reads the line sees all of that done.)
    connected.close();
    let _ = manager.abort(Cause::msg(format!("connection {reason}")));
    let _ = manager.clear();
    log.line(format!("connection {reason}"));
}

/// Answers the server's command sessions: acknowledges `processing` and
/// `completed`, and reports each completed command to whoever waits for it.
async fn acknowledge_commands(manager: SessionManager, connected: Arc<Connected>, log: Log) {
    let mut events = manager.events();
    drop(manager);
    while let Some(mut session) = events.next_session().await {
        let (connected, log) = (connected.clone(), log.clone());
        tokio::spawn(async move {
            while let Ok(update) = session.recv().await {
                let command = update["command"].as_str().unwrap_or("?").to_owned();
                let status = short(update["status"].as_str().unwrap_or("?"));
                log.line(format!(
                    "server session {}: {:?} {status}",
                    session.id(),
                    short(&command)
                ));
                if session.post(json!({ "type": "ack" })).await.is_err() {
                    break;
                }
                if status == "completed" {
                    let result = update["result"].as_str().unwrap_or("").to_owned();
                    let done = CommandDone { command, result };
                    connected.finish(update["id"].as_u64(), Ok(done));
                    break; // the server ends the session after this step
                }
            }
        });
    }
}

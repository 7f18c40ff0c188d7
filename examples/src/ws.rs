//! The seed's quick start: a WebSocket device server and its client, on
//! Tokio with `tokio-tungstenite`.
//!
//! **The server** ([`DeviceServer`]) gives every connected client its own
//! psession port, named by the client's address. Every frame a client sends
//! is checked ([`parse_frame`]) and routed with one call, `port.dispatch`:
//!
//! - a session the client opens (`{"sid":1,"type":"query",...}`) arrives as
//!   [`ManagerEvent::Incoming`]; the server answers each query on it:
//!   `getDeviceList`, `getDeviceDetails`, `getDeviceStatus`;
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

use crate::log::Log;
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, Semaphore};
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
const MAX_SESSIONS_PER_CLIENT: u32 = 256;

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
    /// How long a session the client opened lives on the server once it is
    /// idle. Nothing on the wire says the client has ended it, so this is
    /// how the server lets go of finished conversations.
    pub session_max_life: Duration,
    /// The simulated work between a command's `processing` and its
    /// `completed` (the seed waits 1 s).
    pub command_work: Duration,
    /// How long details about [`SLOW_DEVICE`] take.
    pub slow_device_delay: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            session_timeout: Duration::from_secs(10),
            session_max_life: Duration::from_secs(10),
            command_work: Duration::from_secs(1),
            slow_device_delay: Duration::from_secs(3),
        }
    }
}

/// A running WebSocket device server. Dropping it stops accepting new
/// clients; connected clients are served until they leave.
pub struct DeviceServer {
    local_addr: SocketAddr,
    manager: SessionManager,
    clients: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
    events: JoinHandle<()>,
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
            .max_incoming_sessions(MAX_SESSIONS_PER_CLIENT);
        // Every session lives on a client's port; the default port sends
        // nowhere.
        let manager = SessionManager::new(config, Sender::none()).map_err(std::io::Error::other)?;
        let clients = Arc::new(AtomicUsize::new(0));
        let events = tokio::spawn(answer_incoming_sessions(
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
            events,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Clients connected now.
    pub fn connected_clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
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
        self.events.abort();
    }
}

async fn accept_clients(
    listener: TcpListener,
    manager: SessionManager,
    options: ServerOptions,
    clients: Arc<AtomicUsize>,
    log: Log,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let connection = Connection {
                    manager: manager.clone(),
                    options: options.clone(),
                    clients: clients.clone(),
                    log: log.clone(),
                    peer,
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
}

/// One connected client, on the server.
struct Connection {
    manager: SessionManager,
    options: ServerOptions,
    clients: Arc<AtomicUsize>,
    log: Log,
    peer: SocketAddr,
    /// One permit per command running for this client.
    commands: Arc<Semaphore>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
        {
            Ok(ws) => ws,
            Err(error) => {
                self.log
                    .line(format!("client {}: handshake failed: {error}", self.peer));
                return;
            }
        };
        let (sink, frames) = ws.split();
        let (outbox, mut writer) = spawn_writer(sink);
        let client = self.peer.to_string();
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
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.log.line(format!("client {client} connected"));

        let reason = self.read_frames(frames, &port, &outbox).await;

        // Fail whatever still waits on this client, then free its port.
        let _ = port.abort(Cause::msg(format!("client {client} disconnected")));
        let _ = port.destroy();
        // Finish the close handshake, but never wait long for a peer.
        let _ = outbox.try_send(Frame::Close(None));
        if tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        self.clients.fetch_sub(1, Ordering::SeqCst);
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
            let bytes = match frames.next().await {
                Some(Ok(Frame::Text(text))) => text.as_bytes().to_vec(),
                Some(Ok(Frame::Binary(bytes))) => bytes.to_vec(),
                Some(Ok(Frame::Close(_))) | None => return "closed".to_owned(),
                Some(Ok(_)) => continue, // pings are answered by tungstenite
                Some(Err(error)) => return format!("connection error: {error}"),
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
    fn handle_plain(
        &self,
        port: &psession_tokio::Port,
        outbox: &mpsc::Sender<Frame>,
        message: Value,
    ) {
        let client = port.name();
        let command = match (message["type"].as_str(), message["command"].as_str()) {
            (Some("command"), Some(command)) if command.len() <= MAX_COMMAND_NAME => command,
            (Some("command"), _) => {
                self.log
                    .line(format!("client {client}: command refused: no valid name"));
                let error = json!({ "type": "error", "error": "a command needs a name of at most 64 bytes" });
                let _ = queue_frame(outbox, &error);
                return;
            }
            _ => {
                self.log.line(format!(
                    "client {client}: message ignored (neither a session nor a command): {}",
                    short(&message)
                ));
                return;
            }
        };
        let Ok(permit) = self.commands.clone().try_acquire_owned() else {
            self.log.line(format!(
                "client {client}: command {command:?} refused: {MAX_COMMANDS_PER_CLIENT} already running"
            ));
            let error = json!({ "type": "error", "error": "too many commands running", "command": command });
            let _ = queue_frame(outbox, &error);
            return;
        };
        self.log
            .line(format!("client {client}: command {command:?} received"));
        let (port, command, work, log) = (
            port.clone(),
            command.to_owned(),
            self.options.command_work,
            self.log.clone(),
        );
        tokio::spawn(async move {
            run_command(port, command, work, log).await;
            drop(permit);
        });
    }
}

/// The seed's command handling: the server opens a session to the client,
/// reports `processing`, does the work, reports `completed`, and ends the
/// session. Each step waits for the client's acknowledgement.
async fn run_command(port: psession_tokio::Port, command: String, work: Duration, log: Log) {
    let client = port.name().to_owned();
    let outcome = async {
        let mut session = port.create_session()?;
        let sid = session.id();
        log.line(format!("session {sid} to {client}: {command:?} processing"));
        session
            .send(json!({ "type": "response", "command": command, "status": "processing" }))
            .await?;
        tokio::time::sleep(work).await;
        let result = format!("command \"{command}\" executed");
        session
            .send(json!({
                "type": "response",
                "command": command,
                "status": "completed",
                "result": result,
            }))
            .await?;
        log.line(format!(
            "session {sid} to {client}: {command:?} completed and acknowledged"
        ));
        Ok::<(), SessionError>(())
    }
    .await;
    if let Err(error) = outcome {
        log.line(format!("command {command:?} for {client} failed: {error}"));
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

/// Answers the queries of one session the client opened, until the session
/// ends (it expires when idle, or its client disconnects).
async fn answer_queries(mut session: Session, options: ServerOptions, log: Log) {
    // How many deliveries of each request this session has ignored, for
    // requests that ask for a simulated loss.
    let mut ignored: HashMap<String, u64> = HashMap::new();
    while let Ok(request) = session.recv().await {
        let query = request["query"].as_str().unwrap_or("").to_owned();
        let lose = request["simulateLoss"].as_u64().unwrap_or(0);
        let seen = ignored.entry(query.clone()).or_default();
        if *seen < lose {
            *seen += 1;
            log.line(format!(
                "session {}: {query} delivery {} ignored (simulated loss)",
                session.id(),
                *seen
            ));
            continue;
        }
        let device = request["deviceId"].as_str();
        if query == "getDeviceDetails" && device == Some(SLOW_DEVICE) {
            tokio::time::sleep(options.slow_device_delay).await;
        }
        let reply = answer_query(&request);
        if session.post(reply).await.is_err() {
            break;
        }
    }
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

/// A message, cut for a log line.
fn short(message: &Value) -> String {
    let mut text = message.to_string();
    if text.len() > 120 {
        let cut = (0..=120).rev().find(|&i| text.is_char_boundary(i));
        text.truncate(cut.unwrap_or(0));
        text.push('…');
    }
    text
}

/// What can go wrong for a [`DeviceClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    /// A session failed (timeout, abort, ...).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The server answered with something this client did not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The connection closed before the command completed.
    #[error("the connection closed before command {0:?} completed")]
    Closed(String),
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            session_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
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

/// Who waits for which command to complete. Emptied when the connection
/// closes, so every waiter learns it.
type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CommandDone>>>>;

/// A connected WebSocket client. Dropping it closes the connection.
pub struct DeviceClient {
    manager: SessionManager,
    outbox: mpsc::Sender<Frame>,
    completed: Waiters,
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
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true)
                .await?;
        let (sink, frames) = ws.split();
        // The writer ends by itself once the client and its manager are gone.
        let (outbox, _writer) = spawn_writer(sink);
        let to_server = outbox.clone();
        let config = ManagerConfig::default()
            .session_timeout(options.session_timeout)
            .partition(SidPartition::Odd);
        let manager = SessionManager::new(
            config,
            Sender::from_fn(move |message: Value| queue_frame(&to_server, &message)),
        )?;
        let completed = Waiters::default();
        let reader = tokio::spawn(read_from_server(
            frames,
            manager.clone(),
            completed.clone(),
            log.clone(),
        ));
        let commands = tokio::spawn(acknowledge_commands(
            manager.clone(),
            completed.clone(),
            log.clone(),
        ));
        log.line(format!("connected to {url}"));
        Ok(DeviceClient {
            manager,
            outbox,
            completed,
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

    /// Sends the non-session `{"type":"command","command":name}` and waits
    /// until the server's command session reports it completed (this client
    /// acknowledges each step as it comes). Run one command of a given name
    /// at a time.
    pub async fn command(&self, name: &str) -> Result<CommandDone, ClientError> {
        let (done, mut done_rx) = mpsc::unbounded_channel();
        self.completed
            .lock()
            .expect("lock")
            .insert(name.to_owned(), done);
        let command = json!({ "type": "command", "command": name });
        queue_frame(&self.outbox, &command).map_err(SessionError::Transport)?;
        self.log.line(format!("command {name:?} sent"));
        match tokio::time::timeout(self.command_timeout, done_rx.recv()).await {
            Ok(Some(done)) => Ok(done),
            Ok(None) => Err(ClientError::Closed(name.to_owned())),
            Err(_) => {
                self.completed.lock().expect("lock").remove(name);
                Err(ClientError::CommandTimeout(name.to_owned()))
            }
        }
    }

    /// Closes the connection with a WebSocket close handshake: waits (up to
    /// two seconds) for the server's close frame.
    pub async fn close(mut self) {
        if self.outbox.send(Frame::Close(None)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.reader).await;
        }
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
    completed: Waiters,
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
        match parse_frame(&bytes, manager.session_id_name()) {
            Ok(message) => match port.dispatch(message) {
                Routed::NotSession(message) => {
                    log.line(format!("server says: {}", short(&message)))
                }
                Routed::Dropped(reason) => {
                    log.line(format!("message from the server dropped: {reason:?}"))
                }
                _ => {}
            },
            Err(bad) => log.line(format!("bad frame from the server ignored: {bad}")),
        }
    };
    log.line(format!("connection {reason}"));
    // Nothing can answer any more: fail what waits now, not at its timeout.
    let _ = manager.abort(Cause::msg(format!("connection {reason}")));
    completed.lock().expect("lock").clear();
}

/// Answers the server's command sessions: acknowledges `processing` and
/// `completed`, and reports each completed command to whoever waits for it.
async fn acknowledge_commands(manager: SessionManager, completed: Waiters, log: Log) {
    let mut events = manager.events();
    drop(manager);
    while let Some(mut session) = events.next_session().await {
        let completed = completed.clone();
        let log = log.clone();
        tokio::spawn(async move {
            while let Ok(update) = session.recv().await {
                let command = update["command"].as_str().unwrap_or("?").to_owned();
                let status = update["status"].as_str().unwrap_or("?");
                log.line(format!(
                    "server session {}: {command:?} {status}",
                    session.id()
                ));
                if session.post(json!({ "type": "ack" })).await.is_err() {
                    break;
                }
                if status == "completed" {
                    let result = update["result"].as_str().unwrap_or("").to_owned();
                    let waiter = completed.lock().expect("lock").remove(&command);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(CommandDone { command, result });
                    }
                    break; // the server ends the session after this step
                }
            }
        });
    }
}

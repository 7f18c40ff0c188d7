//! The bare `psession-core` in a hand-written event loop: a UDP server and a
//! blocking UDP client, with no async runtime at all.
//!
//! The core does no I/O and reads no clock; the loop owns the socket and the
//! clock and feeds the core its inputs, then drains its outputs (the pattern
//! of `quinn-proto` and `str0m`). One turn of [`UdpServer`]'s loop:
//!
//! ```text
//! loop {
//!     // Wait for a datagram, but no longer than the core's next deadline.
//!     socket.set_read_timeout(manager.poll_timeout() - now)
//!     let received = socket.recv_from(&mut buffer)
//!     let now = Instant::now()
//!     // Inputs: the datagram (if one came), then time.
//!     if let Ok((len, peer)) = received {
//!         let message = wire::parse_frame(&buffer[..len], "sid")?   // bad input is logged
//!         manager.handle_inbound(port_of(peer), message, now)
//!     }
//!     if manager.poll_timeout() <= now { manager.handle_timeout(now) }
//!     // Outputs: events (answer requests), then datagrams to send.
//!     while let Some(event) = manager.poll_event() { ... manager.post(session, reply, now) ... }
//!     while let Some(transmit) = manager.poll_transmit() { socket.send_to(transmit.message, peer_of(transmit.port)) }
//! }
//! ```
//!
//! [`UdpClient`] runs the same loop, but only while one of its sends waits
//! for its reply: it returns when the core reports that send's
//! [`Event::Reply`] or [`Event::SendFailed`] (a timeout, after the retries
//! its [`SendOptions`] ask for).
//!
//! The protocol: a request is a JSON object in one datagram, with the
//! session id in its `"sid"` field.
//!
//! | request | answer |
//! |---|---|
//! | `{"sid":1,"command":"read","sensor":"temperature"}` | `{"sid":1,"status":"ok","sensor":"temperature","value":21.5}` |
//! | `{"sid":1,"command":"read","sensor":"humidity"}` | `{"sid":1,"status":"ok","sensor":"humidity","value":40}` |
//! | `{"sid":1,"command":"flaky","sensor":"temperature"}` | nothing the first time (a simulated loss); the retransmission (same sid) is answered like `read` |
//! | anything else | `{"sid":1,"status":"error","reason":"unknown command"}` |
//!
//! The server gives each peer address a psession port named by the address,
//! and ends each session once it has answered it (nothing on the wire says a
//! session is over, see the README's "Who ends a peer's session"). Its
//! memory stays bounded: at most [`ServerConfig::max_peers`] ports, each
//! destroyed after [`ServerConfig::peer_idle_time`] of silence, each with at
//! most [`ServerConfig::max_sessions_per_peer`] open sessions, and a session
//! left unanswered ends after [`ServerConfig::session_max_life`].
//!
//! ```
//! use psession_core::SendOptions;
//! use psession_examples::log::Log;
//! use psession_examples::udp::{ServerConfig, UdpClient, UdpServer};
//! use serde_json::json;
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let server = UdpServer::bind("127.0.0.1:0", ServerConfig::default(), Log::stdout("server"))?;
//! let address = server.local_addr();
//! let stop = Arc::new(AtomicBool::new(false));
//! let running = std::thread::spawn({
//!     let stop = stop.clone();
//!     move || server.run_until(&stop)
//! });
//!
//! let mut client = UdpClient::connect(address, Log::stdout("client"))?;
//! let options = SendOptions::default().timeout(Duration::from_secs(1));
//! let reply = client.request(json!({"command": "read", "sensor": "temperature"}), options)?;
//! assert_eq!(reply["value"], 21.5);
//!
//! stop.store(true, std::sync::atomic::Ordering::Relaxed);
//! let report = running.join().expect("the server does not panic")?;
//! assert_eq!(report.stats.live_sessions, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::log::Log;
use crate::wire::{parse_frame, MAX_FRAME_BYTES};
use psession_core::{
    Cause, CloseReason, DropReason, Event, Manager, ManagerConfig, PortId, PortOptions, Routed,
    SendId, SendOptions, SessionError, SessionId, SidPartition, Stats,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shortest socket read timeout (a zero timeout is refused by the socket).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Settings of a [`UdpServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most peers (source addresses) with a port at once. A datagram from a
    /// new address beyond it is logged and dropped, until an idle peer's
    /// port is destroyed. Default 1024.
    pub max_peers: usize,
    /// A peer that sends no well-formed datagram for this long loses its
    /// port, and its open sessions end. Default 60 s.
    pub peer_idle_time: Duration,
    /// Most sessions one peer may have open at once (the core's
    /// `max_incoming_sessions`); a request that would open another is
    /// logged and dropped. Default 16.
    pub max_sessions_per_peer: u32,
    /// A session left unanswered (a `"flaky"` request never retransmitted)
    /// ends after this long (the core's `session_max_life`). Default 30 s.
    pub session_max_life: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_peers: 1024,
            peer_idle_time: Duration::from_secs(60),
            max_sessions_per_peer: 16,
            session_max_life: Duration::from_secs(30),
        }
    }
}

/// What a [`UdpServer`] held when its loop stopped (nothing is cleaned up
/// first, so a test can check that nothing leaked).
#[derive(Debug, Clone, Copy)]
pub struct ServerReport {
    /// The core's counts: live sessions, waiting sends, queued outputs,
    /// timers, and its counters (dropped messages, expired sessions, ...).
    pub stats: Stats,
    /// Peers with a port.
    pub peers: usize,
    /// Most peers that had a port at the same time.
    pub peak_peers: usize,
}

/// One peer address the server has heard from.
struct Peer {
    port: PortId,
    last_heard: Instant,
}

/// A UDP request/response server on the bare `psession-core`: one socket,
/// one port per peer address, one loop on the calling thread.
pub struct UdpServer {
    socket: UdpSocket,
    local_addr: SocketAddr,
    manager: Manager,
    config: ServerConfig,
    peers: HashMap<SocketAddr, Peer>,
    peak_peers: usize,
    /// No peer can be idle before this: the earliest `last_heard +
    /// peer_idle_time` when it was computed (peers heard from since then go
    /// idle later), so idle ports are looked for only when it has passed.
    idle_check_at: Option<Instant>,
    /// Sessions whose first `"flaky"` request was ignored; their
    /// retransmission is answered.
    flaky_ignored: HashSet<SessionId>,
    log: Log,
}

impl UdpServer {
    /// How often [`run_until`](Self::run_until) checks its stop flag, at
    /// the longest.
    pub const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

    /// Binds a UDP socket to `address` (port 0 picks a free one).
    pub fn bind(address: impl ToSocketAddrs, config: ServerConfig, log: Log) -> io::Result<Self> {
        let socket = UdpSocket::bind(address)?;
        let manager_config = ManagerConfig::default()
            .max_incoming_sessions(config.max_sessions_per_peer)
            .session_max_life(config.session_max_life);
        Ok(UdpServer {
            local_addr: socket.local_addr()?,
            socket,
            manager: Manager::new(manager_config).map_err(io::Error::other)?,
            config,
            peers: HashMap::new(),
            peak_peers: 0,
            idle_check_at: None,
            flaky_ignored: HashSet::new(),
            log,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a socket error.
    pub fn run(self) -> io::Result<ServerReport> {
        self.run_until(&AtomicBool::new(false))
    }

    /// Serves until `stop` is set (checked at least every
    /// [`STOP_CHECK_INTERVAL`](Self::STOP_CHECK_INTERVAL)) or a socket
    /// error, and reports what the server held then.
    pub fn run_until(mut self, stop: &AtomicBool) -> io::Result<ServerReport> {
        let mut buffer = vec![0; MAX_FRAME_BYTES + 1];
        while !stop.load(Ordering::Relaxed) {
            // Wait for a datagram, but no longer than the next deadline.
            let wait = self.time_to_next_deadline(Instant::now());
            self.socket.set_read_timeout(Some(wait))?;
            let received = self.socket.recv_from(&mut buffer);
            let now = Instant::now();

            // Inputs: the datagram, then time.
            match received {
                Ok((len, peer)) => self.handle_datagram(peer, &buffer[..len], now),
                Err(error) if is_timeout(&error) => {}
                // Windows reports an earlier datagram's ICMP "port
                // unreachable" here; it is about one peer, so keep serving.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    self.log.line(format!("a peer is unreachable: {error}"));
                }
                Err(error) => return Err(error),
            }
            if self.manager.poll_timeout().is_some_and(|at| at <= now) {
                self.manager.handle_timeout(now);
            }
            if self.idle_check_at.is_some_and(|at| at <= now) {
                self.destroy_idle_peers(now);
            }

            // Outputs: events (answering requests posts replies), then the
            // datagrams to send.
            self.handle_events(now);
            self.send_transmits();
        }
        Ok(ServerReport {
            stats: self.manager.stats(),
            peers: self.peers.len(),
            peak_peers: self.peak_peers,
        })
    }

    /// How long the socket may wait: until the core's next deadline or the
    /// next idle check, and at most until the stop flag's next check.
    fn time_to_next_deadline(&mut self, now: Instant) -> Duration {
        let next = self
            .manager
            .poll_timeout()
            .into_iter()
            .chain(self.idle_check_at)
            .min();
        next.map_or(Self::STOP_CHECK_INTERVAL, |at| {
            at.saturating_duration_since(now)
        })
        .clamp(MIN_WAIT, Self::STOP_CHECK_INTERVAL)
    }

    fn handle_datagram(&mut self, peer: SocketAddr, bytes: &[u8], now: Instant) {
        let message = match parse_frame(bytes, self.manager.session_id_name()) {
            Ok(message) => message,
            Err(reason) => return self.log.line(format!("bad datagram from {peer}: {reason}")),
        };
        let Some(port) = self.port_of(peer, now) else {
            return;
        };
        // Replies, incoming sessions and drops come out as events.
        if let Routed::NotSession(_) = self.manager.handle_inbound(port, message, now) {
            self.log.line(format!(
                "datagram from {peer} ignored: not a session message (no \"sid\")"
            ));
        }
    }

    /// The peer's port, created on its first well-formed datagram (unless
    /// `max_peers` peers have one already). Refreshes its idle time.
    fn port_of(&mut self, peer: SocketAddr, now: Instant) -> Option<PortId> {
        if let Some(known) = self.peers.get_mut(&peer) {
            known.last_heard = now;
            return Some(known.port);
        }
        if self.peers.len() >= self.config.max_peers {
            let limit = self.config.max_peers;
            self.log.line(format!(
                "peer limit ({limit}) reached: datagram from {peer} dropped"
            ));
            return None;
        }
        let port = match self
            .manager
            .create_port(&peer.to_string(), PortOptions::default())
        {
            Ok(port) => port,
            Err(error) => {
                self.log.line(format!("no port for {peer}: {error}"));
                return None;
            }
        };
        self.peers.insert(
            peer,
            Peer {
                port,
                last_heard: now,
            },
        );
        self.peak_peers = self.peak_peers.max(self.peers.len());
        let idle_at = now.checked_add(self.config.peer_idle_time);
        self.idle_check_at = self.idle_check_at.into_iter().chain(idle_at).min();
        self.log.line(format!(
            "new peer {peer} ({} of at most {})",
            self.peers.len(),
            self.config.max_peers
        ));
        Some(port)
    }

    /// Destroys the ports of peers silent for `peer_idle_time` (ending
    /// their sessions) and computes when to look again.
    fn destroy_idle_peers(&mut self, now: Instant) {
        let idle_time = self.config.peer_idle_time;
        let (manager, log) = (&mut self.manager, &self.log);
        self.peers.retain(|address, peer| {
            if now.saturating_duration_since(peer.last_heard) < idle_time {
                return true;
            }
            let sessions = manager.port_stats(peer.port).map_or(0, |s| s.live_sessions);
            // The port exists: only this loop destroys ports.
            let _ = manager.destroy_port(peer.port);
            log.line(format!(
                "peer {address} idle for {idle_time:?}: port destroyed, {sessions} session(s) ended"
            ));
            false
        });
        self.idle_check_at = self
            .peers
            .values()
            .filter_map(|peer| peer.last_heard.checked_add(idle_time))
            .min();
    }

    fn handle_events(&mut self, now: Instant) {
        while let Some(event) = self.manager.poll_event() {
            match event {
                Event::Incoming { session } | Event::Readable { session } => {
                    self.answer(session, now);
                }
                Event::Closed { session, reason } => {
                    self.flaky_ignored.remove(&session);
                    if reason == CloseReason::Expired {
                        let peer = self.peer_name(session.port());
                        self.log.line(format!(
                            "sid {} from {peer} expired unanswered",
                            session.sid()
                        ));
                    }
                }
                Event::Dropped { port, sid, reason } => {
                    let peer = self.peer_name(port);
                    self.log.line(format!(
                        "dropped sid {sid} from {peer}: {}",
                        describe(reason)
                    ));
                }
                // The server never sends, so no Reply or SendFailed.
                _ => {}
            }
        }
    }

    /// Answers the requests queued on a peer's session, then ends it.
    fn answer(&mut self, session: SessionId, now: Instant) {
        let peer = self.peer_name(session.port());
        let sid = session.sid();
        // Once the session has ended, recv refuses it and the loop stops.
        while let Ok(Some(request)) = self.manager.recv(session) {
            if request["command"] == "flaky" && self.flaky_ignored.insert(session) {
                self.log.line(format!(
                    "sid {sid} from {peer}: flaky request, first delivery ignored (simulated loss)"
                ));
                continue;
            }
            let reply = reply_to(&request);
            self.log
                .line(format!("sid {sid} from {peer}: answered {reply}"));
            let answered = self.manager.post(session, reply, now);
            if let Err(error) = answered.and_then(|()| self.manager.end(session)) {
                self.log.line(format!("sid {sid} from {peer}: {error}"));
            }
        }
    }

    fn send_transmits(&mut self) {
        while let Some(transmit) = self.manager.poll_transmit() {
            // Each peer's port is named by its address.
            let peer = self
                .manager
                .port_name(transmit.port)
                .map(str::parse::<SocketAddr>);
            let Some(Ok(peer)) = peer else { continue };
            let datagram = transmit.message.to_string();
            if let Err(error) = self.socket.send_to(datagram.as_bytes(), peer) {
                self.log.line(format!("cannot send to {peer}: {error}"));
            }
        }
    }

    /// A peer's address, for the log (its port is named by it).
    fn peer_name(&self, port: PortId) -> String {
        self.manager
            .port_name(port)
            .unwrap_or("a former peer")
            .to_owned()
    }
}

/// The server's answer to one request.
fn reply_to(request: &Value) -> Value {
    let sensor = request["sensor"].as_str();
    match (request["command"].as_str(), sensor) {
        (Some("read" | "flaky"), Some("temperature")) => {
            json!({"status": "ok", "sensor": "temperature", "value": 21.5})
        }
        (Some("read" | "flaky"), Some("humidity")) => {
            json!({"status": "ok", "sensor": "humidity", "value": 40})
        }
        (Some("read" | "flaky"), _) => json!({"status": "error", "reason": "unknown sensor"}),
        _ => json!({"status": "error", "reason": "unknown command"}),
    }
}

fn describe(reason: DropReason) -> &'static str {
    match reason {
        DropReason::IncomingLimit => "too many open sessions from this peer",
        DropReason::InboxFull => "too many requests queued on this session",
        DropReason::UnknownSid => "no session has this sid any more",
        DropReason::NoSuchPort => "the peer's port is gone",
    }
}

fn is_timeout(error: &io::Error) -> bool {
    // Unix says WouldBlock when a read timeout passes, Windows TimedOut.
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A blocking UDP client on the bare `psession-core`: it runs the core's
/// loop while one of its sends waits for the reply.
///
/// Its port uses [`SidPartition::Odd`]: the server never opens sessions, so
/// sids cannot collide, but a reply that arrives after its session has ended
/// here (a retransmission answered twice, a reply after a timeout) carries
/// an odd sid the client no longer has, and the partition makes the core
/// drop it ([`DropReason::UnknownSid`]) instead of opening an incoming
/// session nobody would read. The server's ports keep the default
/// partition, so it serves clients that use every sid.
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
    manager: Manager,
    /// The send of the last transmission, to mark retransmissions in the log.
    last_sent: Option<SendId>,
    log: Log,
}

impl UdpClient {
    /// How long a send waits for its reply when its [`SendOptions`] say
    /// nothing.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Binds a socket on an ephemeral port of the server's IP family and
    /// connects it to `server` (the first address it resolves to), so that
    /// only the server's datagrams reach it.
    pub fn connect(server: impl ToSocketAddrs, log: Log) -> io::Result<Self> {
        let server = server.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        })?;
        let any: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any)?;
        socket.connect(server)?;
        let config = ManagerConfig::default()
            .session_timeout(Self::DEFAULT_TIMEOUT)
            .partition(SidPartition::Odd);
        Ok(UdpClient {
            socket,
            server,
            manager: Manager::new(config).map_err(io::Error::other)?,
            last_sent: None,
            log,
        })
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// One request: opens a session, sends `message` and waits for the
    /// reply (or the failure: [`SessionError::Timeout`] after the retries
    /// `options` allow, [`SessionError::Transport`] if the socket fails),
    /// then ends the session.
    pub fn request(&mut self, message: Value, options: SendOptions) -> Result<Value, SessionError> {
        let session = self.open_session()?;
        let reply = self.send(session, message, options);
        self.end(session)?;
        reply
    }

    /// Opens a session for [`send`](Self::send); end it with
    /// [`end`](Self::end).
    pub fn open_session(&mut self) -> Result<SessionId, SessionError> {
        let port = self.manager.default_port();
        self.manager.open_session(port, Instant::now())
    }

    /// Sends `message` on `session` (tagged with its sid) and waits for the
    /// reply; a session can carry any number of sends, one after another.
    pub fn send(
        &mut self,
        session: SessionId,
        message: Value,
        options: SendOptions,
    ) -> Result<Value, SessionError> {
        let send = self
            .manager
            .send(session, message, options, Instant::now())?;
        self.wait_for(send)
    }

    /// Ends a session.
    pub fn end(&mut self, session: SessionId) -> Result<(), SessionError> {
        self.manager.end(session)
    }

    /// What the client's core holds now (live sessions, waiting sends,
    /// queued outputs), and its counters.
    pub fn stats(&self) -> Stats {
        self.manager.stats()
    }

    /// Runs the loop until `send` completes.
    fn wait_for(&mut self, send: SendId) -> Result<Value, SessionError> {
        let mut buffer = vec![0; MAX_FRAME_BYTES + 1];
        loop {
            // Outputs of the last input: datagrams to send, then events.
            self.send_transmits();
            let mut outcome = None;
            while let Some(event) = self.manager.poll_event() {
                match event {
                    Event::Reply {
                        send: s, message, ..
                    } if s == send => outcome = Some(Ok(message)),
                    Event::SendFailed { send: s, error, .. } if s == send => {
                        outcome = Some(Err(error));
                    }
                    other => self.handle_other_event(other),
                }
            }
            if let Some(outcome) = outcome {
                return outcome;
            }

            // Wait for a datagram, but no longer than the next deadline
            // (a waiting send always has one, unless its timeout is
            // Duration::MAX).
            let now = Instant::now();
            let wait = self
                .manager
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now).max(MIN_WAIT));
            let received = self
                .socket
                .set_read_timeout(wait)
                .and_then(|()| self.socket.recv(&mut buffer));
            let now = Instant::now();

            // Inputs: the datagram, or time, or the socket's failure.
            match received {
                Ok(len) => self.handle_datagram(&buffer[..len], now),
                Err(error) if is_timeout(&error) => self.manager.handle_timeout(now),
                // On a connected socket, "connection refused" is the ICMP
                // answer to an earlier datagram: nothing listens there.
                Err(error) => {
                    self.manager
                        .handle_transmit_error(send, Cause::new(error), now);
                }
            }
        }
    }

    fn handle_datagram(&mut self, bytes: &[u8], now: Instant) {
        let message = match parse_frame(bytes, self.manager.session_id_name()) {
            Ok(message) => message,
            Err(reason) => {
                return self
                    .log
                    .line(format!("bad datagram from the server: {reason}"))
            }
        };
        self.log.line(format!("← {message}"));
        let port = self.manager.default_port();
        if let Routed::NotSession(_) = self.manager.handle_inbound(port, message, now) {
            self.log.line("ignored: not a session message (no \"sid\")");
        }
    }

    /// Events that are not the outcome of the send being waited for.
    fn handle_other_event(&mut self, event: Event<Value>) {
        match event {
            // A message on a live session with no send waiting: a reply
            // that came after its send timed out.
            Event::Readable { session } => {
                while let Ok(Some(message)) = self.manager.recv(session) {
                    self.log.line(format!("late reply ignored: {message}"));
                }
            }
            // The server opened a session (this one never does).
            Event::Incoming { session } => {
                self.log.line(format!(
                    "the server opened sid {}: this client serves nothing, ended",
                    session.sid()
                ));
                let _ = self.manager.end(session);
            }
            Event::Dropped { sid, reason, .. } => {
                self.log
                    .line(format!("dropped sid {sid}: {}", describe(reason)));
            }
            _ => {}
        }
    }

    fn send_transmits(&mut self) {
        while let Some(transmit) = self.manager.poll_transmit() {
            let again = transmit.send.is_some() && transmit.send == self.last_sent;
            self.last_sent = transmit.send;
            let label = if again {
                "→ (retransmission) "
            } else {
                "→ "
            };
            self.log.line(format!("{label}{}", transmit.message));
            let datagram = transmit.message.to_string();
            if let Err(error) = self.socket.send(datagram.as_bytes()) {
                self.log
                    .line(format!("cannot send to {}: {error}", self.server));
                if let Some(send) = transmit.send {
                    self.manager
                        .handle_transmit_error(send, Cause::new(error), Instant::now());
                }
            }
        }
    }
}

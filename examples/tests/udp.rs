//! The UDP example: a server on 127.0.0.1:0 on its own thread, clients and
//! raw sockets talking to it. Every wait on the real clock is an upper
//! bound ([`LogLines::PATIENCE`]); only a configured short timeout is ever
//! waited out.

use psession_core::{SendOptions, SessionError};
use psession_examples::log::{Log, LogLines};
use psession_examples::udp::{ServerConfig, ServerReport, UdpClient, UdpServer};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server running on its own thread.
struct RunningServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<ServerReport>>,
}

impl RunningServer {
    fn start(config: ServerConfig) -> (Self, LogLines) {
        let (log, lines) = Log::capture("udp-server");
        let server = UdpServer::bind("127.0.0.1:0", config, log).expect("bind 127.0.0.1:0");
        let address = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || server.run_until(&stop)
        });
        (
            RunningServer {
                address,
                stop,
                thread,
            },
            lines,
        )
    }

    /// Stops the loop and returns what the server held then.
    fn stop(self) -> ServerReport {
        self.stop.store(true, Ordering::Relaxed);
        let outcome = self.thread.join().expect("the server does not panic");
        outcome.expect("the server's socket does not fail")
    }
}

fn client(server: SocketAddr) -> (UdpClient, LogLines) {
    let (log, lines) = Log::capture("udp-client");
    let client = UdpClient::connect(server, log).expect("bind and connect");
    (client, lines)
}

/// A socket that sends hand-made datagrams to the server.
fn raw_peer(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(LogLines::PATIENCE))
        .expect("set a read timeout");
    socket
}

fn send_json(socket: &UdpSocket, message: Value) {
    socket
        .send(message.to_string().as_bytes())
        .expect("send a datagram");
}

fn receive_json(socket: &UdpSocket) -> Value {
    let mut buffer = vec![0; 65536];
    let len = socket
        .recv(&mut buffer)
        .expect("a reply within the patience");
    serde_json::from_slice(&buffer[..len]).expect("the server sends JSON")
}

fn wait_for(lines: &mut LogLines, needle: &str) -> String {
    smol::block_on(lines.wait_for(needle))
}

/// A timeout so long that only a broken server ever reaches it.
fn patient() -> SendOptions {
    SendOptions::default().timeout(LogLines::PATIENCE)
}

fn read(sensor: &str) -> Value {
    json!({"command": "read", "sensor": sensor})
}

#[test]
fn reads_and_unknown_requests_are_answered() {
    let (server, _lines) = RunningServer::start(ServerConfig::default());
    let (mut client, _client_lines) = client(server.address);

    let reply = client.request(read("temperature"), patient()).unwrap();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["sensor"], "temperature");
    assert_eq!(reply["value"], 21.5);

    let reply = client.request(read("pressure"), patient()).unwrap();
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["reason"], "unknown sensor");

    let reply = client
        .request(json!({"command": "dance"}), patient())
        .unwrap();
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["reason"], "unknown command");

    let stats = client.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
    server.stop();
}

#[test]
fn two_sends_on_one_client_session_share_its_sid() {
    let (server, _lines) = RunningServer::start(ServerConfig::default());
    let (mut client, mut client_lines) = client(server.address);

    let session = client.open_session().unwrap();
    let first = client
        .send(session, read("temperature"), patient())
        .unwrap();
    let second = client.send(session, read("humidity"), patient()).unwrap();
    client.end(session).unwrap();

    assert_eq!(first["value"], 21.5);
    assert_eq!(second["value"], 40);
    assert_eq!(first["sid"], session.sid());
    assert_eq!(second["sid"], session.sid());
    let sid = format!("\"sid\":{}", session.sid());
    assert!(wait_for(&mut client_lines, "temperature").contains(&sid));
    assert!(wait_for(&mut client_lines, "humidity").contains(&sid));
    assert_eq!(client.stats().live_sessions, 0);
    server.stop();
}

#[test]
fn a_flaky_request_is_answered_on_its_retransmission() {
    let (server, mut lines) = RunningServer::start(ServerConfig::default());
    let (mut client, mut client_lines) = client(server.address);

    // The first attempt is always ignored; many retries so that a slow
    // machine, answering after the second attempt's timeout, still passes.
    let options = SendOptions::default()
        .timeout(Duration::from_millis(300))
        .retries(50, Duration::from_millis(50));
    let request = json!({"command": "flaky", "sensor": "temperature"});
    let reply = client.request(request, options).unwrap();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["value"], 21.5);

    let ignored = wait_for(&mut lines, "first delivery ignored");
    assert!(ignored.contains("sid 1 from"), "{ignored}");
    let answered = wait_for(&mut lines, "answered");
    assert!(answered.contains("sid 1 from"), "{answered}");
    let first = wait_for(&mut client_lines, "→");
    let again = wait_for(&mut client_lines, "→ (retransmission)");
    for line in [first, again] {
        assert!(
            line.contains("flaky") && line.contains("\"sid\":1"),
            "{line}"
        );
    }
    server.stop();
}

#[test]
fn a_request_nobody_answers_times_out() {
    // A socket that never reads: no reply, and no ICMP error either.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut client, _lines) = client(silent.local_addr().unwrap());

    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let outcome = client.request(read("temperature"), SendOptions::default().timeout(timeout));
    assert!(matches!(outcome, Err(SessionError::Timeout)), "{outcome:?}");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let stats = client.stats();
    assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
}

#[test]
fn bad_datagrams_are_logged_and_the_server_keeps_serving() {
    let (server, mut lines) = RunningServer::start(ServerConfig::default());
    let peer = raw_peer(server.address);
    let me = peer.local_addr().unwrap();

    let bad: [(&[u8], &str); 4] = [
        (b"{oops", "invalid JSON"),
        (b"[1,2]", "not a JSON object (got an array)"),
        (
            br#"{"sid":"x"}"#,
            r#"field "sid" must be a positive integer"#,
        ),
        (&[0xff, 0xfe, 0x00], "not UTF-8"),
    ];
    for (datagram, reason) in bad {
        peer.send(datagram).unwrap();
        let line = wait_for(&mut lines, "bad datagram");
        assert!(line.contains(&format!("from {me}: {reason}")), "{line}");
    }
    send_json(&peer, json!({"hello": "world"}));
    let line = wait_for(&mut lines, "not a session message");
    assert!(line.contains(&me.to_string()), "{line}");

    // Odd but well-formed requests get an error reply.
    send_json(&peer, json!({"sid": 9, "command": 42}));
    assert_eq!(
        receive_json(&peer),
        json!({"sid": 9, "status": "error", "reason": "unknown command"})
    );

    let (mut client, _client_lines) = client(server.address);
    let reply = client.request(read("temperature"), patient()).unwrap();
    assert_eq!(reply["value"], 21.5);
    server.stop();
}

#[test]
fn peer_ports_are_capped() {
    let max_peers = 3;
    let config = ServerConfig {
        max_peers,
        ..ServerConfig::default()
    };
    let (server, mut lines) = RunningServer::start(config);
    let peers: Vec<UdpSocket> = (0..2 * max_peers)
        .map(|_| raw_peer(server.address))
        .collect();
    let (admitted, refused) = peers.split_at(max_peers);

    for peer in admitted {
        send_json(
            peer,
            json!({"sid": 1, "command": "read", "sensor": "temperature"}),
        );
        assert_eq!(receive_json(peer)["value"], 21.5);
    }
    for peer in refused {
        send_json(
            peer,
            json!({"sid": 1, "command": "read", "sensor": "temperature"}),
        );
        let line = wait_for(&mut lines, "peer limit");
        let expected = format!(
            "peer limit (3) reached: datagram from {}",
            peer.local_addr().unwrap()
        );
        assert!(line.contains(&expected), "{line}");
    }

    let report = server.stop();
    assert_eq!(report.peers, max_peers);
    assert_eq!(report.peak_peers, max_peers);
    assert_eq!(
        report.stats.ports,
        max_peers + 1,
        "the peers' and \"default\""
    );
}

#[test]
fn idle_peer_ports_are_destroyed_with_their_sessions() {
    let config = ServerConfig {
        peer_idle_time: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (server, mut lines) = RunningServer::start(config);

    // One peer leaves a session open (a flaky request never retransmitted),
    // another finishes its request.
    let flaky_peer = raw_peer(server.address);
    send_json(
        &flaky_peer,
        json!({"sid": 1, "command": "flaky", "sensor": "humidity"}),
    );
    wait_for(&mut lines, "first delivery ignored");
    let (mut client, _client_lines) = client(server.address);
    client.request(read("temperature"), patient()).unwrap();

    let mut destroyed = vec![
        wait_for(&mut lines, "port destroyed"),
        wait_for(&mut lines, "port destroyed"),
    ];
    destroyed.sort_by_key(|line| !line.contains(&flaky_peer.local_addr().unwrap().to_string()));
    assert!(
        destroyed[0].contains("idle for 200ms: port destroyed, 1 session(s) ended"),
        "{destroyed:?}"
    );
    assert!(
        destroyed[1].contains("port destroyed, 0 session(s) ended"),
        "{destroyed:?}"
    );

    let report = server.stop();
    assert_eq!(report.peers, 0);
    assert_eq!(report.stats.ports, 1, "only \"default\" is left");
    assert_eq!(report.stats.live_sessions, 0);
    assert_eq!(report.stats.timer_entries, 0);
}

#[test]
fn open_sessions_per_peer_are_capped() {
    let config = ServerConfig {
        max_sessions_per_peer: 4,
        ..ServerConfig::default()
    };
    let (server, mut lines) = RunningServer::start(config);
    let peer = raw_peer(server.address);

    // Each flaky request opens a session the server leaves open.
    for sid in 1..=10 {
        send_json(
            &peer,
            json!({"sid": sid, "command": "flaky", "sensor": "humidity"}),
        );
    }
    for sid in 5..=10 {
        let line = wait_for(&mut lines, &format!("dropped sid {sid} from"));
        assert!(
            line.contains("too many open sessions from this peer"),
            "{line}"
        );
    }
    // The open ones are still served.
    send_json(
        &peer,
        json!({"sid": 2, "command": "flaky", "sensor": "humidity"}),
    );
    assert_eq!(receive_json(&peer)["sid"], 2);

    let report = server.stop();
    assert_eq!(report.stats.live_sessions, 3);
    assert_eq!(report.stats.counters.incoming_refused, 6);
}

#[test]
fn unanswered_sessions_expire() {
    let config = ServerConfig {
        session_max_life: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (server, mut lines) = RunningServer::start(config);
    let peer = raw_peer(server.address);

    send_json(
        &peer,
        json!({"sid": 7, "command": "flaky", "sensor": "humidity"}),
    );
    let line = wait_for(&mut lines, "expired unanswered");
    assert!(
        line.contains(&format!("sid 7 from {}", peer.local_addr().unwrap())),
        "{line}"
    );

    let report = server.stop();
    assert_eq!(report.stats.live_sessions, 0);
    assert_eq!(report.stats.counters.expired_sessions, 1);
    assert_eq!(report.peers, 1, "the peer itself is not idle yet");
}

#[test]
fn after_clients_finish_the_server_holds_no_sessions() {
    let (server, _lines) = RunningServer::start(ServerConfig::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let address = server.address;
            std::thread::spawn(move || {
                let (mut client, _lines) = client(address);
                for _ in 0..5 {
                    client.request(read("temperature"), patient()).unwrap();
                    client
                        .request(json!({"command": "dance"}), patient())
                        .unwrap();
                }
                let session = client.open_session().unwrap();
                client.send(session, read("humidity"), patient()).unwrap();
                client.send(session, read("humidity"), patient()).unwrap();
                client.end(session).unwrap();
                client.stats()
            })
        })
        .collect();
    for client in clients {
        let stats = client.join().expect("the client does not panic");
        assert_eq!((stats.live_sessions, stats.waiting_sends), (0, 0));
    }

    let report = server.stop();
    assert_eq!(report.peers, 4);
    let stats = report.stats;
    assert_eq!(stats.live_sessions, 0);
    assert_eq!(stats.waiting_sends, 0);
    assert_eq!(stats.queued_messages, 0);
    assert_eq!(stats.queued_transmits, 0);
    assert_eq!(stats.queued_events, 0);
    assert_eq!(stats.timer_entries, 0);
}

//! The TCP time server and client on 127.0.0.1:0, on smol: `getTime` through
//! the events stream, one port per client, and a server that survives bad
//! lines and dropped connections with nothing left behind.

mod common;

use common::eventually;
use psession_examples::log::{Log, LogLines};
use psession_examples::tcp::{ServerOptions, TimeClient, TimeServer};
use psession_examples::wire::MAX_FRAME_BYTES;
use psession_smol::SessionError;
use serde_json::{json, Value};
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::net::TcpStream;
use std::time::Duration;

async fn server() -> (TimeServer, LogLines) {
    let (log, lines) = Log::capture("server");
    // Sessions must end because they are answered, not because they expire.
    let options = ServerOptions {
        session_max_life: Duration::from_secs(600),
        ..ServerOptions::default()
    };
    let server = TimeServer::bind("127.0.0.1:0", options, log)
        .await
        .expect("bind 127.0.0.1:0");
    (server, lines)
}

async fn client(server: &TimeServer) -> TimeClient {
    let (log, _) = Log::capture("client");
    TimeClient::connect(server.local_addr(), Duration::from_secs(10), log)
        .await
        .expect("connect")
}

/// A client that writes raw lines and reads the server's lines.
struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    async fn connect(server: &TimeServer) -> RawClient {
        let stream = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        RawClient {
            reader: BufReader::new(stream.clone()),
            writer: stream,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    async fn read_json(&mut self) -> Value {
        let mut line = String::new();
        let read = smol::future::or(
            async { Some(self.reader.read_line(&mut line).await) },
            async {
                smol::Timer::after(common::PATIENCE).await;
                None
            },
        )
        .await;
        assert!(
            matches!(read, Some(Ok(n)) if n > 0),
            "no line in time: {read:?}"
        );
        serde_json::from_str(&line).expect("the server sends JSON lines")
    }
}

async fn assert_nothing_left(server: &TimeServer) {
    common::assert_nothing_left(|| server.connected_clients(), || server.stats()).await;
}

#[test]
fn get_time_is_answered_through_the_events_stream() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        let client = client(&server).await;

        for _ in 0..3 {
            let time = client.get_time().await.expect("the time");
            let parsed = humantime::parse_rfc3339(&time).expect("RFC 3339");
            let skew = std::time::SystemTime::now()
                .duration_since(parsed)
                .unwrap_or_default();
            assert!(skew < Duration::from_secs(60), "{time}");
        }
        let line = log.wait_for("\"getTime\" -> \"success\"").await;
        assert!(line.starts_with("[server] session 1:"), "{line}");
        // Each session is ended once answered: nothing stays open.
        eventually("answered sessions end", || {
            server.stats().live_sessions == 0
        })
        .await;

        let refused = client
            .request(json!({ "command": "reboot" }))
            .await
            .unwrap();
        assert_eq!(refused["status"], "error");
        assert_eq!(refused["reason"], "unknown command");

        drop(client);
        log.wait_for("disconnected (closed)").await;
        assert_nothing_left(&server).await;
    })
}

#[test]
fn each_client_has_its_own_port() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        let clients = [
            client(&server).await,
            client(&server).await,
            client(&server).await,
        ];
        eventually("three ports", || server.stats().ports == 4).await;
        for _ in 0..3 {
            log.wait_for("connected").await;
        }
        // Every client numbers its sessions from 1: the ports keep them apart.
        let times = clients.iter().map(|client| client.get_time());
        for time in futures_util::future::join_all(times).await {
            time.expect("each client is answered");
        }
        assert_eq!(server.connected_clients(), 3);
        drop(clients);
        assert_nothing_left(&server).await;
    })
}

#[test]
fn bad_lines_are_logged_and_the_server_keeps_serving() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        let mut raw = RawClient::connect(&server).await;
        let cases: [(&[u8], &str); 5] = [
            (b"not json at all\n", "bad line ignored: invalid JSON"),
            (b"\"a string\"\n", "not a JSON object (got a string)"),
            (
                b"{\"sid\":\"1\",\"command\":\"getTime\"}\n",
                "field \"sid\" must be a positive integer",
            ),
            (b"{\"sid\":1.5}\n", "got 1.5"),
            (b"\xff\xfe\n", "bad line ignored: not UTF-8"),
        ];
        for (line, expected) in cases {
            raw.write(line).await;
            let logged = log.wait_for("bad line ignored").await;
            assert!(
                logged.contains(expected),
                "{logged} should contain {expected}"
            );
        }
        raw.write(b"{\"hello\":1}\n").await;
        log.wait_for("plain message (not a session)").await;

        // The same connection still gets the time...
        raw.write(b"{\"sid\":9,\"command\":\"getTime\"}\r\n").await;
        let answer = raw.read_json().await;
        assert_eq!(answer["sid"], 9);
        assert_eq!(answer["status"], "success");
        // ...and so does everyone else.
        client(&server).await.get_time().await.expect("served");

        drop(raw);
        assert_nothing_left(&server).await;
    })
}

#[test]
fn an_endless_line_ends_only_that_connection() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        let client = client(&server).await;
        let mut raw = RawClient::connect(&server).await;

        // More than the limit and no newline: refused before it is buffered.
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..(MAX_FRAME_BYTES / chunk.len() + 2) {
            if raw.writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let line = log.wait_for("disconnected (a line longer than").await;
        assert!(line.contains(&MAX_FRAME_BYTES.to_string()), "{line}");

        client.get_time().await.expect("still served");
        drop((client, raw));
        assert_nothing_left(&server).await;
    })
}

#[test]
fn a_flood_of_sessions_is_capped_and_a_client_gone_mid_burst_leaves_nothing() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        let mut raw = RawClient::connect(&server).await;
        raw.write(b"{\"sid\":1,\"command\":\"getTime\"}\n").await;
        assert_eq!(raw.read_json().await["sid"], 1);
        // Thousands of new sessions at once, never reading the answers,
        // then gone half a line in.
        let mut burst = Vec::new();
        for sid in 0..20_000u32 {
            let line = format!("{{\"sid\":{},\"command\":\"getTime\"}}\n", sid + 2);
            burst.extend_from_slice(line.as_bytes());
        }
        burst.extend_from_slice(b"{\"sid\":5,\"command\":\"get");
        raw.write(&burst).await;
        // The server holds at most max_sessions_per_client of them at once;
        // the others are refused and counted.
        let cap = ServerOptions::default().max_sessions_per_client;
        log.wait_for("session message dropped: IncomingLimit").await;
        eventually("the burst is read", || {
            let stats = server.stats();
            stats.counters.incoming_refused > 0 && stats.live_sessions <= cap as usize
        })
        .await;
        drop(raw);

        log.wait_for("disconnected").await;
        assert_nothing_left(&server).await;
        // A new client is served as before.
        client(&server).await.get_time().await.expect("served");
    })
}

#[test]
fn a_client_that_closes_its_writing_half_still_gets_its_answers() {
    smol::block_on(async {
        let (server, mut log) = server().await;
        for _ in 0..5 {
            let mut raw = RawClient::connect(&server).await;
            raw.write(
                b"{\"sid\":1,\"command\":\"getTime\"}\n{\"sid\":2,\"command\":\"getTime\"}\n",
            )
            .await;
            raw.writer.shutdown(std::net::Shutdown::Write).unwrap();
            let (first, second) = (raw.read_json().await, raw.read_json().await);
            let mut sids = [first["sid"].as_u64(), second["sid"].as_u64()];
            sids.sort();
            assert_eq!(sids, [Some(1), Some(2)]);
            log.wait_for("disconnected (closed)").await;
        }
        assert_nothing_left(&server).await;
    })
}

#[test]
fn a_silent_client_is_let_go() {
    smol::block_on(async {
        let (log, mut lines) = Log::capture("server");
        let options = ServerOptions {
            idle_timeout: Duration::from_millis(300),
            ..ServerOptions::default()
        };
        let server = TimeServer::bind("127.0.0.1:0", options, log).await.unwrap();
        let mut raw = RawClient::connect(&server).await;
        lines.wait_for("disconnected (silent for 300ms)").await;
        let mut line = String::new();
        let read = raw.reader.read_line(&mut line).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed by the server: {read:?}"
        );
        assert_nothing_left(&server).await;
    })
}

#[test]
fn a_client_fails_at_once_when_the_server_goes_away() {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, mut lines) = Log::capture("client");
        let client = TimeClient::connect(addr, Duration::from_secs(60), log)
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();

        let request = client.get_time();
        let hang_up = async {
            // The request is on the wire before the server hangs up.
            let mut line = String::new();
            BufReader::new(peer.clone())
                .read_line(&mut line)
                .await
                .unwrap();
            drop(peer);
            std::future::pending::<()>().await;
        };
        let failed = smol::future::or(async { request.await.err() }, async {
            hang_up.await;
            None
        })
        .await;
        assert!(
            matches!(
                failed,
                Some(psession_examples::tcp::ClientError::Session(
                    SessionError::Aborted(_)
                ))
            ),
            "{failed:?}"
        );
        lines.wait_for("connection closed").await;
    })
}

#[test]
fn a_dropped_server_still_serves_its_connected_clients() {
    smol::block_on(async {
        let (server, _log) = server().await;
        let client = client(&server).await;
        // Connected is not yet accepted: a connection still in the
        // listener's backlog goes with the listener.
        eventually("the server accepted the client", || {
            server.connected_clients() == 1
        })
        .await;
        drop(server);
        client.get_time().await.expect("still served");
    })
}

#[test]
fn requests_after_the_server_hung_up_fail_at_once() {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, mut lines) = Log::capture("client");
        let client = TimeClient::connect(addr, Duration::from_secs(60), log)
            .await
            .unwrap();
        drop(listener.accept().await.unwrap());
        lines.wait_for("connection closed").await;
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let failed = client.get_time().await;
            assert!(
                matches!(
                    failed,
                    Err(psession_examples::tcp::ClientError::Session(
                        SessionError::Transport(_)
                    ))
                ),
                "{failed:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not at the 60 s timeout"
        );
    })
}

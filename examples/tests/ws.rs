//! The WebSocket device server and client on 127.0.0.1:0: the quick start's
//! conversation, the server's command sessions, retries and timeouts, and a
//! server that survives bad frames and dropped connections with nothing
//! left behind.

mod common;

use common::eventually;
use futures_util::{SinkExt, StreamExt};
use psession_examples::log::{Log, LogLines};
use psession_examples::ws::{
    ClientError, ClientOptions, DeviceClient, DeviceServer, ServerOptions,
};
use psession_tokio::{SendOptions, SessionError};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type RawClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn options() -> ServerOptions {
    ServerOptions {
        command_work: Duration::from_millis(20),
        slow_device_delay: Duration::from_secs(30),
        // Sessions must be ended by what the test does, not by expiry.
        session_max_life: Duration::from_secs(600),
        ..ServerOptions::default()
    }
}

async fn server() -> (DeviceServer, LogLines) {
    server_with(options()).await
}

async fn server_with(options: ServerOptions) -> (DeviceServer, LogLines) {
    let (log, lines) = Log::capture("server");
    let server = DeviceServer::bind("127.0.0.1:0", options, log)
        .await
        .expect("bind 127.0.0.1:0");
    (server, lines)
}

async fn client(server: &DeviceServer, name: &str) -> (DeviceClient, LogLines) {
    let (log, lines) = Log::capture(name);
    let url = format!("ws://{}", server.local_addr());
    let client = DeviceClient::connect(&url, ClientOptions::default(), log)
        .await
        .expect("connect");
    (client, lines)
}

async fn raw_client(server: &DeviceServer) -> RawClient {
    let url = format!("ws://{}", server.local_addr());
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The next text frame from the server, as JSON.
async fn next_json<S>(raw: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(common::PATIENCE, raw.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a good frame");
        if let Frame::Text(text) = frame {
            return serde_json::from_str(&text).expect("the server sends JSON");
        }
    }
}

/// With every client gone, the server holds only its default port, and no
/// session, send, queued message or transmission.
async fn assert_nothing_left(server: &DeviceServer) {
    common::assert_nothing_left(|| server.connected_clients(), || server.stats()).await;
}

#[tokio::test]
async fn the_quick_start_asks_for_the_list_then_the_details_on_one_session() {
    let (server, mut server_log) = server().await;
    let (client, _) = client(&server, "client").await;

    let (list, details) = client.device_list_then_details().await.expect("both turns");

    assert_eq!(list["devices"].as_array().map(Vec::len), Some(3));
    assert_eq!(list["devices"][0]["id"], "lamp-1");
    assert_eq!(details["device"]["id"], "lamp-1");
    assert_eq!(details["device"]["name"], "Desk lamp");
    // Both answers came back on the session the client opened (odd sids
    // are the client's).
    assert_eq!(list["sid"], details["sid"]);
    assert_eq!(list["sid"].as_u64().map(|sid| sid % 2), Some(1));
    server_log.wait_for("connected").await;

    client.close().await;
    server_log.wait_for("disconnected (closed)").await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_command_is_answered_on_a_session_the_server_opens() {
    let (server, mut server_log) = server().await;
    let (client, mut client_log) = client(&server, "client").await;

    let done = client
        .command("getStatus")
        .await
        .expect("the command completes");

    assert_eq!(done.command, "getStatus");
    assert_eq!(done.result, "command \"getStatus\" executed");
    let processing = client_log.wait_for("\"getStatus\" processing").await;
    let completed = client_log.wait_for("\"getStatus\" completed").await;
    // The server's session has an even sid, and both steps were on it.
    let sid = |line: &str| {
        line.split("server session ")
            .nth(1)
            .map(|s| s.split(':').next().map(str::to_owned))
    };
    assert_eq!(sid(&processing), sid(&completed));
    assert_eq!(sid(&processing), Some(Some("2".to_owned())));
    server_log
        .wait_for("\"getStatus\" completed and acknowledged")
        .await;

    client.close().await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_lost_request_is_retried_and_a_slow_one_times_out() {
    let (server, mut server_log) = server().await;
    let (client, _) = client(&server, "client").await;

    // The server ignores the first delivery; the retry is answered.
    let retried = SendOptions::default()
        .timeout(Duration::from_secs(1))
        .retries(3, Duration::from_millis(10));
    let status = client
        .query(
            json!({ "type": "query", "query": "getDeviceStatus", "deviceId": "thermo-1", "simulateLoss": 1 }),
            retried,
        )
        .await
        .expect("the retry is answered");
    assert_eq!(status["status"], "ok");
    server_log
        .wait_for("getDeviceStatus delivery 1 ignored")
        .await;

    // The slow device answers after 30 s; the client gives up at 200 ms.
    let started = std::time::Instant::now();
    let slow = client
        .query(
            json!({ "type": "query", "query": "getDeviceDetails", "deviceId": "cam-3" }),
            SendOptions::default().timeout(Duration::from_millis(200)),
        )
        .await;
    assert!(
        matches!(slow, Err(ClientError::Session(SessionError::Timeout))),
        "{slow:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    client.close().await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_disconnect_destroys_the_port_and_fails_the_command_waiting_on_it() {
    let (server, mut server_log) = server().await;
    let mut raw = raw_client(&server).await;

    raw.send(Frame::text(r#"{"type":"command","command":"getStatus"}"#))
        .await
        .unwrap();
    let processing = next_json(&mut raw).await;
    assert_eq!(processing["status"], "processing");
    assert_eq!(processing["sid"].as_u64().map(|sid| sid % 2), Some(0));
    assert_eq!(server.stats().waiting_sends, 1);

    // Gone without answering, without a close handshake.
    drop(raw);

    let failed = server_log.wait_for("command \"getStatus\" for").await;
    assert!(failed.contains("failed: session aborted"), "{failed}");
    assert!(failed.contains("disconnected"), "{failed}");
    server_log.wait_for("its port is destroyed").await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn bad_frames_are_logged_and_answered_and_the_server_keeps_serving() {
    let (server, mut server_log) = server().await;
    let mut raw = raw_client(&server).await;

    let cases: [(Frame, &str); 5] = [
        (
            Frame::text("this is not JSON"),
            "bad frame ignored: invalid JSON",
        ),
        (Frame::text("[1,2,3]"), "not a JSON object (got an array)"),
        (
            Frame::text(r#"{"sid":"7","type":"query","query":"getDeviceList"}"#),
            r#"field "sid" must be a positive integer below 2^32, got "7""#,
        ),
        (Frame::text(r#"{"sid":-1}"#), "got -1"),
        (
            Frame::binary(vec![0xff, 0xfe, 0x00]),
            "bad frame ignored: not UTF-8",
        ),
    ];
    for (frame, expected) in cases {
        raw.send(frame).await.unwrap();
        let line = server_log.wait_for("bad frame ignored").await;
        assert!(line.contains(expected), "{line} should contain {expected}");
        let answer = next_json(&mut raw).await;
        assert_eq!(answer["type"], "error", "{answer}");
    }
    raw.send(Frame::text(r#"{"type":"hello"}"#)).await.unwrap();
    server_log
        .wait_for("message ignored (neither a session nor a command)")
        .await;

    // The same connection still holds a conversation...
    raw.send(Frame::text(
        r#"{"sid":1,"type":"query","query":"getDeviceList"}"#,
    ))
    .await
    .unwrap();
    let answer = next_json(&mut raw).await;
    assert_eq!(answer["sid"], 1);
    assert_eq!(answer["devices"][0]["id"], "lamp-1");
    // ...and so does everyone else.
    let (client, _) = client(&server, "client").await;
    client.device_list_then_details().await.expect("served");

    client.close().await;
    raw.close(None).await.unwrap();
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn an_oversized_frame_ends_only_that_connection() {
    let (server, mut server_log) = server().await;
    let (client, _) = client(&server, "client").await;
    let mut raw = raw_client(&server).await;

    let huge = format!(r#"{{"junk":"{}"}}"#, "x".repeat(200 * 1024));
    let _ = raw.send(Frame::text(huge)).await;

    let line = server_log.wait_for("disconnected (connection error").await;
    assert!(
        line.contains("Space limit exceeded") || line.contains("too long"),
        "{line}"
    );
    client
        .device_list_then_details()
        .await
        .expect("still served");
    client.close().await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_client_gone_mid_conversation_leaves_nothing_behind() {
    let (server, mut server_log) = server().await;
    let mut raw = raw_client(&server).await;

    // A session with an answer pending (the slow device), then gone.
    raw.send(Frame::text(
        r#"{"sid":5,"type":"query","query":"getDeviceDetails","deviceId":"cam-3"}"#,
    ))
    .await
    .unwrap();
    eventually("the session is open on the server", || {
        server.stats().live_sessions == 1
    })
    .await;
    drop(raw);

    server_log.wait_for("its port is destroyed").await;
    assert_nothing_left(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_converse_at_once_in_both_directions() {
    let (server, _server_log) = server().await;
    let mut tasks = Vec::new();
    for n in 0..10 {
        let (client, _) = client(&server, &format!("client-{n}")).await;
        tasks.push(tokio::spawn(async move {
            let (conversation, command) = tokio::join!(
                client.device_list_then_details(),
                client.command("getStatus")
            );
            let (_, details) = conversation.expect("conversation");
            assert_eq!(details["device"]["id"], "lamp-1");
            assert_eq!(
                command.expect("command").result,
                "command \"getStatus\" executed"
            );
            client.close().await;
        }));
    }
    for task in tasks {
        task.await.expect("a client's task");
    }
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_command_flood_is_capped_per_client() {
    let (server, mut server_log) = server().await;
    let mut raw = raw_client(&server).await;
    let flood = 100;
    for n in 0..flood {
        let command = format!(r#"{{"type":"command","command":"job-{n}"}}"#);
        raw.send(Frame::text(command)).await.unwrap();
    }
    raw.send(Frame::text(r#"{"type":"command","command":42}"#))
        .await
        .unwrap();

    // Never acknowledged: the first ones wait for the client, the rest are
    // refused, and every command gets one answer.
    let (mut processing, mut refused) = (0, 0);
    for _ in 0..=flood {
        let answer = next_json(&mut raw).await;
        match (answer["type"].as_str(), answer["status"].as_str()) {
            (Some("response"), Some("processing")) => processing += 1,
            (Some("error"), _) => refused += 1,
            _ => panic!("unexpected {answer}"),
        }
    }
    let cap = psession_examples::ws::MAX_COMMANDS_PER_CLIENT;
    assert_eq!((processing, refused), (cap, flood + 1 - cap));
    assert_eq!(server.stats().waiting_sends, cap);
    server_log.wait_for("already running").await;
    server_log
        .wait_for("command refused: a command needs a name")
        .await;

    // Everyone else is served meanwhile; then the flooder leaves.
    let (client, _) = client(&server, "client").await;
    client.command("getStatus").await.expect("served");
    client.close().await;
    drop(raw);
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn refused_commands_fail_at_once_and_same_named_commands_all_complete() {
    let (server, _server_log) = server().await;
    let (client, _) = client(&server, "client").await;

    let started = std::time::Instant::now();
    let refused = client.command(&"x".repeat(65)).await;
    assert!(
        matches!(&refused, Err(ClientError::Refused(reason)) if reason.contains("name of 1 to 64 bytes")),
        "{refused:?}"
    );
    // Told by the server, not by the 30 s command timeout.
    assert!(started.elapsed() < Duration::from_secs(10));

    let (a, b, c) = tokio::join!(
        client.command("getStatus"),
        client.command("getStatus"),
        client.command("getStatus")
    );
    for done in [a, b, c] {
        assert_eq!(done.expect("each completes").command, "getStatus");
    }
    client.close().await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn silent_connections_are_let_go() {
    let (server, mut server_log) = server_with(ServerOptions {
        handshake_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(300),
        ..options()
    })
    .await;

    // A TCP connection that never starts the WebSocket handshake.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    server_log
        .wait_for("no handshake within 200ms; closed")
        .await;
    let mut byte = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut silent, &mut byte).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server closed it: {read:?}"
    );

    // A client that connects and then says nothing: the server closes the
    // connection, and the client fails at once from then on.
    let (client, mut client_log) = client(&server, "client").await;
    server_log.wait_for("disconnected (silent for 300ms)").await;
    client_log.wait_for("connection closed").await;
    let command = client.command("getStatus").await;
    assert!(matches!(command, Err(ClientError::Closed)), "{command:?}");
    let query = client
        .query(
            json!({ "type": "query", "query": "getDeviceList" }),
            SendOptions::default(),
        )
        .await;
    assert!(
        matches!(query, Err(ClientError::Session(SessionError::Transport(_)))),
        "{query:?}"
    );
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_quick_reconnection_from_the_same_address_gets_its_own_port() {
    let (server, _server_log) = server().await;
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = first.local_addr().unwrap();
    drop(first);
    for _ in 0..3 {
        // The same local address each time, reconnected at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(local).unwrap();
        let stream = socket.connect(server.local_addr()).await.unwrap();
        let url = format!("ws://{}", server.local_addr());
        let (mut raw, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        raw.send(Frame::text(
            r#"{"sid":1,"type":"query","query":"getDeviceList"}"#,
        ))
        .await
        .unwrap();
        // Each connection is served, even while the server may still be
        // tearing down the previous one from the same address.
        assert_eq!(next_json(&mut raw).await["sid"], 1);
        // Reset (no TIME_WAIT), so the address is free again at once.
        raw.get_ref().set_zero_linger().unwrap();
        drop(raw);
    }
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn many_quick_queries_are_all_answered() {
    let (server, _server_log) = server().await;
    let (client, _) = client(&server, "client").await;
    // More than the server's cap of open sessions per client, within its
    // session lifetime: it ends each session once answered.
    let count = psession_examples::ws::MAX_SESSIONS_PER_CLIENT * 3;
    for _ in 0..count {
        let query = json!({ "type": "query", "query": "getDeviceList" });
        let list = client
            .query(query, SendOptions::default())
            .await
            .expect("answered");
        assert_eq!(list["devices"][0]["id"], "lamp-1");
    }
    assert_eq!(server.stats().live_sessions, 0);
    client.close().await;
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_dropped_server_still_serves_its_connected_clients() {
    let (server, _server_log) = server().await;
    let (client, _) = client(&server, "client").await;
    drop(server);
    let (_, details) = client
        .device_list_then_details()
        .await
        .expect("still served");
    assert_eq!(details["device"]["id"], "lamp-1");
}

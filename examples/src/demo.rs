//! The one-command demo: `cargo run --bin demo`.
//!
//! Starts the WebSocket device server (Tokio) and the TCP time server (smol)
//! on 127.0.0.1, with free ports, and runs real conversations against them
//! in one process: multi-turn sessions opened by clients and by the server,
//! a retry after a lost request, a timeout, a client that sends garbage and
//! vanishes mid-conversation; then the bare core on UDP in a hand-written
//! loop. Every step checks its outcome, so the demo fails (and exits
//! nonzero) if psession does not behave as shown.

use crate::log::Log;
use crate::{tcp, udp, ws};
use futures_util::{SinkExt, StreamExt};
use psession_tokio::{SendOptions, SessionError};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Frame;

/// Why the demo failed: the step and what happened instead.
pub type DemoError = String;

/// Runs the whole demo, writing its transcript to `log`.
pub fn run(log: &Log) -> Result<(), DemoError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("no Tokio runtime: {e}"))?;
    runtime.block_on(websocket(log))?;
    drop(runtime);
    smol::block_on(tcp(log))?;
    udp(log)?;
    log.named("demo").line("all steps behaved as expected");
    Ok(())
}

fn step(log: &Log, text: &str) {
    log.named("demo").line(format!("--- {text}"));
}

/// Waits (at most 10 s, on any runtime) until `done` holds: a server
/// tears a connection down shortly after its client has left. The caller
/// then checks what it wanted.
async fn settle(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(10)).await;
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

async fn websocket(log: &Log) -> Result<(), DemoError> {
    step(log, "1. WebSocket device server on Tokio, three clients");
    let options = ws::ServerOptions {
        command_work: Duration::from_millis(200),
        slow_device_delay: Duration::from_secs(5),
        ..ws::ServerOptions::default()
    };
    let server = ws::DeviceServer::bind("127.0.0.1:0", options, log.named("ws-server"))
        .await
        .map_err(|e| format!("the WebSocket server cannot listen: {e}"))?;
    let url = format!("ws://{}", server.local_addr());
    let connect = |name: &str| {
        let (url, log) = (url.clone(), log.named(name));
        async move {
            ws::DeviceClient::connect(&url, ws::ClientOptions::default(), log)
                .await
                .map_err(|e| format!("cannot connect: {e}"))
        }
    };
    let (alice, bob, carol) = (
        connect("alice").await?,
        connect("bob").await?,
        connect("carol").await?,
    );

    step(log, "the quick start, all three at once: getDeviceList, then getDeviceDetails on the same session");
    let (a, b, c) = tokio::join!(
        alice.device_list_then_details(),
        bob.device_list_then_details(),
        carol.device_list_then_details()
    );
    for outcome in [a, b, c] {
        let (_, details) = outcome.map_err(|e| format!("quick start failed: {e}"))?;
        check(details["device"]["id"] == "lamp-1", || {
            format!("wrong details: {details}")
        })?;
    }

    step(log, "alice sends a plain command; the server opens its own session to her: processing, then completed");
    let done = alice
        .command("getStatus")
        .await
        .map_err(|e| format!("command failed: {e}"))?;
    check(done.result == "command \"getStatus\" executed", || {
        format!("wrong result: {}", done.result)
    })?;
    alice
        .log()
        .line(format!("command completed: {}", done.result));

    step(
        log,
        "bob's request is lost once (the server ignores the first copy); the retry is answered",
    );
    let started = Instant::now();
    let retried = SendOptions::default()
        .timeout(Duration::from_millis(500))
        .retries(3, Duration::from_millis(100));
    let status = bob
        .query(
            json!({ "type": "query", "query": "getDeviceStatus", "deviceId": "thermo-1", "simulateLoss": 1 }),
            retried,
        )
        .await
        .map_err(|e| format!("the retry was not answered: {e}"))?;
    check(status["status"] == "ok", || {
        format!("wrong status: {status}")
    })?;
    bob.log().line(format!(
        "thermo-1 status {} after {} ms: answered once the request was sent again",
        status["status"],
        started.elapsed().as_millis()
    ));

    step(log, "carol asks the slow camera with a 300 ms timeout");
    let started = Instant::now();
    let slow = carol
        .query(
            json!({ "type": "query", "query": "getDeviceDetails", "deviceId": ws::SLOW_DEVICE }),
            SendOptions::default().timeout(Duration::from_millis(300)),
        )
        .await;
    match slow {
        Err(ws::ClientError::Session(SessionError::Timeout)) => carol.log().line(format!(
            "gave up after {} ms: session timed out, as it should",
            started.elapsed().as_millis()
        )),
        other => return Err(format!("expected a timeout, got {other:?}")),
    }

    step(
        log,
        "mallory sends garbage, starts a command, and vanishes mid-conversation",
    );
    let mallory = log.named("mallory");
    let (mut raw, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("mallory cannot connect: {e}"))?;
    for junk in ["{oops", "[1,2,3]", r#"{"sid":"seven"}"#] {
        mallory.line(format!("sends {junk}"));
        raw.send(Frame::text(junk))
            .await
            .map_err(|e| e.to_string())?;
        let answer = raw.next().await;
        check(matches!(answer, Some(Ok(Frame::Text(_)))), || {
            format!("no error answer: {answer:?}")
        })?;
    }
    raw.send(Frame::text(r#"{"type":"command","command":"reboot"}"#))
        .await
        .map_err(|e| e.to_string())?;
    let processing = match raw.next().await {
        Some(Ok(Frame::Text(text))) => text.to_string(),
        other => {
            return Err(format!(
                "mallory expected the processing step, got {other:?}"
            ))
        }
    };
    mallory.line(format!("gets {processing} and hangs up without answering"));
    drop(raw);

    step(log, "everyone leaves; the server must hold nothing");
    alice.close().await;
    bob.close().await;
    carol.close().await;
    settle(|| server.connected_clients() == 0 && server.stats().ports == 1).await;
    let stats = server.stats();
    log.named("ws-server").line(format!(
        "{} clients, {} port (the default), {} live sessions, {} waiting sends",
        server.connected_clients(),
        stats.ports,
        stats.live_sessions,
        stats.waiting_sends
    ));
    check(
        server.connected_clients() == 0
            && stats.ports == 1
            && stats.live_sessions == 0
            && stats.waiting_sends == 0,
        || format!("the server kept something: {stats:?}"),
    )
}

async fn tcp(log: &Log) -> Result<(), DemoError> {
    step(
        log,
        "2. TCP time server on smol (newline-delimited JSON), two clients",
    );
    let server = tcp::TimeServer::bind(
        "127.0.0.1:0",
        tcp::ServerOptions::default(),
        log.named("tcp-server"),
    )
    .await
    .map_err(|e| format!("the TCP server cannot listen: {e}"))?;
    for name in ["dave", "erin"] {
        let client_log = log.named(name);
        let client = tcp::TimeClient::connect(
            server.local_addr(),
            Duration::from_secs(5),
            client_log.clone(),
        )
        .await
        .map_err(|e| format!("{name} cannot connect: {e}"))?;
        let time = client
            .get_time()
            .await
            .map_err(|e| format!("{name}: getTime failed: {e}"))?;
        client_log.line(format!("the server's time is {time}"));
    }
    settle(|| server.stats().ports == 1).await;
    let stats = server.stats();
    check(stats.ports == 1 && stats.live_sessions == 0, || {
        format!("the TCP server kept something: {stats:?}")
    })
}

fn udp(log: &Log) -> Result<(), DemoError> {
    step(
        log,
        "3. the bare psession-core in hand-written UDP loops (no async runtime)",
    );
    let server = udp::UdpServer::bind(
        "127.0.0.1:0",
        udp::ServerConfig::default(),
        log.named("udp-server"),
    )
    .map_err(|e| format!("the UDP server cannot bind: {e}"))?;
    let address = server.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = std::thread::spawn({
        let stop = stop.clone();
        move || server.run_until(&stop)
    });
    let outcome = udp_client(address, log);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = running
        .join()
        .map_err(|_| "the UDP server panicked".to_owned())?
        .map_err(|e| format!("the UDP server failed: {e}"))?;
    outcome?;
    check(report.stats.live_sessions == 0, || {
        format!("the UDP server kept sessions: {:?}", report.stats)
    })
}

fn udp_client(address: std::net::SocketAddr, log: &Log) -> Result<(), DemoError> {
    let client_log = log.named("frank");
    let mut client = udp::UdpClient::connect(address, client_log.clone())
        .map_err(|e| format!("frank cannot reach the UDP server: {e}"))?;
    let read = client
        .request(
            json!({ "command": "read", "sensor": "temperature" }),
            SendOptions::default().timeout(Duration::from_secs(2)),
        )
        .map_err(|e| format!("the UDP read failed: {e}"))?;
    check(read["value"] == 21.5, || format!("wrong reading: {read}"))?;
    client_log.line(format!("temperature {}", read["value"]));
    let flaky = client
        .request(
            json!({ "command": "flaky", "sensor": "humidity" }),
            SendOptions::default()
                .timeout(Duration::from_millis(300))
                .retries(3, Duration::from_millis(100)),
        )
        .map_err(|e| format!("the UDP retry was not answered: {e}"))?;
    client_log.line(format!(
        "humidity {} (answered on the retransmission)",
        flaky["value"]
    ));
    Ok(())
}

//! Two `psession-core` managers wired back to back in memory, on a virtual
//! clock: a client and a device hold a multi-turn conversation, a request
//! is retried after a lost message, and one times out.
//!
//! Run: `cargo run -p psession-core --example conversation`

use psession_core::{Event, Manager, ManagerConfig, Routed, SendOptions, SessionId, Transmit};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One side of the wire: a manager and a name for the transcript.
struct Side {
    name: &'static str,
    manager: Manager,
}

impl Side {
    fn new(name: &'static str) -> Self {
        let config = ManagerConfig::default().session_timeout(Duration::from_millis(500));
        Side {
            name,
            manager: Manager::new(config).expect("valid config"),
        }
    }

    fn transmits(&mut self) -> Vec<Transmit<Value>> {
        std::iter::from_fn(|| self.manager.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event<Value>> {
        std::iter::from_fn(|| self.manager.poll_event()).collect()
    }
}

/// Carries every queued message of `from` to `to` (dropping those `lose`
/// says are lost), and prints them.
fn carry(from: &mut Side, to: &mut Side, now: Instant, lose: &mut dyn FnMut(&Value) -> bool) {
    for tx in from.transmits() {
        if lose(&tx.message) {
            println!(
                "  {:>6} -> {:<6} {}   (lost on the wire)",
                from.name, to.name, tx.message
            );
            continue;
        }
        println!("  {:>6} -> {:<6} {}", from.name, to.name, tx.message);
        let port = to.manager.default_port();
        if let Routed::NotSession(message) = to.manager.handle_inbound(port, tx.message, now) {
            println!("  {} got a non-session message: {message}", to.name);
        }
    }
}

/// The device answers every request waiting on its incoming sessions.
fn device_answers(device: &mut Side, now: Instant) {
    for event in device.events() {
        let session = match event {
            Event::Incoming { session } | Event::Readable { session } => session,
            _ => continue,
        };
        while let Some(request) = device.manager.recv(session).expect("live session") {
            let answer = answer(&request);
            device
                .manager
                .post(session, answer, now)
                .expect("live session");
        }
    }
}

fn answer(request: &Value) -> Value {
    match (request["command"].as_str(), request["password"].as_str()) {
        (Some("open light"), _) => json!({"status": "needPassword"}),
        (_, Some("123456")) => json!({"status": "ok", "light": "on"}),
        (Some("status"), _) => json!({"status": "ok", "temperature": 21.5}),
        _ => json!({"status": "error", "reason": "unknown request"}),
    }
}

/// Runs both sides until `session`'s send completes, advancing the virtual
/// clock to each deadline; prints and returns the outcome.
fn wait(
    client: &mut Side,
    device: &mut Side,
    now: &mut Instant,
    start: Instant,
    lose: &mut dyn FnMut(&Value) -> bool,
) -> Result<Value, psession_core::SessionError> {
    loop {
        carry(client, device, *now, lose);
        device_answers(device, *now);
        carry(device, client, *now, &mut |_| false);
        for event in client.events() {
            match event {
                Event::Reply { message, .. } => return Ok(message),
                Event::SendFailed { error, .. } => return Err(error),
                _ => {}
            }
        }
        let Some(deadline) = client.manager.poll_timeout() else {
            unreachable!("a waiting send always has a deadline");
        };
        *now = deadline;
        println!(
            "  [t = {:>4} ms] deadline",
            now.duration_since(start).as_millis()
        );
        client.manager.handle_timeout(*now);
    }
}

fn main() -> Result<(), psession_core::SessionError> {
    let start = Instant::now();
    let mut now = start;
    let mut client = Side::new("client");
    let mut device = Side::new("device");
    let port = client.manager.default_port();
    let never = &mut |_: &Value| false;

    println!("1. A two-turn conversation on one session (the seed's needPassword example)");
    let session: SessionId = client.manager.open_session(port, now)?;
    client.manager.send(
        session,
        json!({"command": "open light"}),
        SendOptions::default(),
        now,
    )?;
    let reply = wait(&mut client, &mut device, &mut now, start, never)?;
    println!("  client got {reply}");
    client.manager.send(
        session,
        json!({"password": "123456"}),
        SendOptions::default(),
        now,
    )?;
    let reply = wait(&mut client, &mut device, &mut now, start, never)?;
    println!("  client got {reply}");
    client.manager.end(session)?;

    println!("\n2. A retry: the first request is lost, the second transmission is answered");
    let session = client.manager.open_session(port, now)?;
    let options = SendOptions::default().retries(2, Duration::from_millis(200));
    client
        .manager
        .send(session, json!({"command": "status"}), options, now)?;
    let mut first = true;
    let reply = wait(&mut client, &mut device, &mut now, start, &mut |_| {
        std::mem::take(&mut first)
    })?;
    println!("  client got {reply}");
    client.manager.end(session)?;

    println!("\n3. A timeout: the device never hears the request");
    let session = client.manager.open_session(port, now)?;
    let options = SendOptions::default().timeout(Duration::from_millis(300));
    client
        .manager
        .send(session, json!({"command": "status"}), options, now)?;
    let outcome = wait(&mut client, &mut device, &mut now, start, &mut |_| true);
    println!(
        "  client's send failed: {}",
        outcome.expect_err("nothing answered")
    );
    client.manager.end(session)?;

    let stats = client.manager.stats();
    println!(
        "\nDone at t = {} ms; client: {} live sessions, {} waiting sends, {} timer entries.",
        now.duration_since(start).as_millis(),
        stats.live_sessions,
        stats.waiting_sends,
        stats.timer_entries
    );
    Ok(())
}

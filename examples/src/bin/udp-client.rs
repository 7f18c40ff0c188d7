//! A blocking UDP client on the bare `psession-core` (see
//! `psession_examples::udp`): a read, a flaky read that only its retry gets
//! answered, and a flaky read without retries that times out.
//!
//! Run the server and the client in two terminals:
//!
//! ```sh
//! cargo run --bin udp-server -- 127.0.0.1:9000
//! cargo run --bin udp-client -- 127.0.0.1:9000
//! ```
//!
//! The address defaults to 127.0.0.1:9000. Exits with 0 when the server
//! answered the read and the retried read, and with 1 and a message
//! otherwise (no server there).

use psession_core::{SendOptions, SessionError};
use psession_examples::log::Log;
use psession_examples::udp::UdpClient;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(address) = psession_examples::address_argument(
        "127.0.0.1:9000",
        "usage: udp-client [SERVER_ADDR]   (default 127.0.0.1:9000)",
    ) else {
        return ExitCode::SUCCESS;
    };
    let mut client = match UdpClient::connect(&address, Log::stdout("udp-client")) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("udp-client: cannot reach {address}: {error}");
            return ExitCode::FAILURE;
        }
    };

    println!("1. Read the temperature (timeout 1 s)");
    let options = SendOptions::default().timeout(Duration::from_secs(1));
    let read = client.request(json!({"command": "read", "sensor": "temperature"}), options);
    print_outcome(&read);
    if read.is_err() {
        eprintln!(
            "udp-client: no answer from {address}; is the server running? \
             (cargo run --bin udp-server -- {address})"
        );
        return ExitCode::FAILURE;
    }

    println!("\n2. A flaky read: the server ignores its first delivery, the retry is answered");
    println!("   (timeout 500 ms, then up to 3 retries 200 ms apart)");
    let options = SendOptions::default()
        .timeout(Duration::from_millis(500))
        .retries(3, Duration::from_millis(200));
    let flaky = client.request(json!({"command": "flaky", "sensor": "humidity"}), options);
    print_outcome(&flaky);

    println!("\n3. The same flaky read without retries: it times out");
    let options = SendOptions::default().timeout(Duration::from_millis(500));
    let unanswered = client.request(json!({"command": "flaky", "sensor": "humidity"}), options);
    print_outcome(&unanswered);

    let stats = client.stats();
    println!(
        "\nDone: {} live sessions, {} waiting sends left on the client.",
        stats.live_sessions, stats.waiting_sends
    );
    if flaky.is_ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!("udp-client: the server at {address} did not answer the retried read");
        ExitCode::FAILURE
    }
}

fn print_outcome(outcome: &Result<Value, SessionError>) {
    match outcome {
        Ok(reply) => println!("   reply: {reply}"),
        Err(error) => println!("   failed: {error}"),
    }
}

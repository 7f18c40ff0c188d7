//! The seed's TCP socket client, on smol: asks the time server for the
//! time three times, then sends a command it does not know.
//!
//! ```text
//! cargo run --bin tcp-server -- 127.0.0.1:3000   # terminal 1
//! cargo run --bin tcp-client -- 127.0.0.1:3000   # terminal 2 (the default address)
//! ```

use psession_examples::log::Log;
use psession_examples::tcp::TimeClient;
use serde_json::json;
use std::time::Duration;

fn main() {
    let Some(addr) = psession_examples::address_argument(
        "127.0.0.1:3000",
        "usage: tcp-client [SERVER_ADDR]   (default 127.0.0.1:3000)",
    ) else {
        return;
    };
    let log = Log::stdout("tcp-client");
    let outcome = smol::block_on(async {
        let client = TimeClient::connect(addr.as_str(), Duration::from_secs(5), log.clone())
            .await
            .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
        for _ in 0..3 {
            let time = client.get_time().await.map_err(|e| e.to_string())?;
            log.line(format!("the server's time is {time}"));
        }
        let answer = client
            .request(json!({ "command": "reboot" }))
            .await
            .map_err(|e| e.to_string())?;
        log.line(format!("an unknown command is answered with {answer}"));
        Ok::<(), String>(())
    });
    if let Err(error) = outcome {
        eprintln!("tcp-client: {error}");
        std::process::exit(1);
    }
}

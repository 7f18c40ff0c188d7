//! The seed's WebSocket client, on Tokio: sends the `getStatus` command
//! (the server answers on a session of its own: `processing`, then
//! `completed`) and, on one session, asks for the device list and then for
//! the first device's details.
//!
//! ```text
//! cargo run --bin ws-server -- 127.0.0.1:8080      # terminal 1
//! cargo run --bin ws-client -- ws://127.0.0.1:8080 # terminal 2 (the default URL)
//! ```

use psession_examples::log::Log;
use psession_examples::ws::{ClientOptions, DeviceClient};

#[tokio::main]
async fn main() {
    let Some(url) = psession_examples::address_argument(
        "ws://127.0.0.1:8080",
        "usage: ws-client [SERVER_URL]   (default ws://127.0.0.1:8080)",
    ) else {
        return;
    };
    let log = Log::stdout("ws-client");
    if let Err(error) = run(&url, log).await {
        eprintln!("ws-client: {error}");
        std::process::exit(1);
    }
}

async fn run(url: &str, log: Log) -> Result<(), psession_examples::ws::ClientError> {
    let client = DeviceClient::connect(url, ClientOptions::default(), log.clone()).await?;
    let (command, conversation) = tokio::join!(
        client.command("getStatus"),
        client.device_list_then_details()
    );
    let (list, details) = conversation?;
    log.line(format!("device list: {}", list["devices"]));
    log.line(format!("first device: {}", details["device"]));
    let done = command?;
    log.line(format!("command {:?}: {}", done.command, done.result));
    client.close().await;
    Ok(())
}

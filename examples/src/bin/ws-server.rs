//! The seed's WebSocket device server, on Tokio.
//!
//! ```text
//! cargo run --bin ws-server -- 127.0.0.1:8080     # terminal 1 (the default address)
//! cargo run --bin ws-client -- ws://127.0.0.1:8080 # terminal 2, as often as you like
//! ```
//!
//! Listen on `0.0.0.0:8080` to serve other machines. Stop it with Ctrl-C.

use psession_examples::log::Log;
use psession_examples::ws::{DeviceServer, ServerOptions};

#[tokio::main]
async fn main() {
    let Some(addr) = psession_examples::address_argument(
        "127.0.0.1:8080",
        "usage: ws-server [LISTEN_ADDR]   (default 127.0.0.1:8080)",
    ) else {
        return;
    };
    let log = Log::stdout("ws-server");
    let _server = match DeviceServer::bind(addr.as_str(), ServerOptions::default(), log).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("ws-server: cannot listen on {addr}: {error}");
            std::process::exit(1);
        }
    };
    std::future::pending::<()>().await;
}

//! The seed's TCP socket server, on smol: newline-delimited JSON, one port
//! per client, `getTime` answered from the events stream.
//!
//! ```text
//! cargo run --bin tcp-server -- 127.0.0.1:3000   # terminal 1 (the default address)
//! cargo run --bin tcp-client -- 127.0.0.1:3000   # terminal 2
//! ```
//!
//! Stop it with Ctrl-C.

use psession_examples::log::Log;
use psession_examples::tcp::{ServerOptions, TimeServer};

fn main() {
    let Some(addr) = psession_examples::address_argument(
        "127.0.0.1:3000",
        "usage: tcp-server [LISTEN_ADDR]   (default 127.0.0.1:3000)",
    ) else {
        return;
    };
    smol::block_on(async {
        let log = Log::stdout("tcp-server");
        let _server = match TimeServer::bind(addr.as_str(), ServerOptions::default(), log).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("tcp-server: cannot listen on {addr}: {error}");
                std::process::exit(1);
            }
        };
        std::future::pending::<()>().await;
    })
}

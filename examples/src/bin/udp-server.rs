//! A UDP request/response server on the bare `psession-core`: a hand-written
//! event loop over a std `UdpSocket`, no async runtime (see
//! `psession_examples::udp`).
//!
//! Run the server and the client in two terminals:
//!
//! ```sh
//! cargo run --bin udp-server -- 127.0.0.1:9000
//! cargo run --bin udp-client -- 127.0.0.1:9000
//! ```
//!
//! The address defaults to 127.0.0.1:9000. The server logs every datagram's
//! fate and runs until Ctrl-C.

use psession_examples::log::Log;
use psession_examples::udp::{ServerConfig, UdpServer};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(address) = psession_examples::address_argument(
        "127.0.0.1:9000",
        "usage: udp-server [LISTEN_ADDR]   (default 127.0.0.1:9000)",
    ) else {
        return ExitCode::SUCCESS;
    };
    let log = Log::stdout("udp-server");
    let config = ServerConfig::default();
    let server = match UdpServer::bind(&address, config.clone(), log.clone()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("udp-server: cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = server.local_addr();
    log.line(format!("listening on {local} (Ctrl-C to stop)"));
    log.line(format!(
        "at most {} peers, a peer's port is destroyed after {:?} of silence, \
         at most {} open sessions per peer, an unanswered session ends after {:?}",
        config.max_peers,
        config.peer_idle_time,
        config.max_sessions_per_peer,
        config.session_max_life
    ));
    log.line(format!("try it: cargo run --bin udp-client -- {local}"));
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("udp-server: socket error: {error}");
            ExitCode::FAILURE
        }
    }
}

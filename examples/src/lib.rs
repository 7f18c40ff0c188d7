//! The seed's programs, working, on psession.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clients;
pub mod demo;
pub mod log;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod ws;

/// The programs' one argument: an address (or URL), `default` when there
/// is none. For `-h` or `--help`, prints `usage` and returns `None`.
pub fn address_argument(default: &str, usage: &str) -> Option<String> {
    match std::env::args().nth(1).as_deref() {
        None => Some(default.to_owned()),
        Some("-h" | "--help") => {
            println!("{usage}");
            None
        }
        Some(address) => Some(address.to_owned()),
    }
}

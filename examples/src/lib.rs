//! The seed's programs, working, on psession.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo;
pub mod log;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod ws;

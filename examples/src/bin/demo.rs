//! psession end to end on this machine, in one process: `cargo run --bin demo`.
//!
//! See [`psession_examples::demo`] for what it shows. Exits 0 when every
//! step behaved as expected.

use psession_examples::log::Log;

fn main() {
    println!(
        "psession demo: servers and clients on 127.0.0.1, talking through psession sessions\n"
    );
    if let Err(error) = psession_examples::demo::run(&Log::stdout("demo")) {
        eprintln!("\ndemo FAILED: {error}");
        std::process::exit(1);
    }
}

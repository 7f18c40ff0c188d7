//! The one-command demo runs to the end, and its transcript shows each thing
//! it promises.

use psession_examples::log::Log;

#[test]
fn the_demo_runs_every_step_and_says_so() {
    let (log, mut lines) = Log::capture("demo");
    psession_examples::demo::run(&log).expect("every step behaves");
    let transcript = lines.drain().join("\n");
    for expected in [
        // the quick start's two turns on one session, for each client
        "[alice] session 1: 3 devices, asking about lamp-1",
        "[bob] session 1: lamp-1 is \"Desk lamp\"",
        // a server-opened session, both turns acknowledged
        "[alice] server session 2: \"getStatus\" processing",
        "[alice] server session 2: \"getStatus\" completed",
        "\"getStatus\" completed and acknowledged",
        // a retry and a timeout
        "getDeviceStatus delivery 1 ignored (simulated loss)",
        "answered once the request was sent again",
        "session timed out, as it should",
        // bad input and a client gone mid-conversation
        "bad frame ignored: invalid JSON",
        "bad frame ignored: not a JSON object",
        "bad frame ignored: field \"sid\"",
        "command \"reboot\" for",
        "0 clients, 1 port (the default), 0 live sessions, 0 waiting sends",
        // the TCP server on smol
        "[dave] the server's time is",
        "[erin] the server's time is",
        // the bare core in a UDP loop
        "[frank] temperature 21.5",
        "(answered on the retransmission)",
        "all steps behaved as expected",
    ] {
        assert!(
            transcript.contains(expected),
            "missing {expected:?} in:\n{transcript}"
        );
    }
}

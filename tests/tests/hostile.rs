//! Floods from a hostile peer, on both runtimes: new sids as fast as it can,
//! replies for sids never used, the same reply over and over, messages for
//! sessions that have ended, and plain garbage. What is kept stays within
//! the configured caps, every message gets a typed outcome that the
//! counters add up to, and legitimate conversations on the attacked port
//! and on another port still complete.

use std::time::Duration;

use psession_core::{DropReason, ManagerConfig, PortOptions, Routed, SidPartition};
use psession_driver::{Port, Sender};
use psession_tests::*;
use serde_json::{json, Value};

/// Peer-opened sessions the attacked port accepts at once.
const INCOMING_CAP: u32 = 16;
/// Unread messages kept per session.
const INBOX_CAP: u32 = 4;
/// Messages the attacker sends.
const FLOOD: u32 = 40_000;

/// What the attacked port answered, tallied by the test from `dispatch`.
#[derive(Debug, Default)]
struct Tally {
    opened: u64,
    queued: u64,
    replies: u64,
    not_session: u64,
    incoming_limit: u64,
    unknown_sid: u64,
}

impl Tally {
    fn count(&mut self, routed: Routed<Value>) {
        match routed {
            Routed::Opened(_) => self.opened += 1,
            Routed::Queued(_) => self.queued += 1,
            Routed::Reply(_) => self.replies += 1,
            Routed::NotSession(_) => self.not_session += 1,
            Routed::Dropped(DropReason::IncomingLimit) => self.incoming_limit += 1,
            Routed::Dropped(DropReason::UnknownSid) => self.unknown_sid += 1,
            Routed::Dropped(other) => panic!("unexpected drop: {other:?}"),
        }
    }
}

/// The gateway under attack: its port "evil" faces the attacker (the test
/// plays it, dispatching by hand and reading what the gateway sends into
/// `to_evil`), its default port faces a well-behaved echo server.
struct Gateway<H: Harness> {
    manager: Manager<H>,
    evil: Port<Value>,
    to_evil: psession_driver::Outbound<Value>,
    _server: Manager<H>,
}

fn gateway<H: Harness>() -> Gateway<H> {
    // The gateway opens odd sids; the peers' sessions are the even ones.
    let config = ManagerConfig::default()
        .partition(SidPartition::Odd)
        .max_incoming_sessions(INCOMING_CAP)
        .inbox_capacity(INBOX_CAP)
        .session_max_life(Duration::from_secs(30));
    let (manager, to_server) = queued::<H>(config);
    let (server, to_gateway) = queued::<H>(ManagerConfig::default().partition(SidPartition::Even));
    forward::<H>(to_server, server.default_port(), None);
    forward::<H>(to_gateway, manager.default_port(), None);
    serve_echo::<H>(&server);
    let (sender, to_evil) = Sender::channel(1024);
    let evil = manager
        .create_port("evil", sender, PortOptions::default())
        .expect("port evil");
    Gateway {
        manager,
        evil,
        to_evil,
        _server: server,
    }
}

/// One message of the flood.
fn hostile_message(dice: &mut Dice, ended_sid: u32, answered_sid: u32) -> Value {
    match dice.roll(6) {
        // A new session from the peer (its half: even sids).
        0 | 1 => json!({ "sid": 2 * (1 + dice.roll(1 << 30)), "open": true }),
        // A "reply" for a sid the gateway never used (its own half: odd,
        // and up to its max_session_count, 65535).
        2 => json!({ "sid": 2 * (1_000 + dice.roll(30_000)) + 1, "reply": "forged" }),
        // The same reply again, for a session whose send was answered and
        // that is still open.
        3 => json!({ "sid": answered_sid, "reply": "again" }),
        // A message for a session that has ended.
        4 => json!({ "sid": ended_sid, "reply": "too late" }),
        // Not a session message at all.
        _ => match dice.roll(4) {
            0 => json!([1, 2, 3]),
            1 => json!({ "sid": "seven" }),
            2 => json!({ "sid": -1 }),
            _ => json!({ "no": "sid" }),
        },
    }
}

/// A flood of every kind of hostile message on one port: the port keeps at
/// most its caps, every message has a typed outcome, the counters add up to
/// exactly what `dispatch` returned, and conversations on the attacked port
/// and on another port complete meanwhile.
async fn a_flood_neither_grows_memory_nor_stops_legitimate_sessions<H: Harness>() {
    let Gateway {
        manager,
        evil,
        mut to_evil,
        _server,
    } = gateway::<H>();
    let mut tally = Tally::default();
    let mut dice = Dice::new(1);

    // A session on the attacked port, answered once and kept open (the
    // attacker repeats that reply), and one that has ended.
    let mut answered = evil.create_session().expect("a session");
    let answered_sid = answered.id();
    let mut send = Box::pin(answered.send(json!({ "q": "first" })));
    assert!(poll_with(&mut send, &WakeCount::new().1).is_pending());
    let request = to_evil.recv().await.expect("the request");
    assert_eq!(request["sid"], answered_sid);
    tally.count(evil.dispatch(json!({ "sid": answered_sid, "a": "first" })));
    assert_eq!(send.await.expect("the answer")["a"], "first");
    let ended = evil.create_session().expect("a session");
    let ended_sid = ended.id();
    drop(ended);

    // A conversation on the default port runs through the flood.
    let mut neighbour = manager.create_session("default").expect("a session");
    let conversation = async move {
        for turn in 0..50 {
            let reply = neighbour
                .send(json!({ "turn": turn }))
                .await
                .expect("a reply");
            assert_eq!(reply["echo"]["turn"], turn);
        }
    };
    let mut conversation = Box::pin(conversation);
    let mut conversation_done = false;

    let mut most_live = 0;
    let mut most_queued = 0;
    for n in 0..FLOOD {
        tally.count(evil.dispatch(hostile_message(&mut dice, ended_sid, answered_sid)));
        if n % 1_000 == 999 {
            // A legitimate turn on the attacked port, in the middle of it.
            let mut send = Box::pin(answered.send(json!({ "q": n })));
            assert!(poll_with(&mut send, &WakeCount::new().1).is_pending());
            let request = to_evil.recv().await.expect("the request");
            assert_eq!(request["q"], n);
            tally.count(evil.dispatch(json!({ "sid": answered_sid, "a": n })));
            let reply = send.await.expect("the answer");
            // The reply is this turn's, not a queued forgery.
            assert_eq!(reply["a"], n);
            // Let the other conversation move on.
            H::sleep(Duration::from_millis(1)).await;
            if !conversation_done {
                conversation_done = poll_with(&mut conversation, &WakeCount::new().1).is_ready();
            }
        }
        let stats = evil.stats().expect("stats");
        most_live = most_live.max(stats.live_sessions);
        most_queued = most_queued.max(manager.stats().queued_messages);
    }
    if !conversation_done {
        conversation.await;
    }

    // Bounded: the peer's sessions at the cap, plus ours; one inbox each.
    assert!(
        most_live <= INCOMING_CAP + 1,
        "{most_live} live sessions on the attacked port"
    );
    assert!(
        most_queued <= ((INCOMING_CAP + 1) * INBOX_CAP) as usize,
        "{most_queued} queued messages"
    );
    assert!(
        manager.stats().queued_events <= 1024 + INCOMING_CAP as usize,
        "{:?}",
        manager.stats()
    );

    // Every kind happened, and the counters say exactly what was dropped.
    println!("{}: {tally:?}", H::NAME);
    assert_eq!(tally.opened, u64::from(INCOMING_CAP), "{tally:?}");
    assert!(tally.incoming_limit > 5_000, "{tally:?}");
    assert!(tally.unknown_sid > 5_000, "{tally:?}");
    assert!(tally.queued > 5_000, "{tally:?}");
    assert!(tally.not_session > 5_000, "{tally:?}");
    assert_eq!(tally.replies, 1 + u64::from(FLOOD / 1_000), "{tally:?}");
    let counters = evil.stats().expect("stats").counters;
    assert_eq!(counters.incoming_refused, tally.incoming_limit);
    // A message queued on a full inbox pushes out the oldest. Nobody read
    // any (an opening message is queued too), so all but what is still
    // queued were dropped.
    let still_queued = manager.stats().queued_messages as u64;
    let pushed_out = tally.queued + tally.opened - still_queued;
    assert_eq!(
        counters.dropped_messages,
        tally.incoming_limit + tally.unknown_sid + pushed_out,
        "{counters:?} {tally:?}"
    );
    // The default port saw none of it.
    let default = manager.default_port().stats().expect("stats");
    assert_eq!(default.counters.dropped_messages, 0, "{default:?}");

    // The attacker's sessions expire; the port takes new peers again.
    // (Virtual time only: on real time this would wait 30 s.)
    if !H::VIRTUAL_TIME {
        return;
    }
    H::sleep(Duration::from_secs(31)).await;
    let stats = evil.stats().expect("stats");
    assert_eq!(stats.incoming_sessions, 0, "{stats:?}");
    assert!(matches!(
        evil.dispatch(json!({ "sid": 2, "hello": true })),
        Routed::Opened(_)
    ));
}

/// A peer that answers every request twice (or more): the first answer
/// completes the send, the repeats wait on the session's queue for `recv`
/// (bounded, oldest dropped and counted), and once the session ends they
/// are dropped as unknown. Nothing completes a send twice.
async fn repeated_replies_complete_a_send_once<H: Harness>() {
    let config = ManagerConfig::default()
        .partition(SidPartition::Odd)
        .inbox_capacity(INBOX_CAP);
    let (manager, mut outbound) = queued::<H>(config);
    let port = manager.default_port();
    let mut session = manager.create_session("default").expect("a session");
    let sid = session.id();
    for turn in 0..3u64 {
        let mut send = Box::pin(session.send(json!({ "turn": turn })));
        assert!(poll_with(&mut send, &WakeCount::new().1).is_pending());
        assert_eq!(outbound.recv().await.expect("the request")["turn"], turn);
        let mut outcomes = Vec::new();
        for copy in 0..10 {
            outcomes.push(port.dispatch(json!({ "sid": sid, "turn": turn, "copy": copy })));
        }
        // The first is the reply; each repeat is queued, a full queue
        // pushing out its oldest.
        assert!(matches!(outcomes[0], Routed::Reply(_)), "{outcomes:?}");
        assert!(
            outcomes[1..].iter().all(|o| matches!(o, Routed::Queued(_))),
            "{outcomes:?}"
        );
        assert_eq!(manager.stats().queued_messages, INBOX_CAP as usize);
        let reply = send.await.expect("the first copy");
        assert_eq!(
            (reply["turn"].as_u64(), reply["copy"].as_u64()),
            (Some(turn), Some(0))
        );
        // The repeats are readable, newest kept; then the next send does
        // not take a stale one as its reply.
        let mut kept = Vec::new();
        for _ in 0..INBOX_CAP {
            kept.push(session.recv().await.expect("a repeat")["copy"].clone());
        }
        assert_eq!(kept, [json!(6), json!(7), json!(8), json!(9)]);
    }
    let counters = port.stats().expect("stats").counters;
    assert_eq!(counters.dropped_messages, 3 * (9 - u64::from(INBOX_CAP)));

    drop(session);
    for copy in 0..100 {
        let routed = port.dispatch(json!({ "sid": sid, "copy": copy }));
        assert!(
            matches!(routed, Routed::Dropped(DropReason::UnknownSid)),
            "{routed:?}"
        );
    }
    let stats = manager.stats();
    assert_eq!(
        (
            stats.live_sessions,
            stats.queued_messages,
            stats.waiting_sends
        ),
        (0, 0, 0),
        "{stats:?}"
    );
}

on_both_runtimes!(
    a_flood_neither_grows_memory_nor_stops_legitimate_sessions,
    repeated_replies_complete_a_send_once,
);

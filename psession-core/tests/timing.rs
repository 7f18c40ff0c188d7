//! Deadlines: exact firing, max-life expiry, and clocks that misbehave.

mod common;

use common::{failure, ms, Rig};
use psession_core::{CloseReason, Event, ManagerConfig, SendOptions, SessionError};
use serde_json::json;
use std::time::Duration;

fn rig() -> Rig {
    Rig::new(
        ManagerConfig::default()
            .session_timeout(ms(100))
            .session_max_life(ms(1000)),
    )
}

fn expired(events: &[Event<serde_json::Value>]) -> Vec<psession_core::SessionId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed {
                session,
                reason: CloseReason::Expired,
            } => Some(*session),
            _ => None,
        })
        .collect()
}

#[test]
fn idle_session_expires_exactly_after_max_life() {
    let mut r = rig();
    let s = r.open(10);
    assert_eq!(r.next_deadline_ms(), Some(1010));
    r.tick(1009);
    assert!(r.events().is_empty());
    r.tick(1010);
    assert_eq!(expired(&r.events()), vec![s]);
    assert!(!r.m.is_live(s));
    assert_eq!(r.m.stats().counters.expired_sessions, 1);
    assert_eq!(r.next_deadline_ms(), None);
}

#[test]
fn activity_refreshes_the_expiry() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    r.m.post(s, json!({}), r.at(500)).unwrap();
    assert_eq!(r.next_deadline_ms(), Some(1500));
    r.m.handle_inbound(port, json!({"sid": 1}), r.at(900));
    r.tick(1500);
    assert!(expired(&r.events()).is_empty());
    assert_eq!(r.next_deadline_ms(), Some(1900));
    r.tick(1900);
    assert_eq!(expired(&r.events()), vec![s]);
}

#[test]
fn expiry_is_paused_while_a_send_waits_or_retries() {
    let mut r = rig();
    let s = r.open(0);
    // 10 attempts of 100 ms with 200 ms pauses: 2.8 s of waiting, longer than max life.
    let options = SendOptions::default().retries(9, ms(200));
    let send = r.m.send(s, json!({}), options, r.at(0)).unwrap();
    for t in (0..=2800).step_by(50) {
        r.tick(t);
        assert!(r.m.is_live(s), "expired at {t} ms while retrying");
    }
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Timeout)
    ));
    assert!(expired(&events).is_empty());
    // Idle from the final timeout at 2800 ms: expires at 3800 ms.
    assert_eq!(r.next_deadline_ms(), Some(3800));
    r.tick(3800);
    assert_eq!(expired(&r.events()), vec![s]);
}

#[test]
fn poll_timeout_is_the_exact_earliest_deadline() {
    let mut r = rig();
    let port = r.m.default_port();
    assert_eq!(r.next_deadline_ms(), None);
    let a = r.m.open_session(port, r.at(0)).unwrap();
    let b = r.m.open_session(port, r.at(20)).unwrap();
    assert_eq!(r.next_deadline_ms(), Some(1000));
    r.m.send(
        b,
        json!({}),
        SendOptions::default().timeout(ms(30)),
        r.at(40),
    )
    .unwrap();
    assert_eq!(r.next_deadline_ms(), Some(70));
    r.m.handle_inbound(port, json!({"sid": 2}), r.at(50));
    // b's send is answered; a's expiry is next again, then b's at 50 + 1000.
    assert_eq!(r.next_deadline_ms(), Some(1000));
    r.m.post(a, json!({}), r.at(60)).unwrap();
    assert_eq!(r.next_deadline_ms(), Some(1050));
    r.tick(1050);
    assert_eq!(r.next_deadline_ms(), Some(1060));
}

#[test]
fn clock_going_backwards_is_treated_as_not_moving() {
    let mut r = rig();
    let s = r.open(500);
    let send = r.send(s, json!({}), 500);
    // An instant before anything seen, even before the first one: no panic, nothing fires.
    r.m.handle_timeout(r.t0);
    r.tick(100);
    assert!(r.events().is_empty());
    // A send made with an older `now` counts from the latest time seen.
    let other = r.open(0);
    let late = r.send(other, json!({}), 0);
    r.tick(599);
    assert!(r.events().is_empty());
    r.tick(600);
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Timeout)
    ));
    assert!(matches!(
        failure(&events, late),
        Some(SessionError::Timeout)
    ));
}

#[test]
fn clock_jumping_forward_by_days_fires_each_deadline_once() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let idle = r.m.open_session(port, r.at(0)).unwrap();
    let send =
        r.m.send(
            s,
            json!({"q": 1}),
            SendOptions::default().retries(3, ms(10)),
            r.at(0),
        )
        .unwrap();
    r.transmits();
    r.tick(3 * 24 * 3600 * 1000);
    let events = r.events();
    // The send fails once, both sessions expire once, and the retries whose
    // whole wait lies in the past are not sent to the peer.
    assert_eq!(r.transmits().len(), 0);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::SendFailed { .. }))
            .count(),
        1
    );
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Timeout)
    ));
    let mut gone = expired(&events);
    gone.sort_by_key(|s| s.sid());
    assert_eq!(gone, vec![s, idle]);
    assert_eq!(r.m.stats().timer_entries, 0);
    assert_eq!(r.next_deadline_ms(), None);
}

#[test]
fn a_late_clock_sends_only_the_retries_still_worth_sending() {
    let mut r = rig();
    let s = r.open(0);
    // Attempts at 0, 110, 220, 330 (timeout 100 ms, pause 10 ms).
    let options = SendOptions::default().retries(3, ms(10));
    let send = r.m.send(s, json!({}), options, r.at(0)).unwrap();
    r.transmits();
    // Woken late at 250 ms: the attempt due at 110 ms lapsed unsent (its
    // wait ended at 210); the one due at 220 ms is still useful.
    r.tick(250);
    assert_eq!(r.transmits().len(), 1);
    assert!(r.events().is_empty());
    r.tick(330);
    assert_eq!(r.transmits().len(), 1, "the last attempt at 330 ms");
    r.tick(430);
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Timeout)
    ));
}

#[test]
fn a_reply_after_the_deadline_is_late_even_before_handle_timeout_runs() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    let send = r.send(s, json!({}), 0);
    // No handle_timeout between: the input itself processes the deadline.
    let routed = r.m.handle_inbound(port, json!({"sid": 1}), r.at(150));
    assert!(matches!(routed, psession_core::Routed::Queued(_)));
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Timeout)
    ));
    assert_eq!(r.m.stats().counters.late_replies, 1);
    // Likewise a session past its expiry is gone before a send can revive it.
    r.m.recv(s).unwrap();
    let err =
        r.m.send(s, json!({}), SendOptions::default(), r.at(5000))
            .unwrap_err();
    assert!(matches!(err, SessionError::Invalid));
}

#[test]
fn activity_during_a_wait_counts_when_the_wait_ends_late() {
    let mut r = rig();
    let s = r.open(0);
    r.m.send(
        s,
        json!({}),
        SendOptions::default().timeout(ms(10)),
        r.at(0),
    )
    .unwrap();
    r.m.post(s, json!({}), r.at(5)).unwrap();
    r.m.post(s, json!({}), r.at(15)).unwrap(); // the send timed out at 10
    assert_eq!(r.next_deadline_ms(), Some(1015));
}

#[test]
fn huge_durations_never_fire_and_never_panic() {
    let mut r = Rig::new(
        ManagerConfig::default()
            .session_timeout(Duration::MAX)
            .session_max_life(Duration::MAX)
            .retry_interval(Duration::MAX),
    );
    let s = r.open(0);
    r.m.send(
        s,
        json!({}),
        SendOptions::default().retries(2, Duration::MAX),
        r.at(0),
    )
    .unwrap();
    assert_eq!(r.next_deadline_ms(), None);
    r.m.handle_timeout(r.t0 + Duration::from_secs(u32::MAX as u64));
    assert!(r.events().is_empty());
    assert!(r.m.is_waiting(s));
    r.m.cancel(s, r.at(1)).unwrap();
    r.m.handle_timeout(r.t0 + Duration::from_secs(u32::MAX as u64 * 2));
    assert!(r.m.is_live(s));
}

#[test]
fn stale_timer_entries_are_reclaimed() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    // Many round trips each arm a send deadline that the reply makes stale.
    for i in 0..10_000u64 {
        r.m.send(s, json!({}), SendOptions::default(), r.at(i))
            .unwrap();
        r.m.handle_inbound(port, json!({"sid": 1}), r.at(i));
        r.transmits();
        r.events();
    }
    assert!(
        r.m.stats().timer_entries <= 2 * r.m.stats().live_sessions + 65,
        "{:?}",
        r.m.stats()
    );
    r.m.end(s).unwrap();
    assert_eq!(r.m.stats().timer_entries, 0);
}

#[test]
fn idle_sessions_of_a_port_share_one_timer_entry_and_expire_in_order() {
    let mut r = rig();
    let sessions: Vec<_> = (0..1000).map(|i| r.open(i)).collect();
    assert_eq!(r.m.stats().timer_entries, 1, "{:?}", r.m.stats());
    // Activity moves a session behind the others (after the last one,
    // opened at the same time).
    r.m.post(sessions[0], json!({}), r.at(999)).unwrap();
    assert_eq!(r.next_deadline_ms(), Some(1001));
    for i in 1..999 {
        r.tick(1000 + i);
        assert_eq!(expired(&r.events()), vec![sessions[i as usize]], "at {i}");
        assert_eq!(r.next_deadline_ms(), Some(1001 + i as u128));
    }
    r.tick(1999);
    assert_eq!(expired(&r.events()), vec![sessions[999], sessions[0]]);
    assert_eq!(r.m.stats().timer_entries, 0);
}

#[test]
fn a_waiting_session_never_holds_back_the_expiry_of_those_after_it() {
    let mut r = Rig::new(
        ManagerConfig::default()
            .session_timeout(ms(5000))
            .session_max_life(ms(1000)),
    );
    let a = r.open(0);
    let b = r.open(10);
    let c = r.open(20);
    // a, first to expire, waits for a reply: it does not expire, b and c do.
    let send = r.send(a, json!({}), 500);
    assert_eq!(r.next_deadline_ms(), Some(1010));
    r.tick(1010);
    assert_eq!(expired(&r.events()), vec![b]);
    assert_eq!(r.next_deadline_ms(), Some(1020));
    r.tick(1020);
    assert_eq!(expired(&r.events()), vec![c]);
    // a's send times out at 5500; a is idle from then on.
    assert_eq!(r.next_deadline_ms(), Some(5500));
    r.tick(5500);
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Timeout)
    ));
    assert!(expired(&events).is_empty());
    assert_eq!(r.next_deadline_ms(), Some(6500));
    r.tick(6499);
    assert!(r.events().is_empty());
    r.tick(6500);
    assert_eq!(expired(&r.events()), vec![a]);
}

#[test]
fn a_session_answered_goes_behind_the_others_for_expiry() {
    let mut r = rig();
    let port = r.m.default_port();
    let a = r.open(0);
    let b = r.open(10);
    r.send(a, json!({}), 20);
    r.m.handle_inbound(port, json!({"sid": a.sid()}), r.at(50));
    r.events();
    assert_eq!(r.next_deadline_ms(), Some(1010));
    r.tick(1010);
    assert_eq!(expired(&r.events()), vec![b]);
    assert_eq!(r.next_deadline_ms(), Some(1050));
    r.tick(1050);
    assert_eq!(expired(&r.events()), vec![a]);
}

#[test]
fn round_trips_on_one_session_add_no_timer_entries() {
    let mut r = rig();
    let port = r.m.default_port();
    let s = r.open(0);
    let entries = r.m.stats().timer_entries;
    for i in 1..1000 {
        r.send(s, json!({}), i);
        r.m.handle_inbound(port, json!({"sid": 1}), r.at(i));
        r.transmits();
        r.events();
    }
    // The first send's deadline entry stands for every later one.
    assert_eq!(r.m.stats().timer_entries, entries + 1);
    assert_eq!(r.next_deadline_ms(), Some(1999));
}

#[test]
fn a_clock_jump_past_millions_of_retries_skips_them_at_once() {
    let mut r = rig();
    let s = r.open(0);
    // Attempt k goes out at 3k ms, times out at 3k + 1 ms and pauses until
    // the next; the clock then jumps a day and 2 ms ahead, into a pause:
    // the 28,800,000 retries before it have lapsed unsent.
    let options = SendOptions::default()
        .timeout(ms(1))
        .retries(u32::MAX, ms(2));
    let send = r.m.send(s, json!({}), options, r.at(0)).unwrap();
    r.transmits();
    let day = 24 * 3600 * 1000;
    r.tick(day + 2);
    // None is worth sending, and the next goes out when the pause ends.
    assert_eq!(r.transmits().len(), 0);
    assert!(failure(&r.events(), send).is_none());
    assert_eq!(r.next_deadline_ms(), Some(u128::from(day) + 3));
    r.tick(day + 3);
    assert_eq!(r.transmits().len(), 1);
    assert_eq!(r.next_deadline_ms(), Some(u128::from(day) + 4));
    // With no pause and no timeout, every remaining attempt lapses at once.
    let s = r.open(day + 3);
    let options = SendOptions::default()
        .timeout(Duration::ZERO)
        .retries(u32::MAX, Duration::ZERO);
    let send = r.m.send(s, json!({}), options, r.at(day + 3)).unwrap();
    r.tick(day + 4);
    assert!(matches!(
        failure(&r.events(), send),
        Some(SessionError::Timeout)
    ));
}

/// `timeout_lower_bound` never comes after `poll_timeout`: it stays on an
/// early entry when a deadline moves later (the session's activity), and
/// meets the exact deadline once `poll_timeout` has repaired the queue.
#[test]
fn the_lower_bound_of_the_next_deadline_is_never_late() {
    let mut r = rig();
    assert_eq!(r.m.timeout_lower_bound(), None, "nothing scheduled");
    let port = r.m.default_port();
    let s = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(1000)));
    assert_eq!(r.m.poll_timeout(), Some(r.at(1000)));
    // Activity moves the expiry later; the queue still holds the early entry.
    r.m.post(s, json!({}), r.at(400)).unwrap();
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(1000)));
    assert_eq!(r.m.poll_timeout(), Some(r.at(1400)));
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(1400)), "repaired");
    // A send's deadline comes first: the bound follows at once.
    r.m.send(s, json!({}), SendOptions::default(), r.at(500))
        .unwrap();
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(600)));
    assert_eq!(r.m.poll_timeout(), Some(r.at(600)));
    // The reply ends the wait: its entry is orphaned, still the bound.
    r.m.handle_inbound(port, json!({"sid": s.sid()}), r.at(550));
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(600)));
    assert_eq!(r.m.poll_timeout(), Some(r.at(1550)));
    assert_eq!(r.m.timeout_lower_bound(), Some(r.at(1550)));
    r.m.end(s).unwrap();
    assert_eq!(r.m.poll_timeout(), None);
    assert_eq!(r.m.timeout_lower_bound(), None, "the queue is repaired");
}

//! Sid allocation per port: order, skipping, wrapping, overflow policies,
//! partitions, and stale handles.

mod common;

use common::{failure, Rig};
use psession_core::{
    CloseReason, Event, ManagerConfig, OverflowPolicy, PortOptions, SendOptions, SessionError,
    SidPartition,
};
use serde_json::json;

fn rig(max: u32, overflow: OverflowPolicy) -> Rig {
    Rig::new(
        ManagerConfig::default()
            .max_session_count(max)
            .overflow(overflow),
    )
}

#[test]
fn sids_start_at_one_and_increase() {
    let mut r = rig(65535, OverflowPolicy::RecycleOldest);
    let port = r.m.default_port();
    let sids: Vec<u32> = (0..5)
        .map(|_| r.m.open_session(port, r.at(0)).unwrap().sid())
        .collect();
    assert_eq!(sids, vec![1, 2, 3, 4, 5]);
}

#[test]
fn allocation_skips_sids_in_use_and_wraps_to_one() {
    let mut r = rig(4, OverflowPolicy::Reject);
    let port = r.m.default_port();
    let s: Vec<_> = (0..4)
        .map(|_| r.m.open_session(port, r.at(0)).unwrap())
        .collect();
    r.m.end(s[0]).unwrap(); // frees 1
    r.m.end(s[2]).unwrap(); // frees 3
                            // The cursor wrapped past 4: it finds 1, then skips 2 (in use) for 3.
    assert_eq!(r.m.open_session(port, r.at(0)).unwrap().sid(), 1);
    assert_eq!(r.m.open_session(port, r.at(0)).unwrap().sid(), 3);
}

#[test]
fn allocation_skips_sids_opened_by_the_peer() {
    let mut r = rig(10, OverflowPolicy::Reject);
    let port = r.m.default_port();
    r.m.handle_inbound(port, json!({"sid": 1}), r.at(0));
    r.m.handle_inbound(port, json!({"sid": 2}), r.at(0));
    assert_eq!(r.m.open_session(port, r.at(0)).unwrap().sid(), 3);
}

#[test]
fn overflow_recycle_oldest_cancels_the_oldest_and_reuses_its_sid() {
    let mut r = rig(3, OverflowPolicy::RecycleOldest);
    let port = r.m.default_port();
    let s: Vec<_> = (0..3)
        .map(|_| r.m.open_session(port, r.at(0)).unwrap())
        .collect();
    r.m.end(s[1]).unwrap();
    let s1b = r.m.open_session(port, r.at(0)).unwrap(); // sid 2 again, now newest
    let send =
        r.m.send(s[0], json!({}), SendOptions::default(), r.at(0))
            .unwrap();
    r.events();
    let fresh = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(fresh.sid(), 1, "sid of the earliest-created session");
    let events = r.events();
    assert!(matches!(
        failure(&events, send),
        Some(SessionError::Cancelled)
    ));
    assert!(events.iter().any(|e| matches!(e, Event::Closed { session, reason: CloseReason::Recycled } if *session == s[0])));
    assert_eq!(r.m.port_stats(port).unwrap().counters.recycled_sessions, 1);
    // Next overflow recycles the next-oldest (sid 3, then 2).
    assert_eq!(r.m.open_session(port, r.at(0)).unwrap().sid(), 3);
    assert_eq!(r.m.open_session(port, r.at(0)).unwrap().sid(), s1b.sid());
}

#[test]
fn stale_handle_to_a_recycled_session_never_reaches_the_new_one() {
    let mut r = rig(1, OverflowPolicy::RecycleOldest);
    let port = r.m.default_port();
    let old = r.m.open_session(port, r.at(0)).unwrap();
    let new = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(old.sid(), new.sid());
    assert_ne!(old, new);
    r.transmits();
    let err =
        r.m.send(old, json!({}), SendOptions::default(), r.at(0))
            .unwrap_err();
    assert!(matches!(err, SessionError::Invalid));
    assert!(matches!(r.m.end(old), Err(SessionError::Invalid)));
    assert!(
        r.m.is_live(new),
        "ending through the stale handle did nothing"
    );
    assert!(r.transmits().is_empty());
}

#[test]
fn overflow_reject_fails_with_exhausted() {
    let mut r = rig(2, OverflowPolicy::Reject);
    let port = r.m.default_port();
    r.m.open_session(port, r.at(0)).unwrap();
    r.m.open_session(port, r.at(0)).unwrap();
    assert!(matches!(
        r.m.open_session(port, r.at(0)),
        Err(SessionError::Exhausted)
    ));
    assert_eq!(r.m.port_stats(port).unwrap().live_sessions, 2);
}

#[test]
fn overflow_custom_policy_chooses_the_sid_to_recycle() {
    let policy = OverflowPolicy::custom(|port, candidates| {
        assert_eq!(port, "default");
        assert_eq!(
            candidates.iter().map(|c| c.sid).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(candidates[1].waiting);
        Some(2)
    });
    let mut r = rig(3, policy);
    let port = r.m.default_port();
    let s: Vec<_> = (0..3)
        .map(|_| r.m.open_session(port, r.at(0)).unwrap())
        .collect();
    r.m.send(s[1], json!({}), SendOptions::default(), r.at(0))
        .unwrap();
    let fresh = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(fresh.sid(), 2);
    assert!(!r.m.is_live(s[1]));
    assert!(r.m.is_live(s[0]) && r.m.is_live(s[2]));
}

#[test]
fn overflow_custom_policy_refusing_or_naming_a_free_sid_gives_exhausted() {
    for answer in [None, Some(0), Some(7), Some(u32::MAX)] {
        let mut r = rig(2, OverflowPolicy::custom(move |_, _| answer));
        let port = r.m.default_port();
        r.m.open_session(port, r.at(0)).unwrap();
        r.m.open_session(port, r.at(0)).unwrap();
        assert!(
            matches!(
                r.m.open_session(port, r.at(0)),
                Err(SessionError::Exhausted)
            ),
            "{answer:?}"
        );
    }
}

#[test]
fn odd_and_even_partitions_allocate_only_their_sids() {
    let mut r = rig(6, OverflowPolicy::Reject);
    let odd =
        r.m.create_port("odd", PortOptions::default().partition(SidPartition::Odd))
            .unwrap();
    let even =
        r.m.create_port("even", PortOptions::default().partition(SidPartition::Even))
            .unwrap();
    let odds: Vec<u32> = (0..3)
        .map(|_| r.m.open_session(odd, r.at(0)).unwrap().sid())
        .collect();
    let evens: Vec<u32> = (0..3)
        .map(|_| r.m.open_session(even, r.at(0)).unwrap().sid())
        .collect();
    assert_eq!(odds, vec![1, 3, 5]);
    assert_eq!(evens, vec![2, 4, 6]);
    assert!(matches!(
        r.m.open_session(odd, r.at(0)),
        Err(SessionError::Exhausted)
    ));
    // The peer's (even) sids still open incoming sessions on the odd port.
    r.m.handle_inbound(odd, json!({"sid": 2}), r.at(0));
    assert_eq!(r.m.port_stats(odd).unwrap().incoming_sessions, 1);
}

#[test]
fn recycle_oldest_with_a_partition_skips_the_peers_sessions() {
    let mut r = Rig::new(
        ManagerConfig::default()
            .max_session_count(4)
            .partition(SidPartition::Odd),
    );
    let port = r.m.default_port();
    r.m.handle_inbound(port, json!({"sid": 2}), r.at(0)); // oldest, but the peer's
    let first = r.m.open_session(port, r.at(0)).unwrap();
    r.m.open_session(port, r.at(0)).unwrap();
    let fresh = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(fresh.sid(), first.sid());
    assert_eq!(r.m.port_stats(port).unwrap().incoming_sessions, 1);
}

#[test]
fn peer_sid_at_u32_max_opens_a_session_beside_local_allocation() {
    let mut r = rig(u32::MAX, OverflowPolicy::Reject);
    let port = r.m.default_port();
    r.m.handle_inbound(port, json!({"sid": u32::MAX}), r.at(0));
    assert!(r.m.session(port, u32::MAX).is_some());
    let s = r.m.open_session(port, r.at(0)).unwrap();
    assert_eq!(s.sid(), 1);
    assert_eq!(r.m.port_stats(port).unwrap().live_sessions, 2);
}

#[test]
fn invalid_partition_and_capacity_settings_are_refused() {
    let bad = [
        PortOptions::default().max_session_count(0),
        PortOptions::default()
            .max_session_count(1)
            .partition(SidPartition::Even),
        PortOptions::default().inbox_capacity(0),
    ];
    let mut r = rig(10, OverflowPolicy::Reject);
    for (i, options) in bad.into_iter().enumerate() {
        let err = r.m.create_port(&format!("p{i}"), options).unwrap_err();
        assert!(matches!(err, SessionError::Config(_)), "{err}");
    }
    let err = psession_core::Manager::<serde_json::Value>::new(
        ManagerConfig::default().max_session_count(0),
    );
    assert!(matches!(err, Err(SessionError::Config(_))));
}

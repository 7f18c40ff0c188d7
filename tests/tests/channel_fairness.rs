//! Fairness and room accounting of a channel sender's queue: freed room
//! goes to the post that has waited longest, whatever frees it (a read, a
//! purge of ended sends, a post that gave up), and nothing of a post that
//! gave up stays behind (a unit test in psession-driver's sender.rs
//! checks the line itself stays bounded).

use std::task::Poll;

use psession_core::{ManagerConfig, PortOptions};
use psession_driver::{Outbound, Port, Sender};
use psession_tests::*;
use serde_json::{json, Value};

async fn full_channel<H: Harness>(cap: usize) -> (Manager<H>, Port, Outbound<Value>) {
    let (manager, _out) = queued::<H>(ManagerConfig::default());
    let (sender, unread) = Sender::<Value>::channel(cap);
    let b = manager
        .create_port("b", sender, PortOptions::default())
        .unwrap();
    for i in 0..cap {
        b.create_session()
            .unwrap()
            .post(json!({ "fill": i }))
            .await
            .unwrap();
    }
    (manager, b, unread)
}

/// A post that gives up while waiting does not let a newer post take the
/// place of an older one.
async fn a_post_that_gives_up_lets_no_newer_post_jump_the_line<H: Harness>() {
    let (_m, b, mut unread) = full_channel::<H>(1).await;
    let s: Vec<_> = (0..3).map(|_| b.create_session().unwrap()).collect();
    let (c0, w0) = WakeCount::new();
    let (c1, w1) = WakeCount::new();
    let (c2, w2) = WakeCount::new();
    let mut p0 = Box::pin(s[0].post(json!({ "n": 0 })));
    let mut p1 = Box::pin(s[1].post(json!({ "n": 1 })));
    assert!(poll_with(&mut p0, &w0).is_pending());
    assert!(poll_with(&mut p1, &w1).is_pending());
    drop(p0); // cancelled (e.g. a timeout around post)
    let mut p2 = Box::pin(s[2].post(json!({ "n": 2 })));
    assert!(poll_with(&mut p2, &w2).is_pending());
    assert_eq!(unread.recv().await.unwrap()["fill"], 0);
    let woken = [c0.count(), c1.count(), c2.count()];
    let r1 = poll_with(&mut p1, &w1).is_ready();
    let r2 = poll_with(&mut p2, &w2).is_ready();
    assert_eq!(
        (woken, r1, r2),
        ([0, 1, 0], true, false),
        "the freed place must go to p1, waiting longest (woken, p1 ready, p2 ready)"
    );
}

/// Room freed by purging the transmissions of ended sends goes to the
/// waiting post, not to a newer one.
async fn room_freed_by_a_purge_goes_to_the_waiting_post<H: Harness>() {
    let (_m, b, _unread) = {
        let (manager, _out) = queued::<H>(ManagerConfig::default());
        let (sender, unread) = Sender::<Value>::channel(2);
        let b = manager
            .create_port("b", sender, PortOptions::default())
            .unwrap();
        (manager, b, unread)
    };
    let mut a = b.create_session().unwrap();
    let mut bb = b.create_session().unwrap();
    let sp = b.create_session().unwrap();
    let mut x = b.create_session().unwrap();
    let mut y = b.create_session().unwrap();
    let sq = b.create_session().unwrap();
    let (_cx, wx) = WakeCount::new();
    let (cp, wp) = WakeCount::new();
    // Two sends fill the queue (capacity 2); a purge keeps both.
    let mut s1 = Box::pin(a.send(json!({ "s": 1 })));
    let mut s2 = Box::pin(bb.send(json!({ "s": 2 })));
    assert!(poll_with(&mut s1, &wx).is_pending());
    assert!(poll_with(&mut s2, &wx).is_pending());
    // A post waits for room.
    let mut p = Box::pin(sp.post(json!({ "p": 1 })));
    assert!(poll_with(&mut p, &wp).is_pending());
    // The sends end; their transmissions stay queued until a purge.
    drop(s1);
    drop(s2);
    let mut s4 = Box::pin(x.send(json!({ "s": 4 })));
    assert!(poll_with(&mut s4, &wx).is_pending());
    drop(s4);
    let mut s5 = Box::pin(y.send(json!({ "s": 5 })));
    assert!(poll_with(&mut s5, &wx).is_pending()); // 4 queued >= purge_at: purge to [s5]
    let p_woken = cp.count();
    let mut q = Box::pin(sq.post(json!({ "q": 1 })));
    let q_ready = poll_with(&mut q, &wx).is_ready();
    let p_ready = poll_with(&mut p, &wp).is_ready();
    assert_eq!(
        (p_woken, p_ready, q_ready),
        (1, true, false),
        "room freed by the purge must go to the waiting post first (p woken, p ready, q ready)"
    );
}

/// A post handed a place whose session ends, or whose future is dropped,
/// before it runs: the place comes back.
async fn a_place_handed_to_a_post_that_gives_up_comes_back<H: Harness>() {
    let (m, b, mut unread) = full_channel::<H>(1).await;
    let s = b.create_session().unwrap();
    let (c, w) = WakeCount::new();
    let mut p = Box::pin(s.post(json!({ "p": 1 })));
    assert!(poll_with(&mut p, &w).is_pending());
    assert_eq!(unread.recv().await.unwrap()["fill"], 0);
    assert_eq!(c.count(), 1);
    s.handle().end().unwrap();
    let r = poll_with(&mut p, &w);
    assert!(matches!(r, Poll::Ready(Err(_))), "{r:?}");
    drop(p);
    // Room is back: a post fits at once.
    let s2 = b.create_session().unwrap();
    let mut p2 = Box::pin(s2.post(json!({ "p": 2 })));
    assert!(matches!(poll_with(&mut p2, &w), Poll::Ready(Ok(()))));
    drop(p2);
    // Now full again; a granted post whose future is dropped before running.
    let s3 = b.create_session().unwrap();
    let mut p3 = Box::pin(s3.post(json!({ "p": 3 })));
    assert!(poll_with(&mut p3, &w).is_pending());
    assert_eq!(unread.recv().await.unwrap()["p"], 2);
    drop(p3);
    let s4 = b.create_session().unwrap();
    let mut p4 = Box::pin(s4.post(json!({ "p": 4 })));
    assert!(matches!(poll_with(&mut p4, &w), Poll::Ready(Ok(()))));
    drop(p4);
    let _ = m;
}

on_both_runtimes!(
    a_post_that_gives_up_lets_no_newer_post_jump_the_line,
    room_freed_by_a_purge_goes_to_the_waiting_post,
    a_place_handed_to_a_post_that_gives_up_comes_back,
);

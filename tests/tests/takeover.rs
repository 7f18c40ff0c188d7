//! A channel taken over by a new port (or a new manager) after the last one
//! left: what the old port left unread never reaches the new port's peer,
//! even when the takeover happens in the very wake-up of the old port's
//! aborted sends; and a send whose reply is already in when it is first
//! polled returns it from that poll.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use psession_core::{ManagerConfig, PortOptions, SessionError};
use psession_driver::{Outbound, Port, Sender};
use psession_tests::*;
use psession_tokio::Tokio;
use serde_json::{json, Value};

/// Posts `message` on a new session of `port`.
async fn post_on(port: &Port<Value>, message: Value) {
    port.create_session().unwrap().post(message).await.unwrap();
}

/// Posts `{"for": "z"}` on `z`, the port that took the channel over, and
/// returns the first message the channel's peer reads.
async fn first_read_once_z_posts(z: &Port<Value>, outbound: &mut Outbound<Value>) -> Value {
    post_on(z, json!({ "for": "z" })).await;
    outbound.recv().await.unwrap()
}

/// A post accepted on a port that is destroyed before its transmission
/// is read never reaches the port that takes the channel over. (The post is
/// made from inside another port's sender, while that one is being called.
/// A channel's transmissions join its queue at once; the takeover drops
/// what the destroyed port left there.)
#[test]
fn a_destroyed_ports_posts_do_not_reach_the_next_port() {
    run_on_tokio(async {
        let (manager, _out) = queued::<Tokio>(ManagerConfig::default());
        let (channel, mut outbound) = Sender::<Value>::channel(8);
        let x = manager
            .create_port("x", channel.clone(), PortOptions::default())
            .unwrap();
        let x_session = x.create_session().unwrap();
        let inner = manager.clone();
        let trigger = Sender::from_fn(move |_message: Value| {
            let mut post = Box::pin(x_session.post(json!({ "secret": "for x only" })));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(post.as_mut().poll(&mut cx).is_ready(), "accepted at once");
            x.destroy().unwrap();
            inner
                .create_port("z", channel.clone(), PortOptions::default())
                .unwrap();
            Ok(())
        });
        let t = manager
            .create_port("trigger", trigger, PortOptions::default())
            .unwrap();
        post_on(&t, json!({ "go": 1 })).await;
        let z = manager.port("z").expect("z took the channel over");
        let first = first_read_once_z_posts(&z, &mut outbound).await;
        assert_eq!(first["for"], "z", "x's post leaked to z's peer: {first}");
        assert!(outbound.is_empty());
    });
}

/// What a destroyed port left in its channel, unread, is not handed to the
/// peer of the port that takes the channel over.
#[test]
fn a_destroyed_ports_queued_posts_do_not_reach_the_next_port() {
    run_on_tokio(async {
        let (manager, _out) = queued::<Tokio>(ManagerConfig::default());
        let (channel, mut outbound) = Sender::<Value>::channel(8);
        let x = manager
            .create_port("x", channel.clone(), PortOptions::default())
            .unwrap();
        let x_session = x.create_session().unwrap();
        x_session
            .post(json!({ "secret": "for x only" }))
            .await
            .unwrap();
        assert_eq!(outbound.len(), 1, "the post is queued at once");
        x.destroy().unwrap();
        let z = manager
            .create_port("z", channel.clone(), PortOptions::default())
            .unwrap();
        let first = first_read_once_z_posts(&z, &mut outbound).await;
        assert_eq!(first["for"], "z", "x's post leaked to z's peer: {first}");
        assert!(outbound.is_empty());
    });
}

/// The task whose send the destroy aborts reacts at once (as it may on a
/// multi-thread runtime, or with a waker that polls inline) by opening a
/// new port on the same channel: a reconnect. The old port leaves the
/// channel under the same lock as it leaves the core, before anyone is
/// woken, so the new port's attach drops the old port's unread post.
#[test]
fn a_reconnect_woken_by_the_destroy_gets_the_old_ports_posts() {
    run_on_tokio(async {
        let (manager, _out) = queued::<Tokio>(ManagerConfig::default());
        let (channel, mut outbound) = Sender::<Value>::channel(8);
        let x = manager
            .create_port("x", channel.clone(), PortOptions::default())
            .unwrap();
        let x_session = x.create_session().unwrap();
        x_session
            .post(json!({ "secret": "for x only" }))
            .await
            .unwrap();
        let mut x_waiting = x.create_session().unwrap();
        // The "reconnect" done by whoever is woken when x's send fails.
        struct Reconnect {
            manager: Manager<Tokio>,
            channel: Sender<Value>,
            z: Mutex<Option<Port<Value>>>,
        }
        impl Wake for Reconnect {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref()
            }
            fn wake_by_ref(self: &Arc<Self>) {
                let mut z = self.z.lock().unwrap();
                if z.is_none() {
                    *z = Some(
                        self.manager
                            .create_port("z", self.channel.clone(), PortOptions::default())
                            .unwrap(),
                    );
                }
            }
        }
        let reconnect = Arc::new(Reconnect {
            manager: manager.clone(),
            channel: channel.clone(),
            z: Mutex::new(None),
        });
        let waker = Waker::from(reconnect.clone());
        let mut send = Box::pin(x_waiting.send(json!({ "q": 1 })));
        assert!(send
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        // (the send's transmission is in the queue too)
        x.destroy().unwrap();
        match send.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Err(SessionError::Aborted(_))) => {}
            other => panic!("{other:?}"),
        }
        drop(send);
        let z = reconnect.z.lock().unwrap().clone().expect("z created");
        let first = first_read_once_z_posts(&z, &mut outbound).await;
        assert_eq!(first["for"], "z", "x's post leaked to z's peer: {first}");
    });
}

/// Two ports share a channel; one is destroyed, the other stays: nothing
/// of the one that stays is dropped, and a third port joining keeps all.
#[test]
fn a_port_leaving_a_shared_channel_drops_nothing() {
    run_on_tokio(async {
        let (manager, _out) = queued::<Tokio>(ManagerConfig::default());
        let (channel, mut outbound) = Sender::<Value>::channel(8);
        let a = manager
            .create_port("a", channel.clone(), PortOptions::default())
            .unwrap();
        let b = manager
            .create_port("b", channel.clone(), PortOptions::default())
            .unwrap();
        post_on(&a, json!({ "n": 1 })).await;
        post_on(&b, json!({ "n": 2 })).await;
        a.destroy().unwrap();
        let c = manager
            .create_port("c", channel.clone(), PortOptions::default())
            .unwrap();
        post_on(&c, json!({ "n": 3 })).await;
        let got: Vec<_> = (0..3)
            .map(|_| outbound.try_recv().unwrap()["n"].clone())
            .collect();
        assert_eq!(got, vec![json!(1), json!(2), json!(3)]);
    });
}

/// The same race with no custom waker: a reconnect task on a multi-thread
/// runtime reacts to its send's `Aborted` by opening a new port on the same
/// channel while another thread destroys the old one. In 300 rounds, x's
/// leftovers never reach z's peer (before the fix they did in most rounds).
#[test]
fn a_reconnect_task_races_the_destroy() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut leaks = 0;
    for _ in 0..300 {
        leaks += rt.block_on(async {
            let (sender, _o) = Sender::<Value>::channel(1024);
            let manager =
                psession_tokio::SessionManager::new(ManagerConfig::default(), sender).unwrap();
            let (channel, mut outbound) = Sender::<Value>::channel(8);
            let x = manager
                .create_port("x", channel.clone(), PortOptions::default())
                .unwrap();
            post_on(&x, json!({ "secret": 1 })).await;
            let mut s = x.create_session().unwrap();
            let (m2, ch2) = (manager.clone(), channel.clone());
            let task = tokio::spawn(async move {
                let r = s.send(json!({ "q": 1 })).await;
                assert!(matches!(r, Err(SessionError::Aborted(_))), "{r:?}");
                m2.create_port("z", ch2, PortOptions::default()).unwrap()
            });
            while manager.stats().waiting_sends == 0 {
                tokio::task::yield_now().await;
            }
            let xx = x.clone();
            std::thread::spawn(move || xx.destroy().unwrap())
                .join()
                .unwrap();
            let z = task.await.unwrap();
            let first = first_read_once_z_posts(&z, &mut outbound).await;
            usize::from(first["for"] != "z")
        });
    }
    println!("leaks: {leaks}/300");
    assert_eq!(
        leaks, 0,
        "x's unread messages reached z's peer {leaks} times in 300"
    );
}

/// The task whose send fails because its manager was dropped reacts by
/// building a new manager on the same channel: the old manager has already
/// let go of the channel (its channel senders are detached under the same
/// lock as it closes, before the wake-ups), so the new one is accepted.
#[test]
fn a_new_manager_woken_by_the_shutdown_gets_the_channel() {
    run_on_tokio(async {
        let (channel, _outbound) = Sender::<Value>::channel(8);
        let old =
            psession_tokio::SessionManager::new(ManagerConfig::default(), channel.clone()).unwrap();
        let mut session = old.create_session("default").unwrap();
        struct Rebuild {
            channel: Sender<Value>,
            outcome: Mutex<Option<Result<(), SessionError>>>,
            rebuilt: Mutex<Option<psession_tokio::SessionManager>>,
        }
        impl Wake for Rebuild {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref()
            }
            fn wake_by_ref(self: &Arc<Self>) {
                let mut o = self.outcome.lock().unwrap();
                if o.is_none() {
                    let rebuilt = psession_tokio::SessionManager::new(
                        ManagerConfig::default(),
                        self.channel.clone(),
                    );
                    *o = Some(rebuilt.map(|m| {
                        *self.rebuilt.lock().unwrap() = Some(m);
                    }));
                }
            }
        }
        let rebuild = Arc::new(Rebuild {
            channel: channel.clone(),
            outcome: Mutex::new(None),
            rebuilt: Mutex::new(None),
        });
        let waker = Waker::from(rebuild.clone());
        let mut send = Box::pin(session.send(json!({})));
        assert!(send
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(old);
        let outcome = rebuild.outcome.lock().unwrap().take().expect("woken");
        assert!(outcome.is_ok(), "reconnect refused: {outcome:?}");
    });
}

/// A closure sender that answers at once: the reply is in before the send's
/// first poll returns, and that poll returns it. (Code that polls once,
/// like `now_or_never` or a `select!` whose other branch is ready, and then
/// drops the send would otherwise lose a reply it already had.)
#[test]
fn a_reply_already_in_is_returned_by_the_first_poll() {
    run_on_tokio(async {
        let slot: Arc<Mutex<Option<Port<Value>>>> = Arc::default();
        let inner = slot.clone();
        let manager = psession_tokio::SessionManager::new(
            ManagerConfig::default(),
            Sender::from_fn(move |m: Value| {
                let port = inner.lock().unwrap().clone().ok_or("no port")?;
                port.dispatch(json!({ "sid": m["sid"], "echo": 1 }));
                Ok(())
            }),
        )
        .unwrap();
        *slot.lock().unwrap() = Some(manager.default_port());
        let mut session = manager.create_session("default").unwrap();
        let mut send = Box::pin(session.send(json!({})));
        let first = send.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        match first {
            Poll::Ready(Ok(reply)) => assert_eq!(reply["echo"], 1),
            other => panic!("the reply was already in, yet: {other:?}"),
        }
    });
}

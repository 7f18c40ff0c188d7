//! psession wired back to back in memory, as in the README's Quick look,
//! on any runtime: the psession side of the async round-trip benchmarks
//! (`benches/async_round_trip.rs`) and of `examples/round_trip_profile.rs`.
//!
//! Each link is two bounded [`Sender::channel`]s of [`CAPACITY`] messages,
//! each drained by a forwarder task that dispatches into the port at the
//! other end. Every server manager takes its sessions from `events()` and
//! spawns a task per session that `recv`s each request and `post`s
//! [`answer`]; it ends its side after the request marked `"last"`. All
//! tasks are spawned with the runtime's [`Runtime::spawn`], so call
//! [`wire`] inside the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};

use psession_driver::{
    ManagerConfig, ManagerEvent, Port, PortOptions, Runtime, Sender, Session, SessionManager,
};
use serde_json::Value;

use crate::oneshot_correlator::answer;

/// Capacity of every in-memory channel, in messages (the baselines' too).
pub const CAPACITY: usize = 64;

/// Client and server managers on runtime `R`, and the links between them.
/// Dropping it shuts every manager down, which ends every task.
pub struct Wiring<R: Runtime> {
    /// Every manager: its ports do not keep it alive.
    _managers: Vec<SessionManager<R>>,
    /// Per link, the client manager's port for it.
    links: Vec<Port>,
    /// The link of the next [`open`](Self::open).
    next: AtomicUsize,
}

impl<R: Runtime> Wiring<R> {
    /// A new conversation on the client side, on the links in turn.
    pub fn open(&self) -> Session {
        let link = self.next.fetch_add(1, Ordering::Relaxed) % self.links.len();
        self.links[link].create_session().expect("a session")
    }
}

/// One client and one server manager, linked through their default ports.
pub fn pair<R: Runtime>() -> Wiring<R> {
    wire(1, 1)
}

/// `clients` client managers and `servers` server managers (at least one
/// each), linked by `max(clients, servers)` channel pairs: link k joins
/// client k % clients and server k % servers, each through its default
/// port or, past a manager's first link, a named port.
pub fn wire<R: Runtime>(clients: usize, servers: usize) -> Wiring<R> {
    let (clients, servers) = (clients.max(1), servers.max(1));
    let links = clients.max(servers);
    let mut managers = Vec::new();
    let mut client_ports = Vec::new();
    let mut client_outs = Vec::new();
    for k in 0..links {
        let (to_server, client_out) = Sender::<Value>::channel(CAPACITY);
        client_ports.push(attach(&mut managers, k % clients, k, to_server));
        client_outs.push(client_out);
    }
    for (k, mut client_out) in client_outs.into_iter().enumerate() {
        let (to_client, mut server_out) = Sender::<Value>::channel(CAPACITY);
        let server_port = attach(&mut managers, clients + k % servers, k, to_client);
        let client_port = client_ports[k].clone();
        spawn::<R>(async move {
            while let Some(message) = client_out.recv().await {
                server_port.dispatch(message);
            }
        });
        spawn::<R>(async move {
            while let Some(message) = server_out.recv().await {
                client_port.dispatch(message);
            }
        });
    }
    for server in &managers[clients..] {
        let mut events = server.events();
        spawn::<R>(async move {
            while let Some(event) = events.next().await {
                if let ManagerEvent::Incoming(session) = event {
                    spawn::<R>(serve(session));
                }
            }
        });
    }
    Wiring {
        _managers: managers,
        links: client_ports,
        next: AtomicUsize::new(0),
    }
}

/// Answers each request of `session` until the one marked `"last"`.
async fn serve(mut session: Session) {
    while let Ok(request) = session.recv().await {
        let last = request["last"] == true;
        if session.post(answer(&request)).await.is_err() || last {
            break;
        }
    }
}

/// Gives manager `index` a port for link `link` that sends through
/// `sender`: a new manager's default port (managers are made in index
/// order), or a port named after the link on one that exists.
fn attach<R: Runtime>(
    managers: &mut Vec<SessionManager<R>>,
    index: usize,
    link: usize,
    sender: Sender<Value>,
) -> Port {
    if index == managers.len() {
        let manager = SessionManager::new(ManagerConfig::default(), sender).expect("a manager");
        let port = manager.default_port();
        managers.push(manager);
        return port;
    }
    managers[index]
        .create_port(format!("link{link}"), sender, PortOptions::default())
        .expect("a port")
}

fn spawn<R: Runtime>(task: impl std::future::Future<Output = ()> + Send + 'static) {
    R::spawn(task).expect("wire() runs inside the runtime");
}

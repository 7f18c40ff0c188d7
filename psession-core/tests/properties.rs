//! Property tests on a virtual clock.
//!
//! `model_agrees` drives a [`Manager`] with random interleavings of API
//! calls, inbound replies (correct, duplicate, late), garbage messages and
//! clock ticks (small, zero, backwards, days), on up to three ports with
//! tiny sid spaces (so sids are recycled and refused), and checks every
//! output against a small reference model of SPEC sections 2-3 written with
//! plain maps and linear scans. On top of the model's exact comparison it
//! checks invariants derived on their own: every send ends exactly once,
//! with one outcome; the clock never times a send out before
//! `t + (r+1)*timeout + r*interval` and leaves nothing due unfired; the
//! transport gets exactly the transmissions that came due and were still
//! wanted; live sids are unique per port; stale handles are refused; the
//! deadline queue stays bounded; and once everything is ended nothing at
//! all remains.
//!
//! `garbage_inbound` throws arbitrary JSON values and arbitrary bytes at
//! `handle_inbound`.
//!
//! Each property runs at least the cases its config says; a soak run can
//! ask for more, e.g. `PROPTEST_CASES=100000 cargo test --release -p
//! psession-core --test properties`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use psession_core::{
    Cause, CloseReason, Counters, DropReason, Event, Manager, ManagerConfig, OverflowCandidate,
    OverflowPolicy, PortId, PortOptions, PortStats, Routed, SendId, SendOptions, SessionError,
    SessionId, SidPartition, Transmit,
};
use serde_json::{json, Map, Value};

const PORT_NAMES: [&str; 3] = ["default", "a", "b"];
const DAY_MS: i64 = 86_400_000;

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

// ===== the reference sid parser (SPEC 1) ==================================

/// The sid a JSON message carries in `field`: a positive integer that fits
/// in `u32` (an integral float counts), anything else is no sid.
fn ref_sid(message: &Value, field: &str) -> Option<u32> {
    let Value::Number(number) = message.as_object()?.get(field)? else {
        return None;
    };
    if let Some(n) = number.as_u64() {
        return u32::try_from(n).ok().filter(|&n| n > 0);
    }
    if number.is_i64() {
        return None; // negative
    }
    let f = number.as_f64()?;
    (f.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u32)
}

fn tagged(message: &Value, sid: u32) -> Option<Value> {
    let mut object = message.as_object()?.clone();
    object.insert("sid".to_owned(), Value::from(sid));
    Some(Value::Object(object))
}

// ===== generated configuration and operations =============================

#[derive(Debug, Clone, Copy, PartialEq)]
enum Overflow {
    Recycle,
    Reject,
    /// Custom: recycle the newest candidate.
    Newest,
    /// Custom: name a sid this side does not allocate (refused).
    Bogus,
}

#[derive(Debug, Clone)]
struct PortCfg {
    timeout: u64,
    max_life: u64,
    max_count: u32,
    overflow: Overflow,
    retry_count: u32,
    retry_interval: u64,
    partition: SidPartition,
    max_incoming: u32,
    inbox: u32,
}

/// One session offered to a custom overflow policy, comparable.
type Offer = (SessionId, u32, Instant, bool, bool);

/// What the custom overflow policies were offered: port name, candidates.
type Offers = Arc<Mutex<Vec<(String, Vec<Offer>)>>>;

impl PortCfg {
    fn options(&self, offers: &Offers) -> PortOptions {
        let offers = offers.clone();
        let record = move |name: &str, candidates: &[OverflowCandidate]| {
            let offer = candidates
                .iter()
                .map(|c| (c.session, c.sid, c.last_activity, c.waiting, c.incoming))
                .collect();
            offers.lock().unwrap().push((name.to_owned(), offer));
        };
        let overflow = match self.overflow {
            Overflow::Recycle => OverflowPolicy::RecycleOldest,
            Overflow::Reject => OverflowPolicy::Reject,
            Overflow::Newest => OverflowPolicy::custom(move |name, c| {
                record(name, c);
                c.last().map(|c| c.sid)
            }),
            Overflow::Bogus => OverflowPolicy::custom(move |name, c| {
                record(name, c);
                Some(1000)
            }),
        };
        PortOptions::default()
            .session_timeout(ms(self.timeout))
            .session_max_life(ms(self.max_life))
            .max_session_count(self.max_count)
            .overflow(overflow)
            .retry_count(self.retry_count)
            .retry_interval(ms(self.retry_interval))
            .partition(self.partition)
            .max_incoming_sessions(self.max_incoming)
            .inbox_capacity(self.inbox)
    }

    fn allocates(&self, sid: u32) -> bool {
        sid >= 1
            && sid <= self.max_count
            && match self.partition {
                SidPartition::All => true,
                SidPartition::Odd => sid % 2 == 1,
                SidPartition::Even => sid.is_multiple_of(2),
            }
    }

    fn capacity(&self) -> usize {
        (1..=self.max_count).filter(|&s| self.allocates(s)).count()
    }

    fn first_sid(&self) -> u32 {
        if self.partition == SidPartition::Even {
            2
        } else {
            1
        }
    }

    fn step(&self) -> u32 {
        if self.partition == SidPartition::All {
            1
        } else {
            2
        }
    }
}

fn port_cfg() -> impl Strategy<Value = PortCfg> {
    (
        prop_oneof![1 => Just(0u64), 6 => 1..=25u64, 3 => 25..=80u64, 1 => Just(1000u64)],
        prop_oneof![1 => Just(0u64), 3 => 1..=60u64, 6 => 60..=400u64, 1 => Just(5000u64)],
        1u32..=6,
        prop_oneof![
            3 => Just(Overflow::Recycle),
            2 => Just(Overflow::Reject),
            1 => Just(Overflow::Newest),
            1 => Just(Overflow::Bogus),
        ],
        0u32..=3,
        0u64..=20,
        prop_oneof![
            2 => Just(SidPartition::All),
            1 => Just(SidPartition::Odd),
            1 => Just(SidPartition::Even),
        ],
        0u32..=4,
        1u32..=3,
    )
        .prop_map(
            |(
                timeout,
                max_life,
                max_count,
                overflow,
                retry_count,
                retry_interval,
                partition,
                max_incoming,
                inbox,
            )| PortCfg {
                timeout,
                max_life,
                max_count: if partition == SidPartition::Even {
                    max_count.max(2)
                } else {
                    max_count
                },
                overflow,
                retry_count,
                retry_interval,
                partition,
                max_incoming,
                inbox,
            },
        )
}

/// How a handle is chosen from a history.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// One of the latest three.
    Recent,
    /// Any, live or not.
    Any,
    /// One that is live (or, for probes, stale), if any.
    Live,
}

/// A handle chosen from a history of handles.
#[derive(Debug, Clone, Copy)]
struct Pick {
    mode: Mode,
    n: u16,
}

impl Pick {
    fn from<T: Copy>(self, items: &[T], live: impl Fn(&T) -> bool) -> Option<T> {
        let n = usize::from(self.n);
        let len = items.len();
        match self.mode {
            Mode::Live => {
                let live: Vec<T> = items.iter().copied().filter(live).collect();
                if !live.is_empty() {
                    return Some(live[n % live.len()]);
                }
                (len > 0).then(|| items[len - 1])
            }
            _ if len == 0 => None,
            Mode::Recent => Some(items[len - 1 - n % len.min(3)]),
            Mode::Any => Some(items[n % len]),
        }
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    (
        prop_oneof![
            5 => Just(Mode::Live),
            3 => Just(Mode::Recent),
            2 => Just(Mode::Any),
        ],
        any::<u16>(),
    )
        .prop_map(|(mode, n)| Pick { mode, n })
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    timeout: Option<u64>,
    retry_count: Option<u32>,
    retry_interval: Option<u64>,
}

impl Opts {
    fn send_options(self) -> SendOptions {
        SendOptions {
            timeout: self.timeout.map(ms),
            retry_count: self.retry_count,
            retry_interval: self.retry_interval.map(ms),
        }
    }
}

fn opts() -> impl Strategy<Value = Opts> {
    (
        option::of(0..=60u64),
        option::of(0..=3u32),
        option::of(0..=20u64),
    )
        .prop_map(|(timeout, retry_count, retry_interval)| Opts {
            timeout,
            retry_count,
            retry_interval,
        })
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Cancel,
    Abort(Option<&'static str>),
    Timeout,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Cancel),
        Just(Kind::Abort(None)),
        Just(Kind::Abort(Some("boom"))),
        Just(Kind::Timeout),
    ]
}

/// Values that are or look like a sid.
fn weird_sid() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1.5)),
        Just(json!(1e30)),
        Just(json!(-1e30)),
        Just(json!("3")),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(Value::Null),
        Just(json!(3.0)),
        Just(json!(-0.0)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(u32::MAX)),
        Just(json!(u64::from(u32::MAX) + 1)),
        Just(json!(4294967295.0)),
        Just(json!(4294967296.0)),
        Just(json!([1])),
        Just(json!({"sid": 1})),
        Just(json!(true)),
        (1u32..=12).prop_map(Value::from),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9]{0,6}".prop_map(Value::from),
        weird_sid(),
    ]
}

/// Arbitrary JSON, nested, with keys that are often the sid field.
fn arb_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec(
                (
                    prop_oneof![
                        Just("sid".to_owned()),
                        Just("sessionId".to_owned()),
                        "[a-z]{1,3}"
                    ],
                    inner,
                ),
                0..5,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// What the peer may send: garbage, or a session message for some sid.
fn inbound_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => arb_json(),
        3 => (weird_sid(), arb_json()).prop_map(|(sid, x)| json!({"sid": sid, "x": x})),
        3 => (1u32..=12).prop_map(|sid| json!({"sid": sid, "hello": true})),
        1 => (13u32..).prop_map(|sid| json!({"sid": sid})),
    ]
}

/// A message the application sends or posts: mostly objects (some with a
/// bogus sid of their own, which must be overwritten), some untaggable.
fn app_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        9 => (0..1000u32, option::of(weird_sid())).prop_map(|(n, sid)| match sid {
            Some(sid) => json!({"op": n, "sid": sid}),
            None => json!({"op": n}),
        }),
        1 => prop_oneof![
            Just(json!("text")),
            Just(json!([1, 2])),
            Just(json!(5)),
            Just(Value::Null),
        ],
    ]
}

fn tick() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0..=5i64,
        4 => 0..=30i64,
        2 => 30..=100i64,
        1 => 100..=400i64,
        1 => -50..=-1i64,
        1 => (1..=3i64).prop_map(|days| days * DAY_MS),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Open(Pick),
    Send(Pick, Value, Opts),
    Post(Pick, Value),
    End(Pick),
    Fail(Pick, Kind),
    FailPort(Pick, Kind),
    FailAll(Kind),
    Clear,
    ClearPort(Pick),
    DestroyPort(usize),
    /// Create the port of this name; `bool`: with an unusable option.
    CreatePort(usize, PortCfg, bool),
    Withdraw(Pick),
    TransmitError(Pick),
    /// The peer answers on a session (maybe ended): `copies` times, the sid
    /// maybe written as a float.
    Reply(Pick, u8, bool),
    /// The peer answers a session that has a send waiting.
    ReplyWaiting(u16),
    Inbound(Pick, Value),
    Deliver(Pick, Value),
    Recv(Pick),
    /// Move the wall clock (maybe backwards), maybe call `handle_timeout`
    /// and then check `poll_timeout`.
    Tick(i64, bool, bool),
    CheckTimeout,
    /// Use a handle that is no longer live with every call.
    Probe(Pick),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => pick().prop_map(Op::Open),
        14 => (pick(), app_message(), opts()).prop_map(|(p, m, o)| Op::Send(p, m, o)),
        4 => (pick(), app_message()).prop_map(|(p, m)| Op::Post(p, m)),
        3 => pick().prop_map(Op::End),
        2 => (pick(), kind()).prop_map(|(p, k)| Op::Fail(p, k)),
        1 => (pick(), kind()).prop_map(|(p, k)| Op::FailPort(p, k)),
        1 => kind().prop_map(Op::FailAll),
        1 => Just(Op::Clear),
        1 => pick().prop_map(Op::ClearPort),
        1 => (0..3usize).prop_map(Op::DestroyPort),
        2 => (0..3usize, port_cfg(), prop::bool::weighted(0.1))
            .prop_map(|(i, c, bad)| Op::CreatePort(i, c, bad)),
        1 => pick().prop_map(Op::Withdraw),
        1 => pick().prop_map(Op::TransmitError),
        6 => (pick(), 1u8..=3, prop::bool::weighted(0.2)).prop_map(|(p, n, f)| Op::Reply(p, n, f)),
        6 => any::<u16>().prop_map(Op::ReplyWaiting),
        5 => (pick(), inbound_message()).prop_map(|(p, m)| Op::Inbound(p, m)),
        2 => (pick(), arb_json()).prop_map(|(p, m)| Op::Deliver(p, m)),
        4 => pick().prop_map(Op::Recv),
        24 => (tick(), prop::bool::weighted(0.85), any::<bool>())
            .prop_map(|(d, h, c)| Op::Tick(d, h, c)),
        3 => Just(Op::CheckTimeout),
        2 => pick().prop_map(Op::Probe),
    ]
}

// ===== comparable outputs ==================================================

#[derive(Debug, Clone, PartialEq)]
enum Err {
    Timeout,
    Cancelled,
    Invalid,
    Aborted(Option<String>),
    Transport(String),
    Busy,
    Exhausted,
    Untaggable,
    NoSuchPort,
    PortExists(String),
    Config,
}

fn err(error: &SessionError) -> Err {
    match error {
        SessionError::Timeout => Err::Timeout,
        SessionError::Cancelled => Err::Cancelled,
        SessionError::Invalid => Err::Invalid,
        SessionError::Aborted(cause) => Err::Aborted(cause.as_ref().map(ToString::to_string)),
        SessionError::Transport(cause) => Err::Transport(cause.to_string()),
        SessionError::Busy => Err::Busy,
        SessionError::Exhausted => Err::Exhausted,
        SessionError::Untaggable => Err::Untaggable,
        SessionError::NoSuchPort => Err::NoSuchPort,
        SessionError::PortExists(name) => Err::PortExists(name.clone()),
        SessionError::Config(_) => Err::Config,
        other => panic!("unexpected error kind {other:?}"),
    }
}

fn expect_err<T: Debug>(actual: &Result<T, SessionError>, expected: Err) {
    match actual {
        Err(e) => assert_eq!(err(e), expected, "wrong error"),
        Ok(v) => panic!("expected {expected:?}, got Ok({v:?})"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Reply(SessionId, SendId, Value),
    Failed(SessionId, SendId, Err),
    Readable(SessionId),
    Incoming(SessionId),
    Closed(SessionId, CloseReason),
    Dropped(PortId, u32, DropReason),
}

impl Ev {
    fn from(event: Event<Value>) -> Self {
        match event {
            Event::Reply {
                session,
                send,
                message,
            } => Ev::Reply(session, send, message),
            Event::SendFailed {
                session,
                send,
                error,
            } => Ev::Failed(session, send, err(&error)),
            Event::Readable { session } => Ev::Readable(session),
            Event::Incoming { session } => Ev::Incoming(session),
            Event::Closed { session, reason } => Ev::Closed(session, reason),
            Event::Dropped { port, sid, reason } => Ev::Dropped(port, sid, reason),
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn stream(&self) -> Stream {
        match self {
            Ev::Reply(s, ..)
            | Ev::Failed(s, ..)
            | Ev::Readable(s)
            | Ev::Incoming(s)
            | Ev::Closed(s, _) => Stream::Session(*s),
            Ev::Dropped(p, ..) => Stream::Port(*p),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stream {
    Session(SessionId),
    Port(PortId),
}

#[derive(Debug, Clone, PartialEq)]
struct Tx {
    port: PortId,
    session: SessionId,
    send: Option<SendId>,
    message: Value,
}

impl Tx {
    fn from(t: Transmit<Value>) -> Self {
        Tx {
            port: t.port,
            session: t.session,
            send: t.send,
            message: t.message,
        }
    }
}

/// The two lists hold the same items, and in the same order within each
/// stream (the order *across* sessions depends on slab keys and timer
/// tokens, which the model does not reproduce).
fn same_per_stream<T: PartialEq + Debug, K: Eq + Hash + Copy>(
    what: &str,
    actual: &[T],
    expected: &[T],
    key: impl Fn(&T) -> K,
) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: got {actual:#?}\nexpected {expected:#?}"
    );
    let keys: HashSet<K> = expected.iter().map(&key).collect();
    for k in keys {
        let a: Vec<&T> = actual.iter().filter(|x| key(x) == k).collect();
        let e: Vec<&T> = expected.iter().filter(|x| key(x) == k).collect();
        assert_eq!(
            a, e,
            "{what} differ\n(all got {actual:#?}\nall expected {expected:#?})"
        );
    }
}

// ===== the reference model =================================================

#[derive(Debug, Clone, Copy)]
enum Phase {
    Awaiting(u64),
    Backoff(u64),
}

impl Phase {
    fn at(self) -> u64 {
        match self {
            Phase::Awaiting(t) | Phase::Backoff(t) => t,
        }
    }
}

#[derive(Debug)]
struct MWait {
    send: SendId,
    phase: Phase,
    retries_left: u32,
    timeout: u64,
    interval: u64,
    /// The tagged message, transmitted again on each retry.
    message: Value,
}

#[derive(Debug)]
struct MSession {
    port: PortId,
    sid: u32,
    incoming: bool,
    last_activity: u64,
    late_pending: bool,
    waiting: Option<MWait>,
    inbox: VecDeque<Value>,
}

#[derive(Debug)]
struct MPort {
    name: &'static str,
    cfg: PortCfg,
    cursor: u32,
    /// Live sessions, oldest first.
    order: Vec<SessionId>,
    sids: HashMap<u32, SessionId>,
    counters: Counters,
}

impl MPort {
    /// Whether every sid this side allocates is taken.
    fn is_full(&self) -> bool {
        let used = self.sids.keys().filter(|&&s| self.cfg.allocates(s));
        used.count() >= self.cfg.capacity()
    }
}

/// The manager as SPEC 2-3 describes it, on a clock in milliseconds,
/// with linear scans where the manager has lists, heaps and slabs.
///
/// Where the SPEC leaves a choice, the model follows the manager's
/// documented one:
/// - time only moves forward (an older `now` counts as the latest one seen),
///   and every input that takes `now` first fires every deadline that has
///   passed, catching up: each session's deadlines fire in order, each
///   computed from the previous deadline, not from the time of the call;
/// - an attempt times out at `sent + timeout`; with retries left the send
///   pauses until `deadline + retry_interval`, then goes out again, unless
///   that attempt's own wait is already over when the clock gets there;
/// - a transmission of a send that has ended by the time it is polled is
///   discarded (posts always go out);
/// - a send that ends without a reply restarts the session's idle clock: at
///   its deadline when the clock timed it out, at `now` otherwise, but never
///   earlier than the session's last activity;
/// - the first message queued after a send ended without its reply counts
///   as late;
/// - with partition `All`, any unknown sid opens an incoming session; with
///   `Odd`/`Even`, an unknown sid of this side's own is dropped instead;
/// - recycling considers only sessions whose sid this side allocates;
/// - destroying the default port makes a fresh one with the manager's
///   settings (the harness registers it).
#[derive(Debug, Default)]
struct Model {
    /// The latest time the manager has seen.
    now: u64,
    /// An input took `now` (and so fired what was due) since last asked.
    advanced: bool,
    ports: HashMap<PortId, MPort>,
    names: HashMap<&'static str, PortId>,
    sessions: HashMap<SessionId, MSession>,
    events: Vec<Ev>,
    transmits: VecDeque<Tx>,
    counters: Counters,
}

impl Model {
    /// Takes `t` as the current time and fires what is due.
    fn advance(&mut self, t: u64) {
        self.now = self.now.max(t);
        self.advanced = true;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.fire_due(id);
        }
    }

    fn add_port(&mut self, name: &'static str, id: PortId, cfg: PortCfg) {
        let port = MPort {
            name,
            cursor: cfg.first_sid(),
            cfg,
            order: Vec::new(),
            sids: HashMap::new(),
            counters: Counters::default(),
        };
        assert!(self.ports.insert(id, port).is_none(), "port id reused");
        self.names.insert(name, id);
    }

    fn deadline(&self, s: &MSession) -> u64 {
        match &s.waiting {
            Some(w) => w.phase.at(),
            None => s
                .last_activity
                .saturating_add(self.ports[&s.port].cfg.max_life),
        }
    }

    fn earliest(&self) -> Option<u64> {
        self.sessions.values().map(|s| self.deadline(s)).min()
    }

    fn waiting_count(&self, port: Option<PortId>) -> usize {
        self.sessions
            .values()
            .filter(|s| s.waiting.is_some() && (port.is_none() || port == Some(s.port)))
            .count()
    }

    fn insert(&mut self, id: SessionId, port: PortId, sid: u32, incoming: bool) {
        assert_eq!(id.sid(), sid, "unexpected sid");
        assert_eq!(id.port(), port, "session on the wrong port");
        let p = self.ports.get_mut(&port).unwrap();
        assert!(
            !p.sids.contains_key(&sid),
            "sid {sid} given to two live sessions"
        );
        p.sids.insert(sid, id);
        p.order.push(id);
        let session = MSession {
            port,
            sid,
            incoming,
            last_activity: self.now,
            late_pending: false,
            waiting: None,
            inbox: VecDeque::new(),
        };
        assert!(self.sessions.insert(id, session).is_none());
    }

    fn close(&mut self, id: SessionId, reason: CloseReason, error: Err) {
        let s = self.sessions.remove(&id).unwrap();
        let p = self.ports.get_mut(&s.port).unwrap();
        p.order.retain(|x| *x != id);
        p.sids.remove(&s.sid);
        if let Some(w) = s.waiting {
            self.events.push(Ev::Failed(id, w.send, error));
        }
        if reason == CloseReason::Expired {
            p.counters.expired_sessions += 1;
            self.counters.expired_sessions += 1;
        }
        self.events.push(Ev::Closed(id, reason));
    }

    fn fail_waiting(&mut self, id: SessionId, error: Option<Err>, t: u64) -> bool {
        let s = self.sessions.get_mut(&id).unwrap();
        let Some(w) = s.waiting.take() else {
            return false;
        };
        s.last_activity = s.last_activity.max(t);
        s.late_pending = true;
        if let Some(error) = error {
            self.events.push(Ev::Failed(id, w.send, error));
        }
        true
    }

    fn drop_inbound(&mut self, port: PortId, sid: u32, reason: DropReason) -> Routed<Value> {
        let refused = u64::from(reason == DropReason::IncomingLimit);
        let port_counters = self.ports.get_mut(&port).map(|p| &mut p.counters);
        for c in port_counters.into_iter().chain([&mut self.counters]) {
            c.dropped_messages += 1;
            c.incoming_refused += refused;
        }
        self.events.push(Ev::Dropped(port, sid, reason));
        Routed::Dropped(reason)
    }

    fn open(&mut self, port: PortId, t: u64, actual: &Result<SessionId, SessionError>) {
        self.advance(t);
        let Some(p) = self.ports.get_mut(&port) else {
            return expect_err(actual, Err::NoSuchPort);
        };
        let cfg = p.cfg.clone();
        let sid = if !p.is_full() {
            loop {
                let sid = p.cursor;
                p.cursor = if sid + cfg.step() <= cfg.max_count {
                    sid + cfg.step()
                } else {
                    cfg.first_sid()
                };
                if !p.sids.contains_key(&sid) {
                    break sid;
                }
            }
        } else {
            let candidates: Vec<SessionId> = p
                .order
                .iter()
                .copied()
                .filter(|id| cfg.allocates(id.sid()))
                .collect();
            let victim = match cfg.overflow {
                Overflow::Recycle => candidates.first(),
                Overflow::Newest => candidates.last(),
                Overflow::Reject | Overflow::Bogus => None,
            };
            let Some(&victim) = victim else {
                return expect_err(actual, Err::Exhausted);
            };
            p.counters.recycled_sessions += 1;
            self.counters.recycled_sessions += 1;
            self.close(victim, CloseReason::Recycled, Err::Cancelled);
            victim.sid()
        };
        let id = *actual.as_ref().expect("open_session failed");
        self.insert(id, port, sid, false);
    }

    fn send(
        &mut self,
        id: SessionId,
        message: &Value,
        opts: Opts,
        t: u64,
        actual: &Result<SendId, SessionError>,
    ) {
        self.advance(t);
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&id) else {
            return expect_err(actual, Err::Invalid);
        };
        if s.waiting.is_some() {
            return expect_err(actual, Err::Busy);
        }
        let Some(message) = tagged(message, s.sid) else {
            return expect_err(actual, Err::Untaggable);
        };
        let send = *actual.as_ref().expect("send failed");
        let cfg = &self.ports[&s.port].cfg;
        let timeout = opts.timeout.unwrap_or(cfg.timeout);
        let retries = opts.retry_count.unwrap_or(cfg.retry_count);
        let interval = opts.retry_interval.unwrap_or(cfg.retry_interval);
        s.waiting = Some(MWait {
            send,
            phase: Phase::Awaiting(now + timeout),
            retries_left: retries,
            timeout,
            interval,
            message: message.clone(),
        });
        s.last_activity = now;
        s.late_pending = false;
        self.transmits.push_back(Tx {
            port: s.port,
            session: id,
            send: Some(send),
            message,
        });
    }

    fn post(&mut self, id: SessionId, message: &Value, t: u64) -> Result<(), Err> {
        self.advance(t);
        let s = self.sessions.get_mut(&id).ok_or(Err::Invalid)?;
        let message = tagged(message, s.sid).ok_or(Err::Untaggable)?;
        s.last_activity = self.now;
        self.transmits.push_back(Tx {
            port: s.port,
            session: id,
            send: None,
            message,
        });
        Ok(())
    }

    fn end(&mut self, id: SessionId) -> Result<(), Err> {
        if !self.sessions.contains_key(&id) {
            return Err(Err::Invalid);
        }
        self.close(id, CloseReason::Ended, Err::Cancelled);
        Ok(())
    }

    fn fail(&mut self, id: SessionId, error: Err, t: u64) -> Result<(), Err> {
        self.advance(t);
        if !self.sessions.contains_key(&id) {
            return Err(Err::Invalid);
        }
        self.fail_waiting(id, Some(error), self.now);
        Ok(())
    }

    fn fail_port(&mut self, port: PortId, error: Err, t: u64) -> Result<(), Err> {
        self.advance(t);
        let order = self.ports.get(&port).ok_or(Err::NoSuchPort)?.order.clone();
        for id in order {
            self.fail_waiting(id, Some(error.clone()), self.now);
        }
        Ok(())
    }

    fn fail_all(&mut self, error: Err, t: u64) {
        self.advance(t);
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.fail_waiting(id, Some(error.clone()), self.now);
        }
    }

    fn close_port(&mut self, port: PortId, reason: CloseReason, error: Err) -> Result<(), Err> {
        let order = self.ports.get(&port).ok_or(Err::NoSuchPort)?.order.clone();
        for id in order {
            self.close(id, reason, error.clone());
        }
        Ok(())
    }

    fn clear(&mut self) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id, CloseReason::Cleared, Err::Cancelled);
        }
    }

    fn destroy_port(&mut self, port: PortId) -> Result<(), Err> {
        self.close_port(port, CloseReason::PortDestroyed, Err::Aborted(None))?;
        self.ports.remove(&port);
        self.names.retain(|_, p| *p != port);
        self.transmits.retain(|t| t.port != port);
        Ok(())
    }

    fn current_send(&self, send: SendId) -> Option<SessionId> {
        self.sessions
            .iter()
            .find(|(_, s)| s.waiting.as_ref().is_some_and(|w| w.send == send))
            .map(|(id, _)| *id)
    }

    fn end_send(&mut self, send: SendId, error: Option<Err>, t: u64) -> bool {
        self.advance(t);
        match self.current_send(send) {
            Some(id) => self.fail_waiting(id, error, self.now),
            None => false,
        }
    }

    fn inbound(&mut self, port: PortId, message: Value, t: u64, actual: &Routed<Value>) {
        let Some(sid) = ref_sid(&message, "sid") else {
            match actual {
                Routed::NotSession(back) => assert_eq!(*back, message, "message not untouched"),
                other => panic!("{message} is no session message, but got {other:?}"),
            }
            return;
        };
        self.advance(t);
        let expected = match self.ports.get(&port) {
            None => self.drop_inbound(port, sid, DropReason::NoSuchPort),
            Some(p) => {
                let incoming = p
                    .order
                    .iter()
                    .filter(|id| self.sessions[id].incoming)
                    .count();
                if let Some(&id) = p.sids.get(&sid) {
                    self.deliver_to(id, message)
                } else if p.cfg.partition != SidPartition::All && p.cfg.allocates(sid) {
                    self.drop_inbound(port, sid, DropReason::UnknownSid)
                } else if incoming >= p.cfg.max_incoming as usize {
                    self.drop_inbound(port, sid, DropReason::IncomingLimit)
                } else {
                    let Routed::Opened(id) = *actual else {
                        panic!("expected a new incoming session, got {actual:?}");
                    };
                    self.insert(id, port, sid, true);
                    self.sessions.get_mut(&id).unwrap().inbox.push_back(message);
                    self.events.push(Ev::Incoming(id));
                    Routed::Opened(id)
                }
            }
        };
        same_routed(actual, &expected);
    }

    fn deliver(&mut self, id: SessionId, message: Value, t: u64) -> Result<Routed<Value>, Err> {
        self.advance(t);
        if !self.sessions.contains_key(&id) {
            return Err(Err::Invalid);
        }
        Ok(self.deliver_to(id, message))
    }

    fn deliver_to(&mut self, id: SessionId, message: Value) -> Routed<Value> {
        let now = self.now;
        let s = self.sessions.get_mut(&id).unwrap();
        s.last_activity = now;
        if let Some(w) = s.waiting.take() {
            self.events.push(Ev::Reply(id, w.send, message));
            return Routed::Reply(id);
        }
        let (port, sid) = (s.port, s.sid);
        if std::mem::take(&mut s.late_pending) {
            self.ports.get_mut(&port).unwrap().counters.late_replies += 1;
            self.counters.late_replies += 1;
        }
        let was_empty = s.inbox.is_empty();
        let full = s.inbox.len() >= self.ports[&port].cfg.inbox as usize;
        if full {
            s.inbox.pop_front();
        }
        s.inbox.push_back(message);
        if full {
            self.drop_inbound(port, sid, DropReason::InboxFull);
        }
        if was_empty {
            self.events.push(Ev::Readable(id));
        }
        Routed::Queued(id)
    }

    fn recv(&mut self, id: SessionId) -> Result<Option<Value>, Err> {
        let s = self.sessions.get_mut(&id).ok_or(Err::Invalid)?;
        Ok(s.inbox.pop_front())
    }

    /// Everything due on one session, in order (sessions are independent).
    fn fire_due(&mut self, id: SessionId) {
        loop {
            let Some(s) = self.sessions.get(&id) else {
                return;
            };
            let due = self.deadline(s);
            if due > self.now {
                return;
            }
            let s = self.sessions.get_mut(&id).unwrap();
            let port = s.port;
            let Some(w) = s.waiting.as_mut() else {
                return self.close(id, CloseReason::Expired, Err::Cancelled);
            };
            match w.phase {
                Phase::Awaiting(_) if w.retries_left == 0 => {
                    self.fail_waiting(id, Some(Err::Timeout), due);
                }
                Phase::Awaiting(deadline) => {
                    w.retries_left -= 1;
                    w.phase = Phase::Backoff(deadline + w.interval);
                }
                Phase::Backoff(until) => {
                    let deadline = until + w.timeout;
                    w.phase = Phase::Awaiting(deadline);
                    if deadline > self.now {
                        let (send, message) = (Some(w.send), w.message.clone());
                        self.transmits.push_back(Tx {
                            port,
                            session: id,
                            send,
                            message,
                        });
                    }
                }
            }
        }
    }

    fn port_stats(&self, port: PortId) -> PortStats {
        let p = &self.ports[&port];
        PortStats {
            live_sessions: p.order.len() as u32,
            incoming_sessions: p
                .order
                .iter()
                .filter(|id| self.sessions[id].incoming)
                .count() as u32,
            waiting_sends: self.waiting_count(Some(port)) as u32,
            counters: p.counters,
        }
    }
}

fn same_routed(actual: &Routed<Value>, expected: &Routed<Value>) {
    let same = match (actual, expected) {
        (Routed::Reply(a), Routed::Reply(b))
        | (Routed::Queued(a), Routed::Queued(b))
        | (Routed::Opened(a), Routed::Opened(b)) => a == b,
        (Routed::NotSession(a), Routed::NotSession(b)) => a == b,
        (Routed::Dropped(a), Routed::Dropped(b)) => a == b,
        _ => false,
    };
    assert!(same, "routed {actual:?}, expected {expected:?}");
}

// ===== the harness: manager + model + independent invariants ===============

#[derive(Debug, PartialEq)]
enum SendState {
    Pending,
    Ended,
    Withdrawn,
}

/// What the test knows about a send, independently of the model.
#[derive(Debug)]
struct Track {
    port: PortId,
    sent_at: u64,
    timeout: u64,
    interval: u64,
    retries: u32,
    state: SendState,
    /// The step that made the send, and the one in which it ended.
    sent_step: usize,
    ended_step: Option<usize>,
    /// `(step, now)` of every step that fired deadlines while it waited.
    processed: Vec<(usize, u64)>,
    /// Transmissions of it the transport got.
    transmissions: u64,
    /// Its port was destroyed: queued transmissions were discarded.
    port_destroyed: bool,
}

impl Track {
    /// When the last attempt times out: `t + (r+1)*timeout + r*interval`.
    fn final_deadline(&self) -> u64 {
        let r = u64::from(self.retries);
        self.sent_at + (r + 1) * self.timeout + r * self.interval
    }

    /// The steps that queued a transmission of this send: the send itself,
    /// and for each retry `k` (due at `t + k*(timeout + interval)`), the
    /// first step that fired deadlines at or after that time, unless the
    /// retry's own wait was already over by then.
    fn queued_in(&self) -> Vec<usize> {
        let mut steps = vec![self.sent_step];
        for k in 1..=u64::from(self.retries) {
            let due = self.sent_at + k * (self.timeout + self.interval);
            if let Some(&(step, now)) = self.processed.iter().find(|(_, now)| *now >= due) {
                if now < due + self.timeout {
                    steps.push(step);
                }
            }
        }
        steps
    }

    /// Transmissions the transport gets: those queued while the send waited
    /// and still waiting at the next drain of the queue.
    fn expected_transmissions(&self, drains: &[usize]) -> u64 {
        let delivered = |queued: &usize| {
            let drain = drains.iter().find(|&&d| d >= *queued);
            drain.is_some_and(|&d| !matches!(self.ended_step, Some(end) if end <= d))
        };
        self.queued_in().iter().filter(|q| delivered(q)).count() as u64
    }
}

/// What to check after a step besides the model's outputs.
struct Checks {
    /// The sends waiting before the step.
    pending_before: Vec<SendId>,
    /// The step timed sends out by hand: a `Timeout` may come early.
    explicit_timeout: bool,
    /// Look at `poll_timeout` after `handle_timeout` (not always, so that
    /// deadlines also fire from a queue nobody tidied).
    check_poll: bool,
    /// Drain the transmissions (not always, so that some wait in the queue
    /// while sends end and ports go).
    drain_transmits: bool,
}

struct Harness {
    m: Manager,
    offers: Offers,
    model: Model,
    /// Settings of the manager, and so of a recreated default port.
    default_cfg: PortCfg,
    base: Instant,
    /// The wall clock given to the manager (ms since `base`); may go back.
    wall: u64,
    sessions: Vec<SessionId>,
    seen_sessions: HashSet<SessionId>,
    ports: Vec<PortId>,
    sends: Vec<SendId>,
    tracks: HashMap<SendId, Track>,
    /// Index of the current step, and the steps after which the
    /// transmissions were drained.
    step: usize,
    drains: Vec<usize>,
    peak_live: usize,
    replies: u64,
}

impl Harness {
    fn new(cfgs: [PortCfg; 3]) -> Self {
        let base = Instant::now();
        let offers = Offers::default();
        let config = ManagerConfig::default().with(cfgs[0].options(&offers));
        let mut m: Manager = Manager::new(config).unwrap();
        // Pin the manager's epoch to `base`.
        m.handle_timeout(base);
        let mut model = Model::default();
        let default = m.default_port();
        model.add_port(PORT_NAMES[0], default, cfgs[0].clone());
        let mut ports = vec![default];
        for i in 1..3 {
            let id = m
                .create_port(PORT_NAMES[i], cfgs[i].options(&offers))
                .unwrap();
            model.add_port(PORT_NAMES[i], id, cfgs[i].clone());
            ports.push(id);
        }
        Harness {
            m,
            offers,
            model,
            default_cfg: cfgs[0].clone(),
            base,
            wall: 0,
            sessions: Vec::new(),
            seen_sessions: HashSet::new(),
            ports,
            sends: Vec::new(),
            tracks: HashMap::new(),
            step: 0,
            drains: Vec::new(),
            peak_live: 0,
            replies: 0,
        }
    }

    fn at(&self, t: u64) -> Instant {
        self.base + ms(t)
    }

    fn now(&self) -> Instant {
        self.at(self.wall)
    }

    /// What a custom overflow policy must be offered when a session is
    /// opened on `port` (after the deadlines due have fired): its sessions
    /// this side allocates, oldest first.
    fn expected_offer(&self, port: PortId) -> Option<(String, Vec<Offer>)> {
        let p = self.model.ports.get(&port)?;
        if !matches!(p.cfg.overflow, Overflow::Newest | Overflow::Bogus) || !p.is_full() {
            return None;
        }
        let offer = p
            .order
            .iter()
            .filter(|id| p.cfg.allocates(id.sid()))
            .map(|id| {
                let s = &self.model.sessions[id];
                let at = self.at(s.last_activity);
                (*id, s.sid, at, s.waiting.is_some(), s.incoming)
            })
            .collect();
        Some((p.name.to_owned(), offer))
    }

    fn pick_port(&self, p: Pick) -> PortId {
        let live = |id: &PortId| self.model.ports.contains_key(id);
        p.from(&self.ports, live).unwrap()
    }

    fn pick_session(&self, p: Pick) -> Option<SessionId> {
        p.from(&self.sessions, |id| self.model.sessions.contains_key(id))
    }

    fn pick_send(&self, p: Pick) -> Option<SendId> {
        p.from(&self.sends, |send| {
            self.tracks[send].state == SendState::Pending
        })
    }

    fn new_session(&mut self, id: SessionId) {
        assert!(
            self.seen_sessions.insert(id),
            "session handle {id:?} reused"
        );
        self.sessions.push(id);
    }

    fn step(&mut self, op: &Op, drain_transmits: bool) {
        let now = self.now();
        let t = self.wall;
        let mut checks = Checks {
            pending_before: self
                .tracks
                .iter()
                .filter(|(_, track)| track.state == SendState::Pending)
                .map(|(send, _)| *send)
                .collect(),
            explicit_timeout: matches!(
                op,
                Op::Fail(_, Kind::Timeout)
                    | Op::FailPort(_, Kind::Timeout)
                    | Op::FailAll(Kind::Timeout)
            ),
            check_poll: false,
            drain_transmits,
        };
        match op {
            Op::Open(p) => {
                let port = self.pick_port(*p);
                self.model.advance(t);
                let expected_offer = self.expected_offer(port);
                let actual = self.m.open_session(port, now);
                let offered = std::mem::take(&mut *self.offers.lock().unwrap());
                assert_eq!(offered, Vec::from_iter(expected_offer), "overflow offer");
                self.model.open(port, t, &actual);
                if let Ok(id) = actual {
                    self.new_session(id);
                }
            }
            Op::Send(p, message, opts) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = self.m.send(id, message.clone(), opts.send_options(), now);
                    self.model.send(id, message, *opts, t, &actual);
                    if let Ok(send) = actual {
                        self.new_send(id, send);
                    }
                }
            }
            Op::Post(p, message) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = self.m.post(id, message.clone(), now);
                    let expected = self.model.post(id, message, t);
                    same_result(&actual, &expected);
                }
            }
            Op::End(p) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = self.m.end(id);
                    same_result(&actual, &self.model.end(id));
                }
            }
            Op::Fail(p, kind) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = match kind {
                        Kind::Cancel => self.m.cancel(id, now),
                        Kind::Abort(cause) => self.m.abort(id, cause.map(Cause::msg), now),
                        Kind::Timeout => self.m.timeout(id, now),
                    };
                    let expected = self.model.fail(id, kind_err(kind), t);
                    same_result(&actual, &expected);
                }
            }
            Op::FailPort(p, kind) => {
                let port = self.pick_port(*p);
                let actual = match kind {
                    Kind::Cancel => self.m.cancel_port(port, now),
                    Kind::Abort(cause) => self.m.abort_port(port, cause.map(Cause::msg), now),
                    Kind::Timeout => self.m.timeout_port(port, now),
                };
                let expected = self.model.fail_port(port, kind_err(kind), t);
                same_result(&actual, &expected);
            }
            Op::FailAll(kind) => {
                match kind {
                    Kind::Cancel => self.m.cancel_all(now),
                    Kind::Abort(cause) => self.m.abort_all(cause.map(Cause::msg), now),
                    Kind::Timeout => self.m.timeout_all(now),
                }
                self.model.fail_all(kind_err(kind), t);
            }
            Op::Clear => {
                self.m.clear();
                self.model.clear();
            }
            Op::ClearPort(p) => {
                let port = self.pick_port(*p);
                let actual = self.m.clear_port(port);
                let expected = self
                    .model
                    .close_port(port, CloseReason::Cleared, Err::Cancelled);
                same_result(&actual, &expected);
            }
            Op::DestroyPort(i) => self.destroy_port(PORT_NAMES[*i]),
            Op::CreatePort(i, cfg, bad) => {
                let name = PORT_NAMES[*i];
                let mut options = cfg.options(&self.offers);
                if *bad {
                    options = options.inbox_capacity(0);
                }
                let actual = self.m.create_port(name, options);
                if self.model.names.contains_key(name) {
                    expect_err(&actual, Err::PortExists(name.to_owned()));
                } else if *bad {
                    expect_err(&actual, Err::Config);
                } else {
                    self.new_port(name, actual.unwrap(), cfg.clone());
                }
            }
            Op::Withdraw(p) => {
                if let Some(send) = self.pick_send(*p) {
                    let actual = self.m.withdraw(send, now);
                    assert_eq!(actual, self.model.end_send(send, None, t), "withdraw");
                    if actual {
                        let track = self.tracks.get_mut(&send).unwrap();
                        assert_eq!(track.state, SendState::Pending, "withdrew an ended send");
                        track.state = SendState::Withdrawn;
                        track.ended_step = Some(self.step);
                    }
                }
            }
            Op::TransmitError(p) => {
                if let Some(send) = self.pick_send(*p) {
                    let actual = self
                        .m
                        .handle_transmit_error(send, Cause::msg("link down"), now);
                    let error = Err::Transport("link down".to_owned());
                    assert_eq!(actual, self.model.end_send(send, Some(error), t));
                }
            }
            Op::Reply(p, copies, float) => {
                if let Some(id) = self.pick_session(*p) {
                    for _ in 0..*copies {
                        self.reply(id, *float);
                    }
                }
            }
            Op::ReplyWaiting(n) => {
                let waiting: Vec<SessionId> = self
                    .sessions
                    .iter()
                    .copied()
                    .filter(|id| {
                        self.model
                            .sessions
                            .get(id)
                            .is_some_and(|s| s.waiting.is_some())
                    })
                    .collect();
                if !waiting.is_empty() {
                    self.reply(waiting[usize::from(*n) % waiting.len()], false);
                }
            }
            Op::Inbound(p, message) => {
                let port = self.pick_port(*p);
                self.inbound(port, message.clone());
            }
            Op::Deliver(p, message) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = self.m.deliver(id, message.clone(), now);
                    let expected = self.model.deliver(id, message.clone(), t);
                    match (&actual, &expected) {
                        (Ok(a), Ok(e)) => same_routed(a, e),
                        (Err(a), Err(e)) => assert_eq!(err(a), *e),
                        _ => panic!("deliver: got {actual:?}, expected {expected:?}"),
                    }
                }
            }
            Op::Recv(p) => {
                if let Some(id) = self.pick_session(*p) {
                    let actual = self.m.recv(id);
                    same_result(&actual, &self.model.recv(id));
                }
            }
            Op::Tick(delta, handle, check_poll) => {
                self.wall = self.wall.saturating_add_signed(*delta);
                if *handle {
                    self.m.handle_timeout(self.now());
                    self.model.advance(self.wall);
                    checks.check_poll = *check_poll;
                }
            }
            Op::CheckTimeout => self.check_poll_timeout(),
            Op::Probe(p) => {
                let stale = |id: &SessionId| !self.model.sessions.contains_key(id);
                if let Some(id) = p.from(&self.sessions, stale) {
                    if !self.model.sessions.contains_key(&id) {
                        self.probe_stale(id);
                    }
                }
            }
        }
        self.settle(checks);
        self.step += 1;
    }

    fn new_send(&mut self, session: SessionId, send: SendId) {
        assert!(!self.tracks.contains_key(&send), "send id reused");
        let w = self.model.sessions[&session].waiting.as_ref().unwrap();
        let track = Track {
            port: session.port(),
            sent_at: self.model.now,
            timeout: w.timeout,
            interval: w.interval,
            retries: w.retries_left,
            state: SendState::Pending,
            sent_step: self.step,
            ended_step: None,
            processed: Vec::new(),
            transmissions: 0,
            port_destroyed: false,
        };
        self.tracks.insert(send, track);
        self.sends.push(send);
    }

    fn new_port(&mut self, name: &'static str, id: PortId, cfg: PortCfg) {
        assert!(!self.ports.contains(&id), "port handle reused");
        self.model.add_port(name, id, cfg);
        self.ports.push(id);
        assert_eq!(self.m.port(name), Some(id));
        assert_eq!(self.m.port_name(id), Some(name));
    }

    fn destroy_port(&mut self, name: &'static str) {
        let Some(&port) = self.model.names.get(name) else {
            return;
        };
        // Transmissions still queued for the port are discarded.
        for track in self.tracks.values_mut().filter(|tr| tr.port == port) {
            track.port_destroyed = true;
        }
        let actual = self.m.destroy_port(port);
        same_result(&actual, &self.model.destroy_port(port));
        if name == PORT_NAMES[0] {
            // The manager always has a default port: a fresh one.
            let fresh = self.m.default_port();
            assert_ne!(fresh, port);
            self.new_port(name, fresh, self.default_cfg.clone());
        } else {
            assert_eq!(self.m.port(name), None);
        }
    }

    fn reply(&mut self, id: SessionId, float: bool) {
        self.replies += 1;
        let message = if float {
            json!({"sid": f64::from(id.sid()), "reply": self.replies})
        } else {
            json!({"sid": id.sid(), "reply": self.replies})
        };
        self.inbound(id.port(), message);
    }

    fn inbound(&mut self, port: PortId, message: Value) {
        let sid = ref_sid(&message, "sid");
        assert_eq!(
            self.m.is_session(&message),
            sid.is_some(),
            "is_session({message})"
        );
        let expected_session = sid.and_then(|sid| {
            let p = self.model.ports.get(&port)?;
            p.sids.get(&sid).copied()
        });
        assert_eq!(self.m.session_for(port, &message), expected_session);
        let actual = self.m.handle_inbound(port, message.clone(), self.now());
        self.model.inbound(port, message, self.wall, &actual);
        if let Routed::Opened(id) = actual {
            self.new_session(id);
        }
    }

    /// Every call on a handle that is no longer live is refused.
    fn probe_stale(&mut self, id: SessionId) {
        let now = self.now();
        let t = self.wall;
        assert!(!self.m.is_live(id));
        let invalid = |r: Result<(), SessionError>| expect_err(&r, Err::Invalid);
        invalid(
            self.m
                .send(id, json!({}), SendOptions::default(), now)
                .map(drop),
        );
        invalid(self.m.post(id, json!({}), now));
        invalid(self.m.end(id));
        invalid(self.m.recv(id).map(drop));
        invalid(self.m.cancel(id, now));
        invalid(self.m.abort(id, None, now));
        invalid(self.m.timeout(id, now));
        invalid(self.m.deliver(id, json!({"sid": id.sid()}), now).map(drop));
        self.model.advance(t);
    }

    fn check_poll_timeout(&mut self) {
        let expected = self.model.earliest().map(|t| self.at(t));
        let bound = self.m.timeout_lower_bound();
        assert!(
            expected.is_none_or(|next| bound.is_some_and(|bound| bound <= next)),
            "timeout_lower_bound {bound:?} comes after the next deadline {expected:?}"
        );
        assert_eq!(self.m.poll_timeout(), expected, "poll_timeout");
    }

    /// Drains the outputs, compares them with the model's and checks the
    /// invariants.
    fn settle(&mut self, checks: Checks) {
        let now = self.model.now;
        let actual: Vec<Ev> = std::iter::from_fn(|| self.m.poll_event())
            .map(Ev::from)
            .collect();
        let expected = std::mem::take(&mut self.model.events);
        same_per_stream("events", &actual, &expected, Ev::stream);

        // Every send ends exactly once, with one outcome, and the clock
        // times it out only once its last attempt's wait is over.
        for event in &actual {
            let (Ev::Reply(_, send, _) | Ev::Failed(_, send, _)) = event else {
                continue;
            };
            let track = self
                .tracks
                .get_mut(send)
                .expect("event for an unknown send");
            assert_eq!(
                track.state,
                SendState::Pending,
                "{send:?} completed twice or after it was withdrawn: {event:?}"
            );
            track.state = SendState::Ended;
            track.ended_step = Some(self.step);
            if !checks.explicit_timeout && matches!(event, Ev::Failed(_, _, Err::Timeout)) {
                assert!(
                    now >= track.final_deadline(),
                    "{send:?} timed out at {now} before its deadline {}",
                    track.final_deadline()
                );
            }
        }

        // After an input that took `now`, nothing that was due is left.
        if std::mem::take(&mut self.model.advanced) {
            for send in &checks.pending_before {
                let track = self.tracks.get_mut(send).unwrap();
                track.processed.push((self.step, now));
                assert!(
                    track.state != SendState::Pending || track.final_deadline() > now,
                    "{send:?} still waits at {now}, past its deadline {}",
                    track.final_deadline()
                );
            }
            for s in self.model.sessions.values() {
                // (A session idle since this very step may be due now.)
                if s.waiting.is_none() && s.last_activity < now {
                    let cfg = &self.model.ports[&s.port].cfg;
                    assert!(s.last_activity + cfg.max_life > now, "idle session left");
                }
            }
        }
        if checks.check_poll {
            let next = self.m.poll_timeout();
            assert!(
                !matches!(next, Some(next) if next <= self.at(now)),
                "a deadline at or before now was left: {next:?}"
            );
        }

        if checks.drain_transmits {
            self.drains.push(self.step);
            let actual: Vec<Tx> = std::iter::from_fn(|| self.m.poll_transmit())
                .map(Tx::from)
                .collect();
            let queued: Vec<Tx> = self.model.transmits.drain(..).collect();
            let expected: Vec<Tx> = queued
                .into_iter()
                .filter(|tx| match tx.send {
                    Some(send) => self.model.current_send(send).is_some(),
                    None => true,
                })
                .collect();
            same_per_stream("transmits", &actual, &expected, |t| t.session);
            for tx in &actual {
                assert_eq!(tx.message["sid"], json!(tx.session.sid()), "untagged");
                assert_eq!(tx.port, tx.session.port());
                if let Some(send) = tx.send {
                    let track = self.tracks.get_mut(&send).unwrap();
                    assert_eq!(track.state, SendState::Pending, "a stale request went out");
                    track.transmissions += 1;
                    assert!(track.transmissions <= 1 + u64::from(track.retries));
                }
            }
        }
        self.check_invariants();
    }

    fn check_invariants(&mut self) {
        let model = &self.model;
        let stats = self.m.stats();
        let live = model.sessions.len();
        self.peak_live = self.peak_live.max(live);
        assert_eq!(stats.ports, model.ports.len(), "ports");
        assert_eq!(stats.live_sessions, live, "live sessions");
        assert_eq!(stats.waiting_sends, model.waiting_count(None), "waiting");
        let queued: usize = model.sessions.values().map(|s| s.inbox.len()).sum();
        assert_eq!(stats.queued_messages, queued, "queued messages");
        assert_eq!(stats.queued_transmits, model.transmits.len(), "transmits");
        assert_eq!(stats.queued_events, 0);
        assert_eq!(stats.counters, model.counters, "counters");
        assert!(
            stats.timer_entries <= 3 * self.peak_live + 66,
            "timer queue grows: {} entries, at most {} live sessions",
            stats.timer_entries,
            self.peak_live
        );

        for &port in &self.ports {
            match model.ports.get(&port) {
                Some(p) => {
                    let ps = self.m.port_stats(port).unwrap();
                    assert_eq!(ps, model.port_stats(port), "stats of {port:?}");
                    assert!(ps.incoming_sessions <= p.cfg.max_incoming);
                    let allocated = p.sids.keys().filter(|&&s| p.cfg.allocates(s)).count();
                    assert!(allocated <= p.cfg.capacity());
                }
                None => {
                    expect_err(&self.m.port_stats(port), Err::NoSuchPort);
                    assert_eq!(self.m.port_name(port), None);
                }
            }
        }
        // Live sids are unique per port and lead to their own session;
        // every other handle is refused.
        for &id in &self.sessions {
            match model.sessions.get(&id) {
                Some(s) => {
                    assert!(self.m.is_live(id), "{id:?} should be live");
                    assert_eq!(self.m.session(s.port, s.sid), Some(id));
                    assert_eq!(self.m.is_waiting(id), s.waiting.is_some());
                }
                None => {
                    assert!(!self.m.is_live(id), "{id:?} should be gone");
                    assert!(!self.m.is_waiting(id));
                    assert_ne!(self.m.session(id.port(), id.sid()), Some(id));
                }
            }
        }
        for (port, p) in &model.ports {
            for (&sid, &id) in &p.sids {
                assert_eq!(self.m.session(*port, sid), Some(id));
            }
        }
    }

    /// Ends everything and checks that nothing remains.
    fn finish(mut self, by_end: bool) {
        if by_end {
            let live: Vec<SessionId> = self
                .sessions
                .iter()
                .copied()
                .filter(|id| self.model.sessions.contains_key(id))
                .collect();
            for id in live {
                self.m.end(id).unwrap();
                self.model.end(id).unwrap();
            }
        } else {
            self.m.clear();
            self.model.clear();
        }
        self.settle(Checks {
            pending_before: Vec::new(),
            explicit_timeout: false,
            check_poll: false,
            drain_transmits: true,
        });
        // Nothing is left, not even an orphaned timer entry waiting to be
        // skipped, before and after poll_timeout.
        for _ in 0..2 {
            let stats = self.m.stats();
            assert_eq!(
                (
                    stats.live_sessions,
                    stats.waiting_sends,
                    stats.queued_messages,
                    stats.queued_transmits,
                    stats.queued_events,
                    stats.timer_entries,
                ),
                (0, 0, 0, 0, 0, 0),
                "leak: {stats:?}"
            );
            assert_eq!(
                self.m.poll_timeout(),
                None,
                "a deadline outlived its sessions"
            );
        }
        // Nothing wakes up later either.
        self.m
            .handle_timeout(self.at(self.wall + 3 * DAY_MS as u64));
        assert!(self.m.poll_event().is_none());
        assert!(self.m.poll_transmit().is_none());

        for (send, track) in &self.tracks {
            assert_ne!(track.state, SendState::Pending, "{send:?} never ended");
            if !track.port_destroyed {
                assert_eq!(
                    track.transmissions,
                    track.expected_transmissions(&self.drains),
                    "transmissions of {send:?}: {track:?}"
                );
            }
        }
    }
}

fn kind_err(kind: &Kind) -> Err {
    match kind {
        Kind::Cancel => Err::Cancelled,
        Kind::Abort(cause) => Err::Aborted(cause.map(str::to_owned)),
        Kind::Timeout => Err::Timeout,
    }
}

fn same_result<T: PartialEq + Debug>(actual: &Result<T, SessionError>, expected: &Result<T, Err>) {
    match (actual, expected) {
        (Ok(a), Ok(e)) => assert_eq!(a, e),
        (Err(a), Err(e)) => assert_eq!(err(a), *e),
        _ => panic!("got {actual:?}, expected {expected:?}"),
    }
}

#[derive(Debug, Clone)]
struct Case {
    cfgs: [PortCfg; 3],
    /// Each step, with a roll against `hold_percent`.
    ops: Vec<(Op, u8)>,
    /// How often (in %) a step leaves the transmissions in the queue: some
    /// cases drain after nearly every step, some seldom.
    hold_percent: u8,
    /// Largest clock step, if the case keeps the clock calm (then retries
    /// come due one by one instead of lapsing in big jumps).
    tick_cap: Option<i64>,
    /// The peer never answers: sends live until the clock or the
    /// application ends them (so retries come due).
    quiet_peer: bool,
    finish_by_end: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        [port_cfg(), port_cfg(), port_cfg()],
        vec((op(), 0..100u8), 1..160),
        prop_oneof![Just(5u8), Just(25), Just(80)],
        prop_oneof![Just(None), Just(Some(5)), Just(Some(20))],
        prop::bool::weighted(0.3),
        any::<bool>(),
    )
        .prop_map(
            |(cfgs, ops, hold_percent, tick_cap, quiet_peer, finish_by_end)| Case {
                cfgs,
                ops,
                hold_percent,
                tick_cap,
                quiet_peer,
                finish_by_end,
            },
        )
}

/// At least `cases` cases; more for a soak run with `PROPTEST_CASES=n`.
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: default.cases.max(cases),
        ..default
    }
}

fn run(case: &Case) {
    let mut h = Harness::new(case.cfgs.clone());
    for (op, roll) in &case.ops {
        let op = match (op, case.tick_cap) {
            (Op::Tick(delta, handle, check), Some(cap)) => {
                &Op::Tick((*delta).clamp(-cap, cap), *handle, *check)
            }
            (Op::Reply(..) | Op::ReplyWaiting(_), _) if case.quiet_peer => &Op::CheckTimeout,
            _ => op,
        };
        h.step(op, *roll >= case.hold_percent);
    }
    h.finish(case.finish_by_end);
}

proptest! {
    #![proptest_config(config(256))]

    /// Random interleavings agree with the model and keep every invariant.
    #[test]
    fn model_agrees(case in case()) {
        run(&case);
    }
}

// ===== garbage in, nothing bad out =========================================

#[derive(Debug, Clone)]
enum Input {
    Json(Value),
    Bytes(Vec<u8>),
}

/// Bytes that sometimes parse: noise, or a sid field with a number-ish text.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..40),
        (
            prop_oneof![Just("sid"), Just("sessionId"), Just("x")],
            "-?[0-9]{1,25}(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
        )
            .prop_map(|(field, number)| format!("{{\"{field}\": {number}}}").into_bytes()),
        arb_json().prop_map(|v| {
            let mut text = v.to_string().into_bytes();
            text.truncate(text.len().saturating_sub(1));
            text
        }),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Garbage never panics, non-session messages come back untouched, and
    /// the sessions a peer can open stay bounded.
    #[test]
    fn garbage_inbound(
        field in prop_oneof![Just("sid"), Just("sessionId")],
        cap in 0u32..=4,
        partition in prop_oneof![
            Just(SidPartition::All),
            Just(SidPartition::Odd),
            Just(SidPartition::Even),
        ],
        inputs in vec(
            prop_oneof![
                arb_json().prop_map(Input::Json),
                bytes().prop_map(Input::Bytes),
            ],
            0..64,
        ),
    ) {
        let config = ManagerConfig::default()
            .session_id_name(field)
            .max_session_count(8)
            .partition(partition)
            .max_incoming_sessions(cap)
            .inbox_capacity(2);
        let mut m: Manager = Manager::new(config).unwrap();
        let port = m.default_port();
        let now = Instant::now();
        for input in inputs {
            let message = match input {
                Input::Json(v) => v,
                Input::Bytes(b) => match serde_json::from_slice::<Value>(&b) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            let sid = ref_sid(&message, field);
            prop_assert_eq!(m.is_session(&message), sid.is_some());
            match m.handle_inbound(port, message.clone(), now) {
                Routed::NotSession(back) => {
                    prop_assert!(sid.is_none());
                    prop_assert_eq!(back, message);
                }
                Routed::Opened(id) | Routed::Queued(id) => {
                    prop_assert_eq!(Some(id.sid()), sid);
                    prop_assert_eq!(m.session(port, id.sid()), Some(id));
                }
                Routed::Dropped(reason) => {
                    prop_assert!(sid.is_some());
                    prop_assert!(matches!(
                        reason,
                        DropReason::IncomingLimit | DropReason::UnknownSid | DropReason::InboxFull
                    ));
                }
                Routed::Reply(id) => prop_assert!(false, "reply without a send: {:?}", id),
            }
            while m.poll_event().is_some() {}
            let stats = m.stats();
            prop_assert!(stats.live_sessions <= cap as usize);
            prop_assert!(stats.queued_messages <= 2 * cap as usize);
            let incoming = m.port_stats(port).unwrap().incoming_sessions;
            prop_assert_eq!(incoming as usize, stats.live_sessions);
        }
        m.clear();
        while m.poll_event().is_some() {}
        prop_assert_eq!(m.poll_timeout(), None);
        prop_assert_eq!(m.stats().timer_entries, 0);
    }
}

/// The wire values SPEC 1 names, one by one.
#[test]
fn weird_sids_are_not_session_messages() {
    let mut m: Manager = Manager::default();
    let port = m.default_port();
    let now = Instant::now();
    for sid in [
        json!(-1),
        json!(0),
        json!(1.5),
        json!(1e30),
        json!("3"),
        json!(u64::MAX),
        json!(u64::from(u32::MAX) + 1),
        Value::Null,
        json!([3]),
        json!({"sid": 3}),
    ] {
        let message = json!({"sid": sid, "data": [1, {"x": null}]});
        match m.handle_inbound(port, message.clone(), now) {
            Routed::NotSession(back) => assert_eq!(back, message),
            other => panic!("{message}: {other:?}"),
        }
    }
    for non_object in [json!(7), json!("sid"), json!([{"sid": 7}]), Value::Null] {
        match m.handle_inbound(port, non_object.clone(), now) {
            Routed::NotSession(back) => assert_eq!(back, non_object),
            other => panic!("{non_object}: {other:?}"),
        }
    }
    assert!(matches!(
        m.handle_inbound(port, json!({"sid": 7.0}), now),
        Routed::Opened(id) if id.sid() == 7
    ));
    assert!(matches!(
        m.handle_inbound(port, json!({"sid": u32::MAX}), now),
        Routed::Opened(id) if id.sid() == u32::MAX
    ));
    assert_eq!(m.stats().live_sessions, 2);
}

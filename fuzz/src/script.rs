//! Decoding: fuzz bytes into a [`Script`] of operations.
//!
//! A small hand-written byte cursor, so that every byte string is a valid
//! script (reading past the end yields zeros) and a mutation of one byte
//! changes one choice. The first bytes choose the manager's settings;
//! then each operation is an opcode byte followed by its arguments, until
//! the input runs out.

use std::time::Duration;

use psession_core::SidPartition;
use serde_json::{json, Value};

/// Reads choices from the fuzz input; past the end every read is zero.
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `max` raw bytes, length-prefixed (as many as remain).
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = usize::from(self.byte()) % (max + 1);
        let start = self.pos.min(self.data.len());
        let end = (start + len).min(self.data.len());
        self.pos = start + len;
        self.data[start..end].to_vec()
    }

    fn pick<T: Copy>(&mut self, table: &[T]) -> T {
        table[usize::from(self.byte()) % table.len()]
    }
}

const MS: u64 = 1_000_000;
const DAY: Duration = Duration::from_secs(86_400);

/// Reply timeouts to choose from (`Duration::MAX` tests saturation).
const TIMEOUTS: [Duration; 12] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(60),
    DAY,
    Duration::MAX,
];

/// Idle lifetimes to choose from.
const LIFETIMES: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(600),
    DAY,
    Duration::MAX,
];

/// Pauses between retries to choose from.
const INTERVALS: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_secs(1),
    DAY,
    Duration::MAX,
];

const MAX_COUNTS: [u32; 12] = [1, 2, 3, 4, 5, 6, 8, 16, 65_535, u32::MAX, 2, 3];
const INCOMING: [u32; 8] = [0, 1, 2, 3, 4, 8, 64, 2];
const INBOX: [u32; 7] = [1, 2, 3, 64, 1, 2, 0];
const PARTITIONS: [SidPartition; 4] = [
    SidPartition::All,
    SidPartition::Odd,
    SidPartition::Even,
    SidPartition::All,
];

/// The overflow policy of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `OverflowPolicy::RecycleOldest`.
    Recycle,
    /// `OverflowPolicy::Reject`.
    Reject,
    /// Custom: recycle the newest candidate.
    Newest,
    /// Custom: name a sid this side does not allocate (refused).
    Bogus,
    /// Custom: refuse.
    Refuse,
    /// Custom: recycle candidate `n % len`.
    Index(u8),
}

/// Settings of one port, as the script chose them.
#[derive(Debug, Clone)]
pub struct PortCfg {
    /// `session_timeout`.
    pub timeout: Duration,
    /// `session_max_life`.
    pub max_life: Duration,
    /// `max_session_count`.
    pub max_count: u32,
    /// The overflow policy.
    pub overflow: Overflow,
    /// `retry_count`.
    pub retry_count: u32,
    /// `retry_interval`.
    pub retry_interval: Duration,
    /// `partition`.
    pub partition: SidPartition,
    /// `max_incoming_sessions`.
    pub max_incoming: u32,
    /// `inbox_capacity` (0 is refused with a `Config` error).
    pub inbox: u32,
}

impl PortCfg {
    fn decode(c: &mut Cursor) -> Self {
        let overflow = match c.byte() % 8 {
            0..=2 => Overflow::Recycle,
            3 | 4 => Overflow::Reject,
            5 => Overflow::Newest,
            6 => match c.byte() % 3 {
                0 => Overflow::Bogus,
                1 => Overflow::Refuse,
                _ => Overflow::Index(c.byte()),
            },
            _ => Overflow::Index(c.byte()),
        };
        PortCfg {
            timeout: c.pick(&TIMEOUTS),
            max_life: c.pick(&LIFETIMES),
            max_count: c.pick(&MAX_COUNTS),
            overflow,
            retry_count: u32::from(c.byte() % 8).saturating_sub(4),
            retry_interval: c.pick(&INTERVALS),
            partition: c.pick(&PARTITIONS),
            max_incoming: c.pick(&INCOMING),
            inbox: c.pick(&INBOX),
        }
    }
}

/// How the script ends everything before the final leak check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `Manager::clear`.
    Clear,
    /// `Manager::end` on every live session.
    EndEach,
    /// `Manager::destroy_port` on every port (the default one last).
    DestroyPorts,
    /// Only the clock: a jump far past every deadline, then `clear`.
    Clock,
}

/// The manager's settings and how the run ends.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The sid field name.
    pub id_field: &'static str,
    /// The manager's defaults (and so the default port's settings).
    pub defaults: PortCfg,
    /// How the run ends.
    pub finish: Finish,
}

/// How a handle is chosen from the history of handles: the byte's top bits
/// pick a mode (live ones, the latest few, any), the rest an index.
#[derive(Debug, Clone, Copy)]
pub struct Pick(pub u8);

/// How a send, cancel or port operation fails waiting sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cancel`.
    Cancel,
    /// `abort`, with a cause or not.
    Abort(bool),
    /// `timeout`.
    Timeout,
}

/// Per-send options.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOpts {
    /// Reply timeout override.
    pub timeout: Option<Duration>,
    /// Retry count override.
    pub retries: Option<u32>,
    /// Retry interval override.
    pub interval: Option<Duration>,
}

/// How the wall clock moves.
#[derive(Debug, Clone, Copy)]
pub enum Tick {
    /// Forward by this many nanoseconds.
    Forward(u64),
    /// Backward by this many nanoseconds (possibly before the first input).
    Back(u64),
    /// To the manager's next deadline (`poll_timeout`) plus this many
    /// nanoseconds (`-1`: just before it).
    ToDeadline(i64),
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Op {
    /// `open_session` on a port.
    Open(Pick),
    /// `send` on a session.
    Send(Pick, Value, SendOpts),
    /// `post` on a session.
    Post(Pick, Value),
    /// `end` a session.
    End(Pick),
    /// `cancel` / `abort` / `timeout` a session.
    Fail(Pick, Kind),
    /// `cancel_port` / `abort_port` / `timeout_port`.
    FailPort(Pick, Kind),
    /// `cancel_all` / `abort_all` / `timeout_all`.
    FailAll(Kind),
    /// `clear`.
    Clear,
    /// `clear_port`.
    ClearPort(Pick),
    /// `destroy_port`.
    DestroyPort(Pick),
    /// `create_port` with one of the names.
    CreatePort(u8, PortCfg),
    /// `withdraw` a send.
    Withdraw(Pick),
    /// `handle_transmit_error` for a send.
    TransmitError(Pick),
    /// The peer answers on a session (maybe ended), `copies` times, the sid
    /// maybe written as a float.
    Reply(Pick, u8, bool),
    /// The peer answers a session that has a send waiting.
    ReplyWaiting(u8),
    /// Raw bytes from the peer, routed if they parse as JSON.
    Bytes(Pick, Vec<u8>),
    /// A JSON message from the peer with an odd or plain sid.
    Json(Pick, Value),
    /// Many new sids at once from the peer.
    Flood(Pick, u8, u32, u8),
    /// `deliver` a message to a session.
    Deliver(Pick, Value),
    /// `recv` on a session.
    Recv(Pick),
    /// Move the clock; maybe call `handle_timeout`; maybe then check
    /// `poll_timeout`.
    Tick(Tick, bool, bool),
    /// Compare `poll_timeout` with the deadlines the harness expects.
    CheckTimeout,
    /// Take the transmissions; the bits say which sends' transports fail.
    Drain(u8),
    /// Call everything on a stale session, send and port handle.
    Probe(Pick, Pick, Pick),
}

/// A decoded fuzz input.
#[derive(Debug, Clone)]
pub struct Script {
    /// Settings.
    pub setup: Setup,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// Values that are, or look like, a sid (SPEC 1's edge cases).
fn weird_sid(c: &mut Cursor) -> Value {
    match c.byte() % 24 {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(1.5),
        3 => json!(1e30),
        4 => json!("3"),
        5 => json!(u64::MAX),
        6 => json!(u32::MAX),
        7 => json!(u64::from(u32::MAX) + 1),
        8 => Value::Null,
        9 => json!(3.0),
        10 => json!(-0.0),
        11 => json!(4_294_967_295.0),
        12 => json!(4_294_967_296.0),
        13 => json!([1]),
        14 => json!({"sid": 1}),
        15 => json!(true),
        16 => json!(i64::MIN),
        17 => json!(f64::MIN_POSITIVE),
        18 => json!(c.u32()),
        19 => json!(f64::from(c.byte() % 12 + 1)),
        _ => json!(c.byte() % 12 + 1),
    }
}

/// A message the application sends or posts: mostly objects (some with a
/// sid of their own, which must be overwritten), some untaggable.
fn app_message(c: &mut Cursor) -> Value {
    match c.byte() % 10 {
        0 => json!("text"),
        1 => json!([1, 2]),
        2 => Value::Null,
        3 | 4 => json!({"op": c.byte(), "sid": weird_sid(c), "sessionId": weird_sid(c)}),
        _ => json!({"op": c.u16()}),
    }
}

/// A message from the peer: a sid field (under either name) with an odd
/// value, plus a payload.
fn peer_json(c: &mut Cursor) -> Value {
    let field = if c.byte().is_multiple_of(4) {
        "sessionId"
    } else {
        "sid"
    };
    match c.byte() % 4 {
        0 => json!([{ field: weird_sid(c) }]),
        1 => json!({ field: weird_sid(c), "nested": {"sid": weird_sid(c)} }),
        _ => json!({ field: weird_sid(c), "x": c.byte() }),
    }
}

fn opt<T>(c: &mut Cursor, f: impl FnOnce(&mut Cursor) -> T) -> Option<T> {
    (c.byte() % 2 == 1).then(|| f(c))
}

fn kind(c: &mut Cursor) -> Kind {
    match c.byte() % 4 {
        0 => Kind::Cancel,
        1 => Kind::Abort(false),
        2 => Kind::Abort(true),
        _ => Kind::Timeout,
    }
}

fn tick(c: &mut Cursor) -> Tick {
    let b = u64::from(c.byte());
    match c.byte() % 16 {
        0 => Tick::Forward(0),
        1 => Tick::Forward(1),
        2..=4 => Tick::Forward(b * MS),
        5 => Tick::Forward(b * 10 * MS),
        6 => Tick::Forward(b * 100 * MS),
        7 => Tick::Forward(b * 1000 * MS),
        8 => Tick::Back(b * MS),
        9 => Tick::Back((b % 3 + 1) * 86_400_000 * MS),
        10 => Tick::Forward((b % 3 + 1) * 86_400_000 * MS),
        11 | 12 => Tick::ToDeadline(-1),
        13 | 14 => Tick::ToDeadline(0),
        _ => Tick::ToDeadline((b * MS) as i64),
    }
}

impl Op {
    fn decode(c: &mut Cursor) -> Op {
        match c.byte() % 40 {
            0..=2 => Op::Open(Pick(c.byte())),
            3..=7 => {
                let session = Pick(c.byte());
                let message = app_message(c);
                let options = SendOpts {
                    timeout: opt(c, |c| c.pick(&TIMEOUTS)),
                    retries: opt(c, |c| u32::from(c.byte() % 4)),
                    interval: opt(c, |c| c.pick(&INTERVALS)),
                };
                Op::Send(session, message, options)
            }
            8 | 9 => Op::Post(Pick(c.byte()), app_message(c)),
            10 => Op::End(Pick(c.byte())),
            11 => Op::Fail(Pick(c.byte()), kind(c)),
            12 => Op::FailPort(Pick(c.byte()), kind(c)),
            13 => Op::FailAll(kind(c)),
            14 => Op::Clear,
            15 => Op::ClearPort(Pick(c.byte())),
            16 => Op::DestroyPort(Pick(c.byte())),
            17 => Op::CreatePort(c.byte(), PortCfg::decode(c)),
            18 => Op::Withdraw(Pick(c.byte())),
            19 => Op::TransmitError(Pick(c.byte())),
            20..=22 => Op::Reply(Pick(c.byte()), c.byte() % 3 + 1, c.byte().is_multiple_of(5)),
            23 | 24 => Op::ReplyWaiting(c.byte()),
            25 => Op::Bytes(Pick(c.byte()), c.bytes(96)),
            26 => Op::Json(Pick(c.byte()), peer_json(c)),
            27 => Op::Flood(Pick(c.byte()), c.byte(), c.u32(), c.byte()),
            28 => {
                let session = Pick(c.byte());
                let message = if c.byte().is_multiple_of(2) {
                    peer_json(c)
                } else {
                    serde_json::from_slice(&c.bytes(32)).unwrap_or(Value::Null)
                };
                Op::Deliver(session, message)
            }
            29 | 30 => Op::Recv(Pick(c.byte())),
            31..=35 => {
                let t = tick(c);
                let flags = c.byte();
                Op::Tick(t, !flags.is_multiple_of(8), flags & 8 != 0)
            }
            36 => Op::CheckTimeout,
            37 | 38 => Op::Drain(c.byte()),
            _ => Op::Probe(Pick(c.byte()), Pick(c.byte()), Pick(c.byte())),
        }
    }
}

impl Script {
    /// Decodes any bytes into a script (every input is a valid script).
    pub fn decode(data: &[u8]) -> Script {
        let mut c = Cursor::new(data);
        let flags = c.byte();
        let setup = Setup {
            id_field: if flags & 1 == 0 { "sid" } else { "sessionId" },
            finish: match (flags >> 1) % 4 {
                0 => Finish::Clear,
                1 => Finish::EndEach,
                2 => Finish::DestroyPorts,
                _ => Finish::Clock,
            },
            defaults: PortCfg::decode(&mut c),
        };
        let mut ops = Vec::new();
        while !c.is_empty() {
            ops.push(Op::decode(&mut c));
        }
        Script { setup, ops }
    }
}

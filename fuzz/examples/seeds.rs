//! Writes the hand-picked seeds of `fuzz/corpus/core/` (files named
//! `seed-*`): `cargo run -p psession-fuzz --example seeds`. Each seed is
//! spelled with the byte layout `psession_fuzz::script` decodes; check one
//! with `cargo run -p psession-fuzz --example replay -- -v FILE`.

use std::path::PathBuf;

/// Opcodes: the first byte value of each operation's range in
/// `Op::decode` (`byte % 40`).
mod op {
    pub const OPEN: u8 = 0;
    pub const SEND: u8 = 3;
    pub const POST: u8 = 8;
    pub const END: u8 = 10;
    pub const FAIL: u8 = 11;
    pub const FAIL_PORT: u8 = 12;
    pub const FAIL_ALL: u8 = 13;
    pub const CLEAR: u8 = 14;
    pub const CLEAR_PORT: u8 = 15;
    pub const DESTROY_PORT: u8 = 16;
    pub const CREATE_PORT: u8 = 17;
    pub const WITHDRAW: u8 = 18;
    pub const TRANSMIT_ERROR: u8 = 19;
    pub const REPLY: u8 = 20;
    pub const REPLY_WAITING: u8 = 23;
    pub const BYTES: u8 = 25;
    pub const JSON: u8 = 26;
    pub const FLOOD: u8 = 27;
    pub const DELIVER: u8 = 28;
    pub const RECV: u8 = 29;
    pub const TICK: u8 = 31;
    pub const CHECK: u8 = 36;
    pub const DRAIN: u8 = 37;
    pub const PROBE: u8 = 39;
}

/// Handle picks: `LIVE | n` is live handle `n` (oldest first), `NEWEST`
/// the latest handle seen, `ANY | n` any handle ever seen.
const LIVE: u8 = 0;
const NEWEST: u8 = 0x80;
const ANY: u8 = 0xC0;

/// Port settings: indexes into the decoder's tables, in its order.
#[derive(Clone, Copy)]
struct Cfg {
    /// 0 recycle, 3 reject, 5 newest, [6,0] bogus, [6,1] refuse, [7,n] index n.
    overflow: &'static [u8],
    timeout: u8,
    life: u8,
    max_count: u8,
    retries: u8,
    interval: u8,
    partition: u8,
    incoming: u8,
    inbox: u8,
}

impl Cfg {
    fn bytes(self) -> Vec<u8> {
        let mut b = self.overflow.to_vec();
        b.extend([
            self.timeout,
            self.life,
            self.max_count,
            4 + self.retries,
            self.interval,
            self.partition,
            self.incoming,
            self.inbox,
        ]);
        b
    }
}

/// The manager defaults' shape: 1 s timeout, 600 s life, 65535 sids,
/// recycle, no retry, all sids, 64 incoming, 64 queued.
const BASE: Cfg = Cfg {
    overflow: &[0],
    timeout: 8,
    life: 7,
    max_count: 8,
    retries: 0,
    interval: 4,
    partition: 0,
    incoming: 6,
    inbox: 3,
};

/// Tick kinds (`b` is the tick's byte argument).
mod tick {
    pub const MS: u8 = 2; // + b ms
    pub const TEN_MS: u8 = 5; // + 10 b ms
    pub const SECONDS: u8 = 7; // + b s
    pub const BACK_MS: u8 = 8; // - b ms
    pub const BACK_DAYS: u8 = 9; // - (b % 3 + 1) days
    pub const DAYS: u8 = 10; // + (b % 3 + 1) days
    pub const BEFORE_DEADLINE: u8 = 11; // poll_timeout - 1 ns
    pub const AT_DEADLINE: u8 = 13; // poll_timeout
    pub const AFTER_DEADLINE: u8 = 15; // poll_timeout + b ms
}

struct Seed(Vec<u8>);

impl Seed {
    /// `flags`: bit 0 field `sessionId`; bits 1-2 finish (clear, end
    /// each, destroy ports, clock).
    fn new(flags: u8, cfg: Cfg) -> Self {
        let mut b = vec![flags];
        b.extend(cfg.bytes());
        Seed(b)
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn open(self, port: u8) -> Self {
        self.raw(&[op::OPEN, port])
    }
    /// Send `{"op": n}` with default options.
    fn send(self, session: u8) -> Self {
        self.raw(&[op::SEND, session, 5, 7, 0, 0, 0, 0])
    }
    /// Send with a timeout index and a retry count.
    fn send_with(self, session: u8, timeout: u8, retries: u8, interval: u8) -> Self {
        self.raw(&[
            op::SEND,
            session,
            5,
            1,
            0,
            1,
            timeout,
            1,
            retries,
            1,
            interval,
        ])
    }
    fn post(self, session: u8) -> Self {
        self.raw(&[op::POST, session, 5, 9, 0])
    }
    fn reply(self, session: u8, copies: u8) -> Self {
        self.raw(&[op::REPLY, session, copies - 1, 1])
    }
    fn tick(self, kind: u8, b: u8, handle: bool, check: bool) -> Self {
        let flags = u8::from(handle) | if check { 8 } else { 0 };
        self.raw(&[op::TICK, b, kind, flags])
    }
    fn bytes(mut self, port: u8, text: &[u8]) -> Self {
        self.0
            .extend([op::BYTES, port, u8::try_from(text.len()).unwrap()]);
        self.0.extend_from_slice(text);
        self
    }
    fn flood(mut self, port: u8, count: u8, start: u32, stride: u8) -> Self {
        self.0.extend([op::FLOOD, port, count]);
        self.0.extend(start.to_le_bytes());
        self.0.push(stride);
        self
    }
    fn drain(self, fail_bits: u8) -> Self {
        self.raw(&[op::DRAIN, fail_bits])
    }
    fn check(self) -> Self {
        self.raw(&[op::CHECK])
    }
}

fn seeds() -> Vec<(&'static str, Seed)> {
    let fast = Cfg {
        timeout: 4,  // 10 ms
        life: 4,     // 100 ms
        interval: 2, // 5 ms
        ..BASE
    };
    vec![
        (
            // The seed's "needPassword": ask, get a question back on the
            // same session, answer, get the result; the peer also talks
            // unasked (queued for recv).
            "multi-turn",
            Seed::new(0, BASE)
                .open(LIVE)
                .send(NEWEST)
                .drain(0)
                .reply(NEWEST, 1)
                .send(NEWEST)
                .drain(0)
                .reply(NEWEST, 1)
                .reply(NEWEST, 2)
                .raw(&[op::RECV, NEWEST, op::RECV, NEWEST, op::RECV, NEWEST])
                .post(NEWEST)
                .drain(0)
                .raw(&[op::END, NEWEST])
                .check(),
        ),
        (
            // Three retries, walked deadline by deadline (1 ns before and at
            // each), with the transmissions taken in between.
            "retries",
            Seed::new(0, Cfg { retries: 3, ..fast })
                .open(LIVE)
                .send(NEWEST)
                .drain(0)
                .tick(tick::BEFORE_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .drain(0)
                .tick(tick::BEFORE_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .drain(0)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .drain(0)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .drain(0)
                .check(),
        ),
        (
            // A reply between retries, then a late duplicate.
            "retry-then-reply",
            Seed::new(2, fast)
                .open(LIVE)
                .send_with(NEWEST, 4, 2, 2)
                .drain(0)
                .tick(tick::AT_DEADLINE, 0, true, false)
                .tick(tick::AT_DEADLINE, 0, true, false)
                .drain(0)
                .reply(NEWEST, 2)
                .raw(&[op::RECV, NEWEST])
                .check(),
        ),
        (
            // Sends with every kind of timeout, then the clock jumps days
            // ahead without a handle_timeout in between: the next input
            // catches up.
            "clock-jump",
            Seed::new(6, Cfg { retries: 2, ..fast })
                .open(LIVE)
                .open(LIVE)
                .open(LIVE)
                .send_with(LIVE, 0, 0, 0)
                .send_with(LIVE | 1, 2, 3, 0)
                .send_with(LIVE | 2, 9, 1, 5)
                .tick(tick::DAYS, 1, false, false)
                .post(LIVE)
                .check()
                .tick(tick::DAYS, 0, true, true)
                .drain(0)
                .check(),
        ),
        (
            // The clock goes back (even before the first input) and then on.
            "clock-backwards",
            Seed::new(0, fast)
                .open(LIVE)
                .send(NEWEST)
                .tick(tick::BACK_DAYS, 2, true, true)
                .open(LIVE)
                .send(NEWEST)
                .tick(tick::BACK_MS, 50, true, true)
                .tick(tick::MS, 9, true, true)
                .tick(tick::TEN_MS, 1, true, true)
                .tick(tick::AFTER_DEADLINE, 3, true, true)
                .drain(0),
        ),
        (
            // A flood of new sids against a cap of 4 incoming sessions, and
            // a talkative peer against an inbox of 1.
            "flood",
            Seed::new(
                0,
                Cfg {
                    incoming: 4,
                    inbox: 0,
                    ..BASE
                },
            )
            .flood(LIVE, 64, 100, 0)
            .flood(LIVE, 64, u32::MAX - 20, 2)
            .flood(LIVE, 8, 100, 0)
            .raw(&[op::RECV, LIVE, op::RECV, LIVE])
            .open(LIVE)
            .send(NEWEST)
            .drain(0),
        ),
        (
            // Odd partition: the peer's sids of our parity are unknown.
            "partition-odd",
            Seed::new(
                0,
                Cfg {
                    partition: 1,
                    max_count: 3,
                    ..BASE
                },
            )
            .open(LIVE)
            .open(LIVE)
            .open(LIVE)
            .flood(LIVE, 12, 1, 0)
            .send(LIVE)
            .drain(0)
            .reply(LIVE, 1),
        ),
        (
            // Bytes from the peer: session messages with odd sids, other
            // JSON, and text that does not parse.
            "garbage-json",
            Seed::new(0, BASE)
                .open(LIVE)
                .bytes(LIVE, br#"{"sid": 1}"#)
                .bytes(LIVE, br#"{"sid": 1.0, "x": [1, {"sid": 2}]}"#)
                .bytes(LIVE, br#"{"sid": 1e400}"#)
                .bytes(LIVE, br#"{"sid": -0.0}"#)
                .bytes(LIVE, br#"{"sid": 4294967295}"#)
                .bytes(LIVE, br#"{"sid": 4294967296}"#)
                .bytes(LIVE, br#"{"sid": 18446744073709551616}"#)
                .bytes(LIVE, br#"{"sid": "7", "sessionId": 7}"#)
                .bytes(LIVE, br#"{"sid": 2, "sid": 3}"#)
                .bytes(LIVE, br#"[{"sid": 1}]"#)
                .bytes(LIVE, br#"{"sid": 1"#)
                .bytes(LIVE, b"\xff\xfe{\"sid\":1}")
                .bytes(LIVE, br#"{"sid": 5e0}"#)
                .bytes(LIVE, br#"{"sid": 12.000000000000001}"#)
                .raw(&[op::JSON, LIVE, 1, 2, 19, 4, 0])
                .raw(&[op::DELIVER, LIVE, 1, 10])
                .raw(br#"{"sid": 9}"#)
                .raw(&[op::RECV, LIVE])
                .drain(0),
        ),
        (
            // Handles of ended, recycled and expired sessions, of ended
            // sends and of a destroyed port, used with every call.
            "stale-handles",
            Seed::new(
                0,
                Cfg {
                    max_count: 0,
                    ..fast
                },
            )
            .open(LIVE)
            .send(NEWEST)
            .open(LIVE)
            .raw(&[op::PROBE, 0, 0, 0])
            .raw(&[op::SEND, ANY, 5, 0, 0, 0, 0, 0])
            .raw(&[op::END, ANY, op::FAIL, ANY, 1])
            .raw(&[op::CREATE_PORT, 1])
            .raw(&BASE.bytes())
            .raw(&[op::OPEN, 1, op::DESTROY_PORT, 1])
            .raw(&[
                op::PROBE,
                0,
                0,
                0,
                op::WITHDRAW,
                ANY,
                op::TRANSMIT_ERROR,
                ANY,
            ])
            .tick(tick::SECONDS, 1, true, true)
            .raw(&[op::PROBE, 1, 1, 1])
            .open(LIVE)
            .raw(&[op::PROBE, 2, 2, 2]),
        ),
        (
            // Custom overflow: recycle candidate 1 of 3.
            "overflow-custom",
            Seed::new(
                0,
                Cfg {
                    overflow: &[7, 1],
                    max_count: 2,
                    ..BASE
                },
            )
            .open(LIVE)
            .open(LIVE)
            .open(LIVE)
            .send(LIVE)
            .open(LIVE)
            .open(LIVE)
            .flood(LIVE, 3, 50, 0)
            .open(LIVE)
            .drain(0),
        ),
        (
            // Reject, a bogus choice and a refusal from custom policies, on
            // ports created next to the default one.
            "overflow-refused",
            Seed::new(
                0,
                Cfg {
                    overflow: &[3],
                    max_count: 1,
                    ..BASE
                },
            )
            .open(LIVE)
            .open(LIVE)
            .raw(&[op::CREATE_PORT, 1])
            .raw(
                &Cfg {
                    overflow: &[6, 0],
                    max_count: 0,
                    ..BASE
                }
                .bytes(),
            )
            .raw(&[op::CREATE_PORT, 2])
            .raw(
                &Cfg {
                    overflow: &[6, 1],
                    max_count: 0,
                    ..BASE
                }
                .bytes(),
            )
            .raw(&[op::OPEN, 1, op::OPEN, 1, op::OPEN, 2, op::OPEN, 2])
            .raw(&[op::CREATE_PORT, 2])
            .raw(&BASE.bytes()),
        ),
        (
            // Ports: duplicate names, unusable options, the default port
            // destroyed and recreated, port-wide cancel/abort/timeout.
            "ports",
            Seed::new(4, fast)
                .raw(&[op::CREATE_PORT, 1])
                .raw(
                    &Cfg {
                        partition: 2,
                        max_count: 0,
                        ..BASE
                    }
                    .bytes(),
                )
                .raw(&[op::CREATE_PORT, 1])
                .raw(&Cfg { inbox: 6, ..BASE }.bytes())
                .raw(&[op::CREATE_PORT, 2])
                .raw(&Cfg { retries: 1, ..fast }.bytes())
                .raw(&[op::CREATE_PORT, 0])
                .raw(&BASE.bytes())
                .open(0)
                .open(1)
                .send(NEWEST)
                .open(0)
                .send(NEWEST)
                .raw(&[op::FAIL_PORT, 1, 2, op::FAIL_PORT, 0, 3])
                .send(LIVE)
                .send(LIVE | 1)
                .raw(&[op::DESTROY_PORT, 0])
                .raw(&[op::CLEAR_PORT, 0])
                .open(0)
                .post(NEWEST)
                .raw(&[op::DESTROY_PORT, 0])
                .drain(0),
        ),
        (
            // Transports that fail, first attempts and retries.
            "transport-failure",
            Seed::new(0, Cfg { retries: 2, ..fast })
                .open(LIVE)
                .open(LIVE)
                .send(LIVE)
                .send(LIVE | 1)
                .drain(0b10)
                .tick(tick::AT_DEADLINE, 0, true, false)
                .tick(tick::AT_DEADLINE, 0, true, false)
                .drain(0xFF)
                .send(LIVE)
                .raw(&[op::TRANSMIT_ERROR, LIVE])
                .drain(0),
        ),
        (
            // A withdrawn send, then its late reply (counted as late).
            "withdraw-late-reply",
            Seed::new(0, fast)
                .open(LIVE)
                .send(NEWEST)
                .raw(&[op::WITHDRAW, LIVE])
                .drain(0)
                .reply(NEWEST, 2)
                .send(NEWEST)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .reply(NEWEST, 1)
                .raw(&[op::RECV, NEWEST, op::RECV, NEWEST]),
        ),
        (
            // Every send failed at once, each way.
            "fail-all",
            Seed::new(2, fast)
                .open(LIVE)
                .open(LIVE)
                .open(LIVE)
                .send(LIVE)
                .send(LIVE | 1)
                .raw(&[op::FAIL_ALL, 0])
                .send(LIVE)
                .send(LIVE | 2)
                .raw(&[op::FAIL_ALL, 2])
                .send(LIVE)
                .raw(&[op::FAIL_ALL, 3])
                .send(LIVE | 1)
                .raw(&[op::FAIL, LIVE | 1, 1])
                .send(LIVE | 1)
                .raw(&[op::CLEAR])
                .drain(0),
        ),
        (
            // Idle sessions expire; posts and deliveries keep them alive.
            "expiry",
            Seed::new(0, Cfg { life: 2, ..fast })
                .open(LIVE)
                .open(LIVE)
                .tick(tick::MS, 6, true, true)
                .post(LIVE)
                .raw(&[op::DELIVER, LIVE | 1, 0, 0, 0, 20])
                .tick(tick::MS, 6, true, true)
                .tick(tick::BEFORE_DEADLINE, 0, true, true)
                .tick(tick::AT_DEADLINE, 0, true, true)
                .check(),
        ),
        (
            // Durations that saturate: timeouts, lives and pauses of
            // Duration::MAX, and days of clock.
            "saturation",
            Seed::new(
                6,
                Cfg {
                    timeout: 11,
                    life: 9,
                    interval: 6,
                    retries: 3,
                    max_count: 9,
                    ..BASE
                },
            )
            .open(LIVE)
            .send(NEWEST)
            .open(LIVE)
            .send_with(NEWEST, 10, 3, 6)
            .open(LIVE)
            .send_with(NEWEST, 0, 3, 5)
            .tick(tick::DAYS, 2, true, true)
            .tick(tick::DAYS, 2, true, true)
            .check()
            .drain(0),
        ),
        (
            // The sid field named "sessionId"; replies as floats.
            "session-id-name",
            Seed::new(1, BASE)
                .open(LIVE)
                .send(NEWEST)
                .raw(&[op::REPLY, NEWEST, 0, 0])
                .send(NEWEST)
                .bytes(LIVE, br#"{"sid": 1, "sessionId": 1.0}"#)
                .bytes(LIVE, br#"{"sessionId": 2}"#)
                .drain(0),
        ),
        (
            // deliver: the reply of a waiting send, then queued past the
            // inbox cap.
            "deliver",
            Seed::new(0, Cfg { inbox: 0, ..BASE })
                .open(LIVE)
                .send(NEWEST)
                .raw(&[op::DELIVER, LIVE, 0, 0, 0, 20])
                .raw(&[op::DELIVER, LIVE, 0, 0, 0, 21])
                .raw(&[op::DELIVER, LIVE, 0, 0, 0, 22])
                .raw(&[op::RECV, LIVE, op::RECV, LIVE])
                .raw(&[op::REPLY_WAITING, 0]),
        ),
    ]
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/core");
    std::fs::create_dir_all(&dir).expect("corpus directory");
    for (name, seed) in seeds() {
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &seed.0).expect("write seed");
        println!("{} ({} bytes)", path.display(), seed.0.len());
    }
}

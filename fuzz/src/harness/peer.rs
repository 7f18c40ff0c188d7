//! The peer's side: inbound messages, deliveries, `recv`, the transport
//! (draining transmissions, failing some), and stale handles.

use super::*;

impl Harness {
    pub(super) fn reply(&mut self, id: SessionId, float: bool) {
        self.replies += 1;
        let sid = if float {
            json!(f64::from(id.sid()))
        } else {
            json!(id.sid())
        };
        let message = json!({ self.t.field: sid, "reply": self.replies });
        self.inbound(id.port(), message);
    }

    /// A message from the peer on `port`.
    pub(super) fn inbound(&mut self, port: PortId, message: Value) {
        let sid = ref_sid(&message, self.t.field);
        ensure!(
            self.m.is_session(&message) == sid.is_some(),
            "is_session({message}) should be {}",
            sid.is_some()
        );
        let owner = sid.and_then(|sid| self.t.port(port).and_then(|_| self.t.by_sid(port, sid)));
        let found = self.m.session_for(port, &message);
        ensure!(
            found == owner,
            "session_for({message}) is {found:?}, expected {owner:?}"
        );
        let mut step = if sid.is_some() {
            Step::timed()
        } else {
            Step::plain()
        };
        step.inbound = sid.map(|sid| (port, sid, message.clone()));
        let (routed, mut step) =
            self.call(step, |m, now| m.handle_inbound(port, message.clone(), now));
        let Some(sid) = sid else {
            match routed {
                Routed::NotSession(back) => {
                    ensure!(back == message, "{message} came back changed: {back}")
                }
                other => violated!("{message} is no session message, but was {other:?}"),
            }
            return self.end(step);
        };
        let reply_event = |id: SessionId| {
            step.events
                .iter()
                .any(|e| matches!(e, Event::Reply { session, .. } if *session == id))
        };
        match routed {
            Routed::NotSession(_) => violated!("session message {message} handed back"),
            Routed::Reply(id) => {
                ensure!(
                    id.port() == port && id.sid() == sid,
                    "{message} answered {id:?}"
                );
                ensure!(reply_event(id), "Routed::Reply({id:?}) without its event");
            }
            Routed::Queued(id) => {
                ensure!(
                    id.port() == port && id.sid() == sid,
                    "{message} queued on {id:?}"
                );
                ensure!(self.t.is_live(id), "{message} queued on dead {id:?}");
                ensure!(
                    !reply_event(id) && self.t.pending(id).is_none(),
                    "queued while a send waits"
                );
                self.t.queued(id, message, &step);
                step.touched.insert(id);
            }
            Routed::Opened(id) => {
                let incoming = step
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Incoming { session } if *session == id));
                ensure!(incoming, "Routed::Opened({id:?}) without Incoming");
            }
            Routed::Dropped(reason) => {
                ensure!(
                    step.dropped(sid, reason),
                    "Routed::Dropped({reason:?}) without its event"
                );
                match (self.t.port(port), reason) {
                    (None, DropReason::NoSuchPort) => {}
                    (Some(p), DropReason::UnknownSid) => {
                        ensure!(
                            p.cfg.partition != SidPartition::All
                                && p.allocates(sid)
                                && self.t.by_sid(port, sid).is_none(),
                            "sid {sid} dropped as unknown on port {}",
                            p.name
                        );
                    }
                    (Some(p), DropReason::IncomingLimit) => {
                        let incoming = self
                            .t
                            .live
                            .iter()
                            .filter(|id| id.port() == port && self.t.sessions[id].incoming)
                            .count() as u32;
                        ensure!(
                            self.t.by_sid(port, sid).is_none()
                                && incoming >= p.cfg.max_incoming
                                && (p.cfg.partition == SidPartition::All || !p.allocates(sid)),
                            "sid {sid} refused on port {} with {incoming} incoming of {}",
                            p.name,
                            p.cfg.max_incoming
                        );
                    }
                    (p, reason) => violated!(
                        "{message} dropped for {reason:?} (port alive: {})",
                        p.is_some()
                    ),
                }
            }
        }
        self.end(step);
    }

    pub(super) fn deliver(&mut self, id: SessionId, message: &Value) {
        let mut step = Step::timed();
        step.deliver = Some((id, message.clone()));
        let (r, mut step) = self.call(step, |m, now| m.deliver(id, message.clone(), now));
        if !self.t.is_live(id) {
            expect_err("deliver to a dead session", &r, "Invalid");
            return self.end(step);
        }
        let replied = step
            .events
            .iter()
            .any(|e| matches!(e, Event::Reply { session, .. } if *session == id));
        match r {
            Ok(Routed::Reply(x)) if x == id && replied => {}
            Ok(Routed::Queued(x)) if x == id && !replied => {
                ensure!(self.t.pending(id).is_none(), "queued while a send waits");
                self.t.queued(id, message.clone(), &step);
                step.touched.insert(id);
            }
            other => violated!("deliver to {id:?}: {other:?} (reply event: {replied})"),
        }
        self.end(step);
    }

    pub(super) fn recv(&mut self, id: SessionId) {
        let (r, step) = self.call(Step::plain(), |m, _| m.recv(id));
        if self.t.is_live(id) {
            let expected = self.t.session_mut(id).inbox.pop_front();
            match r {
                Ok(got) => ensure!(
                    got == expected,
                    "recv({id:?}) got {got:?}, expected {expected:?}"
                ),
                Err(e) => violated!("recv on live {id:?}: {e:?}"),
            }
        } else {
            expect_err("recv on a dead session", &r, "Invalid");
        }
        self.end(step);
    }

    /// Takes every transmission; for those whose bit is set, the transport
    /// fails.
    pub(super) fn drain(&mut self, bits: u8) {
        let waiting: Vec<SendId> = self
            .t
            .live
            .iter()
            .filter_map(|id| self.t.pending(*id))
            .collect();
        let mut taken: Map<SendId, u64> = Map::default();
        let mut i = 0u32;
        while let Some(tx) = self.m.poll_transmit() {
            let field = self.t.field;
            ensure!(
                self.t.port(tx.port).is_some(),
                "transmission for a destroyed port"
            );
            ensure!(
                tx.port == tx.session.port(),
                "transmission on the wrong port"
            );
            ensure!(
                ref_sid(&tx.message, field) == Some(tx.session.sid()),
                "transmission not tagged with sid {}: {}",
                tx.session.sid(),
                tx.message
            );
            match tx.send {
                Some(send) => {
                    let Some(track) = self.t.sends.get_mut(&send) else {
                        violated!("transmission of a send never made")
                    };
                    ensure!(
                        track.state == SendState::Pending,
                        "a transmission of ended {send:?} went out ({:?})",
                        track.state
                    );
                    ensure!(
                        track.session == tx.session,
                        "transmission of {send:?} on another session"
                    );
                    ensure!(
                        track.message == tx.message,
                        "{send:?} went out as {}",
                        tx.message
                    );
                    track.transmissions += 1;
                    *taken.entry(send).or_default() += 1;
                    ensure!(
                        track.transmissions <= 1 + u64::from(track.retries),
                        "{send:?} transmitted {} times with {} retries",
                        track.transmissions,
                        track.retries
                    );
                    if bits.rotate_right(i % 8) & 1 == 1 {
                        self.transmit_error(send);
                    }
                }
                None => {
                    let expected = self.t.posts.pop_front();
                    let got = (tx.port, tx.session, tx.message);
                    ensure!(
                        expected.as_ref() == Some(&got),
                        "post {got:?}, expected {expected:?}"
                    );
                }
            }
            i += 1;
        }
        // Every transmission queued for a send that still waits went out:
        // the first one, and each retry that came due.
        for send in waiting {
            let track = self.t.sends.get_mut(&send).expect("known");
            let got = taken.get(&send).copied().unwrap_or(0);
            if track.state == SendState::Pending {
                ensure!(
                    got == track.queued,
                    "{send:?} went out {got} times since the last drain, expected {}",
                    track.queued
                );
            }
            track.queued = 0;
        }
        ensure!(
            self.t.posts.is_empty(),
            "posts never went out: {:?}",
            self.t.posts
        );
        ensure!(
            self.m.stats().queued_transmits == 0,
            "transmissions left after draining"
        );
    }

    /// Uses stale handles with every call: each is refused, and nothing
    /// else happens (only what the clock made due may fire).
    pub(super) fn probe(&mut self, session: Pick, send: Pick, port: Pick) {
        let id = self
            .pick_session(session, true)
            .filter(|id| !self.t.is_live(*id));
        let send = self
            .pick_send(send, true)
            .filter(|s| self.t.sends[s].state != SendState::Pending);
        let port = Some(self.pick_port(port, true)).filter(|p| self.t.port(*p).is_none());
        if id.is_none() && send.is_none() && port.is_none() {
            return;
        }
        let mut step = Step::timed();
        if let Some(port) = port {
            step.inbound = Some((port, 1, json!({ self.t.field: 1 })));
        }
        let field = self.t.field;
        let ((), step) = self.call(step, |m, now| {
            if let Some(id) = id {
                let invalid = |what: &str, r: Result<(), SessionError>| {
                    expect_err(&format!("{what} on stale {id:?}"), &r, "Invalid")
                };
                let opts = SendOptions::default();
                invalid("send", m.send(id, json!({}), opts, now).map(drop));
                invalid("post", m.post(id, json!({}), now));
                invalid("end", m.end(id));
                invalid("recv", m.recv(id).map(drop));
                invalid("cancel", m.cancel(id, now));
                invalid("abort", m.abort(id, Some(Cause::msg("x")), now));
                invalid("timeout", m.timeout(id, now));
                invalid("deliver", m.deliver(id, json!({}), now).map(drop));
                ensure!(
                    !m.is_live(id) && !m.is_waiting(id),
                    "stale {id:?} looks live"
                );
            }
            if let Some(send) = send {
                ensure!(!m.is_send_waiting(send), "ended {send:?} looks waiting");
                ensure!(!m.withdraw(send, now), "withdrew ended {send:?}");
                let failed = m.handle_transmit_error(send, Cause::msg("x"), now);
                ensure!(!failed, "transport error accepted for ended {send:?}");
            }
            if let Some(port) = port {
                let no_port = |what: &str, r: Result<(), SessionError>| {
                    expect_err(&format!("{what} on destroyed {port:?}"), &r, "NoSuchPort")
                };
                no_port("open_session", m.open_session(port, now).map(drop));
                no_port("clear_port", m.clear_port(port));
                no_port("cancel_port", m.cancel_port(port, now));
                no_port("abort_port", m.abort_port(port, None, now));
                no_port("timeout_port", m.timeout_port(port, now));
                no_port("destroy_port", m.destroy_port(port));
                no_port("port_stats", m.port_stats(port).map(drop));
                ensure!(m.port_name(port).is_none(), "destroyed {port:?} has a name");
                let routed = m.handle_inbound(port, json!({ field: 1 }), now);
                ensure!(
                    matches!(routed, Routed::Dropped(DropReason::NoSuchPort)),
                    "inbound on destroyed {port:?}: {routed:?}"
                );
            }
        });
        self.end(step);
    }
}

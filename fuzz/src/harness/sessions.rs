//! Calls on sessions, sends and ports, each checked against what the
//! harness knows.

use super::*;

impl Harness {
    pub(super) fn open(&mut self, port: PortId) {
        let alive = self.t.port(port).is_some();
        let step = Step::timed()
            .fail(Scope::Port(port), Fail::Cancelled)
            .close(Scope::Port(port), CloseReason::Recycled);
        self.offers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let (r, mut step) = self.call(step, |m, now| m.open_session(port, now));
        let offers = std::mem::take(&mut *self.offers.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(p) = self.t.port(port) else {
            ensure!(!alive, "port {port:?} vanished while opening a session");
            expect_err("open_session on a destroyed port", &r, "NoSuchPort");
            return self.end(step);
        };
        let (overflow, capacity) = (p.cfg.overflow, p.capacity());
        let victim = step.events.iter().find_map(|e| match e {
            Event::Closed {
                session,
                reason: CloseReason::Recycled,
            } => Some(*session),
            _ => None,
        });
        let allocated = self.t.allocated(port);
        let full = victim.is_some() || allocated >= capacity;
        let custom = !matches!(overflow, Overflow::Recycle | Overflow::Reject);
        if custom && full {
            ensure!(
                offers.len() == 1,
                "custom overflow policy called {} times",
                offers.len()
            );
            self.check_offer(port, victim, &step, &offers[0]);
        } else {
            ensure!(
                offers.is_empty(),
                "overflow policy called on a port with free sids"
            );
        }
        match r {
            Ok(id) => {
                ensure!(id.port() == port, "{id:?} opened on the wrong port");
                match victim {
                    Some(v) => {
                        ensure!(
                            id.sid() == v.sid() && allocated + 1 == capacity,
                            "recycled {v:?} for {id:?} ({allocated} of {capacity} sids in use)"
                        );
                    }
                    None => {
                        ensure!(allocated < capacity, "opened {id:?} on a full port");
                        let expected = self.t.next_free_sid(port);
                        ensure!(
                            id.sid() == expected,
                            "opened sid {}, expected {expected}",
                            id.sid()
                        );
                    }
                }
                self.t.add_session(id, false, None);
                step.touched.insert(id);
            }
            Err(SessionError::Exhausted) => {
                ensure!(
                    victim.is_none() && full,
                    "Exhausted on a port with {allocated} of {capacity} sids in use"
                );
                ensure!(
                    matches!(
                        overflow,
                        Overflow::Reject | Overflow::Bogus | Overflow::Refuse
                    ),
                    "overflow policy {overflow:?} refused a session"
                );
            }
            Err(e) => violated!("open_session failed: {e:?}"),
        }
        self.end(step);
    }

    /// A custom overflow policy was offered the port's sessions whose sid
    /// this side allocates, oldest first, as they were.
    pub(super) fn check_offer(
        &self,
        port: PortId,
        victim: Option<SessionId>,
        step: &Step,
        offer: &[Offer],
    ) {
        let p = self.t.port(port).expect("live port");
        let expected: Vec<SessionId> = self
            .t
            .order
            .iter()
            .copied()
            .filter(|id| id.port() == port && (self.t.is_live(*id) || Some(*id) == victim))
            .filter(|id| p.allocates(id.sid()))
            .collect();
        let offered: Vec<SessionId> = offer.iter().map(|o| o.0).collect();
        ensure!(
            offered == expected,
            "overflow offer {offered:?}, expected {expected:?}"
        );
        for &(id, sid, last, waiting, incoming) in offer {
            let s = &self.t.sessions[&id];
            let was_waiting = if Some(id) == victim {
                // (Its send failed with Cancelled when it was recycled; a
                // Timeout before that came from the clock.)
                step.events.iter().any(|e| {
                    matches!(e, Event::SendFailed { session, error: SessionError::Cancelled, .. } if *session == id)
                })
            } else {
                s.pending.is_some()
            };
            ensure!(sid == id.sid() && incoming == s.incoming, "offer of {id:?}");
            ensure!(waiting == was_waiting, "offer of {id:?}: waiting {waiting}");
            if !(Some(id) == victim && was_waiting) {
                ensure!(
                    Some(last) == self.t.instant(s.last),
                    "offer of {id:?}: last activity {last:?}, expected {:?}",
                    self.t.instant(s.last)
                );
            }
        }
    }

    pub(super) fn send(&mut self, id: SessionId, message: &Value, opts: SendOpts) {
        let options = SendOptions {
            timeout: opts.timeout,
            retry_count: opts.retries,
            retry_interval: opts.interval,
        };
        let was_live = self.t.is_live(id);
        let (r, mut step) = self.call(Step::timed(), |m, now| {
            m.send(id, message.clone(), options, now)
        });
        let live = self.t.is_live(id);
        ensure!(was_live || !live, "dead {id:?} came back");
        if !live {
            expect_err("send on a dead session", &r, "Invalid");
        } else if self.t.pending(id).is_some() {
            expect_err("send on a busy session", &r, "Busy");
        } else if !message.is_object() {
            expect_err("send of a non-object", &r, "Untaggable");
        } else {
            let send = match r {
                Ok(send) => send,
                Err(e) => violated!("send on live idle {id:?} failed: {e:?}"),
            };
            let cfg = &self.t.port(id.port()).expect("live port").cfg;
            let timeout = nanos(opts.timeout.unwrap_or(cfg.timeout));
            let interval = nanos(opts.interval.unwrap_or(cfg.retry_interval));
            let retries = opts.retries.unwrap_or(cfg.retry_count);
            let tagged = tagged(message, self.t.field, id.sid()).expect("an object");
            self.t
                .add_send(id, send, (timeout, interval, retries), tagged);
            step.touched.insert(id);
        }
        self.end(step);
    }

    pub(super) fn post(&mut self, id: SessionId, message: &Value) {
        let (r, mut step) = self.call(Step::timed(), |m, now| m.post(id, message.clone(), now));
        if !self.t.is_live(id) {
            expect_err("post on a dead session", &r, "Invalid");
        } else if !message.is_object() {
            expect_err("post of a non-object", &r, "Untaggable");
        } else {
            ensure!(r.is_ok(), "post on live {id:?} failed: {r:?}");
            let tagged = tagged(message, self.t.field, id.sid()).expect("an object");
            self.t.posts.push_back((id.port(), id, tagged));
            let now = self.t.now;
            self.t.session_mut(id).last = now;
            step.touched.insert(id);
        }
        self.end(step);
    }

    pub(super) fn end_session(&mut self, id: SessionId) {
        let was_live = self.t.is_live(id);
        let step = Step::plain()
            .fail(Scope::Session(id), Fail::Cancelled)
            .close(Scope::Session(id), CloseReason::Ended);
        let (r, step) = self.call(step, |m, _| m.end(id));
        if was_live {
            ensure!(r.is_ok() && !self.t.is_live(id), "end({id:?}): {r:?}");
        } else {
            expect_err("end on a dead session", &r, "Invalid");
        }
        self.end(step);
    }

    pub(super) fn fail(&mut self, id: SessionId, kind: Kind) {
        let step = Step::timed().fail(Scope::Session(id), kind_fail(kind));
        let (r, step) = self.call(step, |m, now| match kind {
            Kind::Cancel => m.cancel(id, now),
            Kind::Abort(_) => m.abort(id, cause(kind), now),
            Kind::Timeout => m.timeout(id, now),
        });
        if self.t.is_live(id) {
            ensure!(r.is_ok(), "{kind:?} on live {id:?}: {r:?}");
            ensure!(
                self.t.pending(id).is_none(),
                "{kind:?} left a send waiting on {id:?}"
            );
        } else {
            expect_err("cancel/abort/timeout on a dead session", &r, "Invalid");
        }
        self.end(step);
    }

    pub(super) fn fail_port(&mut self, port: PortId, kind: Kind) {
        let step = Step::timed().fail(Scope::Port(port), kind_fail(kind));
        let (r, step) = self.call(step, |m, now| match kind {
            Kind::Cancel => m.cancel_port(port, now),
            Kind::Abort(_) => m.abort_port(port, cause(kind), now),
            Kind::Timeout => m.timeout_port(port, now),
        });
        if self.t.port(port).is_some() {
            ensure!(r.is_ok(), "{kind:?} on port {port:?}: {r:?}");
            let left = self.t.live.iter().filter(|id| id.port() == port);
            ensure!(
                left.clone().all(|id| self.t.pending(*id).is_none()),
                "{kind:?} on port {port:?} left a send waiting"
            );
        } else {
            expect_err("port operation on a destroyed port", &r, "NoSuchPort");
        }
        self.end(step);
    }

    pub(super) fn fail_all(&mut self, kind: Kind) {
        let step = Step::timed().fail(Scope::All, kind_fail(kind));
        let ((), step) = self.call(step, |m, now| match kind {
            Kind::Cancel => m.cancel_all(now),
            Kind::Abort(_) => m.abort_all(cause(kind), now),
            Kind::Timeout => m.timeout_all(now),
        });
        let waiting = self.t.live.iter().any(|id| self.t.pending(*id).is_some());
        ensure!(!waiting, "{kind:?} on every port left a send waiting");
        self.end(step);
    }

    pub(super) fn clear(&mut self) {
        let step = Step::plain()
            .fail(Scope::All, Fail::Cancelled)
            .close(Scope::All, CloseReason::Cleared);
        let ((), step) = self.call(step, |m, _| m.clear());
        ensure!(
            self.t.live.is_empty(),
            "clear left sessions: {:?}",
            self.t.live
        );
        self.end(step);
    }

    pub(super) fn clear_port(&mut self, port: PortId) {
        let step = Step::plain()
            .fail(Scope::Port(port), Fail::Cancelled)
            .close(Scope::Port(port), CloseReason::Cleared);
        let (r, step) = self.call(step, |m, _| m.clear_port(port));
        if self.t.port(port).is_some() {
            ensure!(r.is_ok(), "clear_port({port:?}): {r:?}");
            ensure!(
                self.t.live.iter().all(|id| id.port() != port),
                "clear_port left sessions"
            );
        } else {
            expect_err("clear_port on a destroyed port", &r, "NoSuchPort");
        }
        self.end(step);
    }

    pub(super) fn destroy_port(&mut self, port: PortId) {
        let step = Step::plain()
            .fail(Scope::Port(port), Fail::Aborted(None))
            .close(Scope::Port(port), CloseReason::PortDestroyed);
        let (r, step) = self.call(step, |m, _| m.destroy_port(port));
        let Some(p) = self.t.port(port) else {
            expect_err("destroy_port on a destroyed port", &r, "NoSuchPort");
            return self.end(step);
        };
        let name = p.name;
        ensure!(r.is_ok(), "destroy_port({port:?}): {r:?}");
        ensure!(
            self.t.live.iter().all(|id| id.port() != port),
            "destroy_port left sessions"
        );
        for track in self.t.ports.iter_mut().filter(|p| p.id == port) {
            track.alive = false;
        }
        // Its queued transmissions are discarded.
        self.t.posts.retain(|(p, _, _)| *p != port);
        if name == "default" {
            let fresh = self.m.default_port();
            ensure!(fresh != port, "the default port kept its handle");
            let defaults = self.t.defaults.clone();
            self.t.add_port(fresh, "default", defaults);
        }
        self.end(step);
    }

    pub(super) fn create_port(&mut self, name: &'static str, cfg: &PortCfg) {
        let options = options(cfg, &self.offers);
        let (r, step) = self.call(Step::plain(), |m, _| m.create_port(name, options));
        let exists = self.t.ports.iter().any(|p| p.alive && p.name == name);
        if exists {
            expect_err("create_port with a taken name", &r, "PortExists");
        } else if !valid(cfg) {
            expect_err("create_port with unusable options", &r, "Config");
        } else {
            match r {
                Ok(id) => self.t.add_port(id, name, cfg.clone()),
                Err(e) => violated!("create_port({name}) failed: {e:?}"),
            }
        }
        self.end(step);
    }

    pub(super) fn withdraw(&mut self, send: SendId) {
        let (r, mut step) = self.call(Step::timed(), |m, now| m.withdraw(send, now));
        if r {
            self.t.withdrawn(send, &mut step);
        } else {
            let state = self.t.sends[&send].state;
            ensure!(
                state != SendState::Pending,
                "withdraw refused waiting {send:?}"
            );
        }
        self.end(step);
    }

    pub(super) fn transmit_error(&mut self, send: SendId) {
        let step = Step::timed().fail(Scope::Send(send), Fail::Transport);
        let (r, step) = self.call(step, |m, now| {
            m.handle_transmit_error(send, Cause::msg("link down"), now)
        });
        ensure!(
            r == step.transport_failed(send),
            "handle_transmit_error({send:?}) returned {r} against its events"
        );
        ensure!(
            self.t.sends[&send].state != SendState::Pending,
            "{send:?} still waits after its transport failed"
        );
        self.end(step);
    }
}

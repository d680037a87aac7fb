//! SEGMENT ARRIVES (RFC 9293 §3.10.7), one function per step, in the RFC's order:
//! LISTEN (§3.10.7.2), SYN-SENT (§3.10.7.3), then for the other states (§3.10.7.4) the sequence check, RST, SYN,
//! ACK, (URG is ignored), data and FIN. TIME-WAIT segments meet compact records (see `time_wait.rs`).

use super::event::{CloseReason, EventKind};
use super::flow::{FlowKey, FlowSlot};
use super::syn_cookie::{self, SynCookieMode};
use super::tcb::{Deadline, Flags, State, Tcb, Timestamps};
use super::{Engine, PendingRst};
use super::{HalfOpenLimit, rate_limit};
use crate::io::{TxRefused, TxSink};
use crate::time::Instant;
use crate::wire::ethernet::MacAddr;
use crate::wire::tcp::TcpRepr;

/// What the third ACK of a cookie handshake came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieAck {
    /// The cookie is not one of ours (or not from the last two periods).
    NotOurs,
    /// A valid cookie, but the connection table is full (counted by `open_slot`).
    TableFull,
    /// The connection, rebuilt in SYN-RECEIVED: the segment goes on through it.
    Rebuilt(u32),
}

/// What a step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Go on with the next step.
    Continue,
    /// The segment is fully handled (or dropped, with its counter bumped).
    Done,
    /// Reply to the segment with a RST (RFC 9293 §3.10.7.x) and stop; the connection stays as it is.
    ResetReply,
    /// The connection is over.
    Close(CloseReason),
    /// Send a RST for the connection, then it is over.
    Abort(CloseReason),
    /// Both FINs are acknowledged: on to TIME-WAIT.
    TimeWait,
}

/// Our TSval at `now` on a connection with `offset` (a millisecond clock, RFC 7323 §5.4).
#[inline]
pub(crate) fn ts_now(now: Instant, offset: u32) -> u32 {
    (now.as_millis() as u32).wrapping_add(offset)
}

impl Engine {
    /// Dispatches a parsed segment to its connection, TIME-WAIT record, or listener.
    pub(crate) fn handle_segment<S: TxSink>(
        &mut self,
        now: Instant,
        key: FlowKey,
        src_mac: MacAddr,
        seg: &TcpRepr,
        tx: &mut S,
    ) {
        // One call site of the connection path, so it stays inlined here (a second, for the SYN cookie's third
        // ACK, outlined it: +390 instructions per life cycle).
        let index = match self.flows.get(&key) {
            Some(FlowSlot::Conn(index)) => index,
            Some(FlowSlot::TimeWait(tw)) => return self.segment_for_time_wait(now, tw, key, src_mac, seg, tx),
            None => match self.segment_for_listen(now, key, src_mac, seg, tx) {
                Some(index) => index,
                None => return,
            },
        };
        self.segment_for_conn(now, index, seg, tx);
    }

    /// §3.10.7.1 (no connection) and §3.10.7.2 (LISTEN), with SYN cookies (RFC 4987 §3.6, `syn_cookie.rs`).
    /// `Some(index)` when the segment was the third ACK of a cookie handshake: the connection it rebuilt must
    /// now process it.
    #[must_use]
    fn segment_for_listen<S: TxSink>(
        &mut self,
        now: Instant,
        key: FlowKey,
        src_mac: MacAddr,
        seg: &TcpRepr,
        tx: &mut S,
    ) -> Option<u32> {
        let listener = self.listeners.iter().position(|l| l.active && l.port == key.local_port);
        let Some(listener) = listener else {
            // CLOSED: "all data in the incoming segment is discarded"; a RST is answered with nothing.
            self.counters.no_listener += 1;
            self.reply_rst(tx, key, src_mac, seg);
            return None;
        };
        // First, check for a RST: ignore it.
        if seg.flags.rst() {
            self.counters.drop_rst_to_listener += 1;
            return None;
        }
        // Second, an ACK in LISTEN is bad: <SEQ=SEG.ACK><CTL=RST>. Unless it returns one of our SYN cookies.
        if seg.flags.ack() {
            if !seg.flags.syn() && self.checks_cookies(now) {
                match self.accept_cookie(now, listener, key, src_mac, seg) {
                    CookieAck::Rebuilt(index) => return Some(index),
                    CookieAck::TableFull => return None,
                    CookieAck::NotOurs => self.counters.syn_cookies_rejected += 1,
                }
            }
            self.reply_rst(tx, key, src_mac, seg);
            return None;
        }
        // Third, a SYN opens a connection in SYN-RECEIVED.
        if !seg.flags.syn() {
            self.counters.drop_listen_no_syn += 1;
            return None;
        }
        let mode = self.config.syn_cookies;
        let full = self.half_open_full(listener);
        match (mode, full) {
            (SynCookieMode::Always, _) | (SynCookieMode::Auto, Some(_)) => {
                self.send_syn_cookie(now, key, src_mac, seg, tx);
                return None;
            }
            (SynCookieMode::Never, Some(limit)) => {
                match limit {
                    HalfOpenLimit::Backlog => self.counters.drop_backlog_full += 1,
                    HalfOpenLimit::Share => self.counters.drop_half_open_limit += 1,
                    HalfOpenLimit::Table => self.counters.drop_table_full += 1,
                }
                return None;
            }
            (_, None) => {}
        }
        let index = self.open_passive(now, listener, key, src_mac)?;
        let config = &self.config;
        let tcb = &mut self.conns[index as usize];
        take_peer_syn(tcb, seg, config);
        tcb.snd_wl2 = tcb.iss;
        // Data or FIN on the SYN is not queued: it is left unacknowledged and the peer sends it again.
        self.mark_dirty(index);
        None
    }

    /// A control block for a passive open on `listener`, in SYN-RECEIVED and counted against the backlog and the
    /// half-open share; `None`, counted, when the table is full.
    fn open_passive(&mut self, now: Instant, listener: usize, key: FlowKey, src_mac: MacAddr) -> Option<u32> {
        let index = self.open_slot(now, key)?;
        self.listeners[listener].half_open += 1;
        self.counters.passive_opens += 1;
        let tcb = &mut self.conns[index as usize];
        tcb.transition(State::SynReceived);
        tcb.flags.insert(Flags::PASSIVE);
        tcb.listener = Some(listener as u32);
        tcb.remote_mac = src_mac;
        Some(index)
    }

    /// Which limit, if any, keeps a SYN for `listener` from getting a control block: its backlog, the half-open
    /// share of the table (`half_open_percent`), or the table itself.
    fn half_open_full(&self, listener: usize) -> Option<HalfOpenLimit> {
        let l = &self.listeners[listener];
        if l.half_open >= l.backlog {
            Some(HalfOpenLimit::Backlog)
        } else if self.half_open() >= self.half_open_limit {
            Some(HalfOpenLimit::Share)
        } else if self.free_conns.is_empty() {
            Some(HalfOpenLimit::Table)
        } else {
            None
        }
    }

    /// Whether an ACK to a listener may carry a cookie: always in `always` mode; in `auto` mode only within two
    /// cookie periods of the last cookie sent (Linux's `tcp_synq_no_recent_overflow`).
    fn checks_cookies(&self, now: Instant) -> bool {
        match self.config.syn_cookies {
            SynCookieMode::Always => true,
            SynCookieMode::Never => false,
            SynCookieMode::Auto => self
                .last_cookie_sent
                .is_some_and(|sent| now.saturating_since(sent) <= syn_cookie::LIFETIME),
        }
    }

    /// The third ACK of a handshake we answered with a cookie: if the cookie checks, the connection is rebuilt
    /// in SYN-RECEIVED, as if its SYN had been kept, and the ACK goes through the ordinary SYN-RECEIVED path
    /// (which establishes it and queues `Accepted`), data and FIN included: the caller runs the segment through
    /// the rebuilt connection.
    fn accept_cookie(
        &mut self,
        now: Instant,
        listener: usize,
        key: FlowKey,
        src_mac: MacAddr,
        seg: &TcpRepr,
    ) -> CookieAck {
        let tuple = syn_cookie::CookieTuple {
            local: (key.local_addr, key.local_port),
            remote: (key.remote_addr, key.remote_port),
        };
        let Some(mss) = self.cookies.check(now, &tuple, seg.seq, seg.ack) else {
            return CookieAck::NotOurs;
        };
        // The options the SYN-ACK agreed to, from the TSval it sent (echoed as TSecr).
        let (window_scale, sack_permitted) = match seg.timestamps {
            Some(ts) if self.config.timestamps => match syn_cookie::decode_ts(ts.tsecr) {
                Some(options) => options,
                None => return CookieAck::NotOurs,
            },
            _ => (None, false),
        };
        if (window_scale.is_some() && !self.config.window_scaling) || (sack_permitted && !self.config.sack) {
            return CookieAck::NotOurs;
        }
        self.counters.syn_cookies_validated += 1;
        let Some(index) = self.open_passive(now, listener, key, src_mac) else {
            return CookieAck::TableFull; // counted; the peer's next segment tries again
        };
        let config = &self.config;
        let tcb = &mut self.conns[index as usize];
        // Our SYN-ACK is out: ISS is the cookie, SND.NXT just past it.
        let iss = seg.ack - 1;
        tcb.iss = iss;
        tcb.snd_una = iss;
        tcb.snd_nxt = seg.ack;
        tcb.snd_max = seg.ack;
        tcb.snd_wl2 = iss;
        let syn = PeerSyn {
            seq: seg.seq - 1,
            window: seg.window,
            mss: Some(mss),
            window_scale,
            sack_permitted,
            tsval: if config.timestamps {
                seg.timestamps.map(|ts| ts.tsval)
            } else {
                None
            },
        };
        syn.synchronize(tcb, config);
        CookieAck::Rebuilt(index)
    }

    /// Segments for a connection control block.
    fn segment_for_conn<S: TxSink>(&mut self, now: Instant, index: u32, seg: &TcpRepr, tx: &mut S) {
        let step = {
            let state = self.conns[index as usize].state;
            match state {
                State::SynSent => self.on_segment_syn_sent(now, index, seg),
                State::Closed | State::Listen | State::TimeWait => Step::Done,
                _ => self.on_segment_synchronized(now, index, seg),
            }
        };
        match step {
            Step::Continue | Step::Done => {}
            Step::ResetReply => {
                let tcb = &self.conns[index as usize];
                let (key, mac) = (tcb.key, tcb.remote_mac);
                self.reply_rst(tx, key, mac, seg);
            }
            Step::Close(reason) => {
                self.finish_conn(index, reason);
                return;
            }
            Step::Abort(reason) => {
                let tcb = &self.conns[index as usize];
                let rst = PendingRst {
                    key: tcb.key,
                    remote_mac: tcb.remote_mac,
                    seq: tcb.snd_max,
                    ack: Some(tcb.rcv_nxt),
                };
                // A full sink now: the RST goes with the next `poll_transmit` instead.
                if self.send_rst(tx, rst) == Err(TxRefused::Full) {
                    self.queue_rst(rst);
                }
                self.finish_conn(index, reason);
                return;
            }
            Step::TimeWait => {
                if self.conns[index as usize].flags.contains(Flags::ACK_NOW) {
                    self.send_ack_now(now, index, tx);
                }
                self.enter_time_wait(index);
                return;
            }
        }
        self.mark_dirty(index);
    }

    /// §3.10.7.3: SYN-SENT.
    fn on_segment_syn_sent(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        let config = &self.config;
        let rto_bounds = self.rto_bounds;
        let tcb = &mut self.conns[index as usize];
        // First, check the ACK bit: it must acknowledge our SYN and nothing beyond.
        if seg.flags.ack() && (seg.ack.diff(tcb.iss) <= 0 || seg.ack.diff(tcb.snd_max) > 0) {
            if seg.flags.rst() {
                return Step::Done;
            }
            return Step::ResetReply;
        }
        // Second, the RST bit: with an acceptable ACK it refuses the connection.
        if seg.flags.rst() {
            if seg.flags.ack() {
                self.counters.refused += 1;
                return Step::Close(CloseReason::Refused);
            }
            return Step::Done;
        }
        // Fourth, the SYN bit.
        if !seg.flags.syn() {
            return Step::Done;
        }
        take_peer_syn(tcb, seg, config);
        if seg.flags.ack() {
            // Our SYN is acknowledged: ESTABLISHED, and ACK the peer's SYN.
            tcb.snd_wl2 = seg.ack;
            let srtt_sample = take_rtt_sample(tcb, now, seg);
            if let Some(rtt_us) = srtt_sample {
                tcb.rtt.sample(rtt_us, rto_bounds);
            }
            tcb.snd_una = seg.ack;
            if tcb.snd_nxt.diff(tcb.snd_una) < 0 {
                tcb.snd_nxt = tcb.snd_una;
            }
            tcb.rto_at = Deadline::NONE;
            tcb.retries = 0;
            tcb.transition(State::Established);
            tcb.flags.insert(Flags::ACK_NOW);
            start_keepalive(tcb, now, config);
            self.counters.established += 1;
            if !self.push_event(index, EventKind::Connected) {
                self.owe_event(index, Flags::OWED_CONNECTED);
            }
            // Data or FIN on the SYN-ACK: continue at the sixth step (§3.10.7.3).
            if !seg.payload.is_empty() || seg.flags.fin() {
                let data = self.process_data(now, index, seg);
                if data != Step::Continue {
                    return data;
                }
                return self.process_fin(now, index, seg);
            }
            Step::Continue
        } else {
            // Simultaneous open (MUST-10): SYN-RECEIVED, and our SYN goes again as a SYN-ACK.
            tcb.snd_wl2 = tcb.iss;
            tcb.transition(State::SynReceived);
            tcb.snd_nxt = tcb.iss;
            tcb.rto_at = Deadline::NONE;
            Step::Continue
        }
    }

    /// §3.10.7.4: every synchronized state, and SYN-RECEIVED.
    fn on_segment_synchronized(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost, send it again (as Linux does).
        {
            let tcb = &mut self.conns[index as usize];
            if tcb.state == State::SynReceived && seg.flags.syn() && !seg.flags.ack() && seg.seq == tcb.irs {
                tcb.snd_nxt = tcb.iss;
                return Step::Continue;
            }
            // Simultaneous open (RFC 9293 Figure 7, line 7): the peer's SYN-ACK repeats its SYN, which lies just
            // before RCV.NXT; like Linux, take it as the ACK it also is rather than as an old duplicate.
            let simultaneous = tcb.state == State::SynReceived
                && !tcb.flags.contains(Flags::PASSIVE)
                && seg.flags.syn()
                && seg.flags.ack()
                && !seg.flags.rst()
                && seg.seq + 1 == tcb.rcv_nxt
                && seg.ack == tcb.snd_nxt;
            if simultaneous {
                return self.process_ack(now, index, seg);
            }
        }
        // The steps in the RFC's order, called directly (not through an array of fn pointers) so that each can
        // be inlined; each returns `Continue` to go on to the next.
        macro_rules! step {
            ($call:expr) => {
                match $call {
                    Step::Continue => {}
                    other => return other,
                }
            };
        }
        step!(self.check_sequence(now, index, seg));
        step!(self.check_rst(now, index, seg));
        step!(self.check_syn(now, index, seg));
        step!(self.process_ack(now, index, seg));
        step!(self.process_data(now, index, seg));
        self.process_fin(now, index, seg)
    }

    /// First: the sequence number (RFC 9293 Table 6), after PAWS (RFC 7323 §5).
    fn check_sequence(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        let tcb = &mut self.conns[index as usize];
        if let (Some(ts), Some(seg_ts)) = (tcb.ts, seg.timestamps) {
            if !seg.flags.rst() && (seg_ts.tsval.wrapping_sub(ts.recent) as i32) < 0 {
                self.counters.drop_paws += 1;
                self.ack_unacceptable(now, index, seg);
                return Step::Done;
            }
        }
        let len = seg.segment_len();
        let wnd = tcb
            .rcv_window()
            .max(tcb.rcv_adv.since(tcb.rcv_nxt).min(i32::MAX as u32));
        let acceptable = match (len, wnd) {
            (0, 0) => seg.seq == tcb.rcv_nxt,
            (0, _) => seg.seq.in_window(tcb.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => seg.seq.in_window(tcb.rcv_nxt, wnd) || (seg.seq + (len - 1)).in_window(tcb.rcv_nxt, wnd),
        };
        if !acceptable {
            if seg.flags.rst() {
                self.counters.drop_rst_out_of_window += 1;
            } else if seg.flags.syn() {
                // RFC 5961 §4.2: a SYN, whatever its sequence number, gets a challenge ACK.
                self.counters.drop_out_of_window += 1;
                self.challenge_ack(now, index);
            } else {
                self.counters.drop_out_of_window += 1;
                self.ack_unacceptable(now, index, seg);
            }
            return Step::Done;
        }
        // Activity: push keep-alive out.
        if tcb.keepalive_at.is_some() {
            tcb.retries = if tcb.rto_at.is_none() { 0 } else { tcb.retries };
            start_keepalive(tcb, now, &self.config);
        }
        Step::Continue
    }

    /// Second: the RST bit, validated per RFC 5961 §3.2.
    fn check_rst(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        if !seg.flags.rst() {
            return Step::Continue;
        }
        let tcb = &self.conns[index as usize];
        if seg.seq != tcb.rcv_nxt {
            // In the window but not exact: a challenge ACK, and drop.
            self.challenge_ack(now, index);
            return Step::Done;
        }
        self.counters.rst_received += 1;
        match tcb.state {
            // From a passive open: back to LISTEN (finish_conn frees it silently).
            State::SynReceived if tcb.flags.contains(Flags::PASSIVE) => Step::Close(CloseReason::Reset),
            State::SynReceived => {
                self.counters.refused += 1;
                Step::Close(CloseReason::Refused)
            }
            _ => Step::Close(CloseReason::Reset),
        }
    }

    /// Fourth (third is security): a SYN in a synchronized state gets a challenge ACK (RFC 5961 §4).
    fn check_syn(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        if !seg.flags.syn() {
            return Step::Continue;
        }
        self.challenge_ack(now, index);
        Step::Done
    }

    /// An ACK that asks the peer to resynchronize (RFC 5961 §3-5), under the per-connection limit and the
    /// global budget of §7 (`rate_limit.rs`).
    fn challenge_ack(&mut self, now: Instant, index: u32) {
        let tcb = &mut self.conns[index as usize];
        if !rate_limit::per_connection_allows(&mut tcb.last_oow_ack, now, self.config.oow_ack_interval) {
            self.counters.oow_acks_limited += 1;
            return;
        }
        if self.challenge.take(now, self.config.challenge_ack_limit) {
            self.counters.challenge_acks_sent += 1;
            tcb.flags.insert(Flags::ACK_NOW);
        } else {
            self.counters.challenge_acks_limited += 1;
        }
    }

    /// The ACK owed for an unacceptable segment (RFC 9293 §3.10.7.4 first step, RFC 7323 PAWS), under the
    /// per-connection limit: a blind attacker sends those by the million. Only data wholly below RCV.NXT is
    /// answered every time: that is a peer resending because our ACK was lost, and it needs each one.
    fn ack_unacceptable(&mut self, now: Instant, index: u32, seg: &TcpRepr) {
        let tcb = &mut self.conns[index as usize];
        let old_data = !seg.payload.is_empty() && (seg.seq + seg.segment_len()).diff(tcb.rcv_nxt) <= 0;
        let limited = !old_data;
        if limited && !rate_limit::per_connection_allows(&mut tcb.last_oow_ack, now, self.config.oow_ack_interval) {
            self.counters.oow_acks_limited += 1;
            return;
        }
        tcb.flags.insert(Flags::ACK_NOW);
    }

    /// Fifth: the ACK field.
    fn process_ack(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        if !seg.flags.ack() {
            self.counters.drop_no_ack += 1;
            return Step::Done;
        }
        let config = &self.config;
        let tcb = &mut self.conns[index as usize];
        if tcb.state == State::SynReceived {
            // SND.UNA < SEG.ACK =< SND.NXT: the handshake completes.
            if !(seg.ack.diff(tcb.snd_una) > 0 && seg.ack.diff(tcb.snd_max) <= 0) {
                return Step::ResetReply;
            }
            tcb.transition(State::Established);
            tcb.snd_wnd = u32::from(seg.window) << tcb.snd_shift;
            tcb.max_snd_wnd = tcb.max_snd_wnd.max(tcb.snd_wnd);
            tcb.snd_wl1 = seg.seq;
            tcb.snd_wl2 = seg.ack;
            self.counters.established += 1;
            start_keepalive(tcb, now, config);
            let kind = match tcb.listener.take() {
                Some(l) => {
                    self.release_half_open(l);
                    EventKind::Accepted {
                        listener: super::ListenerHandle {
                            index: l,
                            port: self.listeners[l as usize].port,
                        },
                    }
                }
                None => EventKind::Connected,
            };
            if !self.push_event(index, kind) {
                let owed = match kind {
                    EventKind::Accepted { .. } => Flags::OWED_ACCEPTED,
                    _ => Flags::OWED_CONNECTED,
                };
                self.owe_event(index, owed);
            }
        }
        let tcb = &mut self.conns[index as usize];
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
        if seg.ack.diff(tcb.snd_max) > 0 {
            self.counters.drop_ack_unsent += 1;
            self.challenge_ack(now, index);
            return Step::Done;
        }
        if seg.ack.diff(tcb.snd_una - tcb.max_snd_wnd) < 0 {
            self.challenge_ack(now, index);
            return Step::Done;
        }
        // RFC 7323 §4.3: remember the TSval of a segment that covers the left edge of the window, once its ACK
        // is known to be acceptable (as Linux does): one blind segment that guessed RCV.NXT but not the ACK must
        // not move TS.Recent, or PAWS would then drop the peer's real segments.
        if let (Some(ts), Some(seg_ts)) = (tcb.ts.as_mut(), seg.timestamps) {
            if seg.seq.diff(tcb.rcv_nxt) <= 0 {
                ts.recent = seg_ts.tsval;
            }
        }
        let acked = seg.ack.diff(tcb.snd_una);
        if acked > 0 {
            self.on_new_ack(now, index, seg, acked as u32);
        } else if acked == 0 {
            self.on_duplicate_ack(index, seg);
        } else {
            self.counters.dup_acks += 1;
        }
        let tcb = &mut self.conns[index as usize];
        // Window update (§3.10.7.4): from a newer segment, or the same one acknowledging more.
        if tcb.snd_wl1.diff(seg.seq) < 0 || (tcb.snd_wl1 == seg.seq && tcb.snd_wl2.diff(seg.ack) <= 0) {
            tcb.snd_wnd = u32::from(seg.window) << tcb.snd_shift;
            tcb.max_snd_wnd = tcb.max_snd_wnd.max(tcb.snd_wnd);
            tcb.snd_wl1 = seg.seq;
            tcb.snd_wl2 = seg.ack;
            if tcb.snd_wnd > 0 {
                tcb.persist_at = Deadline::NONE;
            }
        }
        if tcb.persist_at.is_some() {
            // An answer to a window probe: the peer is alive (RFC 9293 MUST-37).
            tcb.retries = 0;
        }
        let fin_acked = tcb.snd_fin.is_some_and(|fin| seg.ack.diff(fin) > 0);
        match tcb.state {
            State::FinWait1 if fin_acked => {
                tcb.transition(State::FinWait2);
                if tcb.flags.contains(Flags::APP_CLOSED) {
                    tcb.linger_at = Deadline::at(now + self.config.fin_wait2_timeout);
                }
                Step::Continue
            }
            State::Closing if fin_acked => {
                tcb.transition(State::TimeWait);
                Step::TimeWait
            }
            State::LastAck if fin_acked => Step::Close(CloseReason::Normal),
            _ => Step::Continue,
        }
    }

    /// SND.UNA advances: drop acknowledged data, take an RTT sample, grow the congestion window (RFC 5681,
    /// RFC 6582), restart or stop the retransmission timer (RFC 6298 §5.2, §5.3).
    fn on_new_ack(&mut self, now: Instant, index: u32, seg: &TcpRepr, acked: u32) {
        let rto_bounds = self.rto_bounds;
        let tcb = &mut self.conns[index as usize];
        if let Some(rtt_us) = take_rtt_sample(tcb, now, seg) {
            tcb.rtt.sample(rtt_us, rto_bounds);
        }
        // Data bytes acknowledged: neither our SYN nor our FIN, if covered, is in the buffer.
        let syn_covered = tcb.snd_una == tcb.iss;
        let fin_covered = tcb.snd_fin.is_some_and(|fin| seg.ack.diff(fin) > 0);
        let data_acked = acked.saturating_sub(u32::from(syn_covered) + u32::from(fin_covered)) as usize;
        // An ACK of only our SYN or FIN frees nothing (an empty send ring holds no chunk to give back).
        if data_acked > 0 {
            tcb.tx.discard(&mut self.pool, data_acked.min(tcb.tx.len()));
        }
        tcb.snd_una = seg.ack;
        if tcb.snd_nxt.diff(tcb.snd_una) < 0 {
            tcb.snd_nxt = tcb.snd_una;
        }
        tcb.retries = 0;
        let mss = u32::from(tcb.mss);
        match tcb.cc.recover {
            Some(recover) if seg.ack.diff(recover) < 0 => {
                // Partial ACK (RFC 6582 §3.2 step 5): retransmit the next hole, deflate by what was acked.
                tcb.flags.insert(Flags::FAST_REXMIT);
                tcb.cc.cwnd = tcb.cc.cwnd.saturating_sub(acked).saturating_add(mss);
            }
            Some(_) => {
                // Full ACK: leave fast recovery.
                tcb.cc.cwnd = tcb.cc.ssthresh.min(tcb.in_flight().max(mss) + mss);
                tcb.cc.recover = None;
                tcb.cc.dup_acks = 0;
            }
            None => {
                tcb.cc.dup_acks = 0;
                if tcb.cc.cwnd < tcb.cc.ssthresh {
                    tcb.cc.cwnd = tcb.cc.cwnd.saturating_add(acked.min(mss));
                } else {
                    tcb.cc.cwnd = tcb.cc.cwnd.saturating_add((mss * mss / tcb.cc.cwnd.max(1)).max(1));
                }
            }
        }
        tcb.rto_at = if tcb.snd_una == tcb.snd_max {
            Deadline::NONE
        } else {
            Deadline::after(now, tcb.rtt.rto(rto_bounds))
        };
        if tcb.flags.contains(Flags::WANT_WRITABLE) && tcb.tx.free() > 0 && tcb.state.can_send() {
            // Still owed if the queue is full: the next ACK that frees space tries again.
            if self.push_event(index, EventKind::Writable) {
                self.conns[index as usize].flags.remove(Flags::WANT_WRITABLE);
            } else {
                self.owe_event(index, Flags::default());
            }
        }
    }

    /// SEG.ACK = SND.UNA: a duplicate ACK in RFC 5681's sense counts toward fast retransmit.
    fn on_duplicate_ack(&mut self, index: u32, seg: &TcpRepr) {
        let tcb = &mut self.conns[index as usize];
        let is_dup = seg.payload.is_empty()
            && !seg.flags.syn()
            && !seg.flags.fin()
            && tcb.in_flight() > 0
            && (u32::from(seg.window) << tcb.snd_shift) == tcb.snd_wnd;
        if !is_dup {
            return;
        }
        self.counters.dup_acks += 1;
        let mss = u32::from(tcb.mss);
        tcb.cc.dup_acks = tcb.cc.dup_acks.saturating_add(1);
        if tcb.cc.recover.is_some() {
            // Fast recovery: each further duplicate means a segment left the network (RFC 5681 §3.2 step 4).
            tcb.cc.cwnd = tcb.cc.cwnd.saturating_add(mss);
        } else if tcb.cc.dup_acks == 3 {
            tcb.cc.ssthresh = (tcb.in_flight() / 2).max(2 * mss);
            tcb.cc.cwnd = tcb.cc.ssthresh + 3 * mss;
            tcb.cc.recover = Some(tcb.snd_max);
            tcb.flags.insert(Flags::FAST_REXMIT);
            tcb.rtt_probe = None;
            self.counters.fast_retransmits += 1;
        }
    }

    /// Seventh (sixth, URG, is ignored: RFC 9293 MUST-30 needs only that it not break anything): data.
    ///
    /// The test for a segment without data is inlined into the callers (half the segments of a short connection
    /// carry none); the rest is [`Engine::process_payload`].
    #[inline(always)]
    fn process_data(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        if seg.payload.is_empty() {
            return Step::Continue;
        }
        self.process_payload(now, index, seg)
    }

    /// [`Engine::process_data`] for a segment that carries data.
    fn process_payload(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        let tcb = &mut self.conns[index as usize];
        if !matches!(tcb.state, State::Established | State::FinWait1 | State::FinWait2) {
            // After the peer's FIN no data can be new (CLOSE-WAIT, CLOSING, LAST-ACK): ignore it.
            return Step::Continue;
        }
        if tcb.flags.contains(Flags::APP_CLOSED) {
            self.counters.data_after_close += 1;
            return Step::Abort(CloseReason::DataAfterClose);
        }
        // Trim what lies before RCV.NXT (a SYN occupies the first sequence number) and beyond the window.
        let first = seg.seq + u32::from(seg.flags.syn());
        let skip = tcb.rcv_nxt.diff(first).max(0) as usize;
        if skip >= seg.payload.len() {
            tcb.flags.insert(Flags::ACK_NOW); // a pure duplicate: tell the peer where we are
            return Step::Continue;
        }
        let offset = first.diff(tcb.rcv_nxt).max(0) as usize;
        let room = (tcb.rcv_window() as usize).saturating_sub(offset);
        let data = &seg.payload[skip..];
        let data = &data[..data.len().min(room)];
        if data.is_empty() {
            tcb.flags.insert(Flags::ACK_NOW);
            return Step::Continue;
        }
        if offset == 0 {
            let n = tcb.rx.enqueue_slice(&mut self.pool, data);
            if n == 0 {
                self.counters.drop_no_buffer += 1;
                tcb.flags.insert(Flags::ACK_NOW);
                return Step::Continue;
            }
            self.counters.data_in_order += 1;
            let had_holes = !tcb.ooo.is_empty();
            // Without holes there is nothing to move past or fill (both assembler calls would be no-ops).
            let filled = if had_holes {
                tcb.ooo.advance(n as u32);
                let filled = tcb.ooo.remove_front();
                tcb.rx.commit(filled as usize)
            } else {
                0
            };
            tcb.rcv_nxt += (n + filled) as u32;
            // ACK policy: at once when a hole fills or every second full segment; else delayed (RFC 9293
            // SHLD-18/19, RFC 5681 §4.2).
            tcb.unacked_segments = tcb.unacked_segments.saturating_add(1);
            match self.config.delayed_ack {
                Some(delay) if !had_holes && tcb.unacked_segments < 2 => {
                    if tcb.delack_at.is_none() {
                        tcb.delack_at = Deadline::at(now + delay);
                    }
                }
                _ => tcb.flags.insert(Flags::ACK_NOW),
            }
            // Marked sent only once queued: a dropped one is owed, and the next data segment raises it.
            if !tcb.flags.contains(Flags::READABLE_SENT) {
                if self.push_event(index, EventKind::Readable) {
                    self.conns[index as usize].flags.insert(Flags::READABLE_SENT);
                } else {
                    self.owe_event(index, Flags::default());
                }
            }
        } else {
            // Out of order: place it beyond the hole and remember the range (RFC 9293 SHLD-31).
            let n = tcb.rx.write_at(&mut self.pool, offset, data);
            if n == 0 && self.pool.available() == 0 && !tcb.rx.has_chunk() {
                self.counters.drop_no_buffer += 1;
            } else if n == 0 || tcb.ooo.add(offset as u32, n as u32).is_err() {
                self.counters.drop_reassembly_full += 1;
            } else {
                self.counters.data_out_of_order += 1;
            }
            // A duplicate ACK at once, with SACK blocks, speeds the peer's recovery (RFC 5681 §4.2).
            tcb.flags.insert(Flags::ACK_NOW);
        }
        Step::Continue
    }

    /// Eighth: the FIN bit.
    ///
    /// A segment without FIN on a connection with no FIN pending is let through inline; the rest is
    /// [`Engine::process_fin_bit`].
    #[inline(always)]
    fn process_fin(&mut self, now: Instant, index: u32, seg: &TcpRepr) -> Step {
        if !seg.flags.fin() && self.conns[index as usize].fin_pending.is_none() {
            return Step::Continue;
        }
        self.process_fin_bit(now, index, seg)
    }

    /// [`Engine::process_fin`] for a segment with FIN, or while a FIN beyond a hole is pending.
    fn process_fin_bit(&mut self, _now: Instant, index: u32, seg: &TcpRepr) -> Step {
        let tcb = &mut self.conns[index as usize];
        if seg.flags.fin() {
            let fin_seq = seg.seq + u32::from(seg.flags.syn()) + seg.payload.len() as u32;
            if fin_seq.diff(tcb.rcv_nxt) > 0 && tcb.fin_pending.is_none() {
                // FIN beyond a hole: processed once the data before it has arrived.
                tcb.fin_pending = Some(fin_seq);
                tcb.flags.insert(Flags::ACK_NOW);
            }
        }
        let Some(fin_seq) = (if seg.flags.fin() {
            Some(seg.seq + u32::from(seg.flags.syn()) + seg.payload.len() as u32)
        } else {
            tcb.fin_pending
        }) else {
            return Step::Continue;
        };
        if fin_seq != tcb.rcv_nxt {
            if fin_seq.diff(tcb.rcv_nxt) < 0 && tcb.flags.contains(Flags::PEER_FIN) {
                // A retransmitted FIN: our ACK was lost, send it again.
                tcb.flags.insert(Flags::ACK_NOW);
            }
            return Step::Continue;
        }
        if tcb.flags.contains(Flags::PEER_FIN) {
            return Step::Continue;
        }
        tcb.fin_pending = None;
        tcb.flags.insert(Flags::PEER_FIN);
        tcb.flags.insert(Flags::ACK_NOW);
        tcb.rcv_nxt += 1;
        let step = match tcb.state {
            State::SynReceived | State::Established => {
                tcb.transition(State::CloseWait);
                Step::Continue
            }
            // Our FIN not yet acknowledged: simultaneous close.
            State::FinWait1 => {
                tcb.transition(State::Closing);
                Step::Continue
            }
            State::FinWait2 => {
                tcb.transition(State::TimeWait);
                Step::TimeWait
            }
            _ => Step::Continue,
        };
        if !self.push_event(index, EventKind::PeerClosed) {
            self.owe_event(index, Flags::OWED_PEER_CLOSED);
        }
        step
    }

    /// A segment for a TIME-WAIT record (RFC 9293 §3.10.7.4 for TIME-WAIT, RFC 1337, RFC 6191).
    fn segment_for_time_wait<S: TxSink>(
        &mut self,
        now: Instant,
        tw: u32,
        key: FlowKey,
        src_mac: MacAddr,
        seg: &TcpRepr,
        tx: &mut S,
    ) {
        let Some(record) = self.time_wait.get(tw).copied() else {
            return;
        };
        if seg.flags.rst() {
            // RFC 1337: a RST must not cut TIME-WAIT short (TIME-WAIT assassination).
            self.counters.drop_rst_time_wait += 1;
            return;
        }
        if seg.flags.syn() && !seg.flags.ack() {
            // RFC 6191 §2: a new incarnation is acceptable when its timestamp is newer, or, without
            // timestamps on either side, when its sequence number is above the old connection's.
            let newer = match (record.ts_recent, seg.timestamps) {
                (Some(recent), Some(ts)) => (ts.tsval.wrapping_sub(recent) as i32) > 0,
                (None, None) => seg.seq.diff(record.rcv_nxt) > 0,
                _ => false,
            };
            if newer && self.config.time_wait_reuse {
                self.reuse_time_wait(tw);
                // A SYN never rebuilds a cookie connection, so there is nothing to hand on.
                let _ = self.segment_for_listen(now, key, src_mac, seg, tx);
                // RFC 1122 §4.2.2.13: the new incarnation's ISS must lie beyond every sequence number the old
                // one used, or the old one's delayed segments land in the new receive window (as Linux does,
                // with a window's margin).
                if let Some(FlowSlot::Conn(index)) = self.flows.get(&key) {
                    let floor = record.snd_nxt + 65535 + 2;
                    let tcb = &mut self.conns[index as usize];
                    if tcb.state == State::SynReceived && tcb.iss.diff(floor) < 0 {
                        tcb.iss = floor;
                        tcb.snd_una = floor;
                        tcb.snd_nxt = floor;
                        tcb.snd_max = floor;
                        tcb.snd_wl2 = floor;
                    }
                }
                return;
            }
            self.counters.time_wait_syn_refused += 1;
        }
        // The peer's FIN again (our last ACK was lost): ACK it and restart the 2*MSL wait.
        let fin_again = seg.flags.fin() && (seg.seq + seg.payload.len() as u32 + 1) == record.rcv_nxt;
        if fin_again {
            self.counters.time_wait_reacks += 1;
            self.restart_time_wait(tw);
        }
        if fin_again {
            self.send_time_wait_ack(now, &record, tx);
        } else if seg.segment_len() > 0 {
            // Anything else that occupies sequence space gets our ACK too, within the global budget: a record
            // has no room for a per-connection limit, and a blind flood must not turn into an ACK flood.
            if self.challenge.take(now, self.config.challenge_ack_limit) {
                self.send_time_wait_ack(now, &record, tx);
            } else {
                self.counters.time_wait_acks_limited += 1;
            }
        }
    }
}

/// The peer's SYN synchronizes us (RFC 9293 §3.10.7.2-3).
#[inline]
fn take_peer_syn(tcb: &mut Tcb, seg: &TcpRepr, config: &super::EngineConfig) {
    PeerSyn {
        seq: seg.seq,
        window: seg.window,
        mss: seg.mss,
        window_scale: seg.window_scale,
        sack_permitted: seg.sack_permitted,
        tsval: seg.timestamps.map(|ts| ts.tsval),
    }
    .synchronize(tcb, config);
}

/// What a connection learns from the peer's SYN: from the SYN itself, or rebuilt from a SYN cookie.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSyn {
    seq: crate::wire::SeqNum,
    window: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    tsval: Option<u32>,
}

impl PeerSyn {
    /// IRS and RCV.NXT from its sequence number, SND.WND <- SEG.WND (never scaled in a SYN, RFC 7323 §2.2),
    /// SND.WL1 <- SEG.SEQ, and the options.
    fn synchronize(&self, tcb: &mut Tcb, config: &super::EngineConfig) {
        tcb.irs = self.seq;
        tcb.rcv_nxt = self.seq + 1;
        tcb.rcv_adv = tcb.rcv_nxt;
        self.negotiate(tcb, config);
        tcb.snd_wnd = u32::from(self.window);
        tcb.max_snd_wnd = tcb.snd_wnd;
        tcb.snd_wl1 = self.seq;
    }

    /// RFC 9293 §3.7.1 (MSS, MUST-14/15/16), RFC 7323 (window scale, timestamps), RFC 2018 (SACK-permitted):
    /// what both sides offered in their SYNs is what the connection uses.
    fn negotiate(&self, tcb: &mut Tcb, config: &super::EngineConfig) {
        let peer_mss = self.mss.unwrap_or(536).max(64);
        let mut mss = peer_mss.min(config.mss);
        match (config.window_scaling, self.window_scale) {
            (true, Some(shift)) => tcb.snd_shift = shift.min(14),
            _ => {
                tcb.snd_shift = 0;
                tcb.rcv_shift = 0;
                tcb.wscale_ok = false;
            }
        }
        match (tcb.ts, self.tsval) {
            (Some(ts), Some(tsval)) if config.timestamps => {
                tcb.ts = Some(Timestamps {
                    recent: tsval,
                    offset: ts.offset,
                });
                mss -= 12; // every segment carries the 12-byte timestamp option
            }
            _ => tcb.ts = None,
        }
        tcb.mss = mss;
        tcb.sack_ok = config.sack && self.sack_permitted;
        // RFC 6928 initial window: min(10*MSS, max(2*MSS, 14600)).
        let mss = u32::from(mss);
        tcb.cc.cwnd = (10 * mss).min((2 * mss).max(14600));
    }
}

/// An RTT sample for an ACK that advances SND.UNA: from the echoed timestamp (RFC 7323 §4.1), else from the
/// timed segment, never from a retransmission (Karn, MUST-18). In microseconds, saturated at `u32::MAX`, which
/// is what the estimator works in.
fn take_rtt_sample(tcb: &mut Tcb, now: Instant, seg: &TcpRepr) -> Option<u32> {
    if let (Some(ts), Some(seg_ts)) = (tcb.ts, seg.timestamps) {
        if seg_ts.tsecr != 0 {
            let elapsed = ts_now(now, ts.offset).wrapping_sub(seg_ts.tsecr);
            if (elapsed as i32) >= 0 {
                tcb.rtt_probe = None;
                return Some(elapsed.saturating_mul(1000));
            }
        }
    }
    match tcb.rtt_probe {
        Some((seq, sent)) if seg.ack.diff(seq) >= 0 => {
            tcb.rtt_probe = None;
            Some(u32::try_from(now.as_micros().saturating_sub(sent.as_micros())).unwrap_or(u32::MAX))
        }
        _ => None,
    }
}

fn start_keepalive(tcb: &mut Tcb, now: Instant, config: &super::EngineConfig) {
    if let Some(keepalive) = config.keepalive {
        tcb.keepalive_at = Deadline::at(now + keepalive.idle);
    }
}

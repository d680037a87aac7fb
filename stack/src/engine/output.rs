//! Segments out: what a connection may send now (SYN, SYN-ACK, data within the send and congestion windows,
//! FIN, ACKs, probes), written straight from the send buffer into the transmit frame.

use super::event::CloseReason;
use super::flow::FlowKey;
use super::input::ts_now;
use super::syn_cookie;
use super::tcb::{Deadline, Flags, State, Tcb};
use super::time_wait::TimeWait;
use super::{Engine, PendingRst};
use crate::io::{TxRefused, TxSink};
use crate::time::Instant;
use crate::wire::SeqNum;
use crate::wire::ethernet::MacAddr;
use crate::wire::tcp::{SackBlocks, TcpFlags, TcpRepr, TcpTimestamps};
use crate::wire::tcp_writer::{self, Route, SegmentHeader, SegmentOptions, TcpOptions};

/// The window field to advertise: the free receive buffer, scaled down (RFC 7323 §2.3). Never scaled in a
/// SYN or SYN-ACK (§2.2).
pub(crate) fn window_field(tcb: &Tcb) -> u16 {
    let wnd = tcb.rcv_window();
    let shift = if matches!(tcb.state, State::SynSent | State::SynReceived) {
        0
    } else {
        tcb.rcv_shift
    };
    (wnd >> shift).min(u32::from(u16::MAX)) as u16
}

/// One segment a connection decided to send: where its data comes from and what state to commit once it is out.
#[derive(Debug, Clone, Copy)]
struct Plan {
    flags: TcpFlags,
    seq: SeqNum,
    /// Offset of the payload in the send buffer, and its length.
    data_offset: usize,
    data_len: usize,
    /// SND.NXT after this segment (unchanged for retransmissions at SND.UNA and for probes).
    next: Option<SeqNum>,
    retransmit: bool,
    /// Requests this segment answers (fast retransmit, window or keep-alive probe): cleared only once it has
    /// left, so a sink that refuses it does not lose the request.
    answers: Flags,
}

impl Engine {
    /// Sends what the connection has to send now. `Err(Full)` when the sink filled up before it was done: the
    /// caller keeps the connection for its next pass; nothing of the refused segment was committed.
    pub(crate) fn transmit_conn<S: TxSink>(&mut self, now: Instant, index: u32, tx: &mut S) -> Result<(), TxRefused> {
        // Bounded: a connection sends at most a window's worth per call, one MSS per segment.
        for _ in 0..256 {
            let Some(plan) = self.plan_segment(now, index) else {
                break;
            };
            let window = match self.emit_plan(now, index, &plan, tx) {
                Ok(window) => window,
                Err(TxRefused::Full) => return Err(TxRefused::Full),
                // Never fits (counted): drop it rather than retry it every pass; its timers recover what matters.
                Err(TxRefused::TooLong) => break,
            };
            self.commit_plan(now, index, &plan, window);
            // Only a retransmission, or new data that did not take all there was (no PSH: see plan_segment), can
            // be followed by more: a SYN, a bare ACK, a FIN, a probe or the last of the data leave nothing for
            // the next round of planning.
            let more = plan.retransmit || (plan.data_len > 0 && !plan.flags.contains(TcpFlags::PSH));
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Decides the next segment, without changing any state.
    ///
    /// Inlined into [`Engine::transmit_conn`], its only caller (and [`Engine::commit_plan`] into its two): a call
    /// each per segment cost more in saved and restored registers than the bodies themselves.
    #[inline(always)]
    fn plan_segment(&mut self, now: Instant, index: u32) -> Option<Plan> {
        let tcb = &mut self.conns[index as usize];
        let ack_flag = TcpFlags::ACK;
        match tcb.state {
            State::SynSent => {
                if tcb.flags.contains(Flags::AWAIT_ARP) || tcb.snd_nxt != tcb.iss {
                    return None;
                }
                return Some(Plan {
                    flags: TcpFlags::SYN,
                    seq: tcb.iss,
                    data_offset: 0,
                    data_len: 0,
                    next: Some(tcb.iss + 1),
                    retransmit: tcb.snd_max != tcb.iss,
                    answers: Flags::default(),
                });
            }
            State::SynReceived => {
                if tcb.snd_nxt == tcb.iss {
                    return Some(Plan {
                        flags: TcpFlags::SYN | ack_flag,
                        seq: tcb.iss,
                        data_offset: 0,
                        data_len: 0,
                        next: Some(tcb.iss + 1),
                        retransmit: tcb.snd_max != tcb.iss,
                        answers: Flags::default(),
                    });
                }
                return ack_only(tcb);
            }
            State::Closed | State::Listen | State::TimeWait => return None,
            _ => {}
        }
        // RFC 9293 MUST-16: the segment, options included, fits the effective send MSS. `tcb.mss` already leaves
        // room for the timestamps every segment carries; SACK blocks, when out-of-order data is held, take more.
        let mss = usize::from(tcb.mss).saturating_sub(sack_option_len(tcb)).max(1);
        let data_end = tcb.data_end();
        let fin_state = matches!(tcb.state, State::Established | State::CloseWait)
            || (tcb.snd_fin.is_some() && matches!(tcb.state, State::FinWait1 | State::Closing | State::LastAck));
        let want_fin = tcb.flags.contains(Flags::FIN_QUEUED) && fin_state;

        // Fast retransmit / partial ACK: the segment at SND.UNA again (RFC 5681 §3.2, RFC 6582 §3.2).
        if tcb.flags.contains(Flags::FAST_REXMIT) {
            let avail = data_end.since(tcb.snd_una) as usize;
            // Only what was sent before: bytes beyond SND.MAX never fit the window and go out as new data,
            // which advances SND.MAX (else the peer's ACK for them would be an ACK of unsent data).
            let sent = tcb.snd_max.since(tcb.snd_una) as usize;
            let len = avail.min(sent).min(mss);
            let fin = want_fin && tcb.snd_fin.is_some() && len == avail;
            if len > 0 || fin {
                let mut flags = ack_flag;
                if fin {
                    flags |= TcpFlags::FIN;
                }
                if len > 0 {
                    flags |= TcpFlags::PSH;
                }
                return Some(Plan {
                    flags,
                    seq: tcb.snd_una,
                    data_offset: 0,
                    data_len: len,
                    next: None,
                    retransmit: true,
                    answers: Flags::FAST_REXMIT,
                });
            }
            // Nothing left to resend: the request is void.
            tcb.flags.remove(Flags::FAST_REXMIT);
        }

        // New (or, after a timeout, resent) data from SND.NXT within min(SND.WND, cwnd).
        let sent_unacked = tcb.snd_nxt.since(tcb.snd_una) as usize;
        let avail = data_end.since(tcb.snd_nxt) as usize;
        let avail = if tcb.snd_nxt.diff(data_end) > 0 { 0 } else { avail };
        let window = (tcb.snd_wnd.min(tcb.cc.cwnd.max(u32::from(tcb.mss)))) as usize;
        let usable = window.saturating_sub(sent_unacked);
        let len = avail.min(usable).min(mss);
        // The FIN goes right after the last byte of data (again, after a timeout rewound SND.NXT); it needs no
        // window space.
        let fin_fits = want_fin && len == avail && tcb.snd_fin.is_none_or(|fin| tcb.snd_nxt.diff(fin) <= 0);
        // Nagle (RFC 9293 §3.7.4): hold a small segment while data is unacknowledged.
        let nagle_holds =
            len < mss && len == avail && !fin_fits && sent_unacked > 0 && !tcb.flags.contains(Flags::NO_DELAY);
        if (len > 0 && !nagle_holds) || fin_fits {
            let mut flags = ack_flag;
            if fin_fits {
                flags |= TcpFlags::FIN;
            }
            if len > 0 && len == avail {
                flags |= TcpFlags::PSH;
            }
            let seq = tcb.snd_nxt;
            let next = seq + len as u32 + u32::from(fin_fits);
            let retransmit = tcb.snd_max.diff(seq) > 0;
            return Some(Plan {
                flags,
                seq,
                data_offset: sent_unacked,
                data_len: len,
                next: Some(next),
                retransmit,
                answers: Flags::default(),
            });
        }

        // Zero-window or keep-alive probe: an ACK one below SND.UNA makes the peer answer with its window.
        if tcb.flags.contains(Flags::PROBE) || tcb.flags.contains(Flags::KEEPALIVE_PROBE) {
            let mut answers = Flags::PROBE;
            answers.insert(Flags::KEEPALIVE_PROBE);
            return Some(Plan {
                flags: ack_flag,
                seq: tcb.snd_una - 1,
                data_offset: 0,
                data_len: 0,
                next: None,
                retransmit: false,
                answers,
            });
        }
        // Persist: data waits behind a zero window and nothing is in flight to bring a window update.
        if avail > 0 && tcb.snd_wnd == 0 && tcb.rto_at.is_none() && tcb.persist_at.is_none() {
            tcb.persist_at = Deadline::after(now, tcb.rtt.rto(self.rto_bounds));
        }
        ack_only(tcb)
    }

    /// Writes the planned segment into a transmit frame. Returns the window field it advertised, for
    /// [`Engine::commit_plan`] (computed once per segment), or why the sink did not take it.
    ///
    /// The frame goes straight from plain values through [`tcp_writer::write_frame`] (headers at fixed offsets,
    /// one checksum pass over header and payload) rather than through a `TcpRepr` and the per-layer emits.
    fn emit_plan<S: TxSink>(&mut self, now: Instant, index: u32, plan: &Plan, tx: &mut S) -> Result<u16, TxRefused> {
        let ident = self.next_ident();
        let src_mac = self.config.mac;
        let config_mss = self.config.mss;
        let tcb = &self.conns[index as usize];
        let syn = plan.flags.contains(TcpFlags::SYN);
        let has_ack = plan.flags.contains(TcpFlags::ACK);
        let timestamps = tcb.ts.map(|ts| TcpTimestamps {
            tsval: ts_now(now, ts.offset),
            tsecr: if has_ack { ts.recent } else { 0 },
        });
        // Filled only when there is something to SACK: most segments carry none.
        let mut blocks;
        let any;
        let options = if syn {
            any = TcpOptions {
                mss: Some(config_mss),
                // In a SYN everything configured; in a SYN-ACK only what the peer offered (negotiation cleared
                // the rest).
                window_scale: tcb.wscale_ok.then_some(tcb.rcv_shift),
                sack_permitted: tcb.sack_ok,
                timestamps,
                sack_blocks: &[],
            };
            SegmentOptions::Any(&any)
        } else if tcb.sack_ok && !tcb.ooo.is_empty() {
            blocks = SackBlocks::new();
            for (left, right) in tcb.ooo.sack_blocks(tcb.rcv_nxt) {
                if !blocks.push(left, right) {
                    break;
                }
            }
            any = TcpOptions {
                timestamps,
                sack_blocks: blocks.as_slice(),
                ..TcpOptions::default()
            };
            SegmentOptions::Any(&any)
        } else {
            SegmentOptions::Timestamps(timestamps)
        };
        let window = window_field(tcb);
        let header = SegmentHeader {
            src_port: tcb.key.local_port,
            dst_port: tcb.key.remote_port,
            seq: plan.seq,
            ack: tcb.rcv_nxt,
            flags: plan.flags,
            window,
            options,
        };
        let (first, second) = if plan.data_len == 0 {
            (&[][..], &[][..])
        } else {
            tcb.tx.peek(plan.data_offset, plan.data_len)
        };
        let header_len = header.header_len();
        let route = Route {
            src_mac,
            dst_mac: tcb.remote_mac,
            src_addr: tcb.key.local_addr,
            dst_addr: tcb.key.remote_addr,
        };
        let frame_len = tcp_writer::frame_len(header_len, first.len() + second.len());
        let sent = tx.transmit(frame_len, |buf| {
            tcp_writer::write_frame(buf, &route, ident, &header, header_len, [first, second]);
        });
        if self.count_tx(sent) {
            self.counters.tcp_tx_segments += 1;
        }
        sent.map(|()| window)
    }

    /// Commits a segment that went out: sequence numbers, timers, transitions on FIN. `window` is the window
    /// field the segment carried (see [`Engine::emit_plan`]).
    #[inline(always)]
    fn commit_plan(&mut self, now: Instant, index: u32, plan: &Plan, window: u16) {
        let rto_bounds = self.rto_bounds;
        let tcb = &mut self.conns[index as usize];
        tcb.flags.remove(plan.answers);
        if plan.retransmit {
            self.counters.retransmits += 1;
        }
        if plan.flags.contains(TcpFlags::ACK) {
            // Every segment carries the latest ACK and window.
            tcb.flags.remove(Flags::ACK_NOW);
            tcb.flags.remove(Flags::WINDOW_UPDATE);
            tcb.delack_at = Deadline::NONE;
            tcb.unacked_segments = 0;
            let adv = tcb.rcv_nxt + (u32::from(window) << tcb.rcv_shift);
            if adv.diff(tcb.rcv_adv) > 0 {
                tcb.rcv_adv = adv;
            }
        }
        let Some(next) = plan.next else {
            // A retransmission at SND.UNA: make sure the timer runs.
            if plan.retransmit && tcb.rto_at.is_none() {
                tcb.rto_at = Deadline::after(now, tcb.rtt.rto(rto_bounds));
            }
            return;
        };
        let occupies = next.diff(plan.seq) > 0;
        if occupies && !plan.retransmit && tcb.rtt_probe.is_none() && tcb.ts.is_none() {
            tcb.rtt_probe = Some((next, now));
        }
        if plan.retransmit {
            // Karn: nothing sent before the retransmission may be timed.
            tcb.rtt_probe = None;
        }
        tcb.snd_nxt = next;
        if next.diff(tcb.snd_max) > 0 {
            tcb.snd_max = next;
        }
        if occupies && tcb.rto_at.is_none() {
            tcb.rto_at = Deadline::after(now, tcb.rtt.rto(rto_bounds));
        }
        if plan.flags.contains(TcpFlags::FIN) {
            if tcb.snd_fin.is_none() {
                tcb.snd_fin = Some(next - 1);
            }
            match tcb.state {
                State::Established => tcb.transition(State::FinWait1),
                State::CloseWait => tcb.transition(State::LastAck),
                _ => {}
            }
        }
    }

    /// Sends a pure ACK for the connection at once (the final ACK before TIME-WAIT).
    pub(crate) fn send_ack_now<S: TxSink>(&mut self, now: Instant, index: u32, tx: &mut S) {
        let tcb = &self.conns[index as usize];
        let plan = Plan {
            flags: TcpFlags::ACK,
            seq: tcb.snd_max,
            data_offset: 0,
            data_len: 0,
            next: None,
            retransmit: false,
            answers: Flags::default(),
        };
        if let Ok(window) = self.emit_plan(now, index, &plan, tx) {
            self.commit_plan(now, index, &plan, window);
        }
    }

    /// The ACK a TIME-WAIT record sends for a retransmitted FIN.
    pub(crate) fn send_time_wait_ack<S: TxSink>(&mut self, now: Instant, record: &TimeWait, tx: &mut S) {
        let header = SegmentHeader {
            src_port: record.key.local_port,
            dst_port: record.key.remote_port,
            seq: record.snd_nxt,
            ack: record.rcv_nxt,
            flags: TcpFlags::ACK,
            window: record.window,
            options: SegmentOptions::Timestamps(record.ts_recent.map(|recent| TcpTimestamps {
                tsval: ts_now(now, record.ts_offset),
                tsecr: recent,
            })),
        };
        // A refused ACK is counted; the peer's next retransmission of its FIN brings another chance.
        let _ = self.send_bare(
            tx,
            record.key.local_addr,
            record.key.remote_addr,
            record.remote_mac,
            &header,
        );
    }

    /// Answers a SYN with a SYN cookie (RFC 4987 §3.6, `syn_cookie.rs`): the SYN-ACK a new connection would send,
    /// with the cookie as ISS and, with timestamps, the options in the TSval; no state is kept.
    pub(crate) fn send_syn_cookie<S: TxSink>(
        &mut self,
        now: Instant,
        key: FlowKey,
        remote_mac: MacAddr,
        seg: &TcpRepr,
        tx: &mut S,
    ) {
        let tuple = syn_cookie::CookieTuple {
            local: (key.local_addr, key.local_port),
            remote: (key.remote_addr, key.remote_port),
        };
        let iss = self.cookies.encode(now, &tuple, seg.seq, seg.mss.unwrap_or(536));
        let config = &self.config;
        // Without timestamps nothing can carry window scaling and SACK to the third ACK: offer neither.
        let peer_ts = seg.timestamps.filter(|_| config.timestamps);
        let window_scale = seg.window_scale.filter(|_| config.window_scaling && peer_ts.is_some());
        let sack_permitted = config.sack && seg.sack_permitted && peer_ts.is_some();
        let timestamps = peer_ts.map(|ts| {
            let (_, offset) = self.isn.isn_and_ts_offset(tuple.local, tuple.remote, now);
            TcpTimestamps {
                tsval: syn_cookie::encode_ts(ts_now(now, offset), window_scale, sack_permitted),
                tsecr: ts.tsval,
            }
        });
        let options = TcpOptions {
            mss: Some(config.mss),
            window_scale: window_scale.map(|_| self.rcv_shift),
            sack_permitted,
            timestamps,
            sack_blocks: &[],
        };
        let header = SegmentHeader {
            src_port: key.local_port,
            dst_port: key.remote_port,
            seq: iss,
            ack: seg.seq + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            // As a SYN-RECEIVED control block with an empty receive buffer advertises it (never scaled).
            window: config.buffer_size.min(usize::from(u16::MAX)) as u16,
            options: SegmentOptions::Any(&options),
        };
        self.last_cookie_sent = Some(now);
        if self
            .send_bare(tx, key.local_addr, key.remote_addr, remote_mac, &header)
            .is_ok()
        {
            self.counters.syn_cookies_sent += 1;
        }
    }

    /// Sends a RST not tied to a control block.
    pub(crate) fn send_rst<S: TxSink>(&mut self, tx: &mut S, rst: PendingRst) -> Result<(), TxRefused> {
        let mut flags = TcpFlags::RST;
        if rst.ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let header = SegmentHeader {
            src_port: rst.key.local_port,
            dst_port: rst.key.remote_port,
            seq: rst.seq,
            ack: rst.ack.unwrap_or(SeqNum(0)),
            flags,
            ..SegmentHeader::default()
        };
        let sent = self.send_bare(tx, rst.key.local_addr, rst.key.remote_addr, rst.remote_mac, &header);
        if sent.is_ok() {
            self.counters.rst_sent += 1;
        }
        sent
    }

    /// Sends a segment without payload that belongs to no control block.
    fn send_bare<S: TxSink>(
        &mut self,
        tx: &mut S,
        src_addr: core::net::Ipv4Addr,
        dst_addr: core::net::Ipv4Addr,
        dst_mac: crate::wire::ethernet::MacAddr,
        header: &SegmentHeader<'_>,
    ) -> Result<(), TxRefused> {
        let ident = self.next_ident();
        let route = Route {
            src_mac: self.config.mac,
            dst_mac,
            src_addr,
            dst_addr,
        };
        let header_len = header.header_len();
        let sent = tx.transmit(tcp_writer::frame_len(header_len, 0), |buf| {
            tcp_writer::write_frame(buf, &route, ident, header, header_len, [&[], &[]]);
        });
        if self.count_tx(sent) {
            self.counters.tcp_tx_segments += 1;
        }
        sent
    }

    /// A connection's timer fired: see which of its deadlines are due (RFC 9293 §3.10.8, RFC 6298 §5).
    pub(crate) fn on_conn_timer(&mut self, now: Instant, index: u32) {
        let config = &self.config;
        let rto_bounds = self.rto_bounds;
        let tcb = &mut self.conns[index as usize];
        if tcb.state == State::Listen || tcb.state == State::Closed {
            return;
        }
        let due = |at: Deadline| at.is_due(now);
        let mut outcome: Option<CloseReason> = None;
        if due(tcb.arp_at) {
            tcb.arp_at = Deadline::NONE;
            if tcb.flags.contains(Flags::AWAIT_ARP) {
                if tcb.retries >= config.arp_retries {
                    self.counters.arp_unresolved += 1;
                    outcome = Some(CloseReason::Unreachable);
                } else {
                    tcb.retries += 1;
                    tcb.arp_at = Deadline::at(now + config.arp_retry_interval);
                    let (local, remote) = (tcb.key.local_addr, tcb.key.remote_addr);
                    if self.pending_arps.len() < self.pending_arps.capacity() {
                        self.pending_arps.push((local, remote));
                    } else {
                        self.counters.drop_arp_queue_full += 1;
                    }
                }
            }
        }
        // Under half-open pressure (half the share taken) a SYN-ACK goes out at most twice: a flood's spoofed
        // entries leave after one RTO backoff instead of six (Linux prunes its queue likewise).
        let pressure = self.conns[index as usize].is_passive_half_open()
            && self.half_open().saturating_mul(2) >= self.half_open_limit;
        let tcb = &mut self.conns[index as usize];
        if due(tcb.linger_at) && tcb.state == State::FinWait2 {
            self.counters.fin_wait2_timeouts += 1;
            outcome = Some(CloseReason::TimedOut);
        }
        if outcome.is_none() && due(tcb.rto_at) {
            tcb.rto_at = Deadline::NONE;
            self.counters.rto_fired += 1;
            let passive_half_open = tcb.is_passive_half_open();
            let limit = if tcb.state.is_synchronized() {
                config.data_retries
            } else if pressure {
                config.syn_retries.min(1)
            } else {
                config.syn_retries
            };
            let behind_zero_window =
                tcb.state.is_synchronized() && tcb.snd_wnd == 0 && tcb.data_end().diff(tcb.snd_una) > 0;
            if behind_zero_window {
                // Data in flight behind a window that shrank to zero (or that a reordered old ACK zeroed): a
                // retransmission could not go out. Hand over to the persist timer, which probes the window now
                // and counts unanswered probes (RFC 9293 §3.8.6.1, MUST-36/37); data is resent once it opens.
                tcb.snd_nxt = tcb.snd_una;
                tcb.rtt_probe = None;
                tcb.persist_at = Deadline::at(now);
            } else if tcb.retries >= limit {
                if passive_half_open {
                    self.counters.syn_received_timeouts += 1;
                    if limit < config.syn_retries {
                        self.counters.synack_retries_shortened += 1;
                    }
                } else {
                    self.counters.rto_aborts += 1;
                }
                outcome = Some(CloseReason::TimedOut);
            } else {
                tcb.retries += 1;
                tcb.rtt.on_timeout();
                // RFC 5681 §3.1 eq. 4 and loss window; go back to SND.UNA (RFC 6298 §5.4).
                let mss = u32::from(tcb.mss);
                if tcb.state.is_synchronized() {
                    tcb.cc.ssthresh = (tcb.in_flight() / 2).max(2 * mss);
                    tcb.cc.cwnd = mss;
                    tcb.cc.recover = None;
                    tcb.cc.dup_acks = 0;
                }
                tcb.rtt_probe = None;
                tcb.snd_nxt = tcb.snd_una;
                if matches!(tcb.state, State::SynSent | State::SynReceived) {
                    tcb.snd_nxt = tcb.iss;
                }
                tcb.rto_at = Deadline::after(now, tcb.rtt.rto(rto_bounds));
            }
        }
        let tcb = &mut self.conns[index as usize];
        if outcome.is_none() && due(tcb.delack_at) {
            tcb.delack_at = Deadline::NONE;
            tcb.flags.insert(Flags::ACK_NOW);
            self.counters.delayed_acks += 1;
        }
        if outcome.is_none() && due(tcb.persist_at) {
            // Zero-window probe (RFC 9293 §3.8.6.1, MUST-36). The connection stays open however long the window
            // stays shut as long as the peer answers the probes (MUST-37): an answer resets `retries`; a peer
            // that answers none of `data_retries` probes is gone.
            if tcb.retries >= config.data_retries {
                self.counters.rto_aborts += 1;
                outcome = Some(CloseReason::TimedOut);
            } else {
                tcb.retries += 1;
                tcb.flags.insert(Flags::PROBE);
                self.counters.window_probes += 1;
                tcb.rtt.on_timeout();
                tcb.persist_at = Deadline::after(now, tcb.rtt.rto(rto_bounds));
            }
        }
        if outcome.is_none() && due(tcb.keepalive_at) {
            if let Some(keepalive) = config.keepalive {
                if tcb.retries >= keepalive.probes {
                    self.counters.keepalive_aborts += 1;
                    outcome = Some(CloseReason::KeepaliveTimeout);
                } else {
                    tcb.retries += 1;
                    tcb.flags.insert(Flags::KEEPALIVE_PROBE);
                    self.counters.keepalive_probes += 1;
                    tcb.keepalive_at = Deadline::at(now + keepalive.interval);
                }
            }
        }
        match outcome {
            // A passive half-open connection that never completed goes silently, as Linux's request socks do:
            // under a SYN flood its peer is most likely spoofed, and a RST would only add to the flood.
            Some(reason) if self.conns[index as usize].is_passive_half_open() => self.finish_conn(index, reason),
            Some(reason @ (CloseReason::TimedOut | CloseReason::KeepaliveTimeout))
                if self.conns[index as usize].state != State::FinWait2 =>
            {
                self.reset_conn(index, reason)
            }
            Some(reason) => self.finish_conn(index, reason),
            None => self.mark_dirty(index),
        }
    }
}

/// Bytes the SACK option takes on this connection's next segment: none without SACK or out-of-order data, else
/// its 4-byte head (two NOPs, kind, length) and 8 bytes per block, as many blocks as fit beside the timestamps
/// (3) or alone (4), which is what [`Engine::emit_plan`] writes.
fn sack_option_len(tcb: &Tcb) -> usize {
    if !tcb.sack_ok || tcb.ooo.is_empty() {
        return 0;
    }
    let fitting = if tcb.ts.is_some() { 3 } else { SackBlocks::CAPACITY };
    4 + 8 * tcb.ooo.len().min(fitting)
}

/// A pure ACK if one is owed. Its sequence number is SND.MAX, not SND.NXT: after a timeout rewound SND.NXT to
/// resend, an ACK at SND.NXT would lie below the peer's RCV.NXT, fail its acceptability test (RFC 9293
/// §3.10.7.4) and be dropped with the acknowledgment it carries; when both sides were resending, neither ever
/// learnt the other's ACK (found by the simulator's full-duplex runs). BSD's `tcp_output` does the same.
fn ack_only(tcb: &Tcb) -> Option<Plan> {
    (tcb.flags.contains(Flags::ACK_NOW) || tcb.flags.contains(Flags::WINDOW_UPDATE)).then_some(Plan {
        flags: TcpFlags::ACK,
        seq: tcb.snd_max,
        data_offset: 0,
        data_len: 0,
        next: None,
        retransmit: false,
        answers: Flags::default(),
    })
}

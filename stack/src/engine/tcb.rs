//! The connection control block (RFC 9293 §3.3.1) and the state diagram (§3.3.2).

use core::fmt;

use crate::assembler::Assembler;
use crate::buffer::RingBuffer;
use crate::engine::event::CloseReason;
use crate::engine::flow::FlowKey;
use crate::engine::rtt::RttEstimator;
use crate::time::Instant;
use crate::wire::SeqNum;
use crate::wire::ethernet::MacAddr;

/// The eleven states of RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection. A control block in CLOSED waits only for the application to release its handle.
    Closed,
    /// Waiting for a SYN (listeners are kept apart; no control block is ever in LISTEN).
    Listen,
    /// SYN sent, waiting for the matching SYN.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for the ACK of our SYN.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We sent FIN; waiting for its ACK or the peer's FIN.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer sent FIN; we may still send.
    CloseWait,
    /// Both sent FIN, ours not yet acknowledged (simultaneous close).
    Closing,
    /// The peer closed first and we sent our FIN; waiting for its ACK.
    LastAck,
    /// Both FINs acknowledged; waiting 2*MSL (held as a compact record, not a control block).
    TimeWait,
}

impl State {
    /// Whether the state is one of the synchronized states (RFC 9293 §3.5.2: after the handshake).
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// Whether our side may still send new data.
    pub fn can_send(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }

    /// Whether the peer may still send data that we accept.
    pub fn can_receive(self) -> bool {
        matches!(
            self,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        )
    }

    /// The edges of the RFC 9293 §3.3.2 state diagram (plus the RST and timeout exits to CLOSED that §3.10
    /// describes). Every transition goes through `Tcb::transition`, which checks it against this table.
    pub fn can_become(self, to: State) -> bool {
        use State::*;
        match (self, to) {
            (_, Closed) => true,
            // A free slot is in LISTEN: a SYN makes it SYN-RECEIVED, an active OPEN (or SEND) SYN-SENT.
            (Listen, SynReceived | SynSent) => true,
            (Closed, SynSent) => true,
            (SynSent, SynReceived | Established) => true,
            (SynReceived, Established | FinWait1) => true,
            (Established, FinWait1 | CloseWait) => true,
            (FinWait1, FinWait2 | Closing | TimeWait) => true,
            (FinWait2, TimeWait) => true,
            (CloseWait, LastAck) => true,
            (Closing, TimeWait) => true,
            _ => false,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        };
        f.write_str(name)
    }
}

/// Per-connection flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u32);

impl Flags {
    /// An ACK must go out with the next transmit.
    pub const ACK_NOW: Flags = Flags(1 << 0);
    /// The application shut down its write side: send FIN after the queued data.
    pub const FIN_QUEUED: Flags = Flags(1 << 1);
    /// The application released its handle (`close`/`abort`).
    pub const APP_CLOSED: Flags = Flags(1 << 2);
    /// A `Readable` event is queued and not yet answered by `recv`.
    pub const READABLE_SENT: Flags = Flags(1 << 3);
    /// A `send` came up short: raise `Writable` when space frees.
    pub const WANT_WRITABLE: Flags = Flags(1 << 4);
    /// Nagle's algorithm is off for this connection.
    pub const NO_DELAY: Flags = Flags(1 << 5);
    /// The connection is on the engine's dirty list (output pending).
    pub const DIRTY: Flags = Flags(1 << 6);
    /// Opened passively (by a listener): a RST in SYN-RECEIVED returns it to LISTEN, i.e. frees it silently.
    pub const PASSIVE: Flags = Flags(1 << 7);
    /// The peer's FIN has been received and processed.
    pub const PEER_FIN: Flags = Flags(1 << 8);
    /// The next segment is a retransmission of the one at SND.UNA (fast retransmit, RFC 5681 §3.2).
    pub const FAST_REXMIT: Flags = Flags(1 << 9);
    /// A window update is due because the application read and the window opened (RFC 9293 §3.8.6.2.2).
    pub const WINDOW_UPDATE: Flags = Flags(1 << 10);
    /// Waiting for ARP to resolve the peer before the SYN can go out.
    pub const AWAIT_ARP: Flags = Flags(1 << 11);
    /// Send one byte beyond a zero window (persist timer fired, RFC 9293 §3.8.6.1).
    pub const PROBE: Flags = Flags(1 << 12);
    /// Send a keep-alive probe.
    pub const KEEPALIVE_PROBE: Flags = Flags(1 << 13);
    /// The wheel was armed early once for the handshake (see `Engine::rearm`); never again for this connection.
    pub const HANDSHAKE_WAKE: Flags = Flags(1 << 14);
    /// An event could not be queued (the queue was full) and is owed: the connection is on the engine's owed
    /// list, and the events below (or a derivable `Readable` / `Writable`) are raised once the queue drains.
    pub const EVENT_OWED: Flags = Flags(1 << 15);
    /// `Connected` is owed.
    pub const OWED_CONNECTED: Flags = Flags(1 << 16);
    /// `Accepted` is owed (its listener is found again by the connection's local port).
    pub const OWED_ACCEPTED: Flags = Flags(1 << 19);
    /// `PeerClosed` is owed.
    pub const OWED_PEER_CLOSED: Flags = Flags(1 << 17);
    /// `Closed { reason: owed_close }` is owed.
    pub const OWED_CLOSED: Flags = Flags(1 << 18);

    #[inline]
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    #[inline]
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
}

/// RFC 7323 timestamp state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamps {
    /// TS.Recent: the peer's latest TSval from an in-sequence segment (RFC 7323 §4.3).
    pub recent: u32,
    /// Offset added to our millisecond clock in TSvals (RFC 7323 §7.1 advises per-connection offsets).
    pub offset: u32,
}

/// NewReno congestion state (RFC 5681, RFC 6582), in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Congestion {
    pub cwnd: u32,
    pub ssthresh: u32,
    pub dup_acks: u8,
    /// `recover` of RFC 6582: in fast recovery until SND.UNA passes it.
    pub recover: Option<SeqNum>,
}

/// A timer deadline, or none: an [`Instant`] in 8 bytes instead of `Option<Instant>`'s 16 (a control block
/// holds six), ordered so that "none" comes after every instant and the earliest is a plain `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(u64);

impl Deadline {
    /// No deadline. (`Instant::from_micros(u64::MAX)`, half a million years from the epoch, reads as none.)
    pub const NONE: Deadline = Deadline(u64::MAX);

    #[inline]
    pub fn at(at: Instant) -> Deadline {
        Deadline(at.as_micros())
    }

    /// `micros` microseconds after `now` (saturating): a deadline from a microsecond count without building a
    /// `Duration` first.
    #[inline]
    pub fn after(now: Instant, micros: u64) -> Deadline {
        Deadline(now.as_micros().saturating_add(micros))
    }

    #[inline]
    pub fn get(self) -> Option<Instant> {
        (self != Deadline::NONE).then_some(Instant::from_micros(self.0))
    }

    #[inline]
    pub fn is_some(self) -> bool {
        self != Deadline::NONE
    }

    #[inline]
    pub fn is_none(self) -> bool {
        self == Deadline::NONE
    }

    /// Set and at or before `now`.
    #[inline]
    pub fn is_due(self, now: Instant) -> bool {
        self.0 <= now.as_micros() && self.is_some()
    }
}

/// One connection's control block (RFC 9293 §3.3.1), stored in the engine's slab.
pub(crate) struct Tcb {
    pub state: State,
    pub flags: Flags,
    pub generation: u32,
    pub key: FlowKey,
    pub remote_mac: MacAddr,
    /// The listener that accepted it (for backlog accounting), if passive.
    pub listener: Option<u32>,

    // Send sequence space (RFC 9293 §3.3.1).
    pub iss: SeqNum,
    pub snd_una: SeqNum,
    pub snd_nxt: SeqNum,
    /// The highest sequence number sent so far (SND.NXT goes back to SND.UNA on a timeout; this does not).
    pub snd_max: SeqNum,
    /// Send window in bytes, already scaled.
    pub snd_wnd: u32,
    pub snd_wl1: SeqNum,
    pub snd_wl2: SeqNum,
    /// Largest window the peer ever offered (for RFC 5961 §5's ACK range).
    pub max_snd_wnd: u32,
    /// Our FIN's sequence number once it has been sent.
    pub snd_fin: Option<SeqNum>,
    /// Shift the peer applies to its windows (its RFC 7323 window scale).
    pub snd_shift: u8,
    /// Shift we apply to ours.
    pub rcv_shift: u8,
    /// Window scaling is in use (both SYNs carried the option, RFC 7323 §1.3); shifts may still be zero.
    pub wscale_ok: bool,
    /// Effective send MSS (RFC 9293 §3.7.1, MUST-16).
    pub mss: u16,

    // Receive sequence space.
    pub irs: SeqNum,
    pub rcv_nxt: SeqNum,
    /// Right edge of the window last advertised (RCV.NXT + RCV.WND when sent): never moved left (SHLD-14).
    pub rcv_adv: SeqNum,
    /// Sequence number of a FIN that arrived beyond a hole, processed once the hole fills.
    pub fin_pending: Option<SeqNum>,

    pub ts: Option<Timestamps>,
    pub sack_ok: bool,

    pub tx: RingBuffer,
    pub rx: RingBuffer,
    pub ooo: Assembler,

    pub rtt: RttEstimator,
    /// Segment being timed for an RTT sample without timestamps: (sequence number that acks it, send time).
    pub rtt_probe: Option<(SeqNum, Instant)>,
    /// Consecutive retransmission timeouts (or persist probes / keep-alives, by state).
    pub retries: u8,
    pub cc: Congestion,
    /// Full-sized segments received since our last ACK (an ACK goes out for every second, RFC 9293 SHLD-19).
    pub unacked_segments: u8,
    /// When this connection last sent a challenge ACK or an ACK for an unacceptable segment (milliseconds, 0 for
    /// never): at most one per `oow_ack_interval` (see `rate_limit.rs`).
    pub last_oow_ack: u32,
    /// The reason of a `Closed` event that is owed (see `Flags::OWED_CLOSED`).
    pub owed_close: CloseReason,

    // Timer deadlines; the wheel holds the earliest.
    pub rto_at: Deadline,
    pub delack_at: Deadline,
    pub persist_at: Deadline,
    pub keepalive_at: Deadline,
    /// When a pending ARP resolution is retried or given up.
    pub arp_at: Deadline,
    /// When an orphaned connection in FIN-WAIT-2 is dropped.
    pub linger_at: Deadline,
}

impl Tcb {
    /// Moves to `to`, checking the edge against the state diagram.
    #[inline]
    pub(crate) fn transition(&mut self, to: State) {
        debug_assert!(self.state.can_become(to), "invalid transition {} -> {}", self.state, to);
        self.state = to;
    }

    /// The earliest pending deadline, which the timer wheel holds for this connection.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let a = self.rto_at.min(self.delack_at);
        let b = self.persist_at.min(self.keepalive_at);
        let c = self.arp_at.min(self.linger_at);
        a.min(b).min(c).get()
    }

    /// Bytes sent and not yet acknowledged (SYN and FIN count one each).
    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.snd_max.since(self.snd_una)
    }

    /// Sequence number just past the last byte of data queued by the application.
    #[inline]
    pub(crate) fn data_end(&self) -> SeqNum {
        // Once our SYN is acknowledged SND.UNA is the first unacknowledged data byte and the send buffer holds
        // exactly the bytes from SND.UNA on (acknowledged bytes are discarded as ACKs arrive).
        let start = if self.snd_una == self.iss {
            self.iss + 1
        } else {
            self.snd_una
        };
        match self.snd_fin {
            Some(fin) if self.snd_una.diff(fin) > 0 => fin,
            _ => start + self.tx.len() as u32,
        }
    }

    /// A connection from a SYN we received, not yet established.
    pub(crate) fn is_passive_half_open(&self) -> bool {
        self.state == State::SynReceived && self.flags.contains(Flags::PASSIVE)
    }

    /// The receive window we can offer now, in bytes.
    #[inline]
    pub(crate) fn rcv_window(&self) -> u32 {
        let free = self.rx.capacity().saturating_sub(self.rx.len()) as u32;
        free.min(u32::from(u16::MAX) << self.rcv_shift)
    }
}

#[cfg(test)]
mod tests {
    use super::State::{self, *};
    use super::{Deadline, Instant};

    #[test]
    fn deadline_none_sorts_after_every_instant_and_is_never_due() {
        let soon = Deadline::at(Instant::from_millis(5));
        assert_eq!(soon.min(Deadline::NONE), soon);
        assert_eq!(soon.get(), Some(Instant::from_millis(5)));
        assert_eq!(Deadline::NONE.get(), None);
        assert!(!Deadline::NONE.is_due(Instant::from_micros(u64::MAX - 1)));
        assert!(!soon.is_due(Instant::from_micros(4_999)));
        assert!(soon.is_due(Instant::from_millis(5)));
        assert_eq!(
            Deadline::after(Instant::from_millis(5), 250),
            Deadline::at(Instant::from_micros(5_250))
        );
        // A deadline beyond the clock's range saturates into "none": it could never fire anyway.
        assert!(Deadline::after(Instant::from_millis(5), u64::MAX).is_none());
    }

    const ALL: [State; 11] = [
        Closed,
        Listen,
        SynSent,
        SynReceived,
        Established,
        FinWait1,
        FinWait2,
        CloseWait,
        Closing,
        LastAck,
        TimeWait,
    ];

    /// The state diagram of RFC 9293 §3.3.2 (Figure 5), edge by edge, plus the exits to CLOSED that RST, ABORT
    /// and timeouts take from any state (§3.10). A snapshot: any change to the table must change this list.
    #[test]
    fn state_diagram_edges_are_exactly_rfc9293_figure_5() {
        let mut edges = Vec::new();
        for from in ALL {
            for to in ALL {
                if to != Closed && from.can_become(to) {
                    edges.push(format!("{from} -> {to}"));
                }
            }
        }
        assert_eq!(
            edges,
            [
                "CLOSED -> SYN-SENT",
                "LISTEN -> SYN-SENT",
                "LISTEN -> SYN-RECEIVED",
                "SYN-SENT -> SYN-RECEIVED",
                "SYN-SENT -> ESTABLISHED",
                "SYN-RECEIVED -> ESTABLISHED",
                "SYN-RECEIVED -> FIN-WAIT-1",
                "ESTABLISHED -> FIN-WAIT-1",
                "ESTABLISHED -> CLOSE-WAIT",
                "FIN-WAIT-1 -> FIN-WAIT-2",
                "FIN-WAIT-1 -> CLOSING",
                "FIN-WAIT-1 -> TIME-WAIT",
                "FIN-WAIT-2 -> TIME-WAIT",
                "CLOSE-WAIT -> LAST-ACK",
                "CLOSING -> TIME-WAIT",
            ]
        );
        assert!(ALL.iter().all(|s| s.can_become(Closed)));
    }

    #[test]
    fn state_synchronized_states_are_those_after_the_handshake() {
        let synchronized: Vec<State> = ALL.into_iter().filter(|s| s.is_synchronized()).collect();
        assert_eq!(
            synchronized,
            [Established, FinWait1, FinWait2, CloseWait, Closing, LastAck, TimeWait]
        );
    }
}

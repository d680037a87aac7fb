//! The layers under TCP: Ethernet, ARP (answering for our addresses, resolving peers), IPv4 and ICMP echo.
//! Everything here runs per frame, so every drop has its counter and nothing allocates.

use core::net::Ipv4Addr;

use hashbrown::HashTable;

use super::tcb::Deadline;
use super::{Engine, Flags, FlowKey, PendingRst};
use crate::io::{TxRefused, TxSink};
use crate::isn::FlowHasher;
use crate::time::Instant;
use crate::wire::arp::{self, ArpOperation, ArpRepr};
use crate::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
use crate::wire::icmpv4::{self, Icmpv4Repr};
use crate::wire::ipv4::{self, Ipv4Repr};
use crate::wire::tcp::{self, TcpRepr};
use crate::wire::tcp_writer::{self, Route};
use crate::wire::{ChecksumPolicy, Error as WireError, IpProtocol};

/// Ethernet + IPv4 header bytes in front of every TCP segment or ICMP message synack sends.
pub(crate) const L2_L3_LEN: usize = EthernetRepr::HEADER_LEN + ipv4::HEADER_LEN;

/// IPv4 address to MAC address, learnt from ARP or added statically. Fixed capacity: when full, new entries are
/// not learnt (the peer is asked again next time).
pub(crate) struct NeighborCache {
    /// Keyed by the flow table's fast keyed hash of the address (ARP replies, like flows, come from the network).
    map: HashTable<(Ipv4Addr, MacAddr)>,
    hasher: FlowHasher,
    limit: usize,
    /// Addresses asked for recently, with when: at most one request per address per retry interval.
    asked: Vec<(Ipv4Addr, Instant)>,
}

impl NeighborCache {
    pub(crate) fn new(limit: usize, hasher: FlowHasher) -> NeighborCache {
        NeighborCache {
            map: HashTable::with_capacity(limit * 2),
            hasher,
            limit,
            asked: Vec::with_capacity(64),
        }
    }

    #[inline]
    fn hash(hasher: &FlowHasher, addr: Ipv4Addr) -> u64 {
        hasher.hash_words(u64::from(addr.to_bits()), 0)
    }

    pub(crate) fn get(&self, addr: Ipv4Addr) -> Option<MacAddr> {
        let hash = Self::hash(&self.hasher, addr);
        self.map.find(hash, |(a, _)| *a == addr).map(|&(_, mac)| mac)
    }

    pub(crate) fn insert(&mut self, addr: Ipv4Addr, mac: MacAddr) -> bool {
        let hash = Self::hash(&self.hasher, addr);
        if let Some(known) = self.map.find_mut(hash, |(a, _)| *a == addr) {
            known.1 = mac;
            return true;
        }
        if self.map.len() >= self.limit {
            return false;
        }
        let hasher = &self.hasher;
        self.map
            .insert_unique(hash, (addr, mac), |(a, _)| Self::hash(hasher, *a));
        self.asked.retain(|(a, _)| *a != addr);
        true
    }

    /// Whether a request for `addr` should go out now (none sent within `interval`); records it if so.
    fn should_ask(&mut self, addr: Ipv4Addr, now: Instant, interval: core::time::Duration) -> bool {
        if let Some(entry) = self.asked.iter_mut().find(|(a, _)| *a == addr) {
            if now.saturating_since(entry.1) < interval {
                return false;
            }
            entry.1 = now;
            return true;
        }
        if self.asked.len() == self.asked.capacity() {
            self.asked.remove(0);
        }
        self.asked.push((addr, now));
        true
    }
}

/// Writes the Ethernet and IPv4 headers of an outgoing packet carrying `payload_len` bytes of `protocol`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_l2_l3(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    ident: u16,
) {
    let route = Route {
        src_mac,
        dst_mac,
        src_addr: src,
        dst_addr: dst,
    };
    // The sink sized the buffer from these very lengths, so the header always fits.
    if let Some(head) = buf.first_chunk_mut::<L2_L3_LEN>() {
        tcp_writer::write_l2_l3(head, &route, protocol, payload_len, ident);
    }
}

impl Engine {
    fn policy(&self) -> ChecksumPolicy {
        if self.config.verify_checksums {
            ChecksumPolicy::Verify
        } else {
            ChecksumPolicy::Trust
        }
    }

    #[inline]
    fn is_ours(&self, addr: Ipv4Addr) -> bool {
        // Once per received packet: the usual single address is one comparison, not a slice search.
        match self.config.addresses.as_slice() {
            [only] => *only == addr,
            all => all.contains(&addr),
        }
    }

    pub(crate) fn next_ident(&mut self) -> u16 {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        self.ip_ident
    }

    /// A hint for a batch of received frames: call it for each frame of the batch, then `handle_frame` for each.
    /// It starts the flow-table line of each TCP segment's 4-tuple on its way into cache, so that the misses of a
    /// batch's new connections (a random line each, in a table far larger than the caches when many connections
    /// are held) overlap instead of stalling one frame after another. It reads a few header fields at fixed
    /// offsets, checks nothing else and changes nothing; a frame it cannot read so is skipped.
    #[inline]
    pub fn prefetch_frame(&self, frame: &[u8]) {
        // Ethernet (14 bytes), an IPv4 header without options (20), the TCP ports (4): fixed offsets.
        let Some(h) = frame.first_chunk::<38>() else {
            return;
        };
        if h[12..14] != [0x08, 0x00] || h[14] != 0x45 || h[23] != 6 {
            return; // not IPv4 without options carrying TCP: rare, and `handle_frame` manages without the hint
        }
        let addr = |at: usize| Ipv4Addr::from_bits(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        let port = |at: usize| crate::wire::Port(u16::from_be_bytes([h[at], h[at + 1]]));
        self.flows.prefetch(&FlowKey {
            local_addr: addr(30),
            remote_addr: addr(26),
            local_port: port(36),
            remote_port: port(34),
        });
    }

    /// Handles one received Ethernet frame. Replies that need no connection (ARP, ICMP echo, RSTs for unknown
    /// connections) are written to `tx` at once; connection output waits for `poll_transmit`.
    pub fn handle_frame<S: TxSink>(&mut self, now: Instant, frame: &[u8], tx: &mut S) {
        self.counters.rx_frames += 1;
        self.clock = self.clock.max(now);
        // The view's getters rather than `EthernetRepr::parse`: the same checks in the same order (length, VLAN
        // tag, destination), without building a Repr whose source address only TCP and ICMP need.
        let Ok(eth_frame) = Frame::new_checked(frame) else {
            self.counters.drop_ethernet_malformed += 1;
            return;
        };
        // The raw field, not an `EtherType`: two comparisons for the IPv4 frames that make up the traffic.
        let ethertype = eth_frame.ethertype_raw();
        if EtherType::is_vlan_raw(ethertype) {
            self.counters.drop_vlan += 1;
            return;
        }
        let dst_addr = eth_frame.dst_addr();
        if dst_addr != self.config.mac && !dst_addr.is_broadcast() {
            self.counters.drop_not_our_mac += 1;
            return;
        }
        match ethertype {
            EtherType::IPV4_RAW => self.handle_ipv4(now, eth_frame.src_addr(), eth_frame.payload(), tx),
            EtherType::ARP_RAW => self.handle_arp(now, eth_frame.payload(), tx),
            _ => self.counters.drop_ethertype += 1,
        }
    }

    fn handle_arp<S: TxSink>(&mut self, now: Instant, payload: &[u8], tx: &mut S) {
        let Ok(packet) = arp::Packet::new_checked(payload) else {
            self.counters.drop_arp_malformed += 1;
            return;
        };
        let Ok(repr) = ArpRepr::parse(&packet) else {
            self.counters.drop_arp_malformed += 1;
            return;
        };
        // Learn the sender when the request or reply concerns us (RFC 826's merge step, limited to our traffic).
        if self.is_ours(repr.target_ip) && repr.source_mac.is_unicast() && !repr.source_ip.is_unspecified() {
            if self.neighbors.insert(repr.source_ip, repr.source_mac) {
                self.counters.arp_learnt += 1;
            }
            self.on_neighbor_learnt(now, repr.source_ip, repr.source_mac);
        }
        if repr.operation == ArpOperation::Request && self.is_ours(repr.target_ip) {
            if let Some(reply) = repr.reply_to(self.config.mac) {
                if self.send_arp(tx, reply, repr.source_mac).is_ok() {
                    self.counters.arp_replies_sent += 1;
                }
            }
        }
    }

    fn send_arp<S: TxSink>(&mut self, tx: &mut S, repr: ArpRepr, dst_mac: MacAddr) -> Result<(), TxRefused> {
        let eth = EthernetRepr {
            src_addr: self.config.mac,
            dst_addr: dst_mac,
            ethertype: EtherType::Arp,
        };
        // 42 bytes; short frames are padded by the NIC (veth and AF_XDP accept them as they are).
        let len = EthernetRepr::HEADER_LEN + repr.buffer_len();
        let sent = tx.transmit(len, |buf| {
            let _ = eth.emit(&mut Frame::new_unchecked(&mut buf[..EthernetRepr::HEADER_LEN]));
            let _ = repr.emit(&mut arp::Packet::new_unchecked(&mut buf[EthernetRepr::HEADER_LEN..]));
        });
        self.count_tx(sent);
        sent
    }

    /// Sends an ARP request for `addr` unless one went out recently.
    pub(crate) fn request_neighbor<S: TxSink>(
        &mut self,
        now: Instant,
        local: Ipv4Addr,
        addr: Ipv4Addr,
        tx: &mut S,
    ) -> Result<(), TxRefused> {
        if self.neighbors.should_ask(addr, now, self.config.arp_retry_interval) {
            let sent = self.send_arp(tx, ArpRepr::request(self.config.mac, local, addr), MacAddr::BROADCAST);
            if sent.is_ok() {
                self.counters.arp_requests_sent += 1;
            }
            return sent;
        }
        Ok(())
    }

    /// Connections waiting for this neighbour may now send their SYN.
    fn on_neighbor_learnt(&mut self, _now: Instant, addr: Ipv4Addr, mac: MacAddr) {
        if self.arp_waiting == 0 {
            return;
        }
        for index in 0..self.conns.len() as u32 {
            let tcb = &mut self.conns[index as usize];
            if tcb.flags.contains(Flags::AWAIT_ARP) && tcb.key.remote_addr == addr {
                self.clear_await_arp(index);
                let tcb = &mut self.conns[index as usize];
                tcb.remote_mac = mac;
                tcb.arp_at = Deadline::NONE;
                self.mark_dirty(index);
            }
        }
    }

    /// Counts what the sink did with a frame; `true` if it was sent.
    pub(crate) fn count_tx(&mut self, sent: Result<(), TxRefused>) -> bool {
        match sent {
            Ok(()) => self.counters.tx_frames += 1,
            Err(TxRefused::Full) => self.counters.tx_sink_full += 1,
            Err(TxRefused::TooLong) => self.counters.tx_too_long += 1,
        }
        sent.is_ok()
    }

    fn handle_ipv4<S: TxSink>(&mut self, now: Instant, src_mac: MacAddr, payload: &[u8], tx: &mut S) {
        // `parse` checks the lengths (as `new_checked` would) before any getter runs.
        let packet = ipv4::Packet::new_unchecked(payload);
        let ip = match Ipv4Repr::parse(&packet, self.policy()) {
            Ok(ip) => ip,
            Err(WireError::Checksum) => {
                self.counters.drop_ipv4_checksum += 1;
                return;
            }
            Err(WireError::Fragment) => {
                self.counters.drop_ipv4_fragment += 1;
                return;
            }
            Err(_) => {
                self.counters.drop_ipv4_malformed += 1;
                return;
            }
        };
        if !self.is_ours(ip.dst_addr) {
            self.counters.drop_ipv4_not_ours += 1;
            return;
        }
        // The raw protocol byte (the same value as `ip.next_header`): one comparison for TCP.
        match packet.next_header_raw() {
            p if p == u8::from(IpProtocol::Tcp) => self.handle_tcp(now, src_mac, &ip, packet.payload(), tx),
            p if p == u8::from(IpProtocol::Icmp) => self.handle_icmp(src_mac, &ip, packet.payload(), tx),
            _ => self.counters.drop_ip_protocol += 1,
        }
    }

    fn handle_icmp<S: TxSink>(&mut self, src_mac: MacAddr, ip: &Ipv4Repr, payload: &[u8], tx: &mut S) {
        let Ok(packet) = icmpv4::Packet::new_checked(payload) else {
            self.counters.drop_icmp_malformed += 1;
            return;
        };
        let repr = match Icmpv4Repr::parse(&packet, self.policy()) {
            Ok(repr) => repr,
            Err(WireError::Unsupported) => {
                self.counters.drop_icmp_unhandled += 1;
                return;
            }
            Err(_) => {
                self.counters.drop_icmp_malformed += 1;
                return;
            }
        };
        let Icmpv4Repr::EchoRequest { ident, seq_no, data } = repr else {
            // Errors about our own traffic could be acted on (RFC 9293 §3.9.2.2: soft errors); counted for now.
            self.counters.drop_icmp_unhandled += 1;
            return;
        };
        if ip.dst_addr.is_broadcast() || ip.src_addr.is_broadcast() {
            self.counters.drop_icmp_unhandled += 1;
            return;
        }
        let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
        let icmp_len = reply.buffer_len();
        let (our_mac, ident_ip) = (self.config.mac, self.next_ident());
        let (src, dst) = (ip.dst_addr, ip.src_addr);
        let sent = tx.transmit(L2_L3_LEN + icmp_len, |buf| {
            emit_l2_l3(buf, our_mac, src_mac, src, dst, IpProtocol::Icmp, icmp_len, ident_ip);
            let _ = reply.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[L2_L3_LEN..]));
        });
        if self.count_tx(sent) {
            self.counters.icmp_echo_replies += 1;
        }
    }

    fn handle_tcp<S: TxSink>(&mut self, now: Instant, src_mac: MacAddr, ip: &Ipv4Repr, payload: &[u8], tx: &mut S) {
        // `parse` checks the lengths (as `new_checked` would); its `Truncated` and `Malformed` count here too.
        let packet = tcp::Packet::new_unchecked(payload);
        // Matched by reference: moving the parsed header out of the `Result` copied it once per frame.
        let parsed = TcpRepr::parse(&packet, ip.src_addr, ip.dst_addr, self.policy());
        let seg = match &parsed {
            Ok(seg) => seg,
            Err(WireError::Checksum) => {
                self.counters.drop_tcp_checksum += 1;
                return;
            }
            Err(WireError::BadOption) => {
                self.counters.drop_tcp_bad_option += 1;
                return;
            }
            Err(_) => {
                self.counters.drop_tcp_malformed += 1;
                return;
            }
        };
        // RFC 9293 MUST-57 spirit: nothing from a broadcast or multicast source opens or resets anything.
        if ip.src_addr.is_broadcast() || ip.src_addr.is_multicast() || !src_mac.is_unicast() {
            self.counters.drop_tcp_malformed += 1;
            return;
        }
        self.counters.tcp_rx_segments += 1;
        let key = FlowKey {
            local_addr: ip.dst_addr,
            remote_addr: ip.src_addr,
            local_port: seg.dst_port,
            remote_port: seg.src_port,
        };
        self.handle_segment(now, key, src_mac, seg, tx);
    }

    /// Replies with a RST to a segment that belongs to no connection (RFC 9293 §3.10.7.1): `<SEQ=SEG.ACK><CTL=RST>`
    /// if it carried an ACK, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`. Never in answer to a RST.
    pub(crate) fn reply_rst<S: TxSink>(&mut self, tx: &mut S, key: FlowKey, remote_mac: MacAddr, seg: &TcpRepr) {
        if seg.flags.rst() {
            return;
        }
        let rst = if seg.flags.ack() {
            PendingRst {
                key,
                remote_mac,
                seq: seg.ack,
                ack: None,
            }
        } else {
            PendingRst {
                key,
                remote_mac,
                seq: crate::wire::SeqNum(0),
                ack: Some(seg.seq + seg.segment_len()),
            }
        };
        // Not tied to any state: a refused one is counted (`tx_sink_full`) and the peer's next segment asks again.
        let _ = self.send_rst(tx, rst);
    }
}

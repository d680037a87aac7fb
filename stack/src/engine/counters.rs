//! One named counter per drop reason and per notable event, in FreeBSD's tcpstat habit: every place that drops
//! a frame or takes a decision worth knowing about bumps exactly one of these.

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)*) => {
        /// The engine's counters, readable as a plain struct (see [`Counters::iter`] for name/value pairs).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])+ pub $name: u64,)*
        }

        impl Counters {
            /// Every counter as (name, value), in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

counters! {
    /// Frames handed to `handle_frame`.
    rx_frames,
    /// Frames written to the transmit sink.
    tx_frames,
    /// Frames the sink refused because it was full for now: a connection's segment waits for the next
    /// `poll_transmit`; a reply not tied to a connection (RST, ARP, TIME-WAIT ACK, cookie SYN-ACK) is dropped.
    tx_sink_full,
    /// Frames the sink can never take (longer than its frames): dropped; the configuration is wrong.
    tx_too_long,
    /// Frames too short or malformed at the Ethernet layer.
    drop_ethernet_malformed,
    /// Frames for another MAC address.
    drop_not_our_mac,
    /// 802.1Q-tagged frames (not handled).
    drop_vlan,
    /// Ethertypes other than IPv4 and ARP.
    drop_ethertype,
    /// ARP frames that are malformed or not for IPv4 over Ethernet.
    drop_arp_malformed,
    /// ARP requests answered.
    arp_replies_sent,
    /// ARP requests sent to resolve a neighbour.
    arp_requests_sent,
    /// Neighbours learnt from ARP.
    arp_learnt,
    /// Connections failed because their neighbour never answered ARP.
    arp_unresolved,
    /// IPv4 headers that are malformed or truncated.
    drop_ipv4_malformed,
    /// IPv4 header checksum failures.
    drop_ipv4_checksum,
    /// IPv4 fragments (not reassembled).
    drop_ipv4_fragment,
    /// IPv4 packets for an address not ours.
    drop_ipv4_not_ours,
    /// IPv4 packets of a protocol other than TCP and ICMP.
    drop_ip_protocol,
    /// ICMP messages that are malformed or fail their checksum.
    drop_icmp_malformed,
    /// ICMP messages of a type that is not handled.
    drop_icmp_unhandled,
    /// ICMP echo replies sent.
    icmp_echo_replies,
    /// TCP segments that are malformed (header, data offset, ports).
    drop_tcp_malformed,
    /// TCP segments with a bad option list.
    drop_tcp_bad_option,
    /// TCP checksum failures.
    drop_tcp_checksum,
    /// TCP segments received (well-formed).
    tcp_rx_segments,
    /// TCP segments sent.
    tcp_tx_segments,
    /// Segments to a port with no listener and no connection (answered with RST unless they carried one).
    no_listener,
    /// RSTs sent in reply to segments for no connection or unacceptable ACKs (RFC 9293 §3.10.7.1-3).
    rst_sent,
    /// RSTs received that reset a connection.
    rst_received,
    /// RSTs dropped as out of window (RFC 5961 §3).
    drop_rst_out_of_window,
    /// RSTs ignored in TIME-WAIT (RFC 1337).
    drop_rst_time_wait,
    /// RSTs to a listening port (ignored, RFC 9293 §3.10.7.2).
    drop_rst_to_listener,
    /// Segments to a listening port with neither SYN, ACK nor RST (dropped, RFC 9293 §3.10.7.2).
    drop_listen_no_syn,
    /// SYNs dropped because the listener's SYN-RECEIVED queue was full (cookies off).
    drop_backlog_full,
    /// SYNs or connects refused because the connection table was full.
    drop_table_full,
    /// Passive opens started (SYN accepted in LISTEN).
    passive_opens,
    /// Active opens started (`connect`).
    active_opens,
    /// Connections that reached ESTABLISHED.
    established,
    /// Connections refused by the peer (RST in SYN-SENT).
    refused,
    /// Segments that failed the sequence acceptability test (RFC 9293 §3.10.7.4 first step).
    drop_out_of_window,
    /// Segments dropped by PAWS (RFC 7323 §5).
    drop_paws,
    /// Segments without ACK in a synchronized state.
    drop_no_ack,
    /// ACKs for data never sent.
    drop_ack_unsent,
    /// Old duplicate ACKs ignored.
    dup_acks,
    /// Challenge ACKs sent (RFC 5961 §3, §4, §5).
    challenge_acks_sent,
    /// Challenge ACKs suppressed by the global budget (RFC 5961 §7).
    challenge_acks_limited,
    /// Challenge ACKs and ACKs for unacceptable segments suppressed by the per-connection limit.
    oow_acks_limited,
    /// ACKs for stray segments in TIME-WAIT suppressed by the global budget.
    time_wait_acks_limited,
    /// SYN-ACKs sent with a SYN cookie instead of keeping state (RFC 4987 §3.6).
    syn_cookies_sent,
    /// ACKs whose SYN cookie checked: a connection was rebuilt from them.
    syn_cookies_validated,
    /// ACKs to a listener whose SYN cookie did not check (answered with RST).
    syn_cookies_rejected,
    /// SYNs dropped because half-open connections reached their share of the table (cookies off).
    drop_half_open_limit,
    /// SYN-ACK retransmission budgets cut to one under half-open pressure.
    synack_retries_shortened,
    /// Segments carrying data that arrived in order.
    data_in_order,
    /// Segments carrying data beyond a hole, held for reassembly.
    data_out_of_order,
    /// Out-of-order segments dropped because the reassembly structure was full.
    drop_reassembly_full,
    /// Received bytes dropped because no receive buffer could be had from the pool.
    drop_no_buffer,
    /// Data received after the application closed: the connection is reset (as Linux does).
    data_after_close,
    /// Retransmission timeouts that fired.
    rto_fired,
    /// Segments retransmitted (by timeout or fast retransmit).
    retransmits,
    /// Fast retransmits on three duplicate ACKs (RFC 5681 §3.2).
    fast_retransmits,
    /// Connections aborted after too many retransmissions.
    rto_aborts,
    /// Zero-window probes sent (persist timer).
    window_probes,
    /// Keep-alive probes sent.
    keepalive_probes,
    /// Connections aborted because keep-alive probes went unanswered.
    keepalive_aborts,
    /// Delayed ACKs sent when their timer fired.
    delayed_acks,
    /// Connections entering TIME-WAIT.
    time_wait_entered,
    /// TIME-WAIT records that expired after 2*MSL.
    time_wait_expired,
    /// TIME-WAIT skipped because MSL is zero.
    time_wait_skipped,
    /// TIME-WAIT skipped because the TIME-WAIT table was full.
    time_wait_overflow,
    /// Final ACKs re-sent in TIME-WAIT for a retransmitted FIN.
    time_wait_reacks,
    /// New SYNs that replaced a TIME-WAIT record (RFC 6191).
    time_wait_reused,
    /// SYNs refused in TIME-WAIT as possibly old duplicates.
    time_wait_syn_refused,
    /// Connections closed normally (both FINs exchanged).
    closed_normal,
    /// Connections closed by reset, sent or received.
    closed_reset,
    /// Connections the application aborted.
    aborted_by_app,
    /// Orphaned connections dropped after `fin_wait2_timeout` in FIN-WAIT-2.
    fin_wait2_timeouts,
    /// Half-open connections given up after SYN-ACK retries.
    syn_received_timeouts,
    /// Events the event queue could not take at once (full, or the connection owes earlier ones): owed, and
    /// queued once the application has drained it.
    events_deferred,
    /// Events lost for good: the list of connections owed events was full (cannot happen: it has room for two
    /// per connection slot).
    events_lost,
    /// RSTs not sent because the queue of RSTs for the next `poll_transmit` was full.
    drop_rst_queue_full,
    /// ARP requests not sent because the queue of ARP requests for the next `poll_transmit` was full.
    drop_arp_queue_full,
}

//! AF_XDP against the Linux kernel over a veth pair in two namespaces.
//!
//! The synack side runs a tiny hand-written responder on `AfXdpDevice`: it answers the kernel's ARP request for
//! synack's address and echoes UDP datagrams back, all through `Device::receive` and the lent `TxSink`. The
//! kernel side uses ordinary sockets. Needs root (see `require_root`).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use synack::io::TxSink;
use synack_driver::{
    AfXdpConfig, AfXdpDevice, AfXdpError, AttachedMode, BoundMode, BpfError, Device, DeviceStats, NetnsConfig,
    NetnsPair, Side, XdpMode, require_root, run_in_netns,
};

const ETH_ARP: [u8; 2] = [0x08, 0x06];
const ETH_IPV4: [u8; 2] = [0x08, 0x00];

/// What the responder saw.
#[derive(Debug, Default)]
struct Seen {
    arp_answered: usize,
    udp_echoed: usize,
    /// Frames that reached the socket but were not for synack's address (must stay 0).
    not_ours: usize,
    tx_refused: usize,
    /// Frames `peek` showed, and how many of them the following `receive` did not hand over first, in order
    /// (must stay 0: a peek takes nothing).
    peeked: usize,
    peek_mismatch: usize,
}

fn ipv4_header_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Handles one received frame: ARP request for `me` -> ARP reply; UDP to `me` -> echo with addresses swapped.
fn respond(frame: &[u8], me: Ipv4Addr, my_mac: [u8; 6], tx: &mut impl TxSink, seen: &mut Seen) {
    if frame.len() < 14 {
        seen.not_ours += 1;
        return;
    }
    let ethertype = [frame[12], frame[13]];
    if ethertype == ETH_ARP && frame.len() >= 42 {
        let target = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
        if target != me {
            seen.not_ours += 1;
            return;
        }
        if frame[20..22] != [0, 1] {
            return; // a reply to us; this responder never asks
        }
        let (sender_mac, sender_ip) = (&frame[22..28], &frame[28..32]);
        let ok = tx
            .transmit(42, |out| {
                out[0..6].copy_from_slice(sender_mac);
                out[6..12].copy_from_slice(&my_mac);
                out[12..14].copy_from_slice(&ETH_ARP);
                out[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]); // Ethernet/IPv4, reply
                out[22..28].copy_from_slice(&my_mac);
                out[28..32].copy_from_slice(&me.octets());
                out[32..38].copy_from_slice(sender_mac);
                out[38..42].copy_from_slice(sender_ip);
            })
            .is_ok();
        if ok {
            seen.arp_answered += 1
        } else {
            seen.tx_refused += 1
        }
    } else if ethertype == ETH_IPV4 && frame.len() >= 34 {
        let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        if dst != me {
            seen.not_ours += 1;
            return;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        if frame[23] != 17 || frame.len() < 14 + ihl + 8 {
            return;
        }
        let ok = tx
            .transmit(frame.len(), |out| {
                out.copy_from_slice(frame);
                out[0..6].copy_from_slice(&frame[6..12]);
                out[6..12].copy_from_slice(&my_mac);
                out[26..30].copy_from_slice(&frame[30..34]);
                out[30..34].copy_from_slice(&frame[26..30]);
                out[24..26].copy_from_slice(&[0, 0]);
                let c = ipv4_header_checksum(&out[14..14 + ihl]);
                out[24..26].copy_from_slice(&c.to_be_bytes());
                let udp = 14 + ihl;
                out[udp..udp + 2].copy_from_slice(&frame[udp + 2..udp + 4]);
                out[udp + 2..udp + 4].copy_from_slice(&frame[udp..udp + 2]);
                // The UDP checksum stays valid: swapping addresses and ports leaves the one's-complement sum as is.
            })
            .is_ok();
        if ok { seen.udp_echoed += 1 } else { seen.tx_refused += 1 }
    } else {
        seen.not_ours += 1;
    }
}

fn wait_readable(fd: i32, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

struct Outcome {
    seen: Seen,
    stats: DeviceStats,
    xdp: Option<AttachedMode>,
    bound: BoundMode,
    link_while_open: String,
}

/// The synack side: opens the device, signals `ready`, serves until `done` or 10 s.
fn serve(pair: &NetnsPair, mode: XdpMode, rings: u32, ready: mpsc::Sender<()>, done: &AtomicBool) -> Outcome {
    let me = pair.synack_addr();
    let config = AfXdpConfig {
        xdp_mode: mode,
        addresses: vec![me],
        frame_count: 4 * rings,
        fill_size: rings,
        completion_size: rings,
        rx_size: rings,
        tx_size: rings,
        batch_size: 32.min(rings),
        ..AfXdpConfig::new(pair.interface(Side::Synack))
    };
    let mut dev = AfXdpDevice::open(&config).unwrap_or_else(|e| panic!("open {mode:?}: {e}"));
    assert_eq!(dev.mac_address(), pair.mac(Side::Synack));
    let link_while_open = pair.link_details(Side::Synack).unwrap();
    ready.send(()).unwrap();
    let my_mac = dev.mac_address();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut turns = 0u32;
    while !done.load(Ordering::Acquire) && Instant::now() < deadline && turns < 1_000_000 {
        turns += 1;
        let mut peeked: Vec<Vec<u8>> = Vec::new();
        dev.peek(64, |frame| peeked.push(frame.to_vec()));
        seen.peeked += peeked.len();
        let mut index = 0;
        let n = dev
            .receive(64, |frame, tx| {
                if index < peeked.len() && peeked[index] != frame {
                    seen.peek_mismatch += 1;
                }
                index += 1;
                respond(frame, me, my_mac, tx, &mut seen)
            })
            .unwrap();
        if n < peeked.len() {
            seen.peek_mismatch += peeked.len() - n;
        }
        dev.flush().unwrap();
        if n == 0 {
            wait_readable(dev.raw_fd(), 5);
        }
    }
    Outcome {
        seen,
        stats: dev.stats(),
        xdp: dev.xdp_mode(),
        bound: dev.bound_mode(),
        link_while_open,
    }
}

/// The kernel side: echoes through synack, then a datagram to a kernel-owned address on the synack side.
fn kernel_peer(pair: &NetnsPair, other: Ipv4Addr, count: usize) -> (usize, std::io::ErrorKind) {
    let sock = UdpSocket::bind(SocketAddrV4::new(pair.kernel_addr(), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let target = SocketAddrV4::new(pair.synack_addr(), 7);
    let mut echoed = 0;
    let mut buf = [0u8; 256];
    for i in 0..count {
        let msg = format!("synack echo {i}");
        sock.send_to(msg.as_bytes(), target).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, std::net::SocketAddr::V4(target));
                assert_eq!(&buf[..n], msg.as_bytes());
                echoed += 1;
            }
            Err(e) => panic!("no echo for datagram {i}: {e}"),
        }
    }
    // Not synack's address: the program must pass it, so the synack-side kernel answers ARP and then rejects
    // the datagram with ICMP port unreachable, which a connected UDP socket reports as ECONNREFUSED.
    let probe = UdpSocket::bind(SocketAddrV4::new(pair.kernel_addr(), 0)).unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    probe.connect(SocketAddrV4::new(other, 9)).unwrap();
    probe.send(b"not for synack").unwrap();
    let kind = probe
        .recv(&mut buf)
        .map(|_| std::io::ErrorKind::Other)
        .unwrap_or_else(|e| e.kind());
    (echoed, kind)
}

fn echo_over_veth(mode: XdpMode) {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    let o = pair.synack_addr().octets();
    let other = Ipv4Addr::new(o[0], o[1], o[2], 3);
    pair.add_kernel_address(Side::Synack, other, 24).unwrap();
    let offloads = pair.offloads(Side::Kernel).unwrap();
    assert!(!offloads.tx_checksum && !offloads.gso, "{offloads:?}");

    let done = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (outcome, (echoed, probe)) = std::thread::scope(|s| {
        let server = s.spawn(|| run_in_netns(pair.netns(Side::Synack), || serve(&pair, mode, 256, ready_tx, &done)));
        let started = ready_rx.recv_timeout(Duration::from_secs(10));
        let peer = started
            .ok()
            .map(|()| run_in_netns(pair.netns(Side::Kernel), || kernel_peer(&pair, other, 5)));
        done.store(true, Ordering::Release);
        let outcome = server.join().expect("server thread").expect("netns");
        (outcome, peer.expect("device never became ready").expect("netns"))
    });

    let expected = match mode {
        XdpMode::Native => AttachedMode::Native,
        _ => AttachedMode::Generic,
    };
    assert_eq!(outcome.xdp, Some(expected));
    assert_eq!(
        outcome.bound,
        BoundMode::Copy,
        "veth has no zero-copy; Auto must fall back to copy"
    );
    // `ip -d link` names the attach mode on its first line (` xdp ` or ` xdpgeneric `) and the program below.
    let marker = if expected == AttachedMode::Native {
        " xdp "
    } else {
        " xdpgeneric "
    };
    let first_line = outcome.link_while_open.lines().next().unwrap_or("");
    assert!(
        first_line.contains(marker),
        "not attached as {expected:?}: {}",
        outcome.link_while_open
    );
    assert!(
        outcome.link_while_open.contains("name synack_redirect"),
        "{}",
        outcome.link_while_open
    );
    assert_eq!(echoed, 5);
    assert_eq!(outcome.seen.udp_echoed, 5, "{:?}", outcome.seen);
    assert!(outcome.seen.arp_answered >= 1, "{:?}", outcome.seen);
    assert_eq!(
        outcome.seen.not_ours, 0,
        "frames not for synack reached the socket: {:?}",
        outcome.seen
    );
    assert_eq!(outcome.seen.tx_refused, 0);
    assert!(outcome.seen.peeked >= 5, "peek showed no frame: {:?}", outcome.seen);
    assert_eq!(outcome.seen.peek_mismatch, 0, "{:?}", outcome.seen);
    assert_eq!(
        probe,
        std::io::ErrorKind::ConnectionRefused,
        "the kernel did not handle a frame not for synack"
    );
    assert!(
        outcome.stats.rx_frames >= 6 && outcome.stats.tx_frames >= 6,
        "{:?}",
        outcome.stats
    );
    assert_eq!(outcome.stats.tx_dropped, 0);
    assert!(
        outcome.stats.tx_kicks >= 1,
        "copy mode needs a sendto per batch: {:?}",
        outcome.stats
    );
    eprintln!("{mode:?}: {:?}", outcome.stats);

    // The device is gone: its BPF link closed, so the interface carries no XDP program any more. Another test's
    // child process forked at the same moment may hold the link's fd until it execs, so allow a moment.
    let mut after = pair.link_details(Side::Synack).unwrap();
    for _ in 0..50 {
        if !after.contains("prog/xdp") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = pair.link_details(Side::Synack).unwrap();
    }
    assert!(
        !after.contains("prog/xdp"),
        "XDP program still attached after drop: {after}"
    );
}

#[test]
fn afxdp_native_veth_udp_echo_and_arp_reach_kernel_peer() {
    echo_over_veth(XdpMode::Native);
}

#[test]
fn afxdp_generic_veth_udp_echo_and_arp_reach_kernel_peer() {
    echo_over_veth(XdpMode::Generic);
}

#[test]
fn afxdp_reopen_right_after_drop_binds() {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    let config = AfXdpConfig {
        xdp_mode: XdpMode::Generic,
        addresses: vec![pair.synack_addr()],
        frame_count: 256,
        fill_size: 64,
        completion_size: 64,
        rx_size: 64,
        tx_size: 64,
        ..AfXdpConfig::new(pair.interface(Side::Synack))
    };
    let result = run_in_netns(pair.netns(Side::Synack), || {
        let first = AfXdpDevice::open(&config).map(|d| d.bound_mode());
        let second = AfXdpDevice::open(&config).map(|d| d.bound_mode());
        (first.map_err(|e| e.to_string()), second.map_err(|e| e.to_string()))
    })
    .unwrap();
    assert_eq!(result.0, Ok(BoundMode::Copy));
    assert_eq!(result.1, Ok(BoundMode::Copy));
}

#[test]
fn afxdp_second_program_on_same_interface_is_attach_error() {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    let config = AfXdpConfig {
        xdp_mode: XdpMode::Generic,
        frame_count: 256,
        fill_size: 64,
        completion_size: 64,
        rx_size: 64,
        tx_size: 64,
        ..AfXdpConfig::new(pair.interface(Side::Synack))
    };
    let second = run_in_netns(pair.netns(Side::Synack), || {
        let _first = AfXdpDevice::open(&config).expect("first open");
        AfXdpDevice::open(&config)
            .err()
            .map(|e| matches!(e, AfXdpError::Bpf(BpfError::Attach { .. })))
    })
    .unwrap();
    assert_eq!(second, Some(true));
}

#[test]
fn afxdp_interface_down_is_typed_error() {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    let ifname = pair.interface(Side::Synack).to_owned();
    let status = std::process::Command::new("ip")
        .args(["-n", pair.netns(Side::Synack), "link", "set", "dev", &ifname, "down"])
        .status()
        .unwrap();
    assert!(status.success());
    let err = run_in_netns(pair.netns(Side::Synack), || {
        AfXdpDevice::open(&AfXdpConfig::new(&ifname)).err()
    })
    .unwrap();
    assert!(
        matches!(err, Some(AfXdpError::InterfaceDown(ref n)) if *n == ifname),
        "{err:?}"
    );
}

#[test]
fn netns_pair_drop_removes_namespaces() {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    let names = [pair.netns(Side::Kernel).to_owned(), pair.netns(Side::Synack).to_owned()];
    for n in &names {
        assert!(std::path::Path::new("/run/netns").join(n).exists());
    }
    drop(pair);
    for n in &names {
        assert!(!std::path::Path::new("/run/netns").join(n).exists(), "{n} left behind");
    }
}

/// Many datagrams through small rings: every ring and both frame pools wrap many times over.
fn burst_over_veth(mode: XdpMode) {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
    const WINDOW: usize = 32;
    const ROUNDS: usize = 125;
    let done = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (outcome, echoed, elapsed) = std::thread::scope(|s| {
        let server = s.spawn(|| run_in_netns(pair.netns(Side::Synack), || serve(&pair, mode, 64, ready_tx, &done)));
        let started = ready_rx.recv_timeout(Duration::from_secs(10));
        let peer = started.ok().map(|()| {
            run_in_netns(pair.netns(Side::Kernel), || {
                let sock = UdpSocket::bind(SocketAddrV4::new(pair.kernel_addr(), 0)).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let target = SocketAddrV4::new(pair.synack_addr(), 7);
                let mut buf = [0u8; 64];
                let mut echoed = 0usize;
                let t0 = Instant::now();
                'rounds: for r in 0..ROUNDS {
                    for i in 0..WINDOW {
                        let tag = ((r * WINDOW + i) as u32).to_be_bytes();
                        sock.send_to(&tag, target).unwrap();
                    }
                    for _ in 0..WINDOW {
                        match sock.recv_from(&mut buf) {
                            Ok((4, _)) => echoed += 1,
                            Ok(_) => {}
                            Err(_) => break 'rounds,
                        }
                    }
                }
                (echoed, t0.elapsed())
            })
        });
        done.store(true, Ordering::Release);
        let outcome = server.join().expect("server thread").expect("netns");
        let (echoed, elapsed) = peer.expect("device never became ready").expect("netns");
        (outcome, echoed, elapsed)
    });
    eprintln!("{mode:?} burst: {echoed} echoes in {elapsed:?}; {:?}", outcome.stats);
    assert_eq!(echoed, WINDOW * ROUNDS, "{:?} {:?}", outcome.seen, outcome.stats);
    assert_eq!(outcome.stats.tx_dropped, 0);
    assert!(outcome.stats.tx_completed >= (WINDOW * ROUNDS) as u64 - 64);
}

#[test]
fn afxdp_native_veth_burst_wraps_rings_without_loss() {
    burst_over_veth(XdpMode::Native);
}

#[test]
fn afxdp_generic_veth_burst_wraps_rings_without_loss() {
    burst_over_veth(XdpMode::Generic);
}

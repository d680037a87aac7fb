//! A tiny synack server over AF_XDP, for trying synack by hand against the kernel on a veth pair:
//! HTTP/1.0 on port 80 (one fixed reply, then synack closes) and echo on port 7.
//!
//! ```text
//! responder --interface IF --addr A.B.C.D [--mode native|generic|auto] [--core N] [--seconds N]
//! ```
//!
//! Run it inside the namespace that holds the interface (`ip netns exec NS ...`); the address must *not* be
//! configured on the interface (synack owns it and answers ARP for it). See the crate README for the veth setup.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use synack::engine::{Engine, EngineConfig, Event, EventKind};
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;
use synack_driver::{AfXdpConfig, AfXdpDevice, App, Clock, Device, IdleStrategy, PollConfig, PollLoop, XdpMode};

const HTTP_PORT: u16 = 80;
const ECHO_PORT: u16 = 7;
const REPLY: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nhello, synack\n";

enum ConnState {
    /// Collecting an HTTP request until the blank line.
    Http { request: Vec<u8>, replied: bool },
    /// Echoing; `pending` is what was read but not yet accepted by `send`.
    Echo { pending: Vec<u8>, peer_closed: bool },
}

/// Per-connection state indexed by `ConnHandle::index()`.
struct Responder {
    conns: Vec<Option<ConnState>>,
    served: u64,
}

impl Responder {
    fn pump(&mut self, event: Event, engine: &mut Engine) {
        let handle = event.conn;
        let Some(Some(state)) = self.conns.get_mut(handle.index()) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        match state {
            ConnState::Http { request, replied } => {
                while let Ok(n @ 1..) = engine.recv(handle, &mut buf) {
                    request.extend_from_slice(&buf[..n]);
                }
                if !*replied && request.windows(4).any(|w| w == b"\r\n\r\n") {
                    *replied = true;
                    self.served += 1;
                    // The reply fits any send buffer; close queues our FIN behind it.
                    let _ = engine.send(handle, REPLY);
                    let _ = engine.close(handle);
                }
            }
            ConnState::Echo { pending, peer_closed } => {
                *peer_closed |= event.kind == EventKind::PeerClosed;
                loop {
                    if !pending.is_empty() {
                        match engine.send(handle, pending) {
                            Ok(n) => drop(pending.drain(..n)),
                            Err(_) => break,
                        }
                        if !pending.is_empty() {
                            break; // a Writable event follows
                        }
                    }
                    match engine.recv(handle, &mut buf) {
                        Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if *peer_closed && pending.is_empty() {
                    // The peer is done and everything is echoed: close our side too.
                    let _ = engine.close(handle);
                }
            }
        }
    }
}

impl App for Responder {
    fn on_event(&mut self, _now: Instant, event: Event, engine: &mut Engine) {
        match event.kind {
            EventKind::Accepted { listener } => {
                let state = if listener.port() == Port(HTTP_PORT) {
                    ConnState::Http {
                        request: Vec::new(),
                        replied: false,
                    }
                } else {
                    ConnState::Echo {
                        pending: Vec::new(),
                        peer_closed: false,
                    }
                };
                if let Some(slot) = self.conns.get_mut(event.conn.index()) {
                    *slot = Some(state);
                }
            }
            EventKind::Closed { .. } => {
                if let Some(slot) = self.conns.get_mut(event.conn.index()) {
                    if slot.take().is_some() {
                        // Releases the handle if we had not already (a reset, or the peer closed first).
                        let _ = engine.close(event.conn);
                    }
                }
                return;
            }
            _ => {}
        }
        self.pump(event, engine);
    }
}

struct Args {
    interface: String,
    addr: Ipv4Addr,
    mode: XdpMode,
    core: Option<usize>,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut interface, mut addr, mut mode, mut core, mut seconds) = (None, None, XdpMode::Auto, None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--interface" => interface = Some(value()?),
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--mode" => {
                mode = match value()?.as_str() {
                    "native" => XdpMode::Native,
                    "generic" => XdpMode::Generic,
                    "auto" => XdpMode::Auto,
                    other => return Err(format!("--mode: unknown mode {other:?}")),
                }
            }
            "--core" => core = Some(value()?.parse().map_err(|e| format!("--core: {e}"))?),
            "--seconds" => seconds = Some(value()?.parse().map_err(|e| format!("--seconds: {e}"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        interface: interface.ok_or("--interface is required")?,
        addr: addr.ok_or("--addr is required")?,
        mode,
        core,
        seconds,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: responder --interface IF --addr A.B.C.D [--mode native|generic|auto] [--core N] [--seconds N]"
            );
            return ExitCode::from(2);
        }
    };
    let config = AfXdpConfig {
        xdp_mode: args.mode,
        addresses: vec![args.addr],
        frame_count: 4096,
        fill_size: 2048,
        ..AfXdpConfig::new(&args.interface)
    };
    let device = match AfXdpDevice::open(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.interface);
            return ExitCode::FAILURE;
        }
    };
    let clock = Clock::new();
    let engine_config = EngineConfig {
        mac: MacAddr(device.mac_address()),
        addresses: vec![args.addr],
        ..EngineConfig::default()
    };
    if let Err(e) = engine_config.check_frame_capacity(device.frame_capacity()) {
        eprintln!("engine: {e}");
        return ExitCode::FAILURE;
    }
    let max_connections = engine_config.max_connections;
    let mut engine = match Engine::new(engine_config, clock.now()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    for port in [HTTP_PORT, ECHO_PORT] {
        if let Err(e) = engine.listen(Port(port), 128) {
            eprintln!("listen {port}: {e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "synack on {} ({:02x?}) as {}: XDP {:?}, bound {:?}; HTTP on :{HTTP_PORT}, echo on :{ECHO_PORT}",
        args.interface,
        device.mac_address(),
        args.addr,
        device.xdp_mode(),
        device.bound_mode()
    );
    let poll = PollConfig {
        core: args.core,
        max_duration: args.seconds.map(Duration::from_secs),
        idle: IdleStrategy::PollFd {
            fd: device.raw_fd(),
            max: Duration::from_millis(10),
        },
        ..PollConfig::default()
    };
    let mut poll_loop = PollLoop::new(engine, device, clock, poll);
    let mut app = Responder {
        conns: (0..max_connections).map(|_| None).collect(),
        served: 0,
    };
    match poll_loop.run(&mut app) {
        Ok(reason) => eprintln!("stopped: {reason:?}"),
        Err(e) => {
            eprintln!("device error: {e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!("served {} HTTP requests", app.served);
    eprintln!("loop: {:?}", poll_loop.stats());
    eprintln!("device: {:?}", poll_loop.device_stats());
    let counters: Vec<String> = poll_loop
        .engine()
        .counters()
        .iter()
        .filter(|&(_, v)| v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!("engine: {}", counters.join(" "));
    ExitCode::SUCCESS
}

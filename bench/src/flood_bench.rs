//! `synack bench --flood`: how much of its legitimate connection rate a responder keeps under a SYN flood, and
//! how fast it gets it back, for synack and for the Linux kernel, in one command.
//!
//! Inside one [`NetnsPair`], for each responder (synack over AF_XDP; then the kernel's sockets with
//! `tcp_syncookies=1`) and each flood rate, one run: a fresh responder (HTTP, the server closes) and the same
//! legitimate client (the kernel-socket load generator, closed loop, so both responders face the very same
//! client), for `baseline + flood + after` seconds; the flood generator ([`crate::flood`]) starts on a second
//! boundary of the client's clock and floods the responder's port for `flood` seconds from spoofed sources.
//! The client's per-second completions give the rate before, during, and in the first second after the flood
//! ([`windows`]). Each rate gets a fresh responder and listener so what one flood leaves behind (half-open
//! connections, SYN-ACK retries) does not weigh on the next rate's run.
//!
//! The spoofed sources are routed from the server namespace back to the client's address: SYN-ACKs to them
//! reach the client namespace, whose kernel drops them (not its addresses, no forwarding). Nothing leaves the
//! two namespaces, and every address is in 198.18.0.0/15.
//!
//! - [`settings`]: the configuration;
//! - [`windows`]: the windows of a run;
//! - [`table`]: the printed table.

pub mod settings;
pub mod table;
pub mod windows;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use synack::engine::Counters;
use synack_driver::{NetnsConfig, NetnsPair, Side, run_in_netns};

pub use settings::FloodBenchConfig;
pub use windows::{Windows, retained_pct, windows};

use crate::config::{CloseFirst, EngineSettings, LoadMode, LoadgenConfig, Protocol, ResponderConfig, StackKind};
use crate::flood::{FloodConfig, FloodReport, Generator, Mac};
use crate::report::Report;
use crate::synack_stack::{Control, RunError};

/// Substrings of synack's counter names shown with the table: whatever the engine counts about SYN cookies,
/// its SYN-RECEIVED backlog, a full table, challenge ACKs and half-open connections (found by name, so
/// counters added to the engine later show up without a change here).
pub const SYNACK_COUNTER_PATTERNS: [&str; 5] = ["syn_cookie", "backlog", "table_full", "challenge", "half_open"];

/// The kernel's `TcpExt` counters shown with the table (from the server namespace's `/proc/net/netstat`).
pub const KERNEL_COUNTERS: [&str; 5] = [
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "ListenOverflows",
    "ListenDrops",
];

/// One run: one responder, one flood rate.
#[derive(Clone, Debug, Serialize)]
pub struct FloodRun {
    /// The responder's stack.
    pub stack: StackKind,
    /// The configured flood rate (frames/s; 0 = as fast as the generator goes).
    pub configured_rate: f64,
    /// The flood rate achieved: frames the generator's socket sent per second of flood.
    pub flood_rate: f64,
    /// Of those, the frames per second the server end took: sent less the client interface's transmit drops
    /// (veth drops what its peer's queue cannot take; the count also holds any legitimate frame dropped so).
    pub flood_reached_rate: f64,
    /// Legitimate connections per second before, during and just after the flood.
    pub legit: Windows,
    /// `legit.during` as a percentage of `legit.before`.
    pub retained_during_pct: f64,
    /// `legit.after` as a percentage of `legit.before`.
    pub retained_after_pct: f64,
    /// When the flood started and stopped, in seconds since the client's start.
    pub flood_window_secs: [f64; 2],
    /// The responder's counters of interest ([`SYNACK_COUNTER_PATTERNS`], [`KERNEL_COUNTERS`]) over the run.
    pub counters: BTreeMap<String, u64>,
    /// The generator's report.
    pub flood: FloodReport,
    /// The legitimate client's report (with its per-second series).
    pub loadgen: Report,
    /// The responder's report.
    pub responder: Report,
    /// NAPI threads of the server interface pinned to the responder's core (`server_napi_thread`; 0 when the
    /// interface had none, as with the kernel responder, whose receive work RPS steers instead).
    pub server_napi_threads: usize,
}

/// The whole flood benchmark, as written to `json`.
#[derive(Clone, Debug, Serialize)]
pub struct FloodBenchReport {
    /// The configuration it ran with.
    pub config: FloodBenchConfig,
    /// How the work was placed on cores.
    pub cores: String,
    /// Settings and method, one line each.
    pub notes: Vec<String>,
    /// Every run, in order.
    pub runs: Vec<FloodRun>,
}

/// The addresses and names of the pair, as the runs use them.
struct Env {
    client_ns: String,
    server_ns: String,
    client_if: String,
    server_if: String,
    synack_addr: Ipv4Addr,
    kernel_server: Ipv4Addr,
    server_mac: Mac,
    client_sources: Vec<Ipv4Addr>,
}

/// Runs the flood benchmark as configured and prints the table (and writes the JSON).
pub fn run(cfg: &FloodBenchConfig) -> Result<(), RunError> {
    if let Some(why) = unavailable() {
        return Err(RunError(format!(
            "the flood benchmark needs root, iproute2, network namespaces and AF_XDP: {why}"
        )));
    }
    eprintln!(
        "bench --flood: {} runs of {} s, about {:.0} s in all",
        cfg.stacks.len() * cfg.rates.len(),
        cfg.run_secs(),
        cfg.estimated_secs()
    );
    let report = run_veth(cfg)?;
    print!("{}", table::table(&report));
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| RunError(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| RunError(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Why the benchmark cannot run here, if it cannot.
fn unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root");
    }
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing"),
    }
}

/// Builds the pair and runs every (stack, rate); the pair is removed on return, also on error.
pub fn run_veth(cfg: &FloodBenchConfig) -> Result<FloodBenchReport, RunError> {
    let pair = NetnsPair::new(NetnsConfig::default()).map_err(|e| RunError(format!("netns: {e}")))?;
    let base = pair.kernel_addr().octets();
    let addr = |last: u8| Ipv4Addr::new(base[0], base[1], base[2], last);
    let mut client_sources = vec![pair.kernel_addr()];
    client_sources.extend((1..cfg.client_sources).map(|i| addr(200 + i)));
    let env = Env {
        client_ns: pair.netns(Side::Kernel).to_owned(),
        server_ns: pair.netns(Side::Synack).to_owned(),
        client_if: pair.interface(Side::Kernel).to_owned(),
        server_if: pair.interface(Side::Synack).to_owned(),
        synack_addr: pair.synack_addr(),
        kernel_server: addr(3),
        server_mac: Mac(pair.mac(Side::Synack)),
        client_sources,
    };
    for &a in &env.client_sources[1..] {
        pair.add_kernel_address(Side::Kernel, a, 24)
            .map_err(|e| RunError(format!("adding {a}: {e}")))?;
    }
    pair.add_kernel_address(Side::Synack, env.kernel_server, 24)
        .map_err(|e| RunError(format!("adding {}: {e}", env.kernel_server)))?;
    // SYN-ACKs to the spoofed sources go back to the client namespace, which drops them.
    route_via(&env.server_ns, &cfg.sources.to_string(), pair.kernel_addr())?;
    if cfg.server_rps {
        steer_receive(&env.server_ns, &env.server_if, cfg.responder_core)?;
        // And the client end's to the client's core: the SYN-ACKs to the spoofed sources are the client
        // machine's to receive (and drop), not the sender's.
        steer_receive(&env.client_ns, &env.client_if, cfg.client_core)?;
    }
    let server_if = env.server_if.clone();
    run_in_netns(&env.server_ns, move || crate::bench::disable_tx_offloads(&server_if))
        .map_err(|e| RunError(e.to_string()))?
        .map_err(|e| RunError(format!("offloads: {e}")))?;
    run_in_netns(&env.client_ns, || -> Result<(), RunError> {
        sysctl_write("net.ipv4.tcp_tw_reuse", "1")?;
        sysctl_write("net.ipv4.ip_local_port_range", "1024 65535")
    })
    .map_err(|e| RunError(e.to_string()))??;
    let kernel_view = run_in_netns(&env.server_ns, || -> Result<String, RunError> {
        sysctl_write("net.ipv4.tcp_syncookies", cfg.kernel_syncookies())?;
        let read = |k: &str| sysctl_read(k).unwrap_or_else(|| "?".to_owned());
        Ok(format!(
            "kernel responder: net.ipv4.tcp_syncookies={}, listen backlog {}, namespace defaults somaxconn={}, \
             tcp_max_syn_backlog={}, tcp_synack_retries={}",
            cfg.kernel_syncookies(),
            cfg.backlog,
            read("net.core.somaxconn"),
            read("net.ipv4.tcp_max_syn_backlog"),
            read("net.ipv4.tcp_synack_retries"),
        ))
    })
    .map_err(|e| RunError(e.to_string()))??;

    let mut runs = Vec::new();
    let mut port = 20000u16;
    for &stack in &cfg.stacks {
        for &rate in &cfg.rates {
            port += 1;
            let label = if rate > 0.0 {
                format!("{rate:.0}/s")
            } else {
                "max".to_owned()
            };
            eprintln!("bench --flood: {} responder, flood {label} ...", stack_name(stack));
            runs.push(run_one(&env, cfg, stack, rate, port)?);
        }
    }
    drop(pair);
    let cores = core_note(cfg);
    let mut notes = vec![
        format!(
            "legitimate client: kernel sockets in the client namespace, closed loop, {} connections, HTTP GET with \
             a {}-byte body, the server closes; the same for both responders",
            cfg.concurrency, cfg.response_size
        ),
        format!(
            "windows: before = seconds 1..{b} of each run (second 0 is warm-up), during = the {f} s of flood, \
             after = the first second after it stopped; a fresh responder and listener per rate",
            b = cfg.baseline_secs,
            f = cfg.flood_secs
        ),
        format!(
            "flood: {} from {} ({} addresses and ports), Linux-like SYN options, batches of {}; rate 0 = as fast \
             as the generator goes on its core; SYN-ACKs to the spoofed sources are routed to the client \
             namespace and dropped there",
            lower(&cfg.kind),
            cfg.sources,
            lower(&cfg.source_order),
            cfg.flood_batch
        ),
        format!(
            "synack responder: AF_XDP ({} XDP, copy mode), listen backlog {} (its SYN-RECEIVED bound), SYN \
             cookies {}, half-open share {}% of {} connections, TIME-WAIT {} s",
            lower(&cfg.xdp_mode),
            cfg.backlog,
            lower(&cfg.syn_cookies),
            synack_engine(cfg).half_open_percent,
            synack_engine(cfg).max_connections,
            2.0 * cfg.msl_secs
        ),
        kernel_view,
    ];
    notes.push(format!(
        "veth: TX checksum offload, TSO and GSO off on both ends, IPv6 off; the generator's socket has a {} MiB \
         send buffer, so what the server end cannot take is dropped at its queue (reached/s), not held back",
        FloodConfig::default().sndbuf_bytes >> 20
    ));
    Ok(FloodBenchReport {
        config: cfg.clone(),
        cores,
        notes,
        runs,
    })
}

fn lower(d: &dyn std::fmt::Debug) -> String {
    format!("{d:?}").to_lowercase()
}

fn stack_name(stack: StackKind) -> &'static str {
    match stack {
        StackKind::Synack => "synack",
        StackKind::Kernel => "kernel",
    }
}

/// Where the work runs, said plainly (the comparison depends on it).
fn core_note(cfg: &FloodBenchConfig) -> String {
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    let shared = if cfg.client_core == cfg.flood_core {
        ": the client and the generator share a core"
    } else {
        ""
    };
    let softirq = if cfg.server_rps {
        format!(
            "runs in softirq on that same core, but for the server end's kernel receive work, which RPS steers to \
             core {} (synack's XDP path is not steered)",
            cfg.responder_core
        )
    } else {
        "runs in softirq on that same core".to_owned()
    };
    format!(
        "cores: responder on core {}, legitimate client on core {}, flood generator on core {} ({cores} cores on \
         this machine{shared}); on veth the receive work for a frame (the flood's, the client's) {softirq}",
        cfg.responder_core, cfg.client_core, cfg.flood_core,
    )
}

/// synack's engine for the responder: room for the client, the backlog and TIME-WAIT (the server closes).
fn synack_engine(cfg: &FloodBenchConfig) -> EngineSettings {
    EngineSettings {
        max_connections: (cfg.concurrency as usize * 4 + cfg.backlog as usize * 2).max(16384),
        max_time_wait: 1 << 19,
        msl_secs: cfg.msl_secs,
        syn_cookies: cfg.syn_cookies,
        ring_size: cfg.responder_ring_size,
        frame_count: cfg.responder_frame_count,
        ..EngineSettings::default()
    }
}

/// The configurations of one run's three programs.
fn configs(
    env: &Env,
    cfg: &FloodBenchConfig,
    stack: StackKind,
    rate: f64,
    port: u16,
) -> (ResponderConfig, LoadgenConfig, FloodConfig) {
    let server = match stack {
        StackKind::Synack => SocketAddrV4::new(env.synack_addr, port),
        StackKind::Kernel => SocketAddrV4::new(env.kernel_server, port),
    };
    let responder = ResponderConfig {
        stack,
        interface: env.server_if.clone(),
        xdp_mode: cfg.xdp_mode,
        addresses: vec![*server.ip()],
        ports: vec![port],
        protocol: Protocol::Http,
        request_size: 0,
        response_size: cfg.response_size,
        close: CloseFirst::Server,
        requests_per_connection: 1,
        // Stopped by the run; the bound only keeps a stuck run from leaving it behind.
        duration_secs: f64::from(cfg.run_secs()) + 30.0,
        backlog: cfg.backlog,
        core: Some(cfg.responder_core),
        live: cfg.live,
        json: None,
        engine: synack_engine(cfg),
    };
    let loadgen = LoadgenConfig {
        stack: StackKind::Kernel,
        interface: String::new(),
        sources: env.client_sources.clone(),
        targets: vec![server],
        mode: LoadMode::Closed,
        concurrency: cfg.concurrency,
        protocol: Protocol::Http,
        request_size: 0,
        response_size: cfg.response_size,
        requests_per_connection: 1,
        close: CloseFirst::Server,
        duration_secs: f64::from(cfg.run_secs()),
        // A count bound too, far above what the run can reach: time ends it.
        connections: u64::from(cfg.run_secs()) * 2_000_000,
        drain_secs: 1.0,
        core: Some(cfg.client_core),
        live: cfg.live,
        json: None,
        ..LoadgenConfig::default()
    };
    let flood_secs = f64::from(cfg.flood_secs);
    let flood = FloodConfig {
        interface: env.client_if.clone(),
        xdp_mode: cfg.flood_xdp_mode,
        kind: cfg.kind,
        sources: cfg.sources,
        source_order: cfg.source_order,
        target: server,
        target_mac: Some(env.server_mac),
        rate,
        batch: cfg.flood_batch,
        duration_secs: flood_secs,
        max_frames: if rate > 0.0 {
            (rate * flood_secs * 1.1) as u64 + u64::from(cfg.flood_batch)
        } else {
            cfg.flood_max_frames
        },
        core: Some(cfg.flood_core),
        live: cfg.live,
        json: None,
        ..FloodConfig::default()
    };
    (responder, loadgen, flood)
}

/// One run: responder up, generator open, client started; the flood starts `baseline_secs` into the client's
/// run; then everything is stopped and joined, on error too.
fn run_one(env: &Env, cfg: &FloodBenchConfig, stack: StackKind, rate: f64, port: u16) -> Result<FloodRun, RunError> {
    let (rcfg, lcfg, fcfg) = configs(env, cfg, stack, rate, port);
    let responder_stop = Arc::new(AtomicBool::new(false));
    let flood_stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let (opened_tx, opened_rx) = crossbeam_channel::bounded::<Result<(), String>>(1);
    let (start_tx, start_rx) = crossbeam_channel::bounded::<Option<Instant>>(1);
    let (client_ready_tx, client_ready_rx) = crossbeam_channel::bounded(1);
    let (client_ns, server_ns) = (env.client_ns.as_str(), env.server_ns.as_str());
    std::thread::scope(|s| {
        let responder = s.spawn(|| {
            run_in_netns(server_ns, || {
                let control = Control {
                    stop: Some(responder_stop.clone()),
                    drain: None,
                    ready: Some(ready_tx),
                };
                crate::run_responder(&rcfg, None, control)
            })
            .map_err(|e| RunError(format!("responder namespace: {e}")))?
        });
        let stop_all = || {
            flood_stop.store(true, Ordering::Release);
            responder_stop.store(true, Ordering::Release);
        };
        let join_responder = |h: std::thread::ScopedJoinHandle<'_, Result<Report, RunError>>| {
            responder_stop.store(true, Ordering::Release);
            h.join().map_err(|_| RunError("the responder thread panicked".into()))?
        };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            stop_all();
            return Err(join_responder(responder)
                .err()
                .unwrap_or_else(|| RunError("the responder never became ready".into())));
        }
        // The responder's XDP program is attached now, so the interface has its NAPI (the kernel responder's has
        // none: its receive work goes through the backlog, which RPS steers).
        let napi_pinned = if cfg.server_napi_thread {
            match pin_napi(server_ns, &env.server_if, cfg.responder_core) {
                Ok(pinned) => pinned,
                Err(e) => {
                    stop_all();
                    let _ = join_responder(responder);
                    return Err(e);
                }
            }
        } else {
            0
        };
        let flood = s.spawn(|| {
            run_in_netns(client_ns, || -> Result<FloodReport, RunError> {
                let mut generator = match Generator::open(&fcfg) {
                    Ok(g) => {
                        let _ = opened_tx.send(Ok(()));
                        g
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return Err(RunError(format!("flood: {e}")));
                    }
                };
                let Ok(Some(at)) = start_rx.recv_timeout(Duration::from_secs(30)) else {
                    return Err(RunError("the flood was never started".into()));
                };
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                generator
                    .run(Some(&flood_stop))
                    .map_err(|e| RunError(format!("flood: {e}")))
            })
            .map_err(|e| RunError(format!("flood namespace: {e}")))?
        });
        let join_flood = |h: std::thread::ScopedJoinHandle<'_, Result<FloodReport, RunError>>| {
            h.join().map_err(|_| RunError("the flood thread panicked".into()))?
        };
        match opened_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            other => {
                stop_all();
                let _ = start_tx.send(None);
                let flood_err = join_flood(flood).err();
                let _ = join_responder(responder);
                return Err(
                    flood_err.unwrap_or_else(|| RunError(format!("the flood generator did not open: {other:?}")))
                );
            }
        }
        let client = s.spawn(|| {
            run_in_netns(client_ns, || {
                let control = Control {
                    stop: None,
                    drain: None,
                    ready: Some(client_ready_tx),
                };
                crate::run_loadgen(&lcfg, None, control)
            })
            .map_err(|e| RunError(format!("client namespace: {e}")))?
        });
        let t0 = match client_ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => {
                let t0 = Instant::now();
                let _ = start_tx.send(Some(t0 + Duration::from_secs(u64::from(cfg.baseline_secs))));
                Some(t0)
            }
            Err(_) => {
                let _ = start_tx.send(None);
                None
            }
        };
        let client = client
            .join()
            .map_err(|_| RunError("the client thread panicked".into()))
            .and_then(|r| r);
        flood_stop.store(true, Ordering::Release);
        let flood = join_flood(flood);
        // Let the last FINs land before the responder stops counting.
        std::thread::sleep(Duration::from_millis(200));
        let responder = join_responder(responder);
        let (loadgen, flood, responder) = (client?, flood?, responder?);
        let t0 = t0.ok_or_else(|| RunError("the client never became ready".into()))?;
        let legit = windows(&loadgen.per_second, cfg.baseline_secs, cfg.flood_secs);
        let started = flood
            .started
            .map_or(0.0, |f| f.saturating_duration_since(t0).as_secs_f64());
        Ok(FloodRun {
            stack,
            configured_rate: rate,
            flood_rate: flood.rate,
            flood_reached_rate: reached_rate(&flood),
            retained_during_pct: retained_pct(legit.during, legit.before),
            retained_after_pct: retained_pct(legit.after, legit.before),
            legit,
            flood_window_secs: [started, started + flood.duration_secs],
            counters: responder_counters(stack, &responder),
            flood,
            loadgen,
            responder,
            server_napi_threads: napi_pinned,
        })
    })
}

/// Flood frames per second that reached the server end (see [`FloodRun::flood_reached_rate`]).
fn reached_rate(f: &FloodReport) -> f64 {
    let reached = f.frames_sent.saturating_sub(f.interface_tx_dropped.unwrap_or(0));
    if f.duration_secs > 0.0 {
        reached as f64 / f.duration_secs
    } else {
        0.0
    }
}

/// The responder's counters of interest over the run: synack's by name pattern (zeros included), the kernel's
/// from its MIB deltas.
pub fn responder_counters(stack: StackKind, responder: &Report) -> BTreeMap<String, u64> {
    let value = |name: &str| responder.counters.get(name).copied().unwrap_or(0);
    match stack {
        StackKind::Synack => Counters::default()
            .iter()
            .map(|(name, _)| name)
            .filter(|name| SYNACK_COUNTER_PATTERNS.iter().any(|p| name.contains(p)))
            .map(|name| (name.to_owned(), value(name)))
            .collect(),
        StackKind::Kernel => KERNEL_COUNTERS
            .iter()
            .map(|&name| (name.to_owned(), value(name)))
            .collect(),
    }
}

/// Runs `ip` with `args`; the error quotes the command and what it printed.
fn ip(args: &[&str]) -> Result<(), RunError> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| RunError(format!("spawning ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs a shell `script` in `netns` (through `ip netns exec`, which mounts the namespace's own sysfs: a plain
/// setns shows the sysfs of the namespace it was mounted in).
fn netns_sh(netns: &str, script: &str) -> Result<(), RunError> {
    ip(&["netns", "exec", netns, "sh", "-c", script])
}

/// `ip -n <netns> route add <prefix> via <gateway>`.
fn route_via(netns: &str, prefix: &str, gateway: Ipv4Addr) -> Result<(), RunError> {
    ip(&["-n", netns, "route", "add", prefix, "via", &gateway.to_string()])
}

/// Steers `ifname`'s receive processing (RPS, queue 0) to `core`.
fn steer_receive(netns: &str, ifname: &str, core: usize) -> Result<(), RunError> {
    if core >= 64 {
        return Err(RunError(format!("RPS to core {core}: only cores 0..=63 are supported")));
    }
    netns_sh(
        netns,
        &format!("echo {:x} > /sys/class/net/{ifname}/queues/rx-0/rps_cpus", 1u64 << core),
    )
}

/// Switches `ifname` to threaded NAPI and pins its NAPI threads to `core`; returns how many it pinned (0 when the
/// interface has no NAPI: veth has one only with native XDP attached or GRO on).
fn pin_napi(netns: &str, ifname: &str, core: usize) -> Result<usize, RunError> {
    if netns_sh(netns, &format!("echo 1 > /sys/class/net/{ifname}/threaded")).is_err() {
        return Ok(0); // no NAPI to thread
    }
    // Kernel threads are named "napi/<ifname>-<id>", cut to 15 bytes in /proc/<pid>/comm.
    let name = format!("napi/{ifname}-");
    let prefix = &name[..name.len().min(15)];
    let mut pinned = 0;
    for _ in 0..50 {
        let entries = std::fs::read_dir("/proc").map_err(|e| RunError(format!("/proc: {e}")))?;
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            if comm.trim_end().starts_with(prefix) {
                // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it (core < 1024 checked
                // by CPU_SET's bound below), and sched_setaffinity only reads it.
                let ok = unsafe {
                    let mut set: libc::cpu_set_t = core::mem::zeroed();
                    if core >= 8 * core::mem::size_of::<libc::cpu_set_t>() {
                        return Err(RunError(format!("core {core} is beyond the CPU set")));
                    }
                    libc::CPU_SET(core, &mut set);
                    // Real-time priority, as softirq work has over a user thread: a NIC queue's interrupt
                    // preempts the responder, and so does this thread (else it waits for its time slice behind a
                    // busy responder and veth's 256-frame ring overflows meanwhile).
                    let param = libc::sched_param { sched_priority: 50 };
                    libc::sched_setaffinity(pid, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
                        && libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) == 0
                };
                if !ok {
                    return Err(RunError(format!(
                        "pinning {} (pid {pid}) to core {core}: {}",
                        comm.trim_end(),
                        std::io::Error::last_os_error()
                    )));
                }
                pinned += 1;
            }
        }
        if pinned > 0 {
            break;
        }
        // The thread may take a moment to appear after the switch.
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(pinned)
}

/// Writes a sysctl in the calling thread's network namespace.
fn sysctl_write(key: &str, value: &str) -> Result<(), RunError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| RunError(format!("sysctl {key}={value}: {e}")))
}

/// Reads a sysctl in the calling thread's network namespace.
fn sysctl_read(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path).ok().map(|v| v.trim().to_owned())
}

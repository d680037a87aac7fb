//! `synack bench`: the connection-rate comparison in one command.
//!
//! As root it builds two namespaces joined by a veth pair ([`NetnsPair`]), and for every case (who closes
//! first x TIME-WAIT length) runs the responder and the load generator pinned to separate cores, first on
//! synack (AF_XDP on both veth ends), then on the kernel's sockets over the same veth and cores, and prints
//! both side by side with the ratios: connections/s, latency, and machine CPU time per connection (/proc/stat,
//! user+nice+sys+irq+softirq of the whole machine). It also measures a bare AF_XDP reflector's frames/s, the
//! link's own limit, and shows synack's frames/s as a fraction of it. Everything is removed at the end (the
//! pair's `Drop`), also on error.
//!
//! Without root, `ip` or AF_XDP it says why and runs the in-memory comparison instead: synack's load generator
//! against synack's responder over the in-memory link, on two threads.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use synack::io::TxSink;
use synack_driver::{
    AfXdpConfig, AfXdpDevice, Device, MemoryLink, MemoryLinkConfig, NetnsConfig, NetnsPair, Side, run_in_netns,
};

use crate::config::{
    BenchConfig, CloseFirst, EngineSettings, LoadMode, LoadgenConfig, Protocol, ResponderConfig, StackKind,
};
use crate::report::{Report, machine_busy, own_busy};
use crate::synack_stack::{Control, Link, RunError};

/// One phase's result: one stack, one case.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// "client closes first, TIME-WAIT 60 s", ...
    pub case: String,
    /// synack or kernel.
    pub stack: StackKind,
    /// The link: "veth (AF_XDP native)" or "memory".
    pub link: String,
    /// The load generator's report.
    pub loadgen: Report,
    /// The responder's report.
    pub responder: Report,
    /// Wall time of the load generator's run.
    pub wall_secs: f64,
    /// Machine CPU time (all cores, user+nice+sys+irq+softirq) over the run, per completed connection.
    pub cpu_us_per_conn: f64,
    /// This process's CPU time (both programs' threads) plus the machine's softirq time, per completed
    /// connection: leaves out other processes sharing the machine.
    pub own_cpu_us_per_conn: f64,
    /// Frames (received + sent) per second at the responder.
    pub responder_frames_per_sec: f64,
}

/// The whole benchmark, as written to `json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Why the in-memory comparison ran instead of the veth one, if it did.
    pub fallback_reason: Option<String>,
    /// Kernel settings used for the baseline.
    pub kernel_settings: Vec<String>,
    /// A bare AF_XDP reflector's frames/s (received + sent at the reflector), the link's limit.
    pub reflector_frames_per_sec: Option<f64>,
    /// Every phase.
    pub phases: Vec<Phase>,
    /// The open-loop runs, one per `open_rates` entry (synack against synack, on veth only).
    pub open_loop: Vec<OpenPhase>,
}

/// One open-loop run: a rate offered on a schedule and what came of it.
#[derive(Clone, Debug, Serialize)]
pub struct OpenPhase {
    /// New connections per second offered.
    pub offered: f64,
    /// The TIME-WAIT records the responder was given room for (the rate times the run, so none is skipped).
    pub time_wait_room: usize,
    /// The run.
    pub phase: Phase,
}

/// The TIME-WAIT table a responder needs so that a server-closes run at `rate` for `secs` (plus the drain)
/// never skips TIME-WAIT: every record it makes lives 2*MSL, longer than the run.
fn time_wait_room(rate: f64, secs: f64, drain: f64) -> usize {
    let records = rate * (secs + drain + 1.0) * 1.25;
    (records as usize).next_power_of_two().clamp(1 << 16, 1 << 24)
}

fn engine_settings(cfg: &BenchConfig, msl: f64) -> EngineSettings {
    EngineSettings {
        max_connections: (cfg.concurrency as usize * 4).max(4096),
        max_time_wait: if msl > 0.0 { 1 << 19 } else { 1024 },
        msl_secs: msl,
        buffer_size: 16 * 1024,
        buffer_count: (cfg.concurrency as usize * 8).max(4096),
        ..EngineSettings::default()
    }
}

fn case_name(close: CloseFirst, msl: f64, stack: StackKind) -> String {
    let who = match close {
        CloseFirst::Client => "client closes",
        CloseFirst::Server => "server closes",
    };
    let tw = match (stack, msl > 0.0) {
        (StackKind::Synack, true) => format!("TIME-WAIT {} s", 2.0 * msl),
        (StackKind::Synack, false) => "TIME-WAIT 0".to_owned(),
        (StackKind::Kernel, true) => "TIME-WAIT 60 s".to_owned(),
        (StackKind::Kernel, false) => "TIME-WAIT 0 (tcp_max_tw_buckets=0)".to_owned(),
    };
    format!("{who}, {tw}")
}

/// Builds the two programs' configurations for one phase.
fn phase_configs(
    cfg: &BenchConfig,
    stack: StackKind,
    close: CloseFirst,
    msl: f64,
    server: SocketAddrV4,
    sources: Vec<Ipv4Addr>,
    interfaces: (&str, &str),
) -> (ResponderConfig, LoadgenConfig) {
    let engine = engine_settings(cfg, msl);
    let responder = ResponderConfig {
        stack,
        interface: interfaces.1.to_owned(),
        xdp_mode: cfg.xdp_mode,
        addresses: vec![*server.ip()],
        ports: vec![server.port()],
        protocol: Protocol::Fixed,
        request_size: cfg.request_size,
        response_size: cfg.response_size,
        close,
        requests_per_connection: 1,
        duration_secs: 0.0,
        backlog: 4096,
        core: Some(cfg.responder_core),
        live: cfg.live,
        json: None,
        engine: engine.clone(),
    };
    let loadgen = LoadgenConfig {
        stack,
        interface: interfaces.0.to_owned(),
        xdp_mode: cfg.xdp_mode,
        sources,
        port_range: [1024, 65535],
        targets: vec![server],
        mode: LoadMode::Closed,
        rate: 1.0,
        concurrency: cfg.concurrency,
        protocol: Protocol::Fixed,
        request_size: cfg.request_size,
        response_size: cfg.response_size,
        requests_per_connection: 1,
        close,
        duration_secs: cfg.duration_secs,
        connections: 0,
        drain_secs: 3.0,
        core: Some(cfg.loadgen_core),
        live: cfg.live,
        json: None,
        engine,
    };
    (responder, loadgen)
}

/// Runs the responder until the load generator is done, and returns both reports. With `namespaces`
/// (client, server) each runs in its namespace on the interfaces its configuration names; with `links` (client,
/// server) synack runs on those links (the in-memory link) in this namespace.
pub fn run_phase(
    case: String,
    link_name: &str,
    responder: &ResponderConfig,
    loadgen: &LoadgenConfig,
    namespaces: Option<(&str, &str)>,
    links: Option<(Link, Link)>,
) -> Result<Phase, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let (client_link, server_link) = match links {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    std::thread::scope(|s| {
        let server = {
            let stop = stop.clone();
            s.spawn(move || {
                let control = Control {
                    stop: Some(stop),
                    drain: None,
                    ready: Some(ready_tx),
                };
                match namespaces {
                    Some((_, server_ns)) => run_in_netns(server_ns, || crate::run_responder(responder, None, control))
                        .map_err(|e| RunError(format!("responder namespace: {e}")))?,
                    None => crate::run_responder(responder, server_link, control),
                }
            })
        };
        let finish_server = |server: std::thread::ScopedJoinHandle<'_, Result<Report, RunError>>| {
            stop.store(true, Ordering::Release);
            server
                .join()
                .map_err(|_| RunError("the responder thread panicked".into()))?
        };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let r = finish_server(server);
            return Err(match r {
                Err(e) => e,
                Ok(_) => RunError("the responder never became ready".into()),
            });
        }
        let cpu0 = machine_busy();
        let own0 = own_busy();
        let t0 = Instant::now();
        let client = match namespaces {
            Some((client_ns, _)) => run_in_netns(client_ns, || crate::run_loadgen(loadgen, None, Control::default()))
                .map_err(|e| RunError(format!("loadgen namespace: {e}")))
                .and_then(|r| r),
            None => crate::run_loadgen(loadgen, client_link, Control::default()),
        };
        let wall = t0.elapsed();
        let cpu1 = machine_busy();
        let own1 = own_busy();
        // Let the last FINs land before the responder stops counting.
        std::thread::sleep(Duration::from_millis(200));
        let server = finish_server(server);
        let (loadgen_report, responder_report) = (client?, server?);
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        let own = match (own0, own1) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        let completed = loadgen_report.completed.max(1);
        Ok(Phase {
            case,
            stack: loadgen.stack,
            link: link_name.to_owned(),
            cpu_us_per_conn: cpu.as_secs_f64() * 1e6 / completed as f64,
            own_cpu_us_per_conn: own.as_secs_f64() * 1e6 / completed as f64,
            responder_frames_per_sec: responder_report.frames as f64 / wall.as_secs_f64().max(1e-9),
            wall_secs: wall.as_secs_f64(),
            loadgen: loadgen_report,
            responder: responder_report,
        })
    })
}

/// Writes a sysctl in the calling thread's network namespace.
fn sysctl(key: &str, value: &str) -> Result<(), RunError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| RunError(format!("sysctl {key}={value}: {e}")))
}

/// Why the veth benchmark cannot run here, if it cannot.
fn veth_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (namespaces, veth and AF_XDP need root)".into());
    }
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

/// Runs the benchmark as configured and prints the table.
pub fn run(cfg: &BenchConfig) -> Result<(), RunError> {
    let reason = if cfg.force_memory {
        Some("force_memory is set".to_owned())
    } else {
        veth_unavailable()
    };
    let report = match reason {
        None => match run_veth(cfg) {
            Ok(r) => r,
            Err(VethError::Unavailable(why)) => {
                eprintln!("bench: AF_XDP over veth is not available: {why}; running the in-memory comparison");
                run_memory(cfg, why)?
            }
            Err(VethError::Failed(e)) => return Err(e),
        },
        Some(why) => {
            eprintln!("bench: {why}; running the in-memory comparison (synack vs synack, no kernel baseline)");
            run_memory(cfg, why)?
        }
    };
    print!("{}", table(&report));
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| RunError(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| RunError(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

enum VethError {
    /// AF_XDP or the namespaces could not be set up: fall back.
    Unavailable(String),
    /// A run failed.
    Failed(RunError),
}

fn run_veth(cfg: &BenchConfig) -> Result<BenchReport, VethError> {
    let pair = NetnsPair::new(NetnsConfig::default()).map_err(|e| VethError::Unavailable(format!("netns: {e}")))?;
    let base = pair.kernel_addr().octets();
    let addr = |last: u8| Ipv4Addr::new(base[0], base[1], base[2], last);
    let n = cfg.source_count;
    let synack_sources: Vec<Ipv4Addr> = (0..n).map(|i| addr(100 + i)).collect();
    let mut kernel_sources = vec![pair.kernel_addr()];
    kernel_sources.extend((1..n).map(|i| addr(200 + i)));
    let kernel_server = addr(3);
    let failed = |e: String| VethError::Failed(RunError(e));
    for &a in &kernel_sources[1..] {
        pair.add_kernel_address(Side::Kernel, a, 24)
            .map_err(|e| failed(format!("adding {a}: {e}")))?;
    }
    pair.add_kernel_address(Side::Synack, kernel_server, 24)
        .map_err(|e| failed(format!("adding {kernel_server}: {e}")))?;
    let (client_ns, server_ns) = (pair.netns(Side::Kernel).to_owned(), pair.netns(Side::Synack).to_owned());
    let interfaces = (
        pair.interface(Side::Kernel).to_owned(),
        pair.interface(Side::Synack).to_owned(),
    );
    // The pair turns the client end's offloads off (AF_XDP needs full checksums from the kernel); the server
    // end gets the same, so both kernel ends are set alike.
    let server_if = interfaces.1.clone();
    run_in_netns(&server_ns, move || disable_tx_offloads(&server_if))
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("offloads: {e}")))?;
    let kernel_settings = vec![
        format!("client namespace: net.ipv4.tcp_tw_reuse=1, ip_local_port_range=1024 65535, {n} source addresses"),
        "server namespace: net.core.somaxconn=65535, tcp_max_syn_backlog=65535, listen backlog 4096".to_owned(),
        "veth: TX checksum offload, TSO and GSO off on both ends (as AF_XDP needs), IPv6 off".to_owned(),
        "both: TIME-WAIT is fixed at 60 s in Linux; the TIME-WAIT 0 case sets tcp_max_tw_buckets=0".to_owned(),
        "sockets: non-blocking, epoll, TCP_NODELAY, SO_REUSEADDR, IP_BIND_ADDRESS_NO_PORT".to_owned(),
    ];
    let set_kernel = |tw_buckets: &str| -> Result<(), RunError> {
        let tw = tw_buckets.to_owned();
        run_in_netns(&client_ns, move || -> Result<(), RunError> {
            sysctl("net.ipv4.tcp_tw_reuse", "1")?;
            sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
            sysctl("net.ipv4.tcp_max_tw_buckets", &tw)
        })
        .map_err(|e| RunError(e.to_string()))??;
        let tw = tw_buckets.to_owned();
        run_in_netns(&server_ns, move || -> Result<(), RunError> {
            sysctl("net.core.somaxconn", "65535")?;
            sysctl("net.ipv4.tcp_max_syn_backlog", "65535")?;
            sysctl("net.ipv4.tcp_max_tw_buckets", &tw)
        })
        .map_err(|e| RunError(e.to_string()))?
    };

    let reflector = if cfg.reflector {
        match reflect(&pair, cfg, Duration::from_secs_f64(cfg.duration_secs.min(5.0))) {
            Ok(fps) => Some(fps),
            Err(e) => {
                eprintln!("bench: reflector not measured: {e}");
                None
            }
        }
    } else {
        None
    };

    let mut phases = Vec::new();
    let mut port = 10000u16;
    let link_name = format!("veth ({:?} XDP, copy mode)", cfg.xdp_mode).to_lowercase();
    for &close in &cfg.close {
        for &msl in &cfg.msl_secs {
            port += 1;
            let server = SocketAddrV4::new(pair.synack_addr(), port);
            let (r, l) = phase_configs(
                cfg,
                StackKind::Synack,
                close,
                msl,
                server,
                synack_sources.clone(),
                (&interfaces.0, &interfaces.1),
            );
            let case = case_name(close, msl, StackKind::Synack);
            eprintln!("bench: synack, {case} ...");
            match run_phase(case, &link_name, &r, &l, Some((&client_ns, &server_ns)), None) {
                Ok(p) => phases.push(p),
                Err(e) if phases.is_empty() && e.0.contains("AF_XDP") => return Err(VethError::Unavailable(e.0)),
                Err(e) => return Err(VethError::Failed(e)),
            }
            if cfg.kernel {
                port += 1;
                set_kernel(if msl > 0.0 { "262144" } else { "0" }).map_err(VethError::Failed)?;
                let server = SocketAddrV4::new(kernel_server, port);
                let (r, l) = phase_configs(
                    cfg,
                    StackKind::Kernel,
                    close,
                    msl,
                    server,
                    kernel_sources.clone(),
                    (&interfaces.0, &interfaces.1),
                );
                let case = case_name(close, msl, StackKind::Kernel);
                eprintln!("bench: kernel, {case} ...");
                let p = run_phase(
                    case,
                    "veth (kernel sockets)",
                    &r,
                    &l,
                    Some((&client_ns, &server_ns)),
                    None,
                )
                .map_err(VethError::Failed)?;
                phases.push(p);
            }
        }
    }
    let mut open_loop = Vec::new();
    let msl = cfg.msl_secs.iter().copied().find(|m| *m > 0.0).unwrap_or(30.0);
    for &rate in &cfg.open_rates {
        port += 1;
        let server = SocketAddrV4::new(pair.synack_addr(), port);
        let (mut r, mut l) = phase_configs(
            cfg,
            StackKind::Synack,
            CloseFirst::Server,
            msl,
            server,
            synack_sources.clone(),
            (&interfaces.0, &interfaces.1),
        );
        let room = time_wait_room(rate, cfg.open_secs, l.drain_secs);
        r.engine.max_time_wait = room;
        // At most 100 ms of arrivals open at once (at least 1024): room for retransmissions to show, bounded.
        let cap = ((rate / 10.0) as u32).max(1024);
        r.engine.max_connections = (cap as usize * 2).max(r.engine.max_connections);
        l.engine.max_connections = (cap as usize * 2).max(l.engine.max_connections);
        l.engine.buffer_count = l.engine.max_connections.max(l.engine.buffer_count);
        r.engine.buffer_count = r.engine.max_connections.max(r.engine.buffer_count);
        l.mode = LoadMode::Open;
        l.rate = rate;
        l.concurrency = cap;
        l.duration_secs = cfg.open_secs;
        let case = format!("open loop {rate:.0}/s, server closes, TIME-WAIT {} s", 2.0 * msl);
        eprintln!("bench: synack, {case} ...");
        let phase =
            run_phase(case, &link_name, &r, &l, Some((&client_ns, &server_ns)), None).map_err(VethError::Failed)?;
        open_loop.push(OpenPhase {
            offered: rate,
            time_wait_room: room,
            phase,
        });
    }
    drop(pair);
    Ok(BenchReport {
        fallback_reason: None,
        kernel_settings: if cfg.kernel { kernel_settings } else { Vec::new() },
        reflector_frames_per_sec: reflector,
        phases,
        open_loop,
    })
}

fn run_memory(cfg: &BenchConfig, why: String) -> Result<BenchReport, RunError> {
    let client_addr = Ipv4Addr::new(198, 18, 250, 1);
    let server_addr = Ipv4Addr::new(198, 18, 250, 2);
    let mut phases = Vec::new();
    let mut port = 10000u16;
    for &close in &cfg.close {
        for &msl in &cfg.msl_secs {
            port += 1;
            let server = SocketAddrV4::new(server_addr, port);
            let (r, l) = phase_configs(
                cfg,
                StackKind::Synack,
                close,
                msl,
                server,
                vec![client_addr],
                ("memory", "memory"),
            );
            let (a, b) = MemoryLink::pair(MemoryLinkConfig {
                frames_per_direction: 4096,
                frame_size: 2048,
            });
            let links = (
                Link::Memory {
                    port: a,
                    mac: [2, 0x53, 0, 0, 0, 1],
                },
                Link::Memory {
                    port: b,
                    mac: [2, 0x53, 0, 0, 0, 2],
                },
            );
            let case = case_name(close, msl, StackKind::Synack);
            eprintln!("bench: synack over the in-memory link, {case} ...");
            phases.push(run_phase(case, "memory", &r, &l, None, Some(links))?);
        }
    }
    Ok(BenchReport {
        fallback_reason: Some(why),
        kernel_settings: Vec::new(),
        reflector_frames_per_sec: None,
        phases,
        open_loop: Vec::new(),
    })
}

/// The side-by-side table.
pub fn table(r: &BenchReport) -> String {
    let mut s = String::new();
    if let Some(why) = &r.fallback_reason {
        s += &format!("in-memory comparison (no veth/kernel run: {why})\n");
    }
    s += &format!(
        "{:<52} {:<7} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>10} {:>6} {:>6} {:>6}\n",
        "case",
        "stack",
        "conn/s",
        "conn p50",
        "conn p99",
        "life p50",
        "life p99",
        "CPU us/c",
        "own us/c",
        "frames/s",
        "retx",
        "rst",
        "failed"
    );
    let row = |p: &Phase| {
        format!(
            "{:<52} {:<7} {:>9.0} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>10.0} {:>6} {:>6} {:>6}\n",
            p.case,
            format!("{:?}", p.stack).to_lowercase(),
            p.loadgen.rate,
            p.loadgen.connect.p50_us,
            p.loadgen.connect.p99_us,
            p.loadgen.lifecycle_latency.p50_us,
            p.loadgen.lifecycle_latency.p99_us,
            p.cpu_us_per_conn,
            p.own_cpu_us_per_conn,
            p.responder_frames_per_sec,
            p.loadgen.retransmits + p.responder.retransmits,
            p.loadgen.resets + p.responder.resets,
            p.loadgen.failed,
        )
    };
    let mut i = 0;
    while i < r.phases.len() {
        let p = &r.phases[i];
        s += &row(p);
        if let Some(k) = r.phases.get(i + 1).filter(|k| k.stack == StackKind::Kernel) {
            s += &row(k);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            s += &format!(
                "{:<52} {:<7} {:>8.2}x {:>7.2}x {:>7.2}x {:>8.2}x {:>8.2}x {:>7.2}x {:>7.2}x\n",
                "  synack / kernel",
                "ratio",
                ratio(p.loadgen.rate, k.loadgen.rate),
                ratio(p.loadgen.connect.p50_us, k.loadgen.connect.p50_us),
                ratio(p.loadgen.connect.p99_us, k.loadgen.connect.p99_us),
                ratio(p.loadgen.lifecycle_latency.p50_us, k.loadgen.lifecycle_latency.p50_us),
                ratio(p.loadgen.lifecycle_latency.p99_us, k.loadgen.lifecycle_latency.p99_us),
                ratio(p.cpu_us_per_conn, k.cpu_us_per_conn),
                ratio(p.own_cpu_us_per_conn, k.own_cpu_us_per_conn),
            );
            i += 2;
        } else {
            i += 1;
        }
    }
    if let Some(fps) = r.reflector_frames_per_sec {
        s += &format!("link limit: bare AF_XDP reflector {fps:.0} frames/s (rx+tx at the reflector)\n");
        for p in r.phases.iter().filter(|p| p.stack == StackKind::Synack) {
            s += &format!(
                "  synack responder, {}: {:.0} frames/s = {:.1}% of the reflector\n",
                p.case,
                p.responder_frames_per_sec,
                100.0 * p.responder_frames_per_sec / fps
            );
        }
    }
    if !r.open_loop.is_empty() {
        s += &open_loop_table(&r.open_loop);
    }
    for k in &r.kernel_settings {
        s += &format!("kernel baseline: {k}\n");
    }
    s
}

/// The open-loop runs: offered and completed rates, and every sign of loss.
fn open_loop_table(runs: &[OpenPhase]) -> String {
    let mut s = format!(
        "open loop, synack -> synack (a fixed schedule, like dperf):\n{:>10} {:>10} {:>8} {:>9} {:>9} {:>6} {:>7} {:>9} {:>9} {:>10}\n",
        "offered/s", "done/s", "done %", "conn p50", "conn p99", "retx", "failed", "tw skip", "rx drops", "tw room"
    );
    for o in runs {
        let p = &o.phase;
        let dev = |r: &Report, k: &str| r.device.get(k).copied().unwrap_or(0);
        let kernel_drops = |r: &Report| {
            dev(r, "kernel_rx_ring_full") + dev(r, "kernel_rx_fill_ring_empty") + dev(r, "kernel_rx_dropped")
        };
        let tw_skipped = |r: &Report| {
            r.counters.get("time_wait_overflow").copied().unwrap_or(0)
                + r.counters.get("time_wait_skipped").copied().unwrap_or(0)
        };
        s += &format!(
            "{:>10.0} {:>10.0} {:>7.1}% {:>9.1} {:>9.1} {:>6} {:>7} {:>9} {:>9} {:>10}\n",
            o.offered,
            p.loadgen.rate,
            100.0 * p.loadgen.rate / o.offered,
            p.loadgen.connect.p50_us,
            p.loadgen.connect.p99_us,
            p.loadgen.retransmits + p.responder.retransmits,
            p.loadgen.failed,
            tw_skipped(&p.responder),
            kernel_drops(&p.loadgen) + kernel_drops(&p.responder),
            o.time_wait_room,
        );
    }
    s += "  retx: both sides' retransmissions; rx drops: frames the kernel dropped before either AF_XDP socket \
          (RX ring full, fill ring empty); tw skip: TIME-WAIT records not kept (must be 0)\n";
    s
}

// ----- the link's limit: a bare AF_XDP reflector -------------------------------------------------------------

/// Measures a bare AF_XDP reflector on the synack-side veth end, fed by an AF_XDP generator on the kernel side:
/// returns the reflector's frames/s (received + sent).
fn reflect(pair: &NetnsPair, cfg: &BenchConfig, duration: Duration) -> Result<f64, RunError> {
    let base = pair.kernel_addr().octets();
    let gen_addr = Ipv4Addr::new(base[0], base[1], base[2], 99);
    let refl_addr = Ipv4Addr::new(base[0], base[1], base[2], 98);
    let (gen_mac, refl_mac) = (pair.mac(Side::Kernel), pair.mac(Side::Synack));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let device_config = |interface: &str, addr: Ipv4Addr| AfXdpConfig {
        xdp_mode: cfg.xdp_mode.to_driver(),
        addresses: vec![addr],
        ..AfXdpConfig::new(interface)
    };
    let refl_cfg = device_config(pair.interface(Side::Synack), refl_addr);
    let gen_cfg = device_config(pair.interface(Side::Kernel), gen_addr);
    let pin = |core: usize| {
        if let Some(id) = core_affinity::get_core_ids().unwrap_or_default().get(core) {
            core_affinity::set_for_current(*id);
        }
    };
    let (rcore, gcore) = (cfg.responder_core, cfg.loadgen_core);
    std::thread::scope(|s| {
        let reflector = {
            let stop = stop.clone();
            s.spawn(move || {
                run_in_netns(pair.netns(Side::Synack), move || -> Result<u64, RunError> {
                    pin(rcore);
                    let mut dev = AfXdpDevice::open(&refl_cfg).map_err(|e| RunError(format!("AF_XDP: {e}")))?;
                    let _ = ready_tx.send(());
                    let started = Instant::now();
                    let mut frames = 0u64;
                    while !stop.load(Ordering::Acquire) && started.elapsed() < duration + Duration::from_secs(5) {
                        let n = dev
                            .receive(64, |frame, tx| {
                                let ok = frame.len() >= 34
                                    && tx
                                        .transmit(frame.len(), |out| {
                                            out.copy_from_slice(frame);
                                            out.copy_within(6..12, 0);
                                            out[6..12].copy_from_slice(&frame[0..6]);
                                            out[26..30].copy_from_slice(&frame[30..34]);
                                            out[30..34].copy_from_slice(&frame[26..30]);
                                        })
                                        .is_ok();
                                let _ = ok;
                            })
                            .map_err(|e| RunError(e.to_string()))?;
                        dev.flush().map_err(|e| RunError(e.to_string()))?;
                        frames += n as u64;
                    }
                    let st = dev.stats();
                    Ok(st.rx_frames + st.tx_frames.min(frames))
                })
                .map_err(|e| RunError(e.to_string()))?
            })
        };
        let ready = ready_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        let generated = if ready {
            run_in_netns(pair.netns(Side::Kernel), move || -> Result<(), RunError> {
                pin(gcore);
                let mut dev = AfXdpDevice::open(&gen_cfg).map_err(|e| RunError(format!("AF_XDP: {e}")))?;
                let frame = udp_frame(gen_mac, refl_mac, gen_addr, refl_addr);
                let started = Instant::now();
                let (mut sent, mut echoed) = (0u64, 0u64);
                while started.elapsed() < duration {
                    // Keep at most 1024 frames in flight so the reflector is never flooded into drops.
                    {
                        let mut tx = dev.transmitter();
                        let mut k = 0;
                        while k < 64 && sent - echoed < 1024 {
                            if tx.transmit(frame.len(), |b| b.copy_from_slice(&frame)).is_err() {
                                break;
                            }
                            sent += 1;
                            k += 1;
                        }
                    }
                    dev.flush().map_err(|e| RunError(e.to_string()))?;
                    echoed += dev.receive(64, |_, _| {}).map_err(|e| RunError(e.to_string()))? as u64;
                    if started.elapsed() > Duration::from_millis(200) && echoed == 0 {
                        return Err(RunError("no frame came back from the reflector".into()));
                    }
                    // Frames lost somewhere (none expected) must not stall the window forever.
                    if sent - echoed >= 1024 && dev.receive(64, |_, _| {}).unwrap_or(0) == 0 {
                        echoed = sent.saturating_sub(512);
                    }
                }
                Ok(())
            })
            .map_err(|e| RunError(e.to_string()))
            .and_then(|r| r)
        } else {
            Err(RunError("the reflector never became ready".into()))
        };
        let t = Instant::now();
        stop.store(true, Ordering::Release);
        let frames = reflector.join().map_err(|_| RunError("reflector panicked".into()))??;
        generated?;
        let _ = t;
        Ok(frames as f64 / duration.as_secs_f64())
    })
}

/// A 64-byte UDP frame (checksum 0: not checked by anyone on the way).
fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = 46u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    let sum = synack::wire::checksum::data(&f[14..34]);
    f[24..26].copy_from_slice(&(!sum).to_be_bytes());
    f[34..36].copy_from_slice(&9u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// Turns TX checksum offload, TSO and GSO off on `ifname` (in the calling thread's namespace), as the
/// `ethtool -K dev tx off tso off gso off` would. Needed where a kernel socket sends to synack over veth: with
/// the offload on, the kernel's frames reach AF_XDP with partial checksums, which synack rightly drops.
pub fn disable_tx_offloads(ifname: &str) -> std::io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let bytes = ifname.as_bytes();
    if bytes.len() >= 16 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: a datagram socket used only for the ioctls below and closed at the end; `ifr` points at `value`,
    // both live across each call, and the kernel reads/writes only `struct ethtool_value`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut result = Ok(());
        for (cmd, required) in [(0x17u32, true), (0x1f, false), (0x24, false)] {
            let mut value = EthtoolValue { cmd, data: 0 };
            let mut ifr = IfReq {
                name: [0; 16],
                data: (&raw mut value).cast(),
                _pad: [0; 16],
            };
            ifr.name[..bytes.len()].copy_from_slice(bytes);
            if libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) != 0 && required {
                result = Err(std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}

//! End to end: the load generator against the responder for a bounded number of connections, checked through
//! the JSON report: synack both sides over the in-memory link (no root) and over AF_XDP on a veth pair (root),
//! synack's load generator against a kernel server, and kernel clients (the load generator's kernel backend
//! and a plain `TcpStream` loop speaking HTTP) against synack's responder.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use synack_bench::bench::{Phase, run_phase};
use synack_bench::config::{CloseFirst, EngineSettings, LoadgenConfig, Protocol, ResponderConfig, StackKind};
use synack_bench::report::Report;
use synack_bench::synack_stack::{Control, Link};
use synack_driver::{MemoryLink, MemoryLinkConfig, NetnsConfig, NetnsPair, Side, require_root, run_in_netns};

const CONNECTIONS: u64 = 2000;

fn engine() -> EngineSettings {
    EngineSettings {
        max_connections: 1024,
        max_time_wait: 8192,
        buffer_count: 1024,
        frame_count: 4096,
        ring_size: 1024,
        ..EngineSettings::default()
    }
}

fn responder(stack: StackKind, interface: &str, addr: Ipv4Addr, close: CloseFirst) -> ResponderConfig {
    ResponderConfig {
        stack,
        interface: interface.to_owned(),
        addresses: vec![addr],
        ports: vec![8080],
        close,
        live: false,
        engine: engine(),
        ..ResponderConfig::default()
    }
}

fn loadgen(stack: StackKind, interface: &str, source: Ipv4Addr, server: Ipv4Addr, close: CloseFirst) -> LoadgenConfig {
    LoadgenConfig {
        stack,
        interface: interface.to_owned(),
        sources: vec![source],
        targets: vec![SocketAddrV4::new(server, 8080)],
        concurrency: 32,
        close,
        // The count ends the run; the time is only a bound.
        connections: CONNECTIONS,
        duration_secs: 60.0,
        drain_secs: 5.0,
        live: false,
        engine: engine(),
        ..LoadgenConfig::default()
    }
}

fn json(r: &Report) -> Value {
    serde_json::to_value(r).expect("report serializes")
}

/// Every connection completed, none failed, no resets, in both reports (read back from their JSON).
fn assert_all_completed(p: &Phase, responder_counts: bool) {
    let l = json(&p.loadgen);
    assert_eq!(l["started"], CONNECTIONS, "{}", p.loadgen.text());
    assert_eq!(l["completed"], CONNECTIONS, "{}", p.loadgen.text());
    assert_eq!(l["failed"], 0, "{}", p.loadgen.text());
    assert_eq!(l["resets"], 0, "{}", p.loadgen.text());
    assert_eq!(l["requests"], CONNECTIONS, "{}", p.loadgen.text());
    assert_eq!(l["connect"]["count"], CONNECTIONS);
    assert_eq!(l["lifecycle_latency"]["count"], CONNECTIONS);
    let r = json(&p.responder);
    if responder_counts {
        assert_eq!(r["completed"], CONNECTIONS, "{}", p.responder.text());
    }
    assert_eq!(r["failed"], 0, "{}", p.responder.text());
    assert_eq!(r["resets"], 0, "{}", p.responder.text());
}

fn memory_pair(close: CloseFirst) -> Phase {
    let (client, server) = (Ipv4Addr::new(198, 18, 251, 1), Ipv4Addr::new(198, 18, 251, 2));
    let (a, b) = MemoryLink::pair(MemoryLinkConfig::default());
    let links = (
        Link::Memory {
            port: a,
            mac: [2, 0x53, 0, 0, 1, 1],
        },
        Link::Memory {
            port: b,
            mac: [2, 0x53, 0, 0, 1, 2],
        },
    );
    run_phase(
        "memory".into(),
        "memory",
        &responder(StackKind::Synack, "memory", server, close),
        &loadgen(StackKind::Synack, "memory", client, server, close),
        None,
        Some(links),
    )
    .expect("run")
}

#[test]
fn memory_loadgen_vs_responder_client_closes_all_complete() {
    let p = memory_pair(CloseFirst::Client);
    assert_all_completed(&p, true);
    // The client closed first: TIME-WAIT was entered on the load generator's side only.
    assert_eq!(p.loadgen.counters.get("time_wait_entered"), Some(&CONNECTIONS));
    assert_eq!(p.responder.counters.get("time_wait_entered"), None);
}

#[test]
fn memory_loadgen_vs_responder_server_closes_all_complete() {
    let p = memory_pair(CloseFirst::Server);
    assert_all_completed(&p, true);
    assert_eq!(p.responder.counters.get("time_wait_entered"), Some(&CONNECTIONS));
    assert_eq!(p.loadgen.counters.get("time_wait_entered"), None);
}

fn veth() -> Option<NetnsPair> {
    require_root().ok()?;
    Some(NetnsPair::new(NetnsConfig::default()).expect("netns pair"))
}

fn namespaces(pair: &NetnsPair) -> (String, String) {
    (pair.netns(Side::Kernel).to_owned(), pair.netns(Side::Synack).to_owned())
}

fn source(pair: &NetnsPair, last: u8) -> Ipv4Addr {
    let o = pair.kernel_addr().octets();
    Ipv4Addr::new(o[0], o[1], o[2], last)
}

#[test]
fn afxdp_veth_loadgen_vs_responder_both_synack_all_complete() {
    let Some(pair) = veth() else { return };
    let (cns, sns) = namespaces(&pair);
    for close in [CloseFirst::Client, CloseFirst::Server] {
        let r = responder(
            StackKind::Synack,
            pair.interface(Side::Synack),
            pair.synack_addr(),
            close,
        );
        let l = loadgen(
            StackKind::Synack,
            pair.interface(Side::Kernel),
            source(&pair, 100),
            pair.synack_addr(),
            close,
        );
        let p = run_phase("veth".into(), "veth", &r, &l, Some((&cns, &sns)), None).expect("run");
        assert_all_completed(&p, true);
    }
}

#[test]
fn afxdp_veth_synack_loadgen_vs_kernel_server_all_complete() {
    let Some(pair) = veth() else { return };
    let (cns, sns) = namespaces(&pair);
    let server = source(&pair, 3);
    pair.add_kernel_address(Side::Synack, server, 24).expect("address");
    // The kernel server sends from the synack-side veth end, whose offloads the pair leaves on.
    let ifname = pair.interface(Side::Synack).to_owned();
    run_in_netns(&sns, move || synack_bench::bench::disable_tx_offloads(&ifname))
        .expect("namespace")
        .expect("offloads off");
    for close in [CloseFirst::Client, CloseFirst::Server] {
        let r = responder(StackKind::Kernel, "", server, close);
        let l = loadgen(
            StackKind::Synack,
            pair.interface(Side::Kernel),
            source(&pair, 100),
            server,
            close,
        );
        let p = run_phase("kernel server".into(), "veth", &r, &l, Some((&cns, &sns)), None).expect("run");
        // The kernel responder counts a connection when it closes its socket; with the client closing first that
        // is on the client's FIN, so every one is counted too.
        assert_all_completed(&p, true);
    }
}

#[test]
fn afxdp_veth_kernel_loadgen_vs_synack_responder_all_complete() {
    let Some(pair) = veth() else { return };
    let (cns, sns) = namespaces(&pair);
    for close in [CloseFirst::Client, CloseFirst::Server] {
        let r = responder(
            StackKind::Synack,
            pair.interface(Side::Synack),
            pair.synack_addr(),
            close,
        );
        let l = loadgen(StackKind::Kernel, "", pair.kernel_addr(), pair.synack_addr(), close);
        let p = run_phase("kernel client".into(), "veth", &r, &l, Some((&cns, &sns)), None).expect("run");
        assert_all_completed(&p, true);
    }
}

#[test]
fn afxdp_veth_tcpstream_http_client_vs_synack_responder_gets_every_response() {
    let Some(pair) = veth() else { return };
    let (_, sns) = namespaces(&pair);
    let addr = pair.synack_addr();
    let cfg = ResponderConfig {
        protocol: Protocol::Http,
        response_size: 13,
        requests_per_connection: 1,
        ..responder(
            StackKind::Synack,
            pair.interface(Side::Synack),
            addr,
            CloseFirst::Server,
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    const N: u64 = 200;
    let report = std::thread::scope(|s| {
        let server = {
            let stop = stop.clone();
            let cfg = cfg.clone();
            s.spawn(move || {
                run_in_netns(&sns, move || {
                    let control = Control {
                        stop: Some(stop),
                        drain: None,
                        ready: Some(ready_tx),
                    };
                    synack_bench::run_responder(&cfg, None, control)
                })
            })
        };
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("responder ready");
        let bodies = run_in_netns(pair.netns(Side::Kernel), move || {
            let mut ok = 0u64;
            for _ in 0..N {
                let mut s = TcpStream::connect_timeout(&SocketAddrV4::new(addr, 8080).into(), Duration::from_secs(5))
                    .expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: synack\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).expect("read to the server's close");
                let text = String::from_utf8_lossy(&reply);
                if text.starts_with("HTTP/1.1 200 OK\r\n")
                    && text.contains("Content-Length: 13\r\n")
                    && text.ends_with("\r\n\r\nxxxxxxxxxxxxx")
                {
                    ok += 1;
                }
            }
            ok
        })
        .expect("kernel namespace");
        // Let the last final ACKs arrive before stopping.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Release);
        assert_eq!(bodies, N);
        server.join().unwrap().unwrap().expect("responder")
    });
    let r = json(&report);
    assert_eq!(r["started"], N, "{}", report.text());
    assert_eq!(r["completed"], N, "{}", report.text());
    assert_eq!(r["requests"], N);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["resets"], 0);
}

#[test]
fn cli_unknown_key_is_refused_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["loadgen", "--set", "interface=x", "--set", "concurency=8"])
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn cli_example_config_bad_value_is_refused_naming_key() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/loadgen.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["loadgen", "-c", config, "--set", "port_range=[9, 1]"])
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`port_range`"), "{err}");
}

/// Graceful stop (the programs' first SIGTERM): a responder run until killed (`duration_secs = 0`) serves kernel
/// clients, then on SIGTERM stops taking connections, prints its report and writes its JSON, and exits 0; run the
/// way a user runs it, as a background process in the server's namespace.
#[test]
fn afxdp_veth_responder_sigterm_prints_report_and_writes_json() {
    let Some(pair) = veth() else { return };
    let (_, sns) = namespaces(&pair);
    let addr = pair.synack_addr();
    let json_path = std::env::temp_dir().join(format!("synack-sigterm-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json_path);
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &sns, env!("CARGO_BIN_EXE_synack"), "responder"])
        .args(["--interface", pair.interface(Side::Synack), "--duration", "0"])
        .args(["--set", &format!("addresses=[\"{addr}\"]"), "--set", "ports=[8080]"])
        .args(["--set", "live=false", "--set", "xdp_mode=\"native\""])
        .args([
            "--set",
            "engine.max_time_wait=8192",
            "--set",
            "engine.buffer_count=1024",
        ])
        .arg("--json")
        .arg(&json_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the responder");
    const N: u64 = 20;
    // The responder is ready once it answers; give it up to 10 s to attach.
    let served = run_in_netns(pair.netns(Side::Kernel), move || {
        let target = SocketAddrV4::new(addr, 8080).into();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut served = 0u64;
        while served < N && std::time::Instant::now() < deadline {
            let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut reply = [0u8; 64];
            if s.write_all(&[b'x'; 64]).is_ok() && s.read_exact(&mut reply).is_ok() {
                served += 1;
            }
        }
        served
    })
    .expect("kernel namespace");
    std::thread::sleep(Duration::from_millis(300));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill with a valid signal on the PID of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the responder did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(served, N, "{stderr}");
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("stopping: no new connections"), "{stderr}");
    assert!(stderr.contains("responder"), "no report: {stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON written")).expect("JSON parses");
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(report["completed"], N, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
}

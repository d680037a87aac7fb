//! The flood generator and the flood benchmark: configuration checks (above all the rule that every address lies
//! in 198.18.0.0/15), the frames, the per-second series, and, as root, floods over AF_XDP on a veth pair at a
//! synack responder, which must see the flood's SYNs, and which must stop by themselves within their bounds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synack::wire::ChecksumPolicy;
use synack::wire::ipv4::{self, Ipv4Repr};
use synack::wire::tcp::{self, TcpFlags, TcpRepr};
use synack::wire::tcp_writer::L2_L3_LEN;
use synack_bench::config::{self, EngineSettings, ResponderConfig, StackKind, XdpModeConfig};
use synack_bench::flood::{
    FloodConfig, FloodError, FloodKind, FrameBuilder, Generator, Mac, SourceOrder, StopCause, SynOption, run_flood,
};
use synack_bench::flood_bench::{self, FloodBenchConfig};
use synack_bench::report::{PerSecond, Report};
use synack_bench::synack_stack::Control;
use synack_driver::{NetnsConfig, NetnsPair, Side, require_root, run_in_netns};

const MAC: &str = "02:53:00:00:00:02";

/// `synack flood`'s configuration from these overrides on top of a valid base.
fn flood_config(overrides: &[&str]) -> Result<FloodConfig, config::ConfigError> {
    let mut all = vec!["interface=veth9".to_owned(), format!("target_mac={MAC:?}")];
    all.extend(overrides.iter().map(|o| (*o).to_owned()));
    config::load::<FloodConfig>(None, &all)
}

fn refused(overrides: &[&str]) -> String {
    match flood_config(overrides) {
        Ok(c) => panic!("accepted {overrides:?}: {c:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn flood_config_valid_base_is_accepted() {
    let c = flood_config(&[]).unwrap();
    assert_eq!(c.sources.to_string(), "198.19.0.0/16");
    assert_eq!(c.target, "198.18.0.2:8080".parse().unwrap());
}

#[test]
fn flood_config_sources_outside_the_benchmark_range_are_refused_naming_it() {
    for sources in ["10.0.0.0/8", "198.20.0.0/16", "192.0.2.0/24", "198.17.255.255"] {
        let e = refused(&[&format!("sources={sources:?}")]);
        assert!(
            e.contains("`sources`") && e.contains("198.18.0.0/15") && e.contains("outside"),
            "{e}"
        );
    }
}

#[test]
fn flood_config_sources_partly_outside_the_benchmark_range_are_refused() {
    // 198.16.0.0/14 holds all of 198.18.0.0/15 and 198.16-17.x.x besides; 0.0.0.0/0 holds everything.
    for sources in ["198.16.0.0/14", "198.0.0.0/8", "0.0.0.0/0"] {
        let e = refused(&[&format!("sources={sources:?}")]);
        assert!(
            e.contains("`sources`") && e.contains("reaches outside 198.18.0.0/15"),
            "{e}"
        );
    }
}

#[test]
fn flood_config_target_outside_the_benchmark_range_is_refused_naming_it() {
    for target in ["10.0.0.1:80", "198.20.0.1:80", "127.0.0.1:8080"] {
        let e = refused(&[&format!("target={target:?}")]);
        assert!(e.contains("`target`") && e.contains("198.18.0.0/15"), "{e}");
    }
}

#[test]
fn flood_config_target_among_the_sources_is_refused() {
    let e = refused(&["sources=\"198.18.0.0/24\"", "target=\"198.18.0.2:80\""]);
    assert!(e.contains("contains the target"), "{e}");
}

#[test]
fn flood_config_without_both_bounds_is_refused() {
    assert!(refused(&["duration_secs=0"]).contains("`duration_secs`"));
    assert!(refused(&["duration_secs=-1"]).contains("`duration_secs`"));
    assert!(refused(&["max_frames=0"]).contains("`max_frames`"));
}

#[test]
fn flood_config_without_a_unicast_target_mac_is_refused() {
    let e = config::load::<FloodConfig>(None, &["interface=veth9".into()]).unwrap_err();
    assert!(e.0.contains("`target_mac`"), "{e}");
    assert!(refused(&["target_mac=\"ff:ff:ff:ff:ff:ff\""]).contains("unicast"));
    assert!(refused(&["target_mac=\"02:53:00\""]).contains("MAC address"));
}

#[test]
fn flood_config_other_bad_values_are_refused_naming_the_key() {
    for (o, key) in [
        ("rate=-5", "`rate`"),
        ("batch=0", "`batch`"),
        ("source_ports=[9, 1]", "`source_ports`"),
        ("window_scale=15", "`window_scale`"),
        ("ring_size=100", "`ring_size`"),
        ("interface=\"\"", "`interface`"),
    ] {
        let e = refused(&[o]);
        assert!(e.contains(key), "{o}: {e}");
    }
    let e = refused(&["kind=\"fin\""]);
    assert!(e.contains("fin"), "{e}");
}

#[test]
fn flood_config_shipped_examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let f = config::load::<FloodConfig>(Some(&dir.join("flood.toml")), &[]).unwrap();
    assert_eq!(f.kind, FloodKind::Syn);
    let b = config::load::<FloodBenchConfig>(Some(&dir.join("flood-bench.toml")), &[]).unwrap();
    assert_eq!(b.rates, vec![100_000.0, 300_000.0, 0.0]);
    assert_eq!(
        b,
        FloodBenchConfig::default(),
        "the example file and the defaults differ"
    );
    // The default benchmark keeps under ~90 s.
    assert!(b.estimated_secs() <= 90.0, "{}", b.estimated_secs());
}

#[test]
fn flood_bench_config_sources_outside_the_benchmark_range_are_refused() {
    let e = config::load::<FloodBenchConfig>(None, &["sources=\"10.1.0.0/16\"".into()]).unwrap_err();
    assert!(e.0.contains("`sources`") && e.0.contains("198.18.0.0/15"), "{e}");
    let e = config::load::<FloodBenchConfig>(None, &["baseline_secs=1".into()]).unwrap_err();
    assert!(e.0.contains("`baseline_secs`"), "{e}");
}

#[test]
fn generator_open_outside_the_benchmark_range_is_refused_before_any_device() {
    let cfg = FloodConfig {
        interface: "lo".into(),
        target: SocketAddrV4::new(Ipv4Addr::new(10, 9, 8, 7), 80),
        target_mac: Some(MAC.parse().unwrap()),
        ..FloodConfig::default()
    };
    match Generator::open(&cfg) {
        Err(FloodError::Config(e)) => assert!(e.0.contains("`target`"), "{e}"),
        Err(e) => panic!("expected a configuration error, got {e}"),
        Ok(_) => panic!("a flood at 10.9.8.7 was opened"),
    }
}

#[test]
fn cli_flood_outside_the_benchmark_range_is_refused_naming_the_key() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/flood.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["flood", "-c", config, "--set", "sources=198.16.0.0/14"])
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`sources`") && err.contains("198.18.0.0/15"), "{err}");
}

#[test]
fn syn_frame_with_configured_options_parses_back_with_valid_checksums() {
    let cfg = FloodConfig {
        mss: 1400,
        window_scale: 9,
        window: 29200,
        options: vec![SynOption::Mss, SynOption::WindowScale, SynOption::Timestamps],
        sources: "198.19.128.0/17".parse().unwrap(),
        source_ports: [40000, 40099],
        ..flood_config(&[]).unwrap()
    };
    let mut b = FrameBuilder::new(&cfg, [2, 0x53, 0, 0, 0, 1], 77).unwrap();
    for _ in 0..100 {
        let mut frame = vec![0u8; b.frame_len()];
        b.write(&mut frame);
        assert_eq!(&frame[0..6], &MAC.parse::<Mac>().unwrap().0);
        let ip = ipv4::Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum());
        let ip = Ipv4Repr::parse(&ip, ChecksumPolicy::Verify).unwrap();
        assert!(cfg.sources.contains(ip.src_addr));
        let seg = tcp::Packet::new_checked(&frame[L2_L3_LEN..]).unwrap();
        let seg = TcpRepr::parse(&seg, ip.src_addr, ip.dst_addr, ChecksumPolicy::Verify).unwrap();
        assert_eq!(seg.flags, TcpFlags::SYN);
        assert_eq!(
            (seg.mss, seg.window_scale, seg.sack_permitted),
            (Some(1400), Some(9), false)
        );
        assert_eq!(seg.timestamps.map(|t| t.tsecr), Some(0));
        assert_eq!(seg.window, 29200);
        assert!((40000..=40099).contains(&seg.src_port.0));
    }
}

#[test]
fn per_second_series_counts_each_second_and_pads_to_the_run() {
    let mut s = PerSecond::with_capacity(5.0);
    for ms in [10, 500, 999, 1000, 3500] {
        s.record(Duration::from_millis(ms));
    }
    assert_eq!(s.counts(Duration::from_millis(4200)), vec![3, 1, 0, 1, 0]);
    assert_eq!(s.counts(Duration::from_millis(100)), vec![3, 1, 0, 1]);
    assert_eq!(PerSecond::default().counts(Duration::ZERO), vec![0]);
}

#[test]
fn responder_counters_synack_by_name_pattern_kernel_by_list_zeros_included() {
    let mut synack = Report::new("responder", StackKind::Synack);
    synack.counters = BTreeMap::from([("drop_backlog_full".to_owned(), 5), ("tcp_rx_segments".to_owned(), 9)]);
    let c = flood_bench::responder_counters(StackKind::Synack, &synack);
    assert_eq!(c.get("drop_backlog_full"), Some(&5));
    assert_eq!(c.get("drop_table_full"), Some(&0));
    assert_eq!(c.get("challenge_acks_sent"), Some(&0));
    assert!(!c.contains_key("tcp_rx_segments"));
    assert!(
        c.keys()
            .all(|k| flood_bench::SYNACK_COUNTER_PATTERNS.iter().any(|p| k.contains(p)))
    );

    let mut kernel = Report::new("responder", StackKind::Kernel);
    kernel.counters = BTreeMap::from([("SyncookiesSent".to_owned(), 7), ("InSegs".to_owned(), 3)]);
    let c = flood_bench::responder_counters(StackKind::Kernel, &kernel);
    assert_eq!(c.len(), flood_bench::KERNEL_COUNTERS.len());
    assert_eq!((c.get("SyncookiesSent"), c.get("ListenDrops")), (Some(&7), Some(&0)));
}

// ----- as root, over AF_XDP on veth ------------------------------------------------------------------------

fn veth() -> Option<NetnsPair> {
    require_root().ok()?;
    Some(NetnsPair::new(NetnsConfig::default()).expect("netns pair"))
}

fn flood_at(pair: &NetnsPair, rate: f64, duration_secs: f64, max_frames: u64) -> FloodConfig {
    FloodConfig {
        interface: pair.interface(Side::Kernel).to_owned(),
        xdp_mode: XdpModeConfig::Generic,
        kind: FloodKind::Syn,
        source_order: SourceOrder::Random,
        target: SocketAddrV4::new(pair.synack_addr(), 8080),
        target_mac: Some(Mac(pair.mac(Side::Synack))),
        rate,
        duration_secs,
        max_frames,
        seed: 15,
        live: false,
        ..FloodConfig::default()
    }
}

#[test]
fn afxdp_veth_low_rate_syn_flood_reaches_synack_responder_and_stops_at_its_time_bound() {
    let Some(pair) = veth() else { return };
    let responder = ResponderConfig {
        stack: StackKind::Synack,
        interface: pair.interface(Side::Synack).to_owned(),
        addresses: vec![pair.synack_addr()],
        ports: vec![8080],
        live: false,
        // Stopped by the test; the bound only keeps a failing test from leaving it behind.
        duration_secs: 30.0,
        engine: EngineSettings {
            max_connections: 8192,
            ..EngineSettings::default()
        },
        ..ResponderConfig::default()
    };
    let cfg = flood_at(&pair, 5000.0, 1.0, 1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let (flood, wall, responder) = std::thread::scope(|s| {
        let server = s.spawn(|| {
            run_in_netns(pair.netns(Side::Synack), || {
                let control = Control {
                    stop: Some(stop.clone()),
                    drain: None,
                    ready: Some(ready_tx),
                };
                synack_bench::run_responder(&responder, None, control)
            })
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(10));
        let t = Instant::now();
        let flood = ready
            .is_ok()
            .then(|| run_in_netns(pair.netns(Side::Kernel), || run_flood(&cfg, None)));
        let wall = t.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Release);
        let responder = server
            .join()
            .expect("responder thread")
            .expect("namespace")
            .expect("responder");
        let flood = flood.expect("responder ready").expect("namespace").expect("flood");
        (flood, wall, responder)
    });
    // It stopped by itself, at its time bound.
    assert_eq!(flood.stopped_by, StopCause::Duration, "{}", flood.text());
    assert!(wall < Duration::from_secs(3), "{wall:?}");
    assert!((1.0..1.5).contains(&flood.duration_secs), "{}", flood.text());
    // At the configured rate (one batch short at most), every queued frame sent.
    assert!((4900..=5001).contains(&flood.frames_sent), "{}", flood.text());
    assert_eq!(flood.frames_sent, flood.frames_queued, "{}", flood.text());
    // The responder received at least 90% of them as well-formed TCP segments (checksums verified).
    let received = responder.counters.get("tcp_rx_segments").copied().unwrap_or(0);
    assert!(
        received * 10 >= flood.frames_sent * 9,
        "responder got {received} of {} SYNs\n{}{}",
        flood.frames_sent,
        flood.text(),
        responder.text()
    );
    assert_eq!(
        responder.counters.get("drop_tcp_checksum"),
        None,
        "{}",
        responder.text()
    );
    assert!(responder.counters.get("passive_opens").copied().unwrap_or(0) > 0);
}

#[test]
fn afxdp_veth_unpaced_flood_stops_at_its_count_bound() {
    let Some(pair) = veth() else { return };
    let cfg = flood_at(&pair, 0.0, 10.0, 20_000);
    let t = Instant::now();
    let flood = run_in_netns(pair.netns(Side::Kernel), || run_flood(&cfg, None))
        .expect("namespace")
        .expect("flood");
    assert_eq!(flood.stopped_by, StopCause::MaxFrames, "{}", flood.text());
    assert_eq!(flood.frames_queued, 20_000, "{}", flood.text());
    assert_eq!(flood.frames_sent, 20_000, "{}", flood.text());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn afxdp_veth_cli_flood_in_a_namespace_stops_by_itself_and_writes_json() {
    let Some(pair) = veth() else { return };
    let json = std::env::temp_dir().join(format!("synack-flood-test-{}.json", std::process::id()));
    let target = SocketAddrV4::new(pair.synack_addr(), 8080).to_string();
    let mac = Mac(pair.mac(Side::Synack)).to_string();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/flood.toml");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            pair.netns(Side::Kernel),
            env!("CARGO_BIN_EXE_synack"),
            "flood",
            "-c",
            config,
        ])
        .args(["-i", pair.interface(Side::Kernel), "--duration", "0.5", "--json"])
        .arg(&json)
        .args([
            "--set",
            &format!("target={target}"),
            "--set",
            &format!("target_mac={mac}"),
        ])
        .args([
            "--set",
            "rate=4000",
            "--set",
            "max_frames=100000",
            "--set",
            "live=false",
        ])
        .args([
            "--set",
            "xdp_mode=generic",
            "--set",
            "kind=ack",
            "--set",
            "source_order=sequential",
        ])
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let _ = std::fs::remove_file(&json);
    let r: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(r["stopped_by"], "duration", "{text}");
    assert_eq!(r["kind"], "ack");
    let sent = r["frames_sent"].as_u64().unwrap_or(0);
    assert!((1900..=2001).contains(&sent), "{text}");
    assert!(stderr.contains("stopped by its time bound"), "{stderr}");
}

#[test]
fn afxdp_veth_flood_bench_tiny_run_measures_both_stacks() {
    if require_root().is_err() {
        return;
    }
    let cfg = FloodBenchConfig {
        rates: vec![3000.0],
        baseline_secs: 2,
        flood_secs: 1,
        after_secs: 1,
        concurrency: 16,
        ..FloodBenchConfig::default()
    };
    let t = Instant::now();
    let report = flood_bench::run_veth(&cfg).expect("flood bench");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(report.runs.len(), 2);
    for run in &report.runs {
        assert!(run.legit.before > 0.0, "{:?}", run.loadgen.per_second);
        assert!(run.flood.frames_sent > 2500, "{}", run.flood.text());
        assert_eq!(run.flood.stopped_by, StopCause::Duration);
        // The flood ran in its window: from second 2 of the client's clock, for about 1 s.
        let [start, stop] = run.flood_window_secs;
        assert!(
            (1.95..2.2).contains(&start) && (2.9..3.4).contains(&stop),
            "{start} {stop}"
        );
        assert!(run.loadgen.per_second.len() >= 4, "{:?}", run.loadgen.per_second);
    }
    let (synack, kernel) = (&report.runs[0], &report.runs[1]);
    assert_eq!((synack.stack, kernel.stack), (StackKind::Synack, StackKind::Kernel));
    assert!(
        synack.counters.contains_key("drop_backlog_full"),
        "{:?}",
        synack.counters
    );
    assert!(kernel.counters.contains_key("SyncookiesSent"), "{:?}", kernel.counters);
    let table = flood_bench::table::table(&report);
    assert!(
        table.contains("synack") && table.contains("kernel") && table.contains("cores:"),
        "{table}"
    );
    let json = serde_json::to_value(&report).expect("report serializes");
    assert_eq!(json["runs"][0]["configured_rate"], 3000.0);
}

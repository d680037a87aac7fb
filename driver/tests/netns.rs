//! The namespace harness itself: names, cleanup (also after a panic), the sweeper, options. Needs root.

use std::path::Path;

use synack_driver::netns::sweep_stale;
use synack_driver::{NetnsConfig, NetnsPair, Side, require_root, run_in_netns};

fn exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

#[test]
fn netns_pair_drop_after_panic_removes_namespaces() {
    if require_root().is_err() {
        return;
    }
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pair = NetnsPair::new(NetnsConfig::default()).unwrap();
        names.push(pair.netns(Side::Kernel).to_owned());
        names.push(pair.netns(Side::Synack).to_owned());
        assert!(names.iter().all(|n| exists(n)));
        panic!("test panic while the pair is alive");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 2);
    for n in &names {
        assert!(!exists(n), "{n} left behind after a panic");
    }
}

#[test]
fn netns_names_are_short_unique_and_interfaces_live_inside() {
    if require_root().is_err() {
        return;
    }
    let a = NetnsPair::new(NetnsConfig::default()).unwrap();
    let b = NetnsPair::new(NetnsConfig::default()).unwrap();
    assert_ne!(a.netns(Side::Kernel), b.netns(Side::Kernel));
    for side in [Side::Kernel, Side::Synack] {
        assert!(a.interface(side).len() <= 15);
        assert!(a.netns(side).starts_with("snk"));
    }
    let ifname = a.interface(Side::Synack).to_owned();
    let index_of = |name: &str| {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid C string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    let inside = run_in_netns(a.netns(Side::Synack), || index_of(&ifname)).unwrap();
    assert_ne!(inside, 0, "interface not visible inside its namespace");
    assert_eq!(index_of(&ifname), 0, "interface leaked into the test's own namespace");
}

#[test]
fn netns_sweeper_removes_namespace_of_dead_pid() {
    if require_root().is_err() {
        return;
    }
    // A pid with no process: count down from near the top of the pid space.
    let dead = (3_000_000u32..3_100_000)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let name = format!("snk{dead}x0k");
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    sweep_stale();
    let left = exists(&name);
    if left {
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
    }
    assert!(!left, "stale namespace {name} not swept");
}

#[test]
fn netns_mtu_and_queue_options_are_applied() {
    if require_root().is_err() {
        return;
    }
    let pair = NetnsPair::new(NetnsConfig {
        mtu: Some(3000),
        queues: Some(2),
        ..NetnsConfig::default()
    })
    .unwrap();
    for side in [Side::Kernel, Side::Synack] {
        let details = pair.link_details(side).unwrap();
        assert!(details.contains("mtu 3000"), "{details}");
        assert!(details.contains("numrxqueues 2"), "{details}");
    }
    let sysctl = run_in_netns(pair.netns(Side::Synack), || {
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6").unwrap_or_default()
    })
    .unwrap();
    assert_eq!(sysctl.trim(), "1", "IPv6 still on in the namespace");
}

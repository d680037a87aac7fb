//! The test and benchmark harness: two network namespaces joined by a veth pair, set up the way AF_XDP tests
//! need them, and removed again whatever happens.
//!
//! One namespace holds the Linux kernel's side (a real TCP/UDP peer); the other holds the interface synack
//! drives with AF_XDP. Names are `snk<pid>x<n>k` / `snk<pid>x<n>s` (namespaces and interfaces alike; at most 15
//! characters), unique per process and pair, so parallel tests and concurrent runs never collide, and a
//! sweeper can tell stale namespaces from live ones by their pid.
//!
//! The kernel side gets TX checksum offload and TSO/GSO off (else its frames reach AF_XDP with partial
//! checksums), IPv6 is disabled on both ends (no neighbour-discovery noise), and by default synack's address
//! is *not* configured on the synack-side interface, so the kernel there never answers for it (no stray RSTs
//! or port-unreachables when a frame passes).

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::{self, ethtool_cmd};

/// The prefix of every namespace and interface this module creates.
pub const NAME_PREFIX: &str = "snk";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why the harness failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// An `ip` command failed; `stderr` is what it printed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// A syscall or spawn failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The closure run inside a namespace panicked.
    #[error("the thread running inside namespace {0:?} panicked")]
    Panicked(String),
    /// A name would exceed the 15-character interface name limit.
    #[error("name {0:?} is longer than 15 characters")]
    NameTooLong(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> NetnsError {
    move |source| NetnsError::Io { what, source }
}

/// Runs `ip args...` and fails with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let out = Command::new("ip").args(args).output().map_err(io_err("spawning ip"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command {
            command: format!("ip {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `f` on a fresh thread that has entered network namespace `name` (as `ip netns` names it) and returns
/// its result. Sockets (kernel or AF_XDP) opened inside stay in that namespace wherever they are used later.
pub fn run_in_netns<R, F>(name: &str, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file = std::fs::File::open(format!("/run/netns/{name}")).map_err(io_err("opening /run/netns/<name>"))?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            // SAFETY: setns on a namespace fd we hold open; it affects only this (fresh) thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(NetnsError::Io {
                    what: "setns(CLONE_NEWNET)",
                    source: io::Error::last_os_error(),
                });
            }
            drop(file);
            Ok(f())
        });
        handle.join().map_err(|_| NetnsError::Panicked(name.to_owned()))?
    })
}

/// Which end of a [`NetnsPair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The Linux kernel's end: its sockets are the real peer.
    Kernel,
    /// synack's end: the interface the AF_XDP device opens.
    Synack,
}

/// How to build a [`NetnsPair`]. `None` fields get per-pair defaults.
#[derive(Clone, Debug, Default)]
pub struct NetnsConfig {
    /// Kernel side address and prefix length; default `198.18.<n>.1/24`.
    pub kernel_addr: Option<(Ipv4Addr, u8)>,
    /// synack's address (not configured on the interface unless `assign_synack_addr`); default `198.18.<n>.2`.
    pub synack_addr: Option<Ipv4Addr>,
    /// Also configure synack's address on the synack-side interface (normally wrong: the kernel would answer).
    pub assign_synack_addr: bool,
    /// MTU for both ends (native XDP on veth caps it at 3506).
    pub mtu: Option<u32>,
    /// Receive/transmit queues per veth end (multi-queue spreads traffic only in native XDP mode).
    pub queues: Option<u32>,
}

/// Offload settings read back from an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    /// TX checksum offload (must be off on the kernel side, else its frames carry partial checksums).
    pub tx_checksum: bool,
    /// Generic segmentation offload (off on the kernel side, so every frame is one MTU-sized segment).
    pub gso: bool,
}

/// Two network namespaces joined by a veth pair; everything is removed on drop, even during a panic.
#[derive(Debug)]
pub struct NetnsPair {
    kernel_ns: String,
    synack_ns: String,
    kernel_if: String,
    synack_if: String,
    kernel_addr: Ipv4Addr,
    prefix_len: u8,
    synack_addr: Ipv4Addr,
    kernel_mac: [u8; 6],
    synack_mac: [u8; 6],
}

/// Alias: the same guard under the name of what it builds.
pub type VethPair = NetnsPair;

impl NetnsPair {
    /// Creates the namespaces and the veth pair, configures them as described in the module docs, and brings
    /// them up. Sweeps stale namespaces of dead runs first.
    pub fn new(config: NetnsConfig) -> Result<NetnsPair, NetnsError> {
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NAME_PREFIX}{}x{n}", std::process::id());
        let (kernel_ns, synack_ns) = (format!("{base}k"), format!("{base}s"));
        if kernel_ns.len() > 15 {
            return Err(NetnsError::NameTooLong(kernel_ns));
        }
        let octet = (n % 256) as u8;
        let (kernel_addr, prefix_len) = config.kernel_addr.unwrap_or((Ipv4Addr::new(198, 18, octet, 1), 24));
        let synack_addr = config.synack_addr.unwrap_or(Ipv4Addr::new(198, 18, octet, 2));
        let nb = n.to_be_bytes();
        let pair = NetnsPair {
            kernel_if: kernel_ns.clone(),
            synack_if: synack_ns.clone(),
            kernel_ns,
            synack_ns,
            kernel_addr,
            prefix_len,
            synack_addr,
            kernel_mac: [0x02, 0x53, nb[2], nb[3], (std::process::id() & 0xff) as u8, 0x01],
            synack_mac: [0x02, 0x53, nb[2], nb[3], (std::process::id() & 0xff) as u8, 0x02],
        };
        // From here on, Drop cleans up whatever part was made.
        pair.build(&config)?;
        Ok(pair)
    }

    fn build(&self, config: &NetnsConfig) -> Result<(), NetnsError> {
        ip(&["netns", "add", &self.kernel_ns])?;
        ip(&["netns", "add", &self.synack_ns])?;
        let (kmac, smac) = (fmt_mac(&self.kernel_mac), fmt_mac(&self.synack_mac));
        let q = config.queues.map(|q| q.to_string());
        let mut args: Vec<&str> = vec![
            "link",
            "add",
            &self.kernel_if,
            "address",
            &kmac,
            "netns",
            &self.kernel_ns,
        ];
        if let Some(q) = &q {
            args.extend(["numtxqueues", q, "numrxqueues", q]);
        }
        args.extend([
            "type",
            "veth",
            "peer",
            "name",
            &self.synack_if,
            "address",
            &smac,
            "netns",
            &self.synack_ns,
        ]);
        if let Some(q) = &q {
            args.extend(["numtxqueues", q, "numrxqueues", q]);
        }
        ip(&args)?;

        let (kif, sif) = (self.kernel_if.clone(), self.synack_if.clone());
        let queues = config.queues;
        run_in_netns(&self.kernel_ns, move || -> Result<(), NetnsError> {
            disable_ipv6(&kif)?;
            // TX checksum off first; TSO/GSO follow (the kernel also drops TSO with checksumming).
            sys::ethtool_set(&kif, ethtool_cmd::STXCSUM, 0).map_err(io_err("ETHTOOL_STXCSUM"))?;
            let _ = sys::ethtool_set(&kif, ethtool_cmd::STSO, 0);
            sys::ethtool_set(&kif, ethtool_cmd::SGSO, 0).map_err(io_err("ETHTOOL_SGSO"))?;
            if let Some(q) = queues {
                sys::ethtool_set_channels(&kif, q, q).map_err(io_err("ETHTOOL_SCHANNELS"))?;
            }
            Ok(())
        })??;
        run_in_netns(&self.synack_ns, move || -> Result<(), NetnsError> {
            disable_ipv6(&sif)?;
            // Frames must reach XDP one by one, not merged.
            let _ = sys::ethtool_set(&sif, ethtool_cmd::SGRO, 0);
            if let Some(q) = queues {
                sys::ethtool_set_channels(&sif, q, q).map_err(io_err("ETHTOOL_SCHANNELS"))?;
            }
            Ok(())
        })??;

        for (ns, ifname) in [(&self.kernel_ns, &self.kernel_if), (&self.synack_ns, &self.synack_if)] {
            if let Some(mtu) = config.mtu {
                ip(&["-n", ns, "link", "set", "dev", ifname, "mtu", &mtu.to_string()])?;
            }
        }
        let kaddr = format!("{}/{}", self.kernel_addr, self.prefix_len);
        ip(&["-n", &self.kernel_ns, "addr", "add", &kaddr, "dev", &self.kernel_if])?;
        if config.assign_synack_addr {
            let saddr = format!("{}/{}", self.synack_addr, self.prefix_len);
            ip(&["-n", &self.synack_ns, "addr", "add", &saddr, "dev", &self.synack_if])?;
        }
        for (ns, ifname) in [(&self.kernel_ns, &self.kernel_if), (&self.synack_ns, &self.synack_if)] {
            ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", "dev", ifname, "up"])?;
        }
        Ok(())
    }

    /// The namespace of one side, for [`run_in_netns`].
    pub fn netns(&self, side: Side) -> &str {
        match side {
            Side::Kernel => &self.kernel_ns,
            Side::Synack => &self.synack_ns,
        }
    }

    /// The veth interface of one side (inside that side's namespace).
    pub fn interface(&self, side: Side) -> &str {
        match side {
            Side::Kernel => &self.kernel_if,
            Side::Synack => &self.synack_if,
        }
    }

    /// The MAC address of one side's interface.
    pub fn mac(&self, side: Side) -> [u8; 6] {
        match side {
            Side::Kernel => self.kernel_mac,
            Side::Synack => self.synack_mac,
        }
    }

    /// The kernel side's IPv4 address.
    pub fn kernel_addr(&self) -> Ipv4Addr {
        self.kernel_addr
    }

    /// synack's IPv4 address (for the AF_XDP device's address map).
    pub fn synack_addr(&self) -> Ipv4Addr {
        self.synack_addr
    }

    /// The prefix length of the link's subnet.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Adds an address to one side's interface, owned by that side's kernel (e.g. a synack-side address the
    /// kernel answers for, to show frames not for synack still reach the kernel).
    pub fn add_kernel_address(&self, side: Side, addr: Ipv4Addr, prefix_len: u8) -> Result<(), NetnsError> {
        let a = format!("{addr}/{prefix_len}");
        ip(&["-n", self.netns(side), "addr", "add", &a, "dev", self.interface(side)])
    }

    /// Reads back one side's TX checksum offload and GSO settings (true = on), to check the setup.
    pub fn offloads(&self, side: Side) -> Result<Offloads, NetnsError> {
        let ifname = self.interface(side).to_owned();
        run_in_netns(self.netns(side), move || -> Result<Offloads, NetnsError> {
            let tx_checksum = sys::ethtool_get(&ifname, ethtool_cmd::GTXCSUM).map_err(io_err("ETHTOOL_GTXCSUM"))?;
            let gso = sys::ethtool_get(&ifname, ethtool_cmd::GGSO).map_err(io_err("ETHTOOL_GGSO"))?;
            Ok(Offloads {
                tx_checksum: tx_checksum != 0,
                gso: gso != 0,
            })
        })?
    }

    /// `ip -d link show` of one side's interface: shows an attached XDP program (`prog/xdp`), if any.
    pub fn link_details(&self, side: Side) -> Result<String, NetnsError> {
        let args = [
            "-n",
            self.netns(side),
            "-d",
            "link",
            "show",
            "dev",
            self.interface(side),
        ];
        let out = Command::new("ip").args(args).output().map_err(io_err("spawning ip"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it the pair.
        for ns in [&self.kernel_ns, &self.synack_ns] {
            if !std::path::Path::new("/run/netns").join(ns).exists() {
                continue;
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                let _ = writeln!(io::stderr(), "synack-driver: could not remove namespace {ns}: {e}");
            }
        }
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Turns IPv6 off for `ifname` (and as default) in the calling thread's namespace.
fn disable_ipv6(ifname: &str) -> Result<(), NetnsError> {
    for key in ["all", "default", ifname] {
        let path = format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6");
        match std::fs::write(&path, b"1") {
            Ok(()) => {}
            // No IPv6 in this kernel at all: nothing to disable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NetnsError::Io {
                    what: "writing disable_ipv6",
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Removes namespaces named `snk<pid>x...` whose process is gone (left behind by a killed run). Best effort:
/// failures are logged, never returned.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Err(e) = ip(&["netns", "del", &name]) {
            let _ = writeln!(
                io::stderr(),
                "synack-driver: could not sweep stale namespace {name}: {e}"
            );
        }
    }
}

/// The pid in a name of ours (`snk<pid>x<n><side>`), or `None` for any other name.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, tail) = rest.split_once('x')?;
    let (n, side) = tail.split_at(tail.len().checked_sub(1)?);
    if !(side == "k" || side == "s") || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Why a privileged test is skipped.
#[derive(Debug, thiserror::Error)]
#[error("skipped: {0}")]
pub struct Skip(pub &'static str);

/// Gate for tests that need root and network namespaces. Returns `Ok` when they can run. Otherwise it panics
/// if the `CI` environment variable is set (CI must fail, never silently skip), and elsewhere prints a loud
/// SKIP line to stderr and returns `Err` so the test can return early.
pub fn require_root() -> Result<(), Skip> {
    let reason = probe_root();
    match reason {
        None => Ok(()),
        Some(why) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but this test cannot run: {why}");
            }
            let _ = writeln!(
                io::stderr(),
                "\n*** SKIP: {why} (needs root, iproute2 and network namespaces) ***\n"
            );
            Err(Skip(why))
        }
    }
}

fn probe_root() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root");
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => return Some("the `ip` command (iproute2) is missing"),
    }
    if std::fs::create_dir_all("/run/netns").is_err() {
        return Some("cannot create /run/netns");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_our_names_only() {
        assert_eq!(owner_pid("snk1234x0k"), Some(1234));
        assert_eq!(owner_pid("snk99x12s"), Some(99));
        assert_eq!(owner_pid("snk99x12"), None);
        assert_eq!(owner_pid("snk99y12k"), None);
        assert_eq!(owner_pid("other1x1k"), None);
        assert_eq!(owner_pid("snkx1k"), None);
    }

    #[test]
    fn fmt_mac_is_colon_hex() {
        assert_eq!(fmt_mac(&[0x02, 0x53, 0, 1, 0xab, 2]), "02:53:00:01:ab:02");
    }
}

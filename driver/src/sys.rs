//! Interface ioctls shared by the AF_XDP device and the namespace harness: flags, MAC address, and the
//! `SIOCETHTOOL` calls that stand in for the `ethtool` binary (not installed on a fresh machine).
//!
//! Every call acts on the network namespace of the calling thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCETHTOOL`.
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// ethtool commands used here (from `linux/ethtool.h`).
pub(crate) mod ethtool_cmd {
    /// Get TX checksum offload.
    pub const GTXCSUM: u32 = 0x16;
    /// Set TX checksum offload.
    pub const STXCSUM: u32 = 0x17;
    /// Set TCP segmentation offload.
    pub const STSO: u32 = 0x1f;
    /// Get generic segmentation offload.
    pub const GGSO: u32 = 0x23;
    /// Set generic segmentation offload.
    pub const SGSO: u32 = 0x24;
    /// Set generic receive offload.
    pub const SGRO: u32 = 0x2c;
    /// Get channel counts.
    pub const GCHANNELS: u32 = 0x3c;
    /// Set channel counts.
    pub const SCHANNELS: u32 = 0x3d;
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfrU {
    flags: libc::c_short,
    hwaddr: libc::sockaddr,
    data: *mut libc::c_void,
    _pad: [u8; 24],
}

/// `struct ifreq`.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    u: IfrU,
}

impl IfReq {
    fn new(ifname: &str) -> io::Result<IfReq> {
        let bytes = ifname.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (d, &s) in name.iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        Ok(IfReq {
            name,
            u: IfrU { _pad: [0; 24] },
        })
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(req: libc::c_ulong, ifr: &mut IfReq) -> io::Result<()> {
    let sock = control_socket()?;
    // SAFETY: `ifr` is a valid `struct ifreq`; any pointer in it points to live memory of the right type.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, ifr as *mut IfReq) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The interface flags (`IFF_UP`, ...).
pub(crate) fn if_flags(ifname: &str) -> io::Result<libc::c_short> {
    let mut ifr = IfReq::new(ifname)?;
    ioctl(libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: SIOCGIFFLAGS wrote the `flags` member.
    Ok(unsafe { ifr.u.flags })
}

/// The interface's MAC address.
pub(crate) fn if_hwaddr(ifname: &str) -> io::Result<[u8; 6]> {
    let mut ifr = IfReq::new(ifname)?;
    ioctl(libc::SIOCGIFHWADDR, &mut ifr)?;
    // SAFETY: SIOCGIFHWADDR wrote the `hwaddr` member.
    let sa = unsafe { ifr.u.hwaddr };
    let mut mac = [0u8; 6];
    for (m, &b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = b as u8;
    }
    Ok(mac)
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool<T>(ifname: &str, arg: &mut T) -> io::Result<()> {
    let mut ifr = IfReq::new(ifname)?;
    ifr.u.data = arg as *mut T as *mut libc::c_void;
    ioctl(SIOCETHTOOL, &mut ifr)
}

/// Sets a boolean/u32 ethtool setting (`ETHTOOL_S*` taking `struct ethtool_value`).
pub(crate) fn ethtool_set(ifname: &str, cmd: u32, value: u32) -> io::Result<()> {
    ethtool(ifname, &mut EthtoolValue { cmd, data: value })
}

/// Reads a boolean/u32 ethtool setting (`ETHTOOL_G*` taking `struct ethtool_value`).
pub(crate) fn ethtool_get(ifname: &str, cmd: u32) -> io::Result<u32> {
    let mut v = EthtoolValue { cmd, data: 0 };
    ethtool(ifname, &mut v)?;
    Ok(v.data)
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

/// Sets the receive and transmit channel (queue) counts, as `ethtool -L dev rx N tx N`.
pub(crate) fn ethtool_set_channels(ifname: &str, rx: u32, tx: u32) -> io::Result<()> {
    let mut ch = EthtoolChannels {
        cmd: ethtool_cmd::GCHANNELS,
        ..Default::default()
    };
    ethtool(ifname, &mut ch)?;
    ch.cmd = ethtool_cmd::SCHANNELS;
    ch.rx_count = rx;
    ch.tx_count = tx;
    ethtool(ifname, &mut ch)
}

/// Raises RLIMIT_MEMLOCK as far as allowed. Best effort: root with CAP_IPC_LOCK registers a large UMEM anyway.
pub(crate) fn raise_memlock() -> bool {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return true;
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid structs.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) == 0 && cur.rlim_cur < cur.rlim_max {
            cur.rlim_cur = cur.rlim_max;
            return libc::setrlimit(libc::RLIMIT_MEMLOCK, &cur) == 0;
        }
    }
    false
}

//! The AF_XDP device: one XDP socket on one (interface, queue), its UMEM, and the redirect program.
//!
//! Frames stay where the kernel put them. The UMEM is split into two pools that never mix, so no lock and no
//! bookkeeping per frame is needed beyond a stack of free addresses:
//! - receive frames circulate fill ring -> RX ring -> the receive callback (borrowed in place) -> fill ring;
//! - transmit frames circulate free stack -> written in place by a [`TxSink`] -> TX ring -> completion ring
//!   -> free stack.
//!
//! Transmit descriptors are queued locally and handed to the TX ring a batch at a time; the kernel is kicked
//! (`sendto`) only when the ring's need_wakeup flag asks for it, which in copy mode (veth) is every batch.
//! Nothing on the per-frame path allocates, locks or makes a syscall.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use synack::io::{TxRefused, TxSink};
use xdpilone::xdp::XdpDesc;
use xdpilone::{CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::bpf::{AttachedMode, BpfError, RedirectConfig, RedirectProgram, XdpMode};
use crate::device::{Device, DeviceError, DeviceStats};
use crate::sys;

/// How the socket shares frames with the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// The NIC DMAs straight into the UMEM (`XDP_ZEROCOPY`); needs driver support (ice, mlx5, i40e).
    ZeroCopy,
    /// The kernel copies frames between its buffers and the UMEM (`XDP_COPY`); works everywhere (veth).
    Copy,
    /// Zero-copy if the driver takes it, else copy.
    #[default]
    Auto,
}

/// The mode a socket was actually bound in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundMode {
    /// Bound with `XDP_ZEROCOPY`.
    ZeroCopy,
    /// Bound with `XDP_COPY`.
    Copy,
}

/// Everything needed to open an [`AfXdpDevice`].
#[derive(Clone, Debug)]
pub struct AfXdpConfig {
    /// Interface name, in the network namespace of the thread that opens the device.
    pub interface: String,
    /// Receive queue to bind to.
    pub queue_id: u32,
    /// UMEM frame size in bytes: 2048 or 4096 (the kernel's aligned-chunk mode).
    pub frame_size: u32,
    /// UMEM frames in all, shared between the receive and transmit pools.
    pub frame_count: u32,
    /// Fill ring entries (power of two); also the size of the receive pool.
    pub fill_size: u32,
    /// Completion ring entries (power of two).
    pub completion_size: u32,
    /// RX ring entries (power of two).
    pub rx_size: u32,
    /// TX ring entries (power of two).
    pub tx_size: u32,
    /// Transmit frames queued locally before they are handed to the TX ring together.
    pub batch_size: u32,
    /// Where the redirect program runs.
    pub xdp_mode: XdpMode,
    /// Zero-copy or copy.
    pub bind_mode: BindMode,
    /// synack's IPv4 addresses: ARP for them and IPv4 to them is redirected to the socket.
    pub addresses: Vec<Ipv4Addr>,
    /// How often to retry a bind that fails with EBUSY (the queue was released moments ago).
    pub bind_retries: u32,
    /// Wait between bind retries.
    pub bind_retry_interval: Duration,
}

impl AfXdpConfig {
    /// A configuration with the defaults for `interface`, queue 0, and no addresses yet.
    pub fn new(interface: impl Into<String>) -> AfXdpConfig {
        AfXdpConfig {
            interface: interface.into(),
            queue_id: 0,
            frame_size: 4096,
            frame_count: 4096,
            fill_size: 2048,
            completion_size: 2048,
            rx_size: 2048,
            tx_size: 2048,
            batch_size: 64,
            xdp_mode: XdpMode::Auto,
            bind_mode: BindMode::Auto,
            addresses: Vec::new(),
            bind_retries: 50,
            bind_retry_interval: Duration::from_millis(10),
        }
    }
}

/// Why an AF_XDP device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// No interface of that name in this network namespace.
    #[error("interface {0:?} does not exist (in this network namespace)")]
    InterfaceMissing(String),
    /// The interface exists but is administratively down.
    #[error("interface {0:?} is down")]
    InterfaceDown(String),
    /// The configuration cannot work; the message says which field.
    #[error("invalid AF_XDP configuration: {0}")]
    InvalidConfig(&'static str),
    /// The process lacks the needed capabilities.
    #[error("{what} not permitted: run as root or with CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF")]
    PermissionDenied {
        /// What was refused.
        what: &'static str,
    },
    /// Allocating the UMEM failed.
    #[error("mapping {bytes} bytes of UMEM failed: {source}")]
    Umem {
        /// Size asked for.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating or configuring the XDP socket failed.
    #[error("XDP socket setup ({call}) failed: {source}")]
    Socket {
        /// The step that failed.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Binding the socket to the queue failed (after retries, for EBUSY).
    #[error("binding the XDP socket to {interface:?} queue {queue} ({mode:?}) failed with errno {errno}: {source}")]
    Bind {
        /// The interface.
        interface: String,
        /// The queue.
        queue: u32,
        /// The mode last tried.
        mode: BoundMode,
        /// The raw errno, for matching.
        errno: i32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Loading or attaching the XDP program failed (the verifier log is inside).
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

fn errno_io(e: &xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw().abs())
}

fn socket_err(call: &'static str, e: xdpilone::Errno) -> AfXdpError {
    let raw = e.get_raw().abs();
    if raw == libc::EPERM || raw == libc::EACCES {
        AfXdpError::PermissionDenied { what: call }
    } else {
        AfXdpError::Socket {
            call,
            source: errno_io(&e),
        }
    }
}

/// Page-aligned anonymous memory for the UMEM, unmapped on drop.
struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

impl UmemArea {
    fn new(len: usize) -> Result<UmemArea, AfXdpError> {
        // SAFETY: anonymous private mapping; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AfXdpError::Umem {
                bytes: len,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(AfXdpError::Umem {
            bytes: len,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        Ok(UmemArea { ptr, len })
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range; every socket using it is closed by now (field order).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The socket's rings, as bound.
struct Bound {
    umem: Umem,
    user: User,
    rx: RingRx,
    tx: RingTx,
    fq: FillQueue,
    cq: CompletionQueue,
    mode: BoundMode,
    fd: i32,
}

/// The transmit half: everything a [`TxSink`] needs, split from the receive half so both can be used at once.
struct TxHalf {
    ring: RingTx,
    cq: CompletionQueue,
    free: Vec<u64>,
    pending: Vec<XdpDesc>,
    batch: usize,
    area: NonNull<u8>,
    area_len: usize,
    frame_size: usize,
    stats: DeviceStats,
}

impl TxHalf {
    /// Moves completed transmit frames back to the free stack.
    fn reap(&mut self) {
        let mask = !(self.frame_size as u64 - 1);
        // xdpilone refreshes its cached view of a ring only when the cache is exhausted, so a second pass
        // picks up what the kernel produced since the cache was last filled.
        for _ in 0..2 {
            let mut reader = self.cq.complete(self.free.capacity() as u32);
            let mut n = 0u64;
            while let Some(addr) = reader.read() {
                self.free.push(addr & mask);
                n += 1;
            }
            reader.release();
            drop(reader);
            self.stats.tx_completed += n;
            if n == 0 {
                break;
            }
        }
    }

    /// Hands the locally queued descriptors to the TX ring (as many as fit).
    fn submit(&mut self) {
        // Two passes for the same reason as in `reap`: the first may see a stale, smaller free count.
        for _ in 0..2 {
            if self.pending.is_empty() {
                return;
            }
            let mut writer = self.ring.transmit(self.pending.len() as u32);
            let n = writer.insert(self.pending.iter().copied()) as usize;
            writer.commit();
            drop(writer);
            self.pending.drain(..n);
        }
        if !self.pending.is_empty() {
            self.stats.tx_ring_full += 1;
        }
    }

    /// Kicks the kernel if the TX ring holds work and the kernel asked to be woken.
    fn kick(&mut self) {
        if self.ring.pending() > 0 && self.ring.needs_wakeup() {
            self.ring.wake();
            self.stats.tx_kicks += 1;
        }
    }
}

/// The receive half.
struct RxHalf {
    ring: RingRx,
    fq: FillQueue,
    free: Vec<u64>,
    fill_size: u32,
    stats: DeviceStats,
}

impl RxHalf {
    /// Offers every free receive frame to the kernel.
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        if self.fq.pending() == 0 {
            self.stats.fill_ring_empty += 1;
        }
        // Two passes: the first reservation may rest on a stale view of the kernel's consumer.
        for _ in 0..2 {
            let mut writer = self.fq.fill(self.free.len() as u32);
            let n = writer.insert(self.free.iter().rev().copied()) as usize;
            writer.commit();
            drop(writer);
            let keep = self.free.len() - n;
            self.free.truncate(keep);
            if n == 0 || self.free.is_empty() {
                break;
            }
        }
    }
}

/// The transmit sink of an [`AfXdpDevice`]: builds each frame in place in a UMEM frame.
pub struct AfXdpTx<'a> {
    half: &'a mut TxHalf,
}

impl TxSink for AfXdpTx<'_> {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        let h = &mut *self.half;
        if len > h.frame_size {
            h.stats.tx_oversize += 1;
            h.stats.tx_dropped += 1;
            return Err(TxRefused::TooLong);
        }
        if h.pending.len() >= h.batch {
            h.reap();
            h.submit();
            h.kick();
            if h.pending.len() >= h.batch {
                h.stats.tx_dropped += 1;
                return Err(TxRefused::Full);
            }
        }
        if h.free.is_empty() {
            h.reap();
        }
        let Some(addr) = h.free.pop() else {
            h.stats.tx_ring_full += 1;
            h.stats.tx_dropped += 1;
            return Err(TxRefused::Full);
        };
        let in_bounds = usize::try_from(addr)
            .ok()
            .filter(|&a| a.saturating_add(h.frame_size) <= h.area_len);
        let Some(offset) = in_bounds else {
            h.stats.tx_dropped += 1;
            return Err(TxRefused::Full);
        };
        // SAFETY: `offset..offset + len` lies inside the UMEM (checked above, `len <= frame_size`), and this
        // frame is in the transmit pool and off every ring, so nothing else (kernel included) touches it.
        let frame = unsafe { std::slice::from_raw_parts_mut(h.area.as_ptr().add(offset), len) };
        fill(frame);
        h.pending.push(XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        });
        h.stats.tx_frames += 1;
        Ok(())
    }
}

/// Counters the kernel keeps for the socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelXskStats {
    /// Frames dropped for reasons other than a full RX ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty.
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket on one (interface, queue), with its UMEM and the redirect program. See the module docs.
pub struct AfXdpDevice {
    // Field order is drop order: detach the program, close the socket (all ring handles), then unmap.
    program: Arc<RedirectProgram>,
    rx: RxHalf,
    tx: TxHalf,
    _user: User,
    _umem: Umem,
    _area: UmemArea,
    fd: i32,
    ifindex: u32,
    queue_id: u32,
    mac: [u8; 6],
    bound: BoundMode,
}

// SAFETY: the device exclusively owns its UMEM mapping and ring mappings (raw pointers inside are what make it
// `!Send`); moving the whole device to another thread moves that exclusive ownership with it. Nothing is shared
// with other threads except through the kernel.
unsafe impl Send for AfXdpDevice {}

impl AfXdpDevice {
    /// Opens the device: checks the interface, loads and attaches the redirect program, registers the UMEM,
    /// binds the socket (with fallbacks and EBUSY retries as configured) and fills the fill ring.
    ///
    /// Must run on a thread inside the interface's network namespace (see `netns::run_in_netns`); the device
    /// can then be moved to and used from any thread.
    pub fn open(config: &AfXdpConfig) -> Result<AfXdpDevice, AfXdpError> {
        let ifindex = check_interface(&config.interface)?;
        let queues = RedirectConfig {
            queues: config.queue_id.saturating_add(1).max(64),
            ..RedirectConfig::default()
        };
        let mut program = RedirectProgram::load(queues)?;
        program.attach(ifindex, config.xdp_mode)?;
        Self::open_inner(config, Arc::new(program), ifindex)
    }

    /// Opens a socket on another queue of an interface whose redirect program is already attached (by an
    /// earlier device's [`AfXdpDevice::program`]): an interface takes only one XDP program.
    pub fn open_shared(config: &AfXdpConfig, program: Arc<RedirectProgram>) -> Result<AfXdpDevice, AfXdpError> {
        let ifindex = check_interface(&config.interface)?;
        Self::open_inner(config, program, ifindex)
    }

    fn open_inner(
        config: &AfXdpConfig,
        program: Arc<RedirectProgram>,
        ifindex: u32,
    ) -> Result<AfXdpDevice, AfXdpError> {
        validate(config)?;
        let _ = sys::raise_memlock();
        for &a in &config.addresses {
            program.add_address(a)?;
        }
        let mac = sys::if_hwaddr(&config.interface).map_err(|source| AfXdpError::Socket {
            call: "SIOCGIFHWADDR",
            source,
        })?;
        let bytes = config.frame_size as usize * config.frame_count as usize;
        let area = UmemArea::new(bytes)?;

        let bound = match config.bind_mode {
            BindMode::ZeroCopy => bind(config, &area, BoundMode::ZeroCopy)?,
            BindMode::Copy => bind(config, &area, BoundMode::Copy)?,
            BindMode::Auto => match bind(config, &area, BoundMode::ZeroCopy) {
                Ok(b) => b,
                Err(AfXdpError::PermissionDenied { what }) => return Err(AfXdpError::PermissionDenied { what }),
                Err(_) => bind(config, &area, BoundMode::Copy)?,
            },
        };
        // Best effort: let one sendto drain the whole TX ring in copy mode (kernel >= 6.16; the default is 32).
        let _ = set_tx_budget(bound.fd, config.tx_size.max(32));
        program.set_socket(config.queue_id, bound.fd)?;

        let fs = config.frame_size as u64;
        // Enough receive frames to keep the fill ring full while the RX ring fills too: with only as many as the
        // fill ring holds, a burst that the loop has not read yet empties the fill ring, and the kernel drops
        // (`rx_fill_ring_empty_descs`) with the RX ring half empty. The other half of the UMEM is for transmit.
        let rx_frames = (config.fill_size + config.rx_size).min(config.frame_count / 2) as u64;
        let mut rx_free: Vec<u64> = (0..rx_frames).map(|i| i * fs).collect();
        rx_free.reverse();
        let tx_free: Vec<u64> = (rx_frames..config.frame_count as u64).rev().map(|i| i * fs).collect();
        let Bound {
            umem,
            user,
            rx,
            tx,
            fq,
            cq,
            mode,
            fd,
        } = bound;
        let mut dev = AfXdpDevice {
            program,
            rx: RxHalf {
                ring: rx,
                fq,
                free: rx_free,
                fill_size: config.fill_size,
                stats: DeviceStats::default(),
            },
            tx: TxHalf {
                ring: tx,
                cq,
                free: tx_free,
                pending: Vec::with_capacity(config.batch_size as usize),
                batch: config.batch_size as usize,
                area: area.ptr,
                area_len: area.len,
                frame_size: config.frame_size as usize,
                stats: DeviceStats::default(),
            },
            _user: user,
            _umem: umem,
            _area: area,
            fd,
            ifindex,
            queue_id: config.queue_id,
            mac,
            bound: mode,
        };
        dev.rx.refill();
        dev.rx.stats.fill_ring_empty = 0;
        Ok(dev)
    }

    /// The redirect program, to share with sockets on other queues or to change the address set.
    pub fn program(&self) -> &Arc<RedirectProgram> {
        &self.program
    }

    /// Claims one more address for synack (a load generator's source pool grows at run time).
    pub fn add_address(&self, addr: Ipv4Addr) -> Result<(), BpfError> {
        self.program.add_address(addr)
    }

    /// Gives an address back to the kernel.
    pub fn remove_address(&self, addr: Ipv4Addr) -> Result<bool, BpfError> {
        self.program.remove_address(addr)
    }

    /// The interface's MAC address: the source address of every frame synack sends.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue the socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// How the socket ended up bound.
    pub fn bound_mode(&self) -> BoundMode {
        self.bound
    }

    /// How the program ended up attached (`None` if it was attached elsewhere and shared).
    pub fn xdp_mode(&self) -> Option<AttachedMode> {
        self.program.attached_mode()
    }

    /// The socket's file descriptor, for `poll`.
    pub fn raw_fd(&self) -> i32 {
        self.fd
    }

    /// The kernel's own counters for this socket.
    pub fn kernel_stats(&self) -> Result<KernelXskStats, DeviceError> {
        let s = self._user.statistics_v2().map_err(|e| DeviceError::Syscall {
            call: "getsockopt(XDP_STATISTICS)",
            source: errno_io(&e),
        })?;
        Ok(KernelXskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

/// The bytes of a received descriptor's frame within the UMEM, if the descriptor is sane: inside the area and
/// inside the one frame its address falls in. `receive` counts and skips the others; `peek` skips them too.
fn rx_frame_range(addr: u64, len: u32, area_len: usize, frame_size: u64) -> Option<core::ops::Range<usize>> {
    let base = addr - addr % frame_size;
    let start = usize::try_from(addr).ok()?;
    let end = start.checked_add(len as usize)?;
    (end <= area_len && addr + u64::from(len) <= base + frame_size).then_some(start..end)
}

impl Device for AfXdpDevice {
    type Tx<'a> = AfXdpTx<'a>;

    fn receive<'a, F>(&'a mut self, max: usize, mut f: F) -> Result<usize, DeviceError>
    where
        F: FnMut(&[u8], &mut AfXdpTx<'a>),
    {
        let rx = &mut self.rx;
        let mut tx = AfXdpTx { half: &mut self.tx };
        let (area, area_len, frame_size) = (tx.half.area, tx.half.area_len, tx.half.frame_size as u64);
        let max = u32::try_from(max).unwrap_or(u32::MAX).min(rx.fill_size);
        let mut reader = rx.ring.receive(max);
        let mut n = 0usize;
        while let Some(desc) = reader.read() {
            rx.free.push(desc.addr - desc.addr % frame_size);
            let Some(range) = rx_frame_range(desc.addr, desc.len, area_len, frame_size) else {
                rx.stats.rx_invalid += 1;
                continue;
            };
            // SAFETY: `range` is inside the UMEM and inside one frame that the kernel handed us on the RX ring; it
            // stays ours (not on the fill ring) until the reader is released below, after `f`.
            let frame = unsafe { std::slice::from_raw_parts(area.as_ptr().add(range.start), range.len()) };
            f(frame, &mut tx);
            n += 1;
        }
        reader.release();
        drop(reader);
        rx.stats.rx_frames += n as u64;
        rx.refill();
        if n == 0 && rx.fq.needs_wakeup() {
            rx.fq.wake();
            rx.stats.rx_kicks += 1;
        }
        Ok(n)
    }

    /// Reads the RX ring's descriptors and drops the reader without releasing them: xdpilone then rolls its
    /// cached consumer index back, so `receive` reads the same descriptors again.
    fn peek<F>(&mut self, max: usize, mut f: F)
    where
        F: FnMut(&[u8]),
    {
        let rx = &mut self.rx;
        let (area, area_len, frame_size) = (self.tx.area, self.tx.area_len, self.tx.frame_size as u64);
        let max = u32::try_from(max).unwrap_or(u32::MAX).min(rx.fill_size);
        let mut reader = rx.ring.receive(max);
        while let Some(desc) = reader.read() {
            let Some(range) = rx_frame_range(desc.addr, desc.len, area_len, frame_size) else {
                continue; // `receive` counts it
            };
            // SAFETY: as in `receive`: `range` is inside the UMEM and inside one frame the kernel handed us on the
            // RX ring; not released, it stays ours (off the fill ring) while `f` reads it.
            let frame = unsafe { std::slice::from_raw_parts(area.as_ptr().add(range.start), range.len()) };
            f(frame);
        }
        // No `release()`: dropping the reader returns the descriptors to the ring for `receive`.
        drop(reader);
    }

    fn transmitter(&mut self) -> AfXdpTx<'_> {
        AfXdpTx { half: &mut self.tx }
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        // Reap first: in copy mode the kernel sends a frame only if it can reserve a completion slot for it.
        self.tx.reap();
        self.tx.submit();
        self.tx.kick();
        self.tx.reap();
        self.rx.refill();
        Ok(())
    }

    fn stats(&self) -> DeviceStats {
        let (r, t) = (&self.rx.stats, &self.tx.stats);
        DeviceStats {
            rx_frames: r.rx_frames,
            fill_ring_empty: r.fill_ring_empty,
            rx_kicks: r.rx_kicks,
            rx_invalid: r.rx_invalid,
            ..*t
        }
    }

    fn frame_capacity(&self) -> usize {
        self.tx.frame_size
    }

    fn kernel_stats(&self) -> Option<KernelXskStats> {
        AfXdpDevice::kernel_stats(self).ok()
    }
}

fn validate(c: &AfXdpConfig) -> Result<(), AfXdpError> {
    let pow2 = |v: u32| v.is_power_of_two();
    if c.frame_size != 2048 && c.frame_size != 4096 {
        return Err(AfXdpError::InvalidConfig("frame_size must be 2048 or 4096"));
    }
    if !(pow2(c.fill_size) && pow2(c.completion_size) && pow2(c.rx_size) && pow2(c.tx_size)) {
        return Err(AfXdpError::InvalidConfig("ring sizes must be powers of two"));
    }
    if c.batch_size == 0 || c.batch_size > c.tx_size {
        return Err(AfXdpError::InvalidConfig("batch_size must be in 1..=tx_size"));
    }
    if c.frame_count < 2 * c.batch_size || c.frame_count.checked_mul(c.frame_size).is_none() {
        return Err(AfXdpError::InvalidConfig(
            "frame_count must be at least 2 * batch_size and fit in 4 GiB",
        ));
    }
    Ok(())
}

/// Finds the interface and checks that it is up.
fn check_interface(name: &str) -> Result<u32, AfXdpError> {
    let cname = CString::new(name).map_err(|_| AfXdpError::InvalidConfig("interface name contains NUL"))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(AfXdpError::InterfaceMissing(name.to_owned()));
    }
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(AfXdpError::InterfaceMissing(name.to_owned()));
    }
    match sys::if_flags(name) {
        Ok(flags) if flags & libc::IFF_UP as libc::c_short == 0 => Err(AfXdpError::InterfaceDown(name.to_owned())),
        Ok(_) => Ok(ifindex),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(AfXdpError::InterfaceMissing(name.to_owned())),
        Err(source) => Err(AfXdpError::Socket {
            call: "SIOCGIFFLAGS",
            source,
        }),
    }
}

/// Creates the socket and rings over `area` and binds in `mode`, retrying EBUSY.
fn bind(c: &AfXdpConfig, area: &UmemArea, mode: BoundMode) -> Result<Bound, AfXdpError> {
    let ucfg = UmemConfig {
        fill_size: c.fill_size,
        complete_size: c.completion_size,
        frame_size: c.frame_size,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page aligned (mmap), `frame_size * frame_count` long, and outlives the Umem: the
    // device drops the Umem and every ring before the area (field order).
    let umem = unsafe { Umem::new(ucfg, area.as_slice_ptr()) }.map_err(|e| socket_err("XDP_UMEM_REG", e))?;
    let cname =
        CString::new(c.interface.as_str()).map_err(|_| AfXdpError::InvalidConfig("interface name contains NUL"))?;
    let mut info = IfInfo::invalid();
    info.from_name(&cname)
        .map_err(|_| AfXdpError::InterfaceMissing(c.interface.clone()))?;
    info.set_queue(c.queue_id);
    let sock = Socket::with_shared(&info, &umem).map_err(|e| socket_err("socket(AF_XDP)", e))?;
    let dq = umem.fq_cq(&sock).map_err(|e| socket_err("fill/completion rings", e))?;
    let flag = match mode {
        BoundMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
        BoundMode::Copy => SocketConfig::XDP_BIND_COPY,
    };
    let scfg = SocketConfig {
        rx_size: NonZeroU32::new(c.rx_size),
        tx_size: NonZeroU32::new(c.tx_size),
        bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | flag,
    };
    let user = umem.rx_tx(&sock, &scfg).map_err(|e| socket_err("rx/tx rings", e))?;
    let rx = user.map_rx().map_err(|e| socket_err("mmap rx ring", e))?;
    let tx = user.map_tx().map_err(|e| socket_err("mmap tx ring", e))?;
    let mut attempt = 0;
    loop {
        match umem.bind(&user) {
            Ok(()) => break,
            Err(e) if e.get_raw().abs() == libc::EBUSY && attempt < c.bind_retries => {
                attempt += 1;
                std::thread::sleep(c.bind_retry_interval);
            }
            Err(e) => {
                let errno = e.get_raw().abs();
                if errno == libc::EPERM {
                    return Err(AfXdpError::PermissionDenied { what: "bind(AF_XDP)" });
                }
                return Err(AfXdpError::Bind {
                    interface: c.interface.clone(),
                    queue: c.queue_id,
                    mode,
                    errno,
                    source: io::Error::from_raw_os_error(errno),
                });
            }
        }
    }
    let fd = user.as_raw_fd();
    let (fq, cq) = dq.into_parts();
    Ok(Bound {
        umem,
        user,
        rx,
        tx,
        fq,
        cq,
        mode,
        fd,
    })
}

/// `XDP_MAX_TX_SKB_BUDGET`: frames one copy-mode `sendto` may push (kernel >= 6.16). Ignored where unknown.
fn set_tx_budget(fd: i32, budget: u32) -> bool {
    const SOL_XDP: libc::c_int = 283;
    const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
    // SAFETY: setsockopt with a valid u32 option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&budget as *const u32).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_descriptor_outside_its_frame_or_the_umem_is_refused() {
        // A UMEM of 4 frames of 2048 bytes.
        let (area, frame) = (4 * 2048, 2048);
        assert_eq!(rx_frame_range(2048 + 256, 100, area, frame), Some(2304..2404));
        assert_eq!(rx_frame_range(2048, 2048, area, frame), Some(2048..4096));
        // Runs into the next frame.
        assert_eq!(rx_frame_range(2048 + 2000, 100, area, frame), None);
        // Past the end of the UMEM, and an address that would overflow.
        assert_eq!(rx_frame_range(4 * 2048, 64, area, frame), None);
        assert_eq!(rx_frame_range(u64::MAX - 10, 64, area, frame), None);
    }

    #[test]
    fn afxdp_open_missing_interface_is_typed_error() {
        let err = AfXdpDevice::open(&AfXdpConfig::new("snkmissing0")).err();
        assert!(
            matches!(err, Some(AfXdpError::InterfaceMissing(ref n)) if n == "snkmissing0"),
            "{err:?}"
        );
    }

    #[test]
    fn afxdp_config_bad_frame_size_is_rejected() {
        let c = AfXdpConfig {
            frame_size: 3000,
            ..AfXdpConfig::new("lo")
        };
        assert!(matches!(validate(&c), Err(AfXdpError::InvalidConfig(_))));
        assert!(validate(&AfXdpConfig::new("lo")).is_ok());
    }

    #[test]
    fn afxdp_config_non_power_of_two_ring_is_rejected() {
        let c = AfXdpConfig {
            rx_size: 1000,
            ..AfXdpConfig::new("lo")
        };
        assert!(matches!(validate(&c), Err(AfXdpError::InvalidConfig(_))));
    }

    #[test]
    fn afxdp_device_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<AfXdpDevice>();
    }
}

//! The XDP redirect program, built and attached with the `bpf()` syscall alone (no libbpf, no ELF, no clang).
//!
//! The program steers to the AF_XDP socket only the frames that are synack's: ARP whose target IP, and IPv4
//! whose destination IP, is in a small hash map of synack's addresses. Everything else goes on to the kernel
//! (`XDP_PASS`), so the kernel keeps its own ARP, ICMP and sockets on the same interface. The redirect goes
//! through an XSKMAP indexed by the receive queue with `XDP_PASS` as the fallback, so frames also pass while
//! no socket is bound to their queue.
//!
//! Attachment is a BPF link: the kernel detaches the program when the link's last file descriptor closes,
//! which includes the process exiting or crashing.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf() commands.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on the socket buffer after the driver.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before any socket buffer exists.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The verdict a frame gets when it is not ours.
const XDP_PASS: i32 = 2;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;

/// Where XDP runs for an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): fastest, needs driver support (veth has it).
    Native,
    /// On the socket buffer (`XDP_FLAGS_SKB_MODE`): works on any interface.
    Generic,
    /// Native if the driver takes it, else generic.
    #[default]
    Auto,
}

/// The mode a program was actually attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Attached with `XDP_FLAGS_DRV_MODE`.
    Native,
    /// Attached with `XDP_FLAGS_SKB_MODE`.
    Generic,
}

/// What went wrong while building or attaching the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The process lacks CAP_BPF/CAP_NET_ADMIN (or CAP_SYS_ADMIN).
    #[error("bpf({cmd}) not permitted: run as root or with CAP_BPF and CAP_NET_ADMIN")]
    PermissionDenied {
        /// The bpf() command that was refused.
        cmd: &'static str,
    },
    /// A map could not be created or updated.
    #[error("bpf({cmd}) failed: {source}")]
    Map {
        /// The bpf() command.
        cmd: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The verifier (or the loader) refused the program.
    #[error("BPF_PROG_LOAD failed: {source}; verifier log:\n{log}")]
    Load {
        /// The OS error.
        #[source]
        source: io::Error,
        /// What the verifier said, empty if it said nothing.
        log: String,
    },
    /// The program could not be attached to the interface.
    #[error("attaching XDP to ifindex {ifindex} in {mode:?} mode failed: {source}")]
    Attach {
        /// The interface index.
        ifindex: u32,
        /// The mode last tried.
        mode: AttachedMode,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------------------------------
// A minimal eBPF assembler: just the instructions the program needs, with labels for jumps.

/// `struct bpf_insn`: opcode, dst/src registers (4 bits each), 16-bit offset, 32-bit immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// A jump target, resolved when the program is finished.
#[derive(Clone, Copy, Debug)]
struct Label(usize);

mod op {
    pub const ALU64_MOV_K: u8 = 0xb7;
    pub const ALU64_MOV_X: u8 = 0xbf;
    pub const ALU64_ADD_K: u8 = 0x07;
    pub const LDX_W: u8 = 0x61;
    pub const LDX_H: u8 = 0x69;
    pub const STX_W: u8 = 0x63;
    pub const LD_IMM64: u8 = 0x18;
    pub const JA: u8 = 0x05;
    pub const JEQ_K: u8 = 0x15;
    pub const JNE_K: u8 = 0x55;
    pub const JGT_X: u8 = 0x2d;
    pub const CALL: u8 = 0x85;
    pub const EXIT: u8 = 0x95;
    /// `BPF_PSEUDO_MAP_FD` in the source register of a 64-bit immediate load: the immediate is a map fd.
    pub const PSEUDO_MAP_FD: u8 = 1;
}

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn raw(&mut self, code: u8, dst: Reg, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: (src << 4) | (dst as u8 & 0x0f),
            off,
            imm,
        });
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(self.insns.len());
        }
    }
    fn mov_k(&mut self, dst: Reg, imm: i32) {
        self.raw(op::ALU64_MOV_K, dst, 0, 0, imm);
    }
    fn mov_x(&mut self, dst: Reg, src: Reg) {
        self.raw(op::ALU64_MOV_X, dst, src as u8, 0, 0);
    }
    fn add_k(&mut self, dst: Reg, imm: i32) {
        self.raw(op::ALU64_ADD_K, dst, 0, 0, imm);
    }
    fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) {
        self.raw(op::LDX_W, dst, src as u8, off, 0);
    }
    fn ldx_h(&mut self, dst: Reg, src: Reg, off: i16) {
        self.raw(op::LDX_H, dst, src as u8, off, 0);
    }
    fn stx_w(&mut self, dst: Reg, off: i16, src: Reg) {
        self.raw(op::STX_W, dst, src as u8, off, 0);
    }
    fn ld_map_fd(&mut self, dst: Reg, fd: RawFd) {
        self.raw(op::LD_IMM64, dst, op::PSEUDO_MAP_FD, 0, fd);
        self.insns.push(Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0,
        });
    }
    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, src as u8, 0, imm);
    }
    fn ja(&mut self, to: Label) {
        self.jump(op::JA, Reg::R0, Reg::R0, 0, to);
    }
    fn call(&mut self, helper: i32) {
        self.raw(op::CALL, Reg::R0, 0, 0, helper);
    }
    fn exit(&mut self) {
        self.raw(op::EXIT, Reg::R0, 0, 0, 0);
    }
    /// Resolves every jump; an unbound label or an out-of-range jump is a bug in this file, hence `None`.
    fn finish(mut self) -> Option<Vec<Insn>> {
        for &(at, label) in &self.fixups {
            let target = (*self.labels.get(label.0)?)?;
            let off = i16::try_from(target as isize - at as isize - 1).ok()?;
            self.insns.get_mut(at)?.off = off;
        }
        Some(self.insns)
    }
}

/// The redirect program, for the given map fds. Offsets are into the Ethernet frame.
fn redirect_program(addr_map: RawFd, xsk_map: RawFd) -> Option<Vec<Insn>> {
    use Reg::*;
    const ETHERTYPE_IPV4_LE: i32 = 0x0008; // 0x0800 read as a little-endian u16
    const ETHERTYPE_ARP_LE: i32 = 0x0608; // 0x0806 likewise
    let mut a = Asm::default();
    let (pass, ipv4, lookup) = (a.label(), a.label(), a.label());

    a.mov_x(R6, R1); // r6 = ctx (struct xdp_md *)
    a.ldx_w(R2, R6, 0); // r2 = ctx->data
    a.ldx_w(R3, R6, 4); // r3 = ctx->data_end
    a.mov_x(R4, R2);
    a.add_k(R4, 14 + 20); // Ethernet + the fixed IPv4 header: also covers the ARP fields up to offset 34
    a.jump(op::JGT_X, R4, R3, 0, pass);
    a.ldx_h(R5, R2, 12); // ethertype
    a.jump(op::JEQ_K, R5, R0, ETHERTYPE_IPV4_LE, ipv4);
    a.jump(op::JNE_K, R5, R0, ETHERTYPE_ARP_LE, pass);
    // ARP: the target protocol address sits at 14 + 24 and needs the whole 28-byte ARP body.
    a.mov_x(R4, R2);
    a.add_k(R4, 14 + 28);
    a.jump(op::JGT_X, R4, R3, 0, pass);
    a.ldx_w(R5, R2, 14 + 24);
    a.ja(lookup);
    a.bind(ipv4);
    a.ldx_w(R5, R2, 14 + 16); // IPv4 destination address
    a.bind(lookup);
    a.stx_w(R10, -4, R5); // key on the stack, in network byte order
    a.mov_x(R2, R10);
    a.add_k(R2, -4);
    a.ld_map_fd(R1, addr_map);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump(op::JEQ_K, R0, R0, 0, pass);
    a.ldx_w(R2, R6, 16); // ctx->rx_queue_index
    a.ld_map_fd(R1, xsk_map);
    a.mov_k(R3, XDP_PASS); // fallback when no socket sits at that queue
    a.call(HELPER_REDIRECT_MAP);
    a.exit();
    a.bind(pass);
    a.mov_k(R0, XDP_PASS);
    a.exit();
    a.finish()
}

// ---------------------------------------------------------------------------------------------------------
// The bpf() syscall and its attribute layouts (prefixes of `union bpf_attr`; the kernel zero-extends).

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Calls bpf(cmd, attr); returns the non-negative result or the OS error.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `repr(C)` prefix of `union bpf_attr` of the given size, and
    // every pointer inside it points to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn fd_from(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map_error(cmd: &'static str, source: io::Error) -> BpfError {
    if source.raw_os_error() == Some(libc::EPERM) {
        BpfError::PermissionDenied { cmd }
    } else {
        BpfError::Map { cmd, source }
    }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().take(15).zip(name.bytes()) {
        *o = b;
    }
    out
}

fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> Result<OwnedFd, BpfError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr)
        .and_then(fd_from)
        .map_err(|e| map_error("BPF_MAP_CREATE", e))
}

fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
        .map(drop)
        .map_err(|e| map_error("BPF_MAP_UPDATE_ELEM", e))
}

fn map_delete(map: &OwnedFd, key: &[u8]) -> Result<bool, BpfError> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(map_error("BPF_MAP_DELETE_ELEM", e)),
    }
}

fn prog_load(insns: &[Insn]) -> Result<OwnedFd, BpfError> {
    const LICENSE: &CStr = c"Dual MIT/GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            prog_name: name16("synack_redirect"),
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        sys_bpf(BPF_PROG_LOAD, &mut attr).and_then(fd_from)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(BpfError::PermissionDenied { cmd: "BPF_PROG_LOAD" }),
        Err(_) => {
            // Load again with the verifier log on, to say why.
            let mut buf = vec![0u8; 1 << 16];
            match attempt(Some(&mut buf)) {
                Ok(fd) => Ok(fd),
                Err(source) => {
                    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    let log = String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned();
                    Err(BpfError::Load { source, log })
                }
            }
        }
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32, mode: AttachedMode) -> io::Result<OwnedFd> {
    let flags = match mode {
        AttachedMode::Native => XDP_FLAGS_DRV_MODE,
        AttachedMode::Generic => XDP_FLAGS_SKB_MODE,
    };
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).and_then(fd_from)
}

// ---------------------------------------------------------------------------------------------------------

/// Sizes of the program's maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectConfig {
    /// Slots in the XSKMAP: one per receive queue that may get a socket (queue ids `0..queues`).
    pub queues: u32,
    /// How many of synack's IPv4 addresses the address map can hold (a load generator's pool).
    pub max_addresses: u32,
}

impl Default for RedirectConfig {
    fn default() -> Self {
        RedirectConfig {
            queues: 64,
            max_addresses: 4096,
        }
    }
}

/// The loaded redirect program, its maps and (once attached) its link. Dropping it detaches the program.
pub struct RedirectProgram {
    // Field order is drop order: the link goes first, which detaches the program.
    link: Option<OwnedFd>,
    mode: Option<AttachedMode>,
    ifindex: u32,
    prog: OwnedFd,
    xsk_map: OwnedFd,
    addr_map: OwnedFd,
}

impl RedirectProgram {
    /// Creates the maps and loads the program (not yet attached).
    pub fn load(config: RedirectConfig) -> Result<RedirectProgram, BpfError> {
        let xsk_map = map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, config.queues.max(1), "synack_xsks")?;
        let addr_map = map_create(BPF_MAP_TYPE_HASH, 4, 1, config.max_addresses.max(1), "synack_addrs")?;
        let insns = redirect_program(addr_map.as_raw_fd(), xsk_map.as_raw_fd()).ok_or_else(|| BpfError::Load {
            source: io::Error::from_raw_os_error(libc::EINVAL),
            log: "internal assembler error (unresolved jump)".into(),
        })?;
        let prog = prog_load(&insns)?;
        Ok(RedirectProgram {
            link: None,
            mode: None,
            ifindex: 0,
            prog,
            xsk_map,
            addr_map,
        })
    }

    /// Attaches the program to `ifindex` through a BPF link. `Auto` tries native first, then generic.
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<AttachedMode, BpfError> {
        let tries: &[AttachedMode] = match mode {
            XdpMode::Native => &[AttachedMode::Native],
            XdpMode::Generic => &[AttachedMode::Generic],
            XdpMode::Auto => &[AttachedMode::Native, AttachedMode::Generic],
        };
        let mut last = None;
        for &m in tries {
            match link_create(&self.prog, ifindex, m) {
                Ok(link) => {
                    self.link = Some(link);
                    self.mode = Some(m);
                    self.ifindex = ifindex;
                    return Ok(m);
                }
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(BpfError::PermissionDenied { cmd: "BPF_LINK_CREATE" });
                }
                Err(e) => last = Some((m, e)),
            }
        }
        let (mode, source) = last.unwrap_or((AttachedMode::Generic, io::Error::from_raw_os_error(libc::EINVAL)));
        Err(BpfError::Attach { ifindex, mode, source })
    }

    /// The mode the program is attached in, if it is.
    pub fn attached_mode(&self) -> Option<AttachedMode> {
        self.mode
    }

    /// Puts the AF_XDP socket `fd` at `queue` in the XSKMAP: frames for synack on that queue go to it.
    pub fn set_socket(&self, queue: u32, fd: RawFd) -> Result<(), BpfError> {
        map_update(&self.xsk_map, &queue.to_ne_bytes(), &(fd as u32).to_ne_bytes())
    }

    /// Removes the socket at `queue`; frames for synack on that queue then pass to the kernel.
    pub fn clear_socket(&self, queue: u32) -> Result<(), BpfError> {
        map_delete(&self.xsk_map, &queue.to_ne_bytes()).map(drop)
    }

    /// Claims `addr` for synack: ARP for it and IPv4 to it are redirected from now on.
    pub fn add_address(&self, addr: Ipv4Addr) -> Result<(), BpfError> {
        map_update(&self.addr_map, &addr.octets(), &[1u8])
    }

    /// Gives `addr` back to the kernel. Returns whether it was claimed.
    pub fn remove_address(&self, addr: Ipv4Addr) -> Result<bool, BpfError> {
        map_delete(&self.addr_map, &addr.octets())
    }

    /// The interface index the program is attached to (0 before attaching).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_jump_offsets_are_relative_to_next_insn() {
        let mut a = Asm::default();
        let l = a.label();
        a.ja(l);
        a.mov_k(Reg::R0, 1);
        a.bind(l);
        a.exit();
        let insns = a.finish().unwrap();
        assert_eq!(
            insns[0],
            Insn {
                code: op::JA,
                regs: 0,
                off: 1,
                imm: 0
            }
        );
        assert_eq!(
            insns[1],
            Insn {
                code: op::ALU64_MOV_K,
                regs: 0,
                off: 0,
                imm: 1
            }
        );
    }

    #[test]
    fn assembler_unbound_label_is_refused() {
        let mut a = Asm::default();
        let l = a.label();
        a.ja(l);
        assert!(a.finish().is_none());
    }

    #[test]
    fn assembler_registers_pack_dst_low_src_high() {
        let mut a = Asm::default();
        a.mov_x(Reg::R6, Reg::R1);
        a.ld_map_fd(Reg::R1, 7);
        let insns = a.finish().unwrap();
        assert_eq!(insns[0].regs, 0x16);
        assert_eq!(
            insns[1],
            Insn {
                code: op::LD_IMM64,
                regs: 0x11,
                off: 0,
                imm: 7
            }
        );
        assert_eq!(
            insns[2],
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
    }

    #[test]
    fn prog_load_unchecked_packet_read_fails_with_verifier_log() {
        if crate::netns::require_root().is_err() {
            return;
        }
        let mut a = Asm::default();
        a.ldx_w(Reg::R2, Reg::R1, 0); // ctx->data
        a.ldx_w(Reg::R0, Reg::R2, 0); // read the packet with no bounds check: the verifier must refuse
        a.exit();
        match prog_load(&a.finish().unwrap()) {
            Err(BpfError::Load { log, .. }) => assert!(log.contains("invalid access to packet"), "{log}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("the verifier accepted an unchecked packet read"),
        }
    }

    #[test]
    fn redirect_program_loads_and_address_map_updates() {
        if crate::netns::require_root().is_err() {
            return;
        }
        let p = RedirectProgram::load(RedirectConfig {
            queues: 4,
            max_addresses: 8,
        })
        .unwrap();
        let addr = Ipv4Addr::new(198, 18, 0, 2);
        p.add_address(addr).unwrap();
        assert!(p.remove_address(addr).unwrap());
        assert!(!p.remove_address(addr).unwrap());
        assert_eq!(p.attached_mode(), None);
    }

    #[test]
    fn redirect_program_resolves_and_ends_in_exit() {
        let p = redirect_program(3, 4).unwrap();
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(p.last().map(|i| i.code), Some(op::EXIT));
        assert!(p.len() < 40);
    }
}

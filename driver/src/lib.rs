//! synack-driver: moves frames between the network and the sans-IO `synack` engine.
//!
//! - [`device`]: the [`Device`] trait the poll loop and the engine use: frames lent in place on receive, a
//!   [`synack::io::TxSink`] that writes replies straight into transmit frames, and `flush` once per loop turn.
//! - [`memory`]: an in-memory link of two [`MemoryPort`]s, for in-process benchmarks and tests.
//! - [`afxdp`]: the AF_XDP device ([`AfXdpDevice`]) on `xdpilone` rings, with the redirect program of [`bpf`].
//! - [`bpf`]: the XDP program that sends synack's ARP and IPv4 to the socket and passes everything else,
//!   created with the `bpf()` syscall alone.
//! - [`poll`]: the run-to-completion [`PollLoop`] that drives one engine over one device for an [`App`].
//! - [`netns`]: namespaces and veth pairs for tests and benchmarks against the Linux kernel.

#![warn(missing_docs)]

pub mod afxdp;
pub mod bpf;
pub mod device;
pub mod memory;
pub mod netns;
pub mod poll;
mod sys;

pub use afxdp::{AfXdpConfig, AfXdpDevice, AfXdpError, AfXdpTx, BindMode, BoundMode, KernelXskStats};
pub use bpf::{AttachedMode, BpfError, RedirectProgram, XdpMode};
pub use device::{Device, DeviceError, DeviceStats};
pub use memory::{MemoryLink, MemoryLinkConfig, MemoryPort, MemoryTx};
pub use netns::{NetnsConfig, NetnsError, NetnsPair, Offloads, Side, VethPair, require_root, run_in_netns};
pub use poll::{App, Clock, IdleStrategy, LoopStats, PollConfig, PollLoop, StopReason};

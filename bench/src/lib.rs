//! synack-bench: the programs people run (load generator, responder, the one-command benchmark) and the
//! criterion benches.
//!
//! - [`config`]: TOML configurations with command-line overrides and validation;
//! - [`proto`]: the request/response protocol (fixed sizes or minimal HTTP/1.1) shared by every backend;
//! - [`synack_stack`]: responder and load generator on synack's engine (AF_XDP or the in-memory link);
//! - [`kernel_stack`]: the same on the Linux kernel's sockets, for the baseline;
//! - [`report`]: live lines, final reports (text and JSON), machine CPU time;
//! - [`bench`]: the one-command comparison over a veth pair in two namespaces;
//! - [`flood`]: the SYN (ACK, RST) flood generator over AF_XDP, inside 198.18.0.0/15 only;
//! - [`flood_bench`]: legitimate connection rates of synack and the kernel under a SYN flood, in one command.

pub mod bench;
pub mod config;
pub mod flood;
pub mod flood_bench;
pub mod kernel_stack;
pub mod proto;
pub mod report;
pub mod synack_stack;

use config::{LoadgenConfig, ResponderConfig, StackKind};
use report::Report;
use synack_stack::{Control, Link, RunError};

/// Runs the responder on the stack `cfg.stack` names; synack uses `link`, or AF_XDP on `cfg.interface` when
/// `link` is `None`.
pub fn run_responder(cfg: &ResponderConfig, link: Option<Link>, control: Control) -> Result<Report, RunError> {
    match cfg.stack {
        StackKind::Kernel => kernel_stack::run_responder(cfg, control),
        StackKind::Synack => {
            let link = link.unwrap_or_else(|| Link::AfXdp {
                interface: cfg.interface.clone(),
                mode: cfg.xdp_mode.to_driver(),
            });
            synack_stack::run_responder(cfg, link, control)
        }
    }
}

/// Runs the load generator on the stack `cfg.stack` names (see [`run_responder`] for `link`).
pub fn run_loadgen(cfg: &LoadgenConfig, link: Option<Link>, control: Control) -> Result<Report, RunError> {
    match cfg.stack {
        StackKind::Kernel => kernel_stack::run_loadgen(cfg, control),
        StackKind::Synack => {
            let link = link.unwrap_or_else(|| Link::AfXdp {
                interface: cfg.interface.clone(),
                mode: cfg.xdp_mode.to_driver(),
            });
            synack_stack::run_loadgen(cfg, link, control)
        }
    }
}

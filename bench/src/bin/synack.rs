//! `synack`: the responder, the load generator and the one-command benchmark.
//!
//! ```text
//! synack responder [-c configs/responder.toml] [--set key=value]... [--stack kernel] [--json out.json]
//! synack loadgen   [-c configs/loadgen.toml]   [--set key=value]... [--duration 10] [--json out.json]
//! synack bench     [-c configs/bench.toml]     [--set key=value]...
//! synack bench --flood [-c configs/flood-bench.toml] [--set key=value]...
//! synack flood     [-c configs/flood.toml]     [--set key=value]... [--json out.json]
//! ```
//!
//! Every configuration key can be set with `--set key=value` (`--set engine.msl_secs=0`); the named flags are
//! shortcuts for the common ones.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

use clap::{Args, Parser, Subcommand};
use synack_bench::config::{self, BenchConfig, LoadgenConfig, ResponderConfig};
use synack_bench::flood::FloodConfig;
use synack_bench::flood_bench::FloodBenchConfig;
use synack_bench::synack_stack::Control;

#[derive(Parser)]
#[command(
    name = "synack",
    about = "synack's load generator, responder and connection-rate benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer requests on synack (AF_XDP) or the kernel's sockets.
    Responder(Common),
    /// Open connections at a rate (open loop) or a concurrency (closed loop) and measure them.
    Loadgen(Common),
    /// As root: namespaces + veth, synack vs the kernel on the same cores, side by side; removes everything.
    Bench(BenchArgs),
    /// Send a bounded flood of spoofed TCP SYNs (or ACKs, RSTs) over AF_XDP; addresses in 198.18.0.0/15 only.
    Flood(Common),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Run the SYN-flood benchmark (configs/flood-bench.toml): legitimate connection rates of synack and the
    /// kernel with no flood, under floods, and just after.
    #[arg(long)]
    flood: bool,
}

#[derive(Args)]
struct Common {
    /// TOML configuration file (see configs/).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Override any key: key=value (value in TOML syntax, or a bare string); repeatable.
    #[arg(short, long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Shortcut for --set stack=... (synack or kernel).
    #[arg(long)]
    stack: Option<String>,
    /// Shortcut for --set interface=...
    #[arg(short, long)]
    interface: Option<String>,
    /// Shortcut for --set duration_secs=...
    #[arg(short, long)]
    duration: Option<f64>,
    /// Shortcut for --set json="..." (write the report as JSON there).
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Common {
    fn overrides(&self) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(s) = &self.stack {
            o.push(format!("stack={s}"));
        }
        if let Some(i) = &self.interface {
            o.push(format!("interface={i:?}"));
        }
        if let Some(d) = self.duration {
            o.push(format!("duration_secs={d:?}"));
        }
        if let Some(j) = &self.json {
            o.push(format!("json={:?}", j.display().to_string()));
        }
        o.extend(self.set.iter().cloned());
        o
    }
}

/// The graceful stop of a long-running program: the first SIGINT or SIGTERM sets the returned flag (the program
/// stops starting new connections, drains for a bounded time, prints its report and writes its JSON); a second
/// one exits at once with status 130.
fn graceful_stop() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // The conditional exit is registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .map_err(|e| format!("installing the handler for signal {signal}: {e}"))?;
    }
    Ok(flag)
}

/// `Control` for a program run from the command line: the graceful-stop flag.
fn signalled() -> Result<Control, String> {
    Ok(Control {
        drain: Some(graceful_stop()?),
        ..Control::default()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Responder(c) => config::load::<ResponderConfig>(c.config.as_deref(), &c.overrides())
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                let r = synack_bench::run_responder(&cfg, None, signalled()?).map_err(|e| e.to_string())?;
                eprint!("{}", r.text());
                if let Some(path) = &cfg.json {
                    r.write_json(path)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                }
                Ok(())
            }),
        Command::Loadgen(c) => config::load::<LoadgenConfig>(c.config.as_deref(), &c.overrides())
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                let r = synack_bench::run_loadgen(&cfg, None, signalled()?).map_err(|e| e.to_string())?;
                eprint!("{}", r.text());
                if let Some(path) = &cfg.json {
                    r.write_json(path)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                }
                if r.completed == 0 {
                    return Err("no connection completed".into());
                }
                Ok(())
            }),
        Command::Bench(BenchArgs {
            common: c,
            flood: false,
        }) => config::load::<BenchConfig>(c.config.as_deref(), &c.overrides())
            .map_err(|e| e.to_string())
            .and_then(|cfg| synack_bench::bench::run(&cfg).map_err(|e| e.to_string())),
        Command::Bench(BenchArgs { common: c, flood: true }) => {
            config::load::<FloodBenchConfig>(c.config.as_deref(), &c.overrides())
                .map_err(|e| e.to_string())
                .and_then(|cfg| synack_bench::flood_bench::run(&cfg).map_err(|e| e.to_string()))
        }
        Command::Flood(c) => config::load::<FloodConfig>(c.config.as_deref(), &c.overrides())
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                let stop = graceful_stop()?;
                let r = synack_bench::flood::run_flood(&cfg, Some(&stop)).map_err(|e| e.to_string())?;
                eprint!("{}", r.text());
                if let Some(path) = &cfg.json {
                    r.write_json(path)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                }
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synack: {e}");
            ExitCode::FAILURE
        }
    }
}

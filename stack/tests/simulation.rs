//! Deterministic simulation of two engines over an impaired link (see `synack::sim`).
//!
//! A failing seed prints itself, its configuration and the command that replays it:
//! `SYNACK_SIM_SEED=<seed> cargo test -p synack --test simulation replay -- --nocapture`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Instant as WallClock;

use synack::sim::{self, CloseMode, Report, SEED_ENV, SimConfig};

/// Runs one configuration; on failure (or panic) prints everything needed to replay it, then fails.
fn run_or_fail(config: &SimConfig) -> Report {
    match catch_unwind(AssertUnwindSafe(|| sim::run(config))) {
        Ok(Ok(report)) => report,
        Ok(Err(failure)) => panic!("{failure}"),
        Err(panic) => {
            eprintln!(
                "simulation panicked\n  seed: {}\n  config: {config:?}\n  replay: {SEED_ENV}={} cargo test -p synack \
                 --test simulation replay -- --nocapture",
                config.seed, config.seed
            );
            resume_unwind(panic)
        }
    }
}

/// Runs the `SimConfig::from_seed` configuration of every seed in `seeds` and sums up.
fn run_seeds(seeds: core::ops::Range<u64>) -> (usize, usize) {
    let started = WallClock::now();
    let (mut connections, mut aborted) = (0, 0);
    for seed in seeds.clone() {
        let config = SimConfig::from_seed(seed);
        let t = WallClock::now();
        let report = run_or_fail(&config);
        eprintln!(
            "seed {seed} (loss {:.3}, dup {:.3}, reorder {:.3}, corrupt {:.3}, partition {:.4}) in {:?}: {report}",
            config.loss,
            config.duplicate,
            config.reorder,
            config.corrupt,
            config.partition,
            t.elapsed()
        );
        assert_eq!(report.connections, config.connections, "seed {seed}");
        assert_eq!(report.completed + report.aborted().min(report.connections), report.connections.max(report.completed), "seed {seed}");
        if !config.allow_aborts {
            assert_eq!(report.completed, config.connections, "seed {seed}");
        }
        connections += report.connections;
        aborted += report.aborted();
    }
    eprintln!(
        "seeds {seeds:?}: {connections} connections, {aborted} aborted, in {:?}",
        started.elapsed()
    );
    (connections, aborted)
}

#[test]
fn simulation_seeds_0_to_49_every_invariant_holds() {
    let (connections, _) = run_seeds(0..50);
    assert!(connections >= 50 * 200);
}

#[test]
fn simulation_seeds_50_to_99_every_invariant_holds() {
    let (connections, _) = run_seeds(50..100);
    assert!(connections >= 50 * 200);
}

#[test]
fn simulation_seeds_100_to_149_every_invariant_holds() {
    let (connections, _) = run_seeds(100..150);
    assert!(connections >= 50 * 200);
}

#[test]
fn simulation_seeds_150_to_199_every_invariant_holds() {
    let (connections, _) = run_seeds(150..200);
    assert!(connections >= 50 * 200);
}

/// Replays `SYNACK_SIM_SEED` (seed 0 if unset) twice and checks the two runs are identical to the frame.
#[test]
fn replay() {
    let seed = match std::env::var(SEED_ENV) {
        Ok(value) => value.trim().parse::<u64>().expect("SYNACK_SIM_SEED must be a u64"),
        Err(_) => 0,
    };
    let config = SimConfig {
        trace: std::env::var_os("SYNACK_SIM_TRACE").is_some(),
        ..SimConfig::from_seed(seed)
    };
    eprintln!("replaying seed {seed}: {config:?}");
    let first = run_or_fail(&config);
    eprintln!("{first}");
    eprintln!("client counters: {:?}", first.client);
    eprintln!("server counters: {:?}", first.server);
    let second = run_or_fail(&config);
    assert_eq!(first, second, "seed {seed} did not replay identically");
}

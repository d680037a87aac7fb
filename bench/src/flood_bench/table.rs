//! The flood benchmark's table: per responder, a row without flood, then a row per flood rate with the rate
//! achieved, the legitimate rate during the flood and in the first second after, each also as a share of the
//! same run's rate before the flood, and the responder's counters of interest.

use super::{FloodBenchReport, FloodRun};
use crate::config::StackKind;

/// `1234567.8` as "1,234,568".
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < -0.5 { format!("-{out}") } else { out }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}%")
    } else {
        "-".to_owned()
    }
}

fn stack_name(stack: StackKind) -> &'static str {
    match stack {
        StackKind::Synack => "synack",
        StackKind::Kernel => "kernel",
    }
}

fn counters(run: &FloodRun) -> String {
    let c: Vec<String> = run.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    c.join(" ")
}

const HEADER: [&str; 9] = [
    "stack",
    "flood set/s",
    "sent/s",
    "reached/s",
    "legit before",
    "during",
    "kept",
    "1st s after",
    "kept",
];

fn line(cells: [&str; 9], tail: &str) -> String {
    format!(
        "{:<7} {:>11} {:>9} {:>9} {:>12} {:>9} {:>7} {:>11} {:>7}  {tail}\n",
        cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
    )
}

/// The table, then the notes.
pub fn table(r: &FloodBenchReport) -> String {
    let mut s = String::from("legitimate connections per second under a flood (synack bench --flood)\n");
    s += &line(HEADER, "responder counters over the run");
    let mut stacks: Vec<StackKind> = r.runs.iter().map(|run| run.stack).collect();
    stacks.dedup();
    for stack in stacks {
        let runs: Vec<&FloodRun> = r.runs.iter().filter(|run| run.stack == stack).collect();
        let before = runs.iter().map(|run| run.legit.before).sum::<f64>() / runs.len().max(1) as f64;
        let name = stack_name(stack);
        s += &line(
            [name, "none", "-", "-", &thousands(before), "-", "-", "-", "-"],
            "(mean of the runs' before)",
        );
        for run in runs {
            let set = if run.configured_rate > 0.0 {
                thousands(run.configured_rate)
            } else {
                "max".to_owned()
            };
            s += &line(
                [
                    name,
                    &set,
                    &thousands(run.flood_rate),
                    &thousands(run.flood_reached_rate),
                    &thousands(run.legit.before),
                    &thousands(run.legit.during),
                    &pct(run.retained_during_pct),
                    &thousands(run.legit.after),
                    &pct(run.retained_after_pct),
                ],
                &counters(run),
            );
        }
    }
    s += "sent/s: flood frames the generator's socket sent; reached/s: those the server end took (less veth's drops)\n";
    s += "kept: the legitimate rate as a share of the same run's rate before the flood\n";
    s += &format!("{}\n", r.cores);
    for n in &r.notes {
        s += &format!("{n}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_and_rounds() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(f64::NAN), "-");
    }

    #[test]
    fn pct_nan_is_a_dash() {
        assert_eq!(pct(12.345), "12.3%");
        assert_eq!(pct(f64::NAN), "-");
    }
}

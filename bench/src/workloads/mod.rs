//! The workloads of a run, one module each, every one returning a typed [`Section`] of the report.
//!
//! Adding a workload (a soak, another peer) is a module here that
//! implements [`Workload`] (its `run` returns a `Serialize` struct implementing [`Section`] and
//! `Display`) and one line in [`ALL`]. A workload can read the sections of those that ran before
//! it (`report::find`), and compare itself with any other once all have run (`Section::relate`).

use crate::error::BenchError;
use crate::report::Section;
use crate::run::Ctx;

pub mod peers;
pub mod w10_cluster;
pub mod w11_backlog;
pub mod w1_pipeline;
pub mod w2_legacy;
pub mod w3_floor;
pub mod w4_history;
pub mod w6_durability;
pub mod w7_wake;
pub mod w8_deep;
pub mod w9_soak;

/// One workload.
pub trait Workload: Sync {
    /// The names `--only` selects it by (`w4` and `w5` are one workload).
    fn names(&self) -> &'static [&'static str];
    /// Runs before every other selected workload, whatever its place in [`ALL`].
    fn runs_first(&self) -> bool {
        false
    }
    /// Runs it; `earlier` holds the sections of the workloads that ran before it.
    fn run(&self, cx: &mut Ctx, earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError>;
}

/// Every workload, in the order the report shows them.
pub static ALL: &[&dyn Workload] = &[
    &w1_pipeline::W1,
    &w3_floor::W3,
    &w2_legacy::W2,
    &w6_durability::W6,
    &w7_wake::W7,
    &w4_history::W4,
    &w8_deep::W8,
    &w11_backlog::W11,
    &peers::Peers,
    &w9_soak::W9,
    &w10_cluster::W10,
];

/// The workloads `--only` names (every one if it names none).
pub fn select(only: &[String]) -> Result<Vec<&'static dyn Workload>, BenchError> {
    let known = || ALL.iter().flat_map(|w| w.names().iter().copied());
    if let Some(bad) = only.iter().find(|o| !known().any(|k| k.eq_ignore_ascii_case(o))) {
        let names: Vec<&str> = known().collect();
        return Err(BenchError::Usage(format!("--only: no workload `{bad}` (one of {})", names.join(", "))));
    }
    Ok(ALL
        .iter()
        .copied()
        .filter(|w| {
            only.is_empty() || only.iter().any(|o| w.names().iter().any(|n| n.eq_ignore_ascii_case(o)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::w1_pipeline::W1Report;
    use super::w3_floor::W3Report;
    use super::*;
    use crate::pipeline::PipeReport;
    use crate::report::{Lat, Machine, Params, Report};

    #[test]
    fn only_selects_by_name_and_refuses_unknown_names() {
        let names = |only: &[&str]| {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select(&only).map(|ws| ws.iter().map(|w| w.names()[0]).collect::<Vec<_>>())
        };
        assert_eq!(names(&[]).unwrap().len(), ALL.len());
        assert_eq!(names(&["W5", "w1"]).unwrap(), ["w1", "w4"]);
        assert!(matches!(names(&["w12"]), Err(BenchError::Usage(_))));
        assert_eq!(names(&["backlog"]).unwrap(), ["w11"]);
        assert_eq!(names(&["cluster"]).unwrap(), ["w10"]);
        assert_eq!(names(&["w8"]).unwrap(), ["w8"]);
        assert_eq!(names(&["w9"]).unwrap(), ["w9"]);
    }

    /// The JSON and the summary are rendered from the same sections, cross-workload figures
    /// included.
    #[test]
    fn the_json_and_the_summary_agree() {
        let run = PipeReport {
            tasks: 10,
            completed: 10,
            tasks_per_s: 500.0,
            submit_to_claimable: Lat::of(vec![1.0, 2.0, 3.0]),
            ..PipeReport::default()
        };
        let mut sections: Vec<Box<dyn Section>> = vec![
            Box::new(W1Report { run, runs_tasks_per_s: vec![500.0] }),
            Box::new(W3Report {
                tasks: 10,
                threads: 6,
                secs: 0.01,
                tasks_per_s: 1000.0,
                journal_fsync_every: 32,
                w1_fraction: None,
            }),
        ];
        let mut w3 = sections.remove(1);
        w3.relate(&sections);
        sections.push(w3);
        let report = Report {
            machine: Machine {
                nproc: 2,
                cpu: "cpu".into(),
                kernel: "k".into(),
                mem_gib: 1.0,
                fs: "ext4".into(),
                dir: "/tmp".into(),
            },
            params: Params {
                tasks: 10,
                producers: 2,
                agents: 4,
                repeat: 1,
                body_bytes: 1024,
                assigned_pct: 10,
                broker_durability: "batch".into(),
                client_durability: "always".into(),
            },
            sections,
        };
        let v = serde_json::to_value(&report).unwrap();
        let text = report.to_string();
        assert_eq!(text.lines().last().unwrap(), format!("bench: {}", v["summary"].as_str().unwrap()));
        assert_eq!(v["w3_floor"]["w1_fraction"], 0.5);
        assert!(text.contains("W1 = 50% of floor"), "{text}");
        assert_eq!(v["summary"], "W1 500 tasks/s p99 claimable 3.0 ms | W3 1000/s (W1 50%)");
        assert_eq!(v["w1_pipeline"]["submit_to_claimable"]["p99_ms"], 3.0);
    }
}

//! W1, the pipeline: N tasks submitted by P producer processes, claimed and completed by A agent
//! processes, the broker at its default durability (`batch`), run `--repeat` times on fresh roots;
//! the median run is reported, with every run's tasks/s.

use super::Workload;
use crate::error::BenchError;
use crate::pipeline::{PipeReport, median_run, run_fresh};
use crate::report::{Section, round};
use crate::run::{Ctx, log};
use serde::Serialize;
use std::fmt;

pub struct W1;

#[derive(Debug, Clone, Serialize)]
pub struct W1Report {
    /// The median run.
    #[serde(flatten)]
    pub run: PipeReport,
    /// Every run's tasks/s, in the order they ran.
    #[serde(serialize_with = "round::r0_all")]
    pub runs_tasks_per_s: Vec<f64>,
}

impl Workload for W1 {
    fn names(&self) -> &'static [&'static str] {
        &["w1"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let mut runs = Vec::new();
        let repeat = cx.plan.repeat;
        for r in 0..repeat {
            log(&format!("W1 pipeline, run {} of {repeat}", r + 1));
            let base = cx.base();
            runs.push(run_fresh(cx, "w1", &base)?);
        }
        let (run, runs_tasks_per_s) = median_run(runs);
        Ok(Box::new(W1Report { run, runs_tasks_per_s }))
    }
}

impl Section for W1Report {
    fn key(&self) -> &'static str {
        "w1_pipeline"
    }

    fn headline(&self) -> Option<String> {
        let o = &self.run;
        Some(format!("W1 {:.0} tasks/s p99 claimable {:.1} ms", o.tasks_per_s, o.submit_to_claimable.p99))
    }
}

impl fmt::Display for W1Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.run;
        let all: Vec<String> = self.runs_tasks_per_s.iter().map(|x| format!("{x:.0}")).collect();
        writeln!(
            f,
            "W1 pipeline     {:>8.0} tasks/s (median of {}: {}), completed {}/{}, lost {}, duplicated {}, claimed twice {}",
            o.tasks_per_s,
            all.len(),
            all.join(", "),
            o.completed,
            o.tasks,
            o.lost,
            o.duplicated,
            o.claimed_twice
        )?;
        writeln!(
            f,
            "                submit->claimable {}; submit->claimed {}; claim->working (journaled) {}",
            o.submit_to_claimable, o.submit_to_claimed, o.claim_to_working
        )?;
        let threads: Vec<String> = o
            .broker_cpu_us_per_task_by_thread
            .iter()
            .filter(|(_, us)| **us > 0)
            .map(|(name, us)| format!("{name} {us}"))
            .collect();
        writeln!(
            f,
            "                broker CPU {:.0} us/task ({}), peak RSS {:.1} MB, ready in {:.0} ms",
            o.broker_cpu_us_per_task,
            if threads.is_empty() {
                "by thread: none read".to_string()
            } else {
                format!("by thread: {}", threads.join(", "))
            },
            o.broker_peak_rss_mb,
            o.broker_ready_ms
        )?;
        writeln!(
            f,
            "                journal {:.0} B/task ({:.0} B/task if every record carried its task whole: {:.2}x)",
            o.journal_bytes_per_task,
            o.journal_whole_bytes_per_task,
            o.journal_bytes_per_task / o.journal_whole_bytes_per_task.max(1.0)
        )?;
        if let Some(l) = &o.broker_loop {
            write!(f, "{l}")?;
        }
        match &o.fs {
            Some(t) => write!(f, "{t}"),
            None => writeln!(
                f,
                "                filesystem operations: not counted (the broker's HTTP surface did not answer)"
            ),
        }
    }
}

//! W6, durability modes: W1 at `--durability-tasks` tasks with `durability = "always"` (the broker
//! fsyncs per message; producers and agents fsync each message and its directory), `"batch"`
//! (W1's settings) and `"never"` (nobody fsyncs), side by side.

use super::Workload;
use crate::error::BenchError;
use crate::pipeline::{Pipe, PipeReport, run_fresh};
use crate::report::Section;
use crate::run::{Ctx, log};
use serde::Serialize;
use std::fmt;

pub struct W6;

#[derive(Debug, Clone, Serialize)]
pub struct W6Report {
    pub always: PipeReport,
    pub batch: PipeReport,
    pub never: PipeReport,
}

impl W6Report {
    fn modes(&self) -> [(&'static str, &PipeReport); 3] {
        [("always", &self.always), ("batch", &self.batch), ("never", &self.never)]
    }
}

impl Workload for W6 {
    fn names(&self) -> &'static [&'static str] {
        &["w6"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let mode = |cx: &mut Ctx, mode: &str| {
            log(&format!("W6 durability {mode}"));
            let base = cx.base();
            // Batch is W1's setting, clients included; the others apply to the clients too.
            let client =
                if mode == "batch" { base.client_durability.clone() } else { Some(mode.to_string()) };
            let p = Pipe {
                tasks: cx.plan.durability_tasks,
                broker_durability: mode.into(),
                client_durability: client,
                ..base
            };
            run_fresh(cx, &format!("w6-{mode}"), &p)
        };
        Ok(Box::new(W6Report {
            always: mode(cx, "always")?,
            batch: mode(cx, "batch")?,
            never: mode(cx, "never")?,
        }))
    }
}

impl Section for W6Report {
    fn key(&self) -> &'static str {
        "w6_durability"
    }

    fn headline(&self) -> Option<String> {
        let tps: Vec<String> = self.modes().iter().map(|(_, o)| format!("{:.0}", o.tasks_per_s)).collect();
        Some(format!("W6 always/batch/never {}/s", tps.join("/")))
    }
}

impl fmt::Display for W6Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (mode, o) in self.modes() {
            writeln!(
                f,
                "W6 {:<6}       {:>8.0} tasks/s, submit->claimable {}, broker CPU {:.0} us/task ({} tasks)",
                mode, o.tasks_per_s, o.submit_to_claimable, o.broker_cpu_us_per_task, o.tasks
            )?;
        }
        Ok(())
    }
}

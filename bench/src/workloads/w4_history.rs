//! W4 and W5, history: W1 (at most 5,000 tasks per round) on roots that already hold 0, 100,000
//! and 1,000,000 finished tasks (built by [`crate::history`]). Before the first round, W5 measures
//! the restart: spawning `mailroom run` to serving, `VmHWM` right after, and `mailroom trace` of
//! the oldest task. Further rounds interleave the sizes (0, 100k, 1M, 0, ...), so a change in the
//! machine's load hits every size alike; each size reports its median round.

use super::Workload;
use crate::error::BenchError;
use crate::history;
use crate::journal_watch::sealed_segments;
use crate::pipeline::{Pipe, PipeReport, median_run, run_on, write_config};
use crate::procs::{mb, peak_rss, start_broker};
use crate::report::{Section, round, short};
use crate::run::{Ctx, log};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

pub struct W4;

/// One row per history size.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct W4Report {
    pub rows: Vec<HistoryRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    /// Finished tasks in the journal before the first round.
    pub history: usize,
    #[serde(serialize_with = "round::r3")]
    pub build_secs: f64,
    /// W5: spawning `mailroom run` to serving, on the built root.
    #[serde(serialize_with = "round::r3")]
    pub ready_ms: f64,
    /// W5: the broker's `VmHWM` right after it serves.
    #[serde(serialize_with = "round::r3")]
    pub rss_ready_mb: f64,
    /// W5: `mailroom trace` of the oldest task (0 on an empty root).
    #[serde(serialize_with = "round::r3")]
    pub trace_ms: f64,
    /// The median round's tasks/s over the empty root's.
    #[serde(serialize_with = "round::r3_opt")]
    pub ratio_to_empty: Option<f64>,
    /// The median round.
    pub run: PipeReport,
    #[serde(serialize_with = "round::r0_all")]
    pub rounds_tasks_per_s: Vec<f64>,
}

/// A history root being measured.
struct Root {
    row: HistoryRow,
    rounds: Vec<PipeReport>,
    dir: PathBuf,
    root: PathBuf,
}

impl Workload for W4 {
    fn names(&self) -> &'static [&'static str] {
        &["w4", "w5"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let p = Pipe { tasks: cx.plan.history_tasks, ..cx.base() };
        let mut roots = Vec::new();
        for h in cx.plan.history.clone() {
            log(&format!("W4/W5 history {h}: building, restarting, tracing, running {} tasks", p.tasks));
            roots.push(with_history(cx, h, &p)?);
        }
        for round in 1..cx.plan.repeat {
            for r in roots.iter_mut() {
                log(&format!("W4 history {}: round {} of {}", r.row.history, round + 1, cx.plan.repeat));
                let p = Pipe { prefix: format!("R{round}"), ..p.clone() };
                let before = sealed_segments(cx.fs(), &r.root)?;
                let broker =
                    start_broker(cx.fs(), &cx.bins, &r.root, &r.dir.join(format!("broker-{round}.log")))?;
                r.rounds.push(run_on(cx, &r.dir, &r.root, broker, &before, &p)?);
            }
        }
        let mut rows: Vec<HistoryRow> = roots
            .into_iter()
            .map(|r| {
                let (run, all) = median_run(r.rounds);
                HistoryRow { run, rounds_tasks_per_s: all, ..r.row }
            })
            .collect();
        let zero = rows.iter().find(|r| r.history == 0).map(|r| r.run.tasks_per_s);
        for r in &mut rows {
            r.ratio_to_empty = zero.map(|z| r.run.tasks_per_s / z.max(1e-9));
        }
        Ok(Box::new(W4Report { rows }))
    }
}

/// Builds a root holding `n` finished tasks, measures its restart and trace, and runs the first
/// round on it.
fn with_history(cx: &mut Ctx, n: usize, p: &Pipe) -> Result<Root, BenchError> {
    let d = cx.fresh(&format!("history-{n}"))?;
    let root = d.join("runtime");
    let t = Instant::now();
    history::build(cx.fs(), &root, n, p.body_bytes, 1000)?;
    write_config(cx.fs(), &root, p)?;
    let build_secs = t.elapsed().as_secs_f64();
    let before = sealed_segments(cx.fs(), &root)?;
    // The build just wrote these files, so the restart reads them warm (as a restart after a
    // crash would); an unprivileged process cannot drop the page cache.
    let (broker, ready) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
    let rss_ready = peak_rss(broker.pid()).unwrap_or(0);
    let mut trace_ms = 0.0;
    if n > 0 {
        let t = Instant::now();
        let o = cx.bins.mailroom_output(&root, &["trace", &history::history_id(0), "--json"])?;
        trace_ms = t.elapsed().as_secs_f64() * 1000.0;
        if !o.status.success() {
            return Err(BenchError::process("mailroom trace", String::from_utf8_lossy(&o.stderr)));
        }
    }
    let run = run_on(cx, &d, &root, (broker, ready), &before, p)?;
    let row = HistoryRow {
        history: n,
        build_secs,
        ready_ms: ready.as_secs_f64() * 1000.0,
        rss_ready_mb: mb(rss_ready),
        trace_ms,
        ratio_to_empty: None,
        run: PipeReport::default(),
        rounds_tasks_per_s: Vec::new(),
    };
    Ok(Root { row, rounds: vec![run], dir: d, root })
}

impl Section for W4Report {
    fn key(&self) -> &'static str {
        "w4_w5_history"
    }

    fn headline(&self) -> Option<String> {
        let r = self.rows.iter().max_by_key(|r| r.history)?;
        let ratio = r.ratio_to_empty?;
        Some(format!(
            "W4 {} {:.0}% of empty, W5 ready {:.2} s RSS {:.0} MB trace {:.1} s",
            short(r.history),
            ratio * 100.0,
            r.ready_ms / 1000.0,
            r.run.broker_peak_rss_mb.max(r.rss_ready_mb),
            r.trace_ms / 1000.0
        ))
    }
}

impl fmt::Display for W4Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rows {
            writeln!(
                f,
                "W4 history {:>9}: {:>8.0} tasks/s (median of {}){}  | W5 ready {:.0} ms, RSS {:.0} MB at ready / {:.0} MB after run{}",
                r.history,
                r.run.tasks_per_s,
                r.rounds_tasks_per_s.len(),
                r.ratio_to_empty.map(|x| format!(" ({:.0}% of empty)", x * 100.0)).unwrap_or_default(),
                r.ready_ms,
                r.rss_ready_mb,
                r.run.broker_peak_rss_mb,
                if r.history > 0 { format!(", trace {:.0} ms", r.trace_ms) } else { String::new() }
            )?;
        }
        Ok(())
    }
}

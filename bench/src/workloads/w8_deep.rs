//! W8, deep queue: what a claim costs, and how fast agents drain a pool, with a shallow and a deep
//! queue in one pool (1,000 and 100,000 tasks by default), side by side. The target is that both
//! stay within 20% of the shallow queue's; the run prints the ratios and checks nothing.
//!
//! At each depth, on a fresh root and broker:
//! 1. fill: the tasks are submitted through the SDK (`Client::submit`, four threads, without
//!    waiting for the broker's verdict and without fsyncs: the fill is set-up, not measured, and
//!    a client that waits for each verdict submits one task per broker batch), and the run waits
//!    until the journal shows every one dispatched into the pool, then a second for the broker to
//!    settle;
//! 2. claim latency: one agent process (`mailroom-bench deep-agent`) claims and completes
//!    `--deep-claims` tasks one at a time, timing each `Agent::claim` call (p50, p99);
//! 3. drain: `--agents` agent processes claim and complete `--deep-drain` tasks between them;
//!    the rate is tasks over the time from the first claim to the last completion.
//!
//! Tasks are W1's with a small body (256 bytes), so that the deep queue's files and journal stay
//! small; the claim's cost is in the number of names in the pool, not in their size.

use super::Workload;
use crate::error::BenchError;
use crate::journal_watch::JournalTail;
use crate::load::{DeepOut, submit_unacknowledged};
use crate::pipeline::{Pipe, logs_in, path_arg, write_config};
use crate::procs::start_broker;
use crate::report::{Lat, Section, round, short};
use crate::run::{Ctx, log};
use runtime_layout::Layout;
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The fill stalls when nothing is dispatched for this long.
const STALL: Duration = Duration::from_secs(60);
/// W8's task body, in bytes.
const BODY: usize = 256;
/// Threads submitting the fill.
const FILLERS: usize = 4;

pub struct W8;

#[derive(Debug, Clone, Serialize)]
pub struct W8Report {
    pub shallow: Depth,
    pub deep: Depth,
    /// The deep queue's claim p50 over the shallow one's (the target: at most 1.2).
    #[serde(serialize_with = "round::r3")]
    pub claim_p50_ratio: f64,
    #[serde(serialize_with = "round::r3")]
    pub claim_p99_ratio: f64,
    /// The deep queue's drain rate over the shallow one's (the target: at least 0.8).
    #[serde(serialize_with = "round::r3")]
    pub drain_ratio: f64,
}

/// One depth's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Depth {
    /// Tasks queued in the pool before the first claim.
    pub queued: usize,
    /// Submitting them and waiting until all were dispatched.
    #[serde(serialize_with = "round::r3")]
    pub fill_secs: f64,
    /// `Agent::claim`, one agent, one claim at a time.
    pub claim: Lat,
    /// Tasks drained by `agents` agents.
    pub drained: usize,
    pub agents: usize,
    #[serde(serialize_with = "round::r0")]
    pub drain_per_s: f64,
}

impl Workload for W8 {
    fn names(&self) -> &'static [&'static str] {
        &["w8"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let (shallow, deep) = cx.plan.deep;
        let shallow = depth(cx, shallow)?;
        let deep = depth(cx, deep)?;
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        Ok(Box::new(W8Report {
            claim_p50_ratio: ratio(deep.claim.p50, shallow.claim.p50),
            claim_p99_ratio: ratio(deep.claim.p99, shallow.claim.p99),
            drain_ratio: ratio(deep.drain_per_s, shallow.drain_per_s),
            shallow,
            deep,
        }))
    }
}

/// One depth: fill, time claims, drain.
fn depth(cx: &mut Ctx, queued: usize) -> Result<Depth, BenchError> {
    let (claims, drain, agents) = (cx.plan.deep_claims, cx.plan.deep_drain, cx.plan.agents.max(1));
    let d = cx.fresh(&format!("w8-{}", short(queued)))?;
    let root = d.join("runtime");
    write_config(cx.fs(), &root, &Pipe { assigned_pct: 0, ..cx.base() })?;
    let (broker, _) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
    log(&format!("W8 deep queue {queued}: filling"));
    let t = Instant::now();
    fill(&root, queued, &d)?;
    let fill_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));

    log(&format!("W8 deep queue {queued}: {claims} claims by one agent"));
    let one = run_agents(cx, &root, &d, "claim", 1, claims)?;
    log(&format!("W8 deep queue {queued}: {drain} tasks drained by {agents} agents"));
    let many = run_agents(cx, &root, &d, "drain", agents, drain)?;
    broker.terminate().map_err(|e| logs_in(e, &d))?;

    let first = many.iter().map(|o| o.first_us).min().unwrap_or(0);
    let last = many.iter().map(|o| o.last_us).max().unwrap_or(0);
    let secs = (last - first) as f64 / 1e6;
    Ok(Depth {
        queued,
        fill_secs,
        claim: Lat::of(one.into_iter().flat_map(|o| o.claim_ms).collect()),
        drained: drain,
        agents,
        drain_per_s: if secs > 0.0 { drain as f64 / secs } else { 0.0 },
    })
}

/// Submits `n` tasks from [`FILLERS`] threads and waits until the journal shows all dispatched.
fn fill(root: &Path, n: usize, d: &Path) -> Result<(), BenchError> {
    let mut tail = JournalTail::new(&Layout::new(root));
    submit_unacknowledged(root, n, "D", BODY, FILLERS, "W8 fill")?;
    let mut last = (0, Instant::now());
    while tail.dispatches < n {
        std::thread::sleep(Duration::from_millis(50));
        tail.poll();
        if tail.dispatches != last.0 {
            last = (tail.dispatches, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(BenchError::Stalled {
                workload: "W8 fill".into(),
                done: tail.dispatches,
                tasks: n,
                secs: STALL.as_secs(),
                logs: d.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// `agents` deep agents claiming and completing `tasks` between them; their reports.
fn run_agents(
    cx: &Ctx,
    root: &Path,
    d: &Path,
    phase: &str,
    agents: usize,
    tasks: usize,
) -> Result<Vec<DeepOut>, BenchError> {
    let mut procs = Vec::new();
    for a in 0..agents {
        let share = tasks / agents + usize::from(a < tasks % agents);
        let name = format!("Agent-{}", a + 1);
        let out = d.join(format!("{phase}-{name}.json"));
        let args = vec![
            "--name".into(),
            name.clone(),
            "--claims".into(),
            share.to_string(),
            "--out".into(),
            path_arg(&out),
        ];
        procs.push((
            cx.bins.load("deep-agent", root, &args, &d.join(format!("{phase}-{name}.log")), &name)?,
            out,
        ));
    }
    let mut outs = Vec::new();
    for (p, out) in procs {
        p.wait(Duration::from_secs(1800)).map_err(|e| logs_in(e, d))?;
        let text = std::fs::read(&out).map_err(|e| BenchError::io(&out, e))?;
        outs.push(serde_json::from_slice(&text).map_err(|e| BenchError::process("deep agent's report", e))?);
    }
    Ok(outs)
}

impl Section for W8Report {
    fn key(&self) -> &'static str {
        "w8_deep"
    }

    fn headline(&self) -> Option<String> {
        Some(format!(
            "W8 {} claim p50 {:.0}% drain {:.0}% of {}",
            short(self.deep.queued),
            self.claim_p50_ratio * 100.0,
            self.drain_ratio * 100.0,
            short(self.shallow.queued)
        ))
    }
}

impl fmt::Display for W8Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in [&self.shallow, &self.deep] {
            writeln!(
                f,
                "W8 deep {:>9}: claim {} (n={}), drain {:.0} tasks/s ({} tasks, {} agents), filled in {:.1} s",
                d.queued, d.claim, d.claim.n, d.drain_per_s, d.drained, d.agents, d.fill_secs
            )?;
        }
        writeln!(
            f,
            "W8 deep/shallow: claim p50 {:.2}x, p99 {:.2}x, drain {:.2}x (target: claim p50 and drain within 20%)",
            self.claim_p50_ratio, self.claim_p99_ratio, self.drain_ratio
        )
    }
}

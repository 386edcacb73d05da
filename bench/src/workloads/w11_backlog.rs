//! W11, inbox backlog: how fast the broker consumes messages that wait in `broker/inbox/new/`
//! when it starts, with a small and a large backlog (2,000 and 100,000 by default), side by side.
//! The target is that an inbox batch costs the same at any backlog: the large backlog's rate
//! within 20% of the small one's. The run prints the ratio and checks nothing.
//!
//! At each size, on a fresh root: the messages (W1's tasks, one pool, W1's body size) are
//! submitted through the SDK with no broker running (four threads, no fsync, no wait for a
//! verdict: set-up, not measured); then the broker starts, and the rate is the messages over the
//! time from its start until `inbox/new/` is empty (looked at every 20 ms). Every message is
//! consumed and journaled in that time; tasks beyond the pool's ready window wait in the broker's
//! state, as they would.

use super::Workload;
use crate::error::BenchError;
use crate::load::submit_unacknowledged;
use crate::pipeline::{Pipe, logs_in, write_config};
use crate::procs::start_broker;
use crate::report::{Section, round, short};
use crate::run::{Ctx, log};
use runtime_layout::Layout;
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Threads submitting the backlog.
const FILLERS: usize = 4;
/// The consumption stalls when the inbox does not shrink for this long.
const STALL: Duration = Duration::from_secs(120);

pub struct W11;

#[derive(Debug, Clone, Serialize)]
pub struct W11Report {
    pub small: Backlog,
    pub large: Backlog,
    /// The large backlog's rate over the small one's (the target: at least 0.8).
    #[serde(serialize_with = "round::r3")]
    pub rate_ratio: f64,
}

/// One backlog's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    /// Messages waiting when the broker started.
    pub messages: usize,
    /// From the broker's start until the inbox was empty.
    #[serde(serialize_with = "round::r3")]
    pub secs: f64,
    #[serde(serialize_with = "round::r0")]
    pub per_s: f64,
}

impl Workload for W11 {
    fn names(&self) -> &'static [&'static str] {
        &["w11", "backlog"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let (small, large) = cx.plan.backlog;
        let small = backlog(cx, small)?;
        let large = backlog(cx, large)?;
        Ok(Box::new(W11Report { rate_ratio: large.per_s / small.per_s.max(1e-9), small, large }))
    }
}

/// One backlog: submit with no broker, then time the broker consuming it.
fn backlog(cx: &mut Ctx, messages: usize) -> Result<Backlog, BenchError> {
    let d = cx.fresh(&format!("w11-{}", short(messages)))?;
    let root = d.join("runtime");
    write_config(cx.fs(), &root, &Pipe { assigned_pct: 0, ..cx.base() })?;
    log(&format!("W11 inbox backlog {messages}: submitting with no broker"));
    submit_unacknowledged(&root, messages, "B", cx.plan.body_bytes, FILLERS, "W11 fill")?;
    let new = Layout::new(&root).broker_inbox().new_dir();
    log(&format!("W11 inbox backlog {messages}: consuming"));
    let t = Instant::now();
    let (broker, _) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
    // Looked at every 20 ms, reading at most 1,001 names (a full count of a large directory
    // that often would cost the disk the broker is timed on); counted whole once a second, for
    // the stall check.
    let mut last = (usize::MAX, Instant::now());
    let mut counted = Instant::now();
    while waiting(&new, Some(1_000))? > 0 {
        if counted.elapsed() >= Duration::from_secs(1) {
            counted = Instant::now();
            let left = waiting(&new, None)?;
            if left < last.0 {
                last = (left, Instant::now());
            } else if last.1.elapsed() > STALL {
                return Err(BenchError::Stalled {
                    workload: "W11 backlog".into(),
                    done: messages - left,
                    tasks: messages,
                    secs: STALL.as_secs(),
                    logs: d.clone(),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    broker.terminate().map_err(|e| logs_in(e, &d))?;
    Ok(Backlog { messages, secs, per_s: messages as f64 / secs.max(1e-9) })
}

/// Messages still in `inbox/new/`, counting no further than `limit` past it.
fn waiting(new: &Path, limit: Option<usize>) -> Result<usize, BenchError> {
    let mut n = 0;
    for e in std::fs::read_dir(new).map_err(|e| BenchError::io(new, e))? {
        e.map_err(|e| BenchError::io(new, e))?;
        n += 1;
        if limit.is_some_and(|l| n > l) {
            break;
        }
    }
    Ok(n)
}

impl Section for W11Report {
    fn key(&self) -> &'static str {
        "w11_backlog"
    }

    fn headline(&self) -> Option<String> {
        Some(format!(
            "W11 inbox {} at {:.0}% of {}'s rate",
            short(self.large.messages),
            self.rate_ratio * 100.0,
            short(self.small.messages)
        ))
    }
}

impl fmt::Display for W11Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in [&self.small, &self.large] {
            writeln!(
                f,
                "W11 inbox backlog {:>7}: consumed in {:.2} s, {:.0} messages/s",
                b.messages, b.secs, b.per_s
            )?;
        }
        writeln!(f, "W11 large/small: rate {:.2}x (target: within 20%)", self.rate_ratio)
    }
}

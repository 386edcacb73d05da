//! W7, wake-up latency: one agent, tasks submitted one at a time 5–25 ms apart; submit → agent
//! holds the task, for an agent blocked in `claim_wait` asking the broker to claim a task for it
//! (the SDK's default), for one blocked in `claim_wait` watching the directories (inotify), and
//! for one polling `claim` every second (submits at random phases of its loop).

use super::Workload;
use crate::args::parse_durability;
use crate::error::BenchError;
use crate::journal_watch::{self, JournalTail};
use crate::load::bench_task;
use crate::pipeline::{Pipe, logs_in, path_arg, write_config};
use crate::procs::{now_us, start_broker, write_file};
use crate::report::{Lat, Section};
use crate::run::{Ctx, log};
use runtime_layout::Layout;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

pub struct W7;

#[derive(Debug, Clone, Serialize)]
pub struct W7Report {
    pub offered: Lat,
    pub inotify: Lat,
    pub poll_1s: Lat,
}

impl Workload for W7 {
    fn names(&self) -> &'static [&'static str] {
        &["w7"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let (base, wake_samples, poll_samples) = (cx.base(), cx.plan.wake_samples, cx.plan.poll_samples);
        log("W7 wake-up latency, claim_wait (socket)");
        let offered = wake(cx, wake_samples, Wait::Offered, &base)?;
        log("W7 wake-up latency, claim_wait (inotify)");
        let inotify = wake(cx, wake_samples, Wait::Watching, &base)?;
        log("W7 wake-up latency, 1 s polling");
        let poll_1s = wake(cx, poll_samples, Wait::Polling(1000), &base)?;
        Ok(Box::new(W7Report { offered, inotify, poll_1s }))
    }
}

/// How W7's agent waits.
#[derive(Clone, Copy)]
enum Wait {
    /// In `claim_wait`, asking the broker on its socket (which claims for it).
    Offered,
    /// In `claim_wait`, watching the directories.
    Watching,
    /// Polling `claim` every this many milliseconds.
    Polling(u64),
}

/// `samples` tasks through one agent that waits as `wait` says.
fn wake(cx: &mut Ctx, samples: usize, wait: Wait, p: &Pipe) -> Result<Lat, BenchError> {
    let (dir, poll_ms) = match wait {
        Wait::Offered => ("wake-offered", 0),
        Wait::Watching => ("wake-inotify", 0),
        Wait::Polling(ms) => ("wake-poll", ms),
    };
    let d = cx.fresh(dir)?;
    let root = d.join("runtime");
    write_config(cx.fs(), &root, p)?;
    let (broker, _) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
    let layout = Layout::new(&root);
    layout.mailbox("Agent-1").create(cx.fs(), true)?;
    let stop = d.join("stop");
    let mut args = vec!["--name".into(), "Agent-1".into(), "--stop".into(), path_arg(&stop)];
    args.extend(["--out".into(), path_arg(&d.join("agent.json")), "--poll-ms".into(), poll_ms.to_string()]);
    if matches!(wait, Wait::Watching) {
        args.push("--watch".into());
    }
    if let Some(c) = &p.client_durability {
        args.extend(["--durability".into(), c.clone()]);
    }
    let agent = cx.bins.load("agent", &root, &args, &d.join("agent.log"), "agent")?;
    let mut client = agent_sdk::Client::open(&root)?;
    if let Some(c) = &p.client_durability {
        client = client.with_durability(parse_durability(c)?);
    }
    // Let the agent reach its blocking wait before the first submit.
    std::thread::sleep(Duration::from_millis(300));
    let mut tail = JournalTail::new(&layout);
    let mut rng = (now_us() as u64) | 1;
    let mut jitter = |max_ms: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_micros(rng % (max_ms * 1000).max(1))
    };
    for i in 0..samples {
        client.submit(&bench_task("B", i, p.body_bytes, None))?;
        let t = Instant::now();
        while tail.completes <= i {
            std::thread::sleep(Duration::from_millis(2));
            tail.poll();
            if t.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Stalled {
                    workload: "W7".into(),
                    done: i,
                    tasks: samples,
                    secs: 30,
                    logs: d.clone(),
                });
            }
        }
        // A random gap, so a polling agent is met at a random phase of its loop.
        std::thread::sleep(if poll_ms == 0 {
            Duration::from_millis(5) + jitter(20)
        } else {
            jitter(poll_ms)
        });
    }
    write_file(&stop, b"")?;
    agent.wait(Duration::from_secs(30)).map_err(|e| logs_in(e, &d))?;
    broker.terminate().map_err(|e| logs_in(e, &d))?;
    let mut v = Vec::new();
    journal_watch::for_each_completion(cx.fs(), &root, &HashSet::new(), |c| {
        let sub = c.task.params["submitted_us"].as_i64().unwrap_or(0);
        let claimed = c.task.result["claimed_us"].as_i64().unwrap_or(0);
        v.push((claimed - sub) as f64 / 1000.0);
    })?;
    Ok(Lat::of(v))
}

impl Section for W7Report {
    fn key(&self) -> &'static str {
        "w7_wakeup"
    }

    fn headline(&self) -> Option<String> {
        Some(format!(
            "W7 p99 {:.1} ms (inotify {:.1} ms, poll {:.0} ms)",
            self.offered.p99, self.inotify.p99, self.poll_1s.p99
        ))
    }
}

impl fmt::Display for W7Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "W7 wake-up      claim_wait (socket) {} (n={}); claim_wait (inotify) {} (n={}); 1 s polling {} (n={})",
            self.offered, self.offered.n, self.inotify, self.inotify.n, self.poll_1s, self.poll_1s.n
        )
    }
}

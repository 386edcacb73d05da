//! The load processes of a run, `mailroom-bench producer` and `mailroom-bench agent`: a producer
//! submits its share of the tasks through the SDK (`Client::submit`), stamping its submit time in
//! `params.submitted_us`; an agent claims (without a watcher first, in `claim_wait` only when idle,
//! or polling) and completes through the SDK (waiting on the socket, its report asks for its next
//! claim: `Agent::complete_then_claim`), stamping its claim time in `result.claimed_us`, and
//! at the end writes the ids it claimed to a file of the run directory. With `--threads N` one
//! agent process is N agents (`<name>-1` .. `<name>-N`), each a thread with an `Agent` of its own
//! that polls (one inotify watcher per waiting agent would exceed the kernel's per-user limit of
//! watchers for a fleet of hundreds): W10's simulated fleet.
//!
//! `mailroom-bench deep-agent` (W8) claims and completes a fixed number of tasks, timing each
//! `claim`. The peers comparison has load processes of its own (`peers::load`).
//!
//! They are not `tests/src/bin/mailroom-load.rs`: that tool logs every acknowledgement and injects
//! failures and releases for the crash suites, while these only claim and complete as fast as they
//! can, and a benchmark must not depend on the test crate.

use crate::args::parse_durability;
use crate::error::BenchError;
use crate::procs::{now_us, write_file};
use agent_sdk::{Ack, Agent, Client};
use runtime_layout::{Durability, FsCounts};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `mailroom-bench producer`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProducerArgs {
    /// The runtime root to submit to.
    #[arg(long)]
    pub root: PathBuf,
    /// This producer's index (it submits tasks index, index+of, index+2*of, ...).
    #[arg(long)]
    pub index: usize,
    #[arg(long)]
    pub of: usize,
    #[arg(long)]
    pub tasks: usize,
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Percentage of tasks addressed to one agent's mailbox instead of the shared pool.
    #[arg(long, default_value_t = 0)]
    pub assigned_pct: usize,
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// SDK durability (default: the SDK's own default).
    #[arg(long)]
    pub durability: Option<String>,
    #[arg(long, default_value = "B")]
    pub prefix: String,
    /// Soak mode: submit until this file exists (`--tasks` is then only an upper bound), never
    /// letting more than `--max-backlog` messages and queued tasks wait, and write how many were
    /// submitted to `--out`.
    #[arg(long)]
    pub until: Option<PathBuf>,
    #[arg(long, default_value_t = 2000)]
    pub max_backlog: usize,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `mailroom-bench agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The runtime root to claim from.
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "bench")]
    pub pool: String,
    /// Exit once this file exists and nothing is left to claim.
    #[arg(long)]
    pub stop: PathBuf,
    /// Where to write what this agent claimed (JSON).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub durability: Option<String>,
    /// 0: block in `claim_wait`; otherwise poll `claim` every this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// In `claim_wait`, watch the directories (inotify) instead of asking the broker to claim a
    /// task for it.
    #[arg(long)]
    pub watch: bool,
    /// Be this many agents, `<name>-1` .. `<name>-N`, one thread each (they poll: `--poll-ms`,
    /// 200 when not given).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// The id of a run's `i`th task.
pub fn task_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:08}")
}

/// The task a producer submits: about `body_bytes` of JSON, with its submit time in `params`.
pub fn bench_task(prefix: &str, i: usize, body_bytes: usize, assigned: Option<String>) -> Value {
    let priority = ["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4];
    let mut t = json!({
        "task_id": task_id(prefix, i),
        "name": format!("bench task {i}"),
        "task_type": "bench",
        "priority": priority,
        "created_by": "bench",
        "params": {"submitted_us": now_us(), "pad": "x".repeat(body_bytes.saturating_sub(200))},
    });
    if let Some(a) = assigned {
        t["assigned_to"] = json!(a);
    }
    t
}

/// Submits `n` of [`bench_task`]'s tasks (`prefix`, `body_bytes`) from `threads` threads
/// through the SDK, waiting for no verdict and fsyncing nothing: set-up of a workload, not a
/// measurement (`what` names it in an error).
pub fn submit_unacknowledged(
    root: &Path,
    n: usize,
    prefix: &str,
    body_bytes: usize,
    threads: usize,
    what: &str,
) -> Result<(), BenchError> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || -> Result<(), BenchError> {
                    let client = Client::open(root)?.with_ack(Ack::None).with_durability(Durability::Never);
                    for i in (k..n).step_by(threads) {
                        client.submit(&bench_task(prefix, i, body_bytes, None))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| Err(BenchError::process(what, "a thread panicked")))
        })
    })
}

pub fn producer_main(a: &ProducerArgs) -> Result<(), BenchError> {
    let mut client = Client::open(&a.root)?;
    if let Some(d) = &a.durability {
        client = client.with_durability(parse_durability(d)?);
    }
    let mut i = a.index;
    let mut submitted = 0usize;
    while i < a.tasks {
        if let Some(until) = &a.until {
            if submitted.is_multiple_of(64) && backlog_full(client.layout(), a.max_backlog, until) {
                continue;
            }
            if until.exists() {
                break;
            }
        }
        let assigned = (a.assigned_pct > 0 && i % 100 < a.assigned_pct)
            .then(|| format!("Agent-{}", i / 100 % a.agents.max(1) + 1));
        client.submit(&bench_task(&a.prefix, i, a.body_bytes, assigned))?;
        submitted += 1;
        i += a.of.max(1);
    }
    if let Some(out) = &a.out {
        let fs = client.fs_counts();
        write_file(out, json!({"index": a.index, "of": a.of, "submitted": submitted, "fs": fs}).to_string())?;
    }
    Ok(())
}

/// Soak mode's brake: waits (a few milliseconds) while more than `max` messages wait in the
/// broker's inbox and tasks in the shared pool, so the load is as fast as the broker goes without
/// an ever-growing backlog. Returns whether it waited (then look again).
fn backlog_full(layout: &runtime_layout::Layout, max: usize, until: &std::path::Path) -> bool {
    let count = |d: PathBuf| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    let waiting = count(layout.broker_inbox().new_dir()) + count(layout.queue("bench").new_dir());
    if waiting > max && !until.exists() {
        std::thread::sleep(Duration::from_millis(5));
        return true;
    }
    false
}

pub fn agent_main(a: &AgentArgs) -> Result<(), BenchError> {
    if a.threads <= 1 {
        let (ids, fs) = agent_loop(a, &a.name, a.poll_ms, Duration::ZERO)?;
        let report = json!({"agent": a.name, "claims": ids.len(), "ids": ids, "fs": fs});
        return write_file(&a.out, report.to_string());
    }
    let poll_ms = if a.poll_ms == 0 { 200 } else { a.poll_ms };
    let threads: Vec<_> = (1..=a.threads)
        .map(|j| {
            let (a, name) = (a.clone(), format!("{}-{j}", a.name));
            // Spread the first polls over one interval, so the fleet does not poll in step.
            let offset = Duration::from_millis(poll_ms * j as u64 / a.threads as u64);
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || agent_loop(&a, &name, poll_ms, offset))
                .map_err(|e| BenchError::process("an agent thread", e))
        })
        .collect::<Result<_, _>>()?;
    let (mut ids, mut fs) = (Vec::new(), None::<FsCounts>);
    for t in threads {
        let (mine, counts) = t.join().map_err(|_| BenchError::process("an agent thread", "panicked"))??;
        ids.extend(mine);
        if let Some(c) = counts {
            fs = Some(fs.unwrap_or_default().plus(&c));
        }
    }
    let report = json!({"agent": a.name, "agents": a.threads, "claims": ids.len(), "ids": ids, "fs": fs});
    write_file(&a.out, report.to_string())
}

/// One agent claiming and completing until the stop file exists and nothing is left: the ids it
/// claimed, and its handle's filesystem operation counts.
fn agent_loop(
    a: &AgentArgs,
    name: &str,
    poll_ms: u64,
    offset: Duration,
) -> Result<(Vec<String>, Option<FsCounts>), BenchError> {
    let mut agent = Agent::register(&a.root, name)?.with_offers(!a.watch);
    if let Some(d) = &a.durability {
        agent = agent.with_durability(parse_durability(d)?);
    }
    std::thread::sleep(offset);
    let pools = vec![a.pool.clone()];
    let mut ids: Vec<String> = Vec::new();
    // Waiting on the broker's socket, an agent reports and asks for its next claim in one
    // exchange (`Agent::complete_then_claim`); polling or watching, it reports alone.
    let handoff = poll_ms == 0 && !a.watch;
    let mut next = None;
    loop {
        // Try without a watcher first: under load there is nearly always a task waiting.
        let claim = match next.take() {
            Some(c) => Some(c),
            None => match agent.claim(&pools)? {
                Some(c) => Some(c),
                None if a.stop.exists() => break,
                None if poll_ms > 0 => {
                    std::thread::sleep(Duration::from_millis(poll_ms));
                    None
                }
                None => agent.claim_wait(&pools, Duration::from_millis(250))?,
            },
        };
        let Some(c) = claim else { continue };
        let claimed_us = now_us();
        ids.push(c.task.task_id.clone());
        let result = json!({"claimed_us": claimed_us});
        if handoff {
            next = agent.complete_then_claim(&c.name, result, &pools, Duration::from_millis(250))?;
        } else {
            agent.complete(&c.name, result)?;
        }
    }
    Ok((ids, agent.fs_counts()))
}

/// Arguments of `mailroom-bench deep-agent` (W8).
#[derive(clap::Args, Debug, Clone)]
pub struct DeepAgentArgs {
    /// The runtime root to claim from.
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "bench")]
    pub pool: String,
    /// Claim and complete this many tasks, then exit.
    #[arg(long)]
    pub claims: usize,
    /// Where to write the claims' latencies and times (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// What a deep agent reports (W8).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeepOut {
    /// Each successful `Agent::claim` call, in milliseconds.
    pub claim_ms: Vec<f64>,
    /// When its first claim began and its last completion returned (µs since the epoch).
    pub first_us: i64,
    pub last_us: i64,
}

/// Claims and completes `--claims` tasks through the SDK, timing each `claim` call that returned
/// a task (when one finds nothing, the pool being empty for a moment, the agent waits in
/// `claim_wait`; such a claim is completed and counted, not timed).
pub fn deep_agent_main(a: &DeepAgentArgs) -> Result<(), BenchError> {
    let agent = Agent::register(&a.root, &a.name)?;
    let pools = vec![a.pool.clone()];
    let mut out = DeepOut { first_us: now_us(), ..DeepOut::default() };
    let mut taken = 0;
    while taken < a.claims {
        let t = Instant::now();
        let claim = match agent.claim(&pools)? {
            Some(c) => {
                out.claim_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                Some(c)
            }
            None => agent.claim_wait(&pools, Duration::from_millis(250))?,
        };
        if let Some(c) = claim {
            agent.complete(&c.name, json!({}))?;
            taken += 1;
        }
    }
    out.last_us = now_us();
    let text = serde_json::to_string(&out).map_err(|e| BenchError::process("writing a report", e))?;
    write_file(&a.out, text)
}

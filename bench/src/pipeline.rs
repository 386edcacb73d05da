//! The pipeline every throughput workload is made of (W1, and W2, W4 and W6 with other counts or
//! settings): a broker on a root, P producer processes submitting N tasks, A agent processes
//! claiming and completing them, until the journal shows every task completed. Its figures come
//! from the journal afterwards ([`PipeReport`]): from each completed task's history (every
//! transition is timestamped by the broker) and from two times the processes put into the task,
//! the producer's submit time (`params.submitted_us`) and the agent's claim time
//! (`result.claimed_us`). Clocks are all the one system clock.
//!
//! The same pipeline runs across several brokers ([`run_nodes`], W10's cluster): producer `i`
//! and agent `i` go to node `i mod n`, the run waits for the completions of every node's
//! journal, and the figures are read from all of them together.

use crate::error::BenchError;
use crate::fs_ops::{self, BrokerReading, FsTally, LoopTally};
use crate::journal_watch::{self, JournalTail};
use crate::load::task_id;
use crate::procs::{Proc, cpu_by_thread, cpu_time, mb, peak_rss, start_broker, write_file};
use crate::report::{Lat, round};
use crate::run::Ctx;
use runtime_layout::{Fs, FsCounts, Layout, NameSource, write_atomic};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A workload that completes nothing for this long has failed.
const STALL: Duration = Duration::from_secs(60);

/// One pipeline run's settings.
#[derive(Debug, Clone)]
pub struct Pipe {
    pub tasks: usize,
    pub producers: usize,
    pub agents: usize,
    pub body_bytes: usize,
    pub assigned_pct: usize,
    pub broker_durability: String,
    pub client_durability: Option<String>,
    pub broker_settings: Vec<String>,
    /// `[journal]` settings (retention), one `key = value` per line.
    pub journal_settings: Vec<String>,
    /// Task ids are `<prefix>-<n>`: runs on the same root use different prefixes.
    pub prefix: String,
    /// Whole sections appended to `mailroom.toml` (W10's `[cluster]`), verbatim.
    pub extra_config: String,
    /// W10's fleet: this many agents in all, threads of the `agents` processes (which then poll
    /// every `fleet_poll_ms`); `None`: each agent process is one agent.
    pub fleet: Option<usize>,
    pub fleet_poll_ms: u64,
}

/// One broker of a run: its root, its process, how long it took to serve, and the journal
/// segments its root held before the run (not counted).
pub struct Node {
    pub root: PathBuf,
    pub broker: Proc,
    pub ready: Duration,
    pub before: HashSet<PathBuf>,
}

/// What one pipeline run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipeReport {
    pub tasks: usize,
    pub completed: usize,
    /// Task ids missing from the journal's `complete` records.
    pub lost: usize,
    /// Ids completed more than once.
    pub duplicated: usize,
    /// Ids claimed by more than one agent (agents report what they claimed).
    pub claimed_twice: usize,
    /// First submit to last completion.
    #[serde(serialize_with = "round::r3")]
    pub secs: f64,
    #[serde(serialize_with = "round::r0")]
    pub tasks_per_s: f64,
    /// Submit to the broker's `dispatch` entry (the task file is renamed into the pool right
    /// after the journal commit that carries it).
    pub submit_to_claimable: Lat,
    /// Submit to an agent holding the task.
    pub submit_to_claimed: Lat,
    /// The agent's claim to the broker's `claim` entry (IN_PROGRESS in the broker's state).
    pub claim_to_working: Lat,
    /// User+system time of the broker during the run, per task.
    #[serde(serialize_with = "round::r0")]
    pub broker_cpu_us_per_task: f64,
    /// The same, by the broker's thread (its name: `mailroom` is the loop, `local-socket` the
    /// socket's thread), in whole microseconds per task.
    pub broker_cpu_us_per_task_by_thread: std::collections::BTreeMap<String, u64>,
    /// `VmHWM` of the broker.
    #[serde(serialize_with = "round::r3")]
    pub broker_peak_rss_mb: f64,
    /// Spawning `mailroom run` to serving.
    #[serde(serialize_with = "round::r3")]
    pub broker_ready_ms: f64,
    /// Journal bytes written per task (uncompressed).
    #[serde(serialize_with = "round::r0")]
    pub journal_bytes_per_task: f64,
    /// What the same records would take per task if each carried its task whole.
    #[serde(serialize_with = "round::r0")]
    pub journal_whole_bytes_per_task: f64,
    /// Filesystem operations of the broker (during the load), the producers and the agents, as
    /// each process's `RootFs` counted them; `None` when the broker's could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsTally>,
    /// The brokers' passes and commits over the same span; `None` when not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_loop: Option<LoopTally>,
}

/// The median run by tasks/s, and every run's tasks/s in the order they ran.
pub fn median_run(mut runs: Vec<PipeReport>) -> (PipeReport, Vec<f64>) {
    let all: Vec<f64> = runs.iter().map(|r| r.tasks_per_s).collect();
    runs.sort_by(|a, b| a.tasks_per_s.total_cmp(&b.tasks_per_s));
    let m = runs.swap_remove(runs.len() / 2);
    (m, all)
}

/// Creates the tree at `root` and writes its `mailroom.toml` (the durability and every
/// `--broker-setting`; the HTTP surface on a free loopback port, so that brokers of concurrent
/// runs never compete for one and the run can read the broker's operation counts), through the
/// `Fs` seam.
pub fn write_config(fs: &dyn Fs, root: &Path, p: &Pipe) -> Result<(), BenchError> {
    let layout = Layout::new(root);
    layout.create(fs)?;
    let mut text = format!("[broker]\ndurability = \"{}\"\n", p.broker_durability);
    for line in &p.broker_settings {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("[http]\nlisten = \"127.0.0.1:0\"\n");
    if !p.journal_settings.is_empty() {
        text.push_str("[journal]\n");
        for line in &p.journal_settings {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(&p.extra_config);
    mailroom::config::Config::parse(&text)
        .map_err(|e| BenchError::Usage(format!("--broker-setting: {e}")))?;
    write_atomic(
        fs,
        &layout.config_file(),
        text.as_bytes(),
        &NameSource::new(),
        runtime_layout::Durability::Batch,
    )?;
    Ok(())
}

/// A pipeline run on a fresh root.
pub fn run_fresh(cx: &mut Ctx, label: &str, p: &Pipe) -> Result<PipeReport, BenchError> {
    let d = cx.fresh(label)?;
    let root = d.join("runtime");
    write_config(cx.fs(), &root, p)?;
    let before = journal_watch::sealed_segments(cx.fs(), &root)?;
    let (broker, ready) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
    run_on(cx, &d, &root, (broker, ready), &before, p)
}

/// A pipeline run against a broker already serving `root` (started `ready` before it served);
/// stops the broker at the end. `d` holds the processes' logs; the figures come from the journal
/// segments not in `before`.
pub fn run_on(
    cx: &Ctx,
    d: &Path,
    root: &Path,
    (broker, ready): (Proc, Duration),
    before: &HashSet<PathBuf>,
    p: &Pipe,
) -> Result<PipeReport, BenchError> {
    let node = Node { root: root.to_path_buf(), broker, ready, before: before.clone() };
    run_nodes(cx, d, vec![node], p, &mut || Ok(()))
}

/// A pipeline run across brokers already serving (one or more nodes): producer `i` and agent
/// `i` (of `p.producers` and `p.agents` in all) use node `i mod n`. Once every task is completed
/// in some node's journal and the load processes have exited, `settle` runs while the brokers
/// still serve (W10 waits there for the cluster-wide records); then the brokers are stopped.
/// Broker CPU and journal bytes are the sums over the nodes, peak RSS and ready time the largest.
pub fn run_nodes(
    cx: &Ctx,
    d: &Path,
    nodes: Vec<Node>,
    p: &Pipe,
    settle: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<PipeReport, BenchError> {
    let fs = cx.fs();
    let n = nodes.len().max(1);
    let mut tails: Vec<JournalTail> = nodes.iter().map(|x| JournalTail::new(&Layout::new(&x.root))).collect();
    let stop = d.join("stop");
    let _ = std::fs::remove_file(&stop);
    let agents: Vec<String> = (1..=p.agents).map(|i| format!("Agent-{i}")).collect();
    let root_of = |i: usize| nodes[i % n].root.as_path();
    // Agents per process: one, or the fleet shared out (the first processes take the rest).
    let threads = |i: usize| p.fleet.map(|f| f / p.agents.max(1) + usize::from(i < f % p.agents.max(1)));
    for (i, a) in agents.iter().enumerate() {
        match threads(i) {
            None => Layout::new(root_of(i)).mailbox(a).create(fs, true)?,
            Some(t) => {
                for j in 1..=t {
                    Layout::new(root_of(i)).mailbox(&format!("{a}-{j}")).create(fs, true)?;
                }
            }
        }
    }
    let fs0: Vec<Option<BrokerReading>> = nodes.iter().map(|x| fs_ops::broker_counts(fs, &x.root)).collect();
    let read0 = Instant::now();
    let cpu0: Vec<Duration> = nodes.iter().map(|x| cpu_time(x.broker.pid()).unwrap_or_default()).collect();
    let threads0: Vec<_> = nodes.iter().map(|x| cpu_by_thread(x.broker.pid())).collect();
    let durability = |args: &mut Vec<String>| {
        if let Some(c) = &p.client_durability {
            args.extend(["--durability".into(), c.clone()]);
        }
    };
    let mut agent_procs = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let mut args = vec!["--name".into(), a.clone(), "--stop".into(), path_arg(&stop)];
        args.extend(["--out".into(), path_arg(&d.join(format!("{a}.json")))]);
        if let Some(t) = threads(i) {
            args.extend(["--threads".into(), t.to_string(), "--poll-ms".into(), p.fleet_poll_ms.to_string()]);
        }
        durability(&mut args);
        agent_procs.push(cx.bins.load("agent", root_of(i), &args, &d.join(format!("{a}.log")), a)?);
    }
    let mut producers = Vec::new();
    for i in 0..p.producers {
        let mut args: Vec<String> = Vec::new();
        for (flag, value) in [
            ("--index", i.to_string()),
            ("--of", p.producers.to_string()),
            ("--tasks", p.tasks.to_string()),
            ("--body-bytes", p.body_bytes.to_string()),
            ("--assigned-pct", p.assigned_pct.to_string()),
            ("--agents", p.agents.to_string()),
            ("--prefix", p.prefix.clone()),
        ] {
            args.extend([flag.to_string(), value]);
        }
        args.extend(["--out".into(), path_arg(&d.join(format!("producer-{i}.json")))]);
        durability(&mut args);
        let log = d.join(format!("producer-{i}.log"));
        producers.push(cx.bins.load("producer", root_of(i), &args, &log, &format!("producer {i}"))?);
    }
    // Wait until the journals show every task completed.
    let mut last = (0, Instant::now());
    let mut done = 0;
    while done < p.tasks {
        std::thread::sleep(Duration::from_millis(20));
        for t in &mut tails {
            t.poll();
        }
        done = tails.iter().map(|t| t.completes).sum();
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL {
            let _ = write_file(&stop, b"");
            return Err(BenchError::Stalled {
                workload: format!("pipeline {}", p.prefix),
                done,
                tasks: p.tasks,
                secs: STALL.as_secs(),
                logs: d.to_path_buf(),
            });
        }
        for pr in &mut producers {
            pr.check().map_err(|e| logs_in(e, d))?;
        }
    }
    let cpu: Duration = nodes
        .iter()
        .zip(&cpu0)
        .map(|(x, c0)| cpu_time(x.broker.pid()).unwrap_or_default().saturating_sub(*c0))
        .sum();
    let mut by_thread: std::collections::BTreeMap<String, Duration> = Default::default();
    for (x, t0) in nodes.iter().zip(&threads0) {
        for (name, t) in cpu_by_thread(x.broker.pid()) {
            *by_thread.entry(name.clone()).or_default() +=
                t.saturating_sub(t0.get(&name).copied().unwrap_or_default());
        }
    }
    let rss = nodes.iter().filter_map(|x| peak_rss(x.broker.pid())).max().unwrap_or(0);
    write_file(&stop, b"")?;
    for a in agent_procs {
        a.wait(Duration::from_secs(60)).map_err(|e| logs_in(e, d))?;
    }
    for pr in producers {
        pr.wait(Duration::from_secs(60)).map_err(|e| logs_in(e, d))?;
    }
    settle().map_err(|e| logs_in(e, d))?;
    let fs1: Vec<Option<BrokerReading>> = nodes.iter().map(|x| fs_ops::broker_counts(fs, &x.root)).collect();
    let load_secs = read0.elapsed().as_secs_f64();
    let ready = nodes.iter().map(|x| x.ready).max().unwrap_or_default();
    let mut parts = Vec::new();
    for x in nodes {
        x.broker.terminate().map_err(|e| logs_in(e, d))?;
        parts.push((x.root, x.before));
    }

    let mut out = figures(fs, &parts, p)?;
    let (claims, claimed_ids) = claimed(d, &agents);
    out.claimed_twice = claims - claimed_ids.len();
    out.broker_cpu_us_per_task = cpu.as_secs_f64() * 1e6 / p.tasks.max(1) as f64;
    out.broker_cpu_us_per_task_by_thread = by_thread
        .into_iter()
        .map(|(name, t)| (name, (t.as_secs_f64() * 1e6 / p.tasks.max(1) as f64).round() as u64))
        .collect();
    out.broker_peak_rss_mb = mb(rss);
    out.broker_ready_ms = ready.as_secs_f64() * 1000.0;
    let (mut written, mut whole) = (0, 0);
    for (root, before) in &parts {
        let (w, h) = journal_watch::journal_cost(fs, root, before)?;
        written += w;
        whole += h;
    }
    out.journal_bytes_per_task = written as f64 / p.tasks.max(1) as f64;
    out.journal_whole_bytes_per_task = whole as f64 / p.tasks.max(1) as f64;
    // The brokers' counts, summed over the nodes (when every node answered before and after).
    let broker = fs0.iter().zip(&fs1).try_fold(BrokerReading::default(), |acc, (a, b)| {
        let (a, b) = (a.as_ref()?, b.as_ref()?);
        Some(BrokerReading {
            fs: acc.fs.plus(&b.fs.since(&a.fs)),
            looped: acc.looped.plus(&b.looped.since(&a.looped)),
        })
    });
    if let Some(BrokerReading { fs: broker, looped }) = broker {
        out.broker_loop =
            Some(LoopTally { tasks: p.tasks, secs: load_secs, nodes: parts.len(), counts: looped });
        let sum = |files: Vec<PathBuf>| {
            files.iter().fold(FsCounts::default(), |acc, f| acc.plus(&fs_ops::from_report(&read_json(f))))
        };
        out.fs = Some(FsTally {
            tasks: p.tasks,
            broker,
            producers: sum((0..p.producers).map(|i| d.join(format!("producer-{i}.json"))).collect()),
            agents: sum(agents.iter().map(|a| d.join(format!("{a}.json"))).collect()),
        });
    }
    Ok(out)
}

/// What the journal segments of each `(root, before)` not in its `before` show about the run's
/// tasks (ids `<prefix>-<n>`), all nodes together. A task pulled from the cluster is queued by a
/// `pull` entry where a local one has its `dispatch`.
fn figures(fs: &dyn Fs, parts: &[(PathBuf, HashSet<PathBuf>)], p: &Pipe) -> Result<PipeReport, BenchError> {
    let prefix = format!("{}-", p.prefix);
    let mut ids = HashSet::new();
    let (mut s2q, mut s2c, mut c2w) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut completes = 0;
    for (root, before) in parts {
        journal_watch::for_each_completion(fs, root, before, |c| {
            let t = &c.task;
            if !t.task_id.starts_with(&prefix) {
                return;
            }
            completes += 1;
            ids.insert(t.task_id.clone());
            let sub = t.params["submitted_us"].as_i64().unwrap_or(0);
            let claimed = t.result["claimed_us"].as_i64().unwrap_or(0);
            let at =
                |a: &str| t.history.iter().rev().find(|h| h.action == a).map(|h| h.timestamp.as_micros());
            let ms = |us: i64| us as f64 / 1000.0;
            if let Some(q) = at("dispatch").or_else(|| at("pull")) {
                s2q.push(ms(q - sub));
            }
            s2c.push(ms(claimed - sub));
            if let Some(c) = at("claim") {
                c2w.push(ms(c - claimed));
            }
            first = first.min(sub);
            last = last.max(c.at_us);
        })?;
    }
    let secs = (last - first) as f64 / 1e6;
    Ok(PipeReport {
        tasks: p.tasks,
        completed: ids.len(),
        lost: (0..p.tasks).filter(|&i| !ids.contains(&task_id(&p.prefix, i))).count(),
        duplicated: completes - ids.len(),
        secs,
        tasks_per_s: ids.len() as f64 / secs.max(1e-9),
        submit_to_claimable: Lat::of(s2q),
        submit_to_claimed: Lat::of(s2c),
        claim_to_working: Lat::of(c2w),
        ..PipeReport::default()
    })
}

/// Claims the agents reported, and the distinct ids among them.
fn claimed(d: &Path, agents: &[String]) -> (usize, HashSet<String>) {
    let mut claims = 0;
    let mut ids = HashSet::new();
    for a in agents {
        let v = read_json(&d.join(format!("{a}.json")));
        claims += v["claims"].as_u64().unwrap_or(0) as usize;
        for id in v["ids"].as_array().into_iter().flatten() {
            ids.insert(id.as_str().unwrap_or_default().to_string());
        }
    }
    (claims, ids)
}

/// A report file of the run directory as JSON (`null` when missing or not JSON).
fn read_json(path: &Path) -> Value {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// A process error, pointing at the run's logs.
pub fn logs_in(e: BenchError, d: &Path) -> BenchError {
    match e {
        BenchError::Process { what, problem } => {
            BenchError::Process { what, problem: format!("{problem}; logs in {}", d.display()) }
        }
        e => e,
    }
}

pub fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

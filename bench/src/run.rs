//! `mailroom-bench`: the product measured end to end with real processes, every comparison side
//! by side in one run (docs/BENCHMARKS.md explains the workloads and how to read the figures).
//!
//! The orchestrator (this module) builds temporary roots, starts `mailroom run` as a child, starts
//! producer and agent processes (subcommands of `mailroom-bench`, using the SDK), waits for
//! the journal to show every task completed, then reads latencies from the completed tasks'
//! history (every transition is timestamped by the broker; producers put their submit time in
//! `params`, agents their claim time in `result`).

use crate::{floor, history, procs};
use mailroom::journal::{self, Op};
use procs::{JournalTail, Proc, cpu_time, now_us, parse_durability, peak_rss, spawn, start_broker};
use runtime_layout::{Durability, Layout, RealFs};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The `mailroom` binary to benchmark (default: the one next to this executable).
    #[arg(long, env = "MAILROOM_BIN")]
    pub mailroom: Option<PathBuf>,
    /// Tiny counts, a few seconds, for CI (no thresholds are ever checked).
    #[arg(long)]
    pub smoke: bool,
    /// Smaller counts (2,000 tasks; history up to 100,000).
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Only these workloads (comma-separated: w1,w2,w3,w4,w5,w6,w7; w4 and w5 run together).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// W1 task count.
    #[arg(long)]
    pub tasks: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// W1 runs; the median run is reported.
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Approximate task body size in bytes (padding in `params`).
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Percentage of tasks addressed to an agent's own mailbox (the rest go to the shared pool).
    #[arg(long, default_value_t = 10)]
    pub assigned_pct: usize,
    /// Durability of producers' and agents' messages (always, batch, never; default: the SDK's
    /// default, always).
    #[arg(long)]
    pub client_durability: Option<String>,
    /// W2: task count for the legacy board and for mailroom's side of the ratio.
    #[arg(long)]
    pub legacy_tasks: Option<usize>,
    /// W2: the legacy board script (default: ../shared/bench/legacy_board.py of the workspace).
    #[arg(long)]
    pub legacy_script: Option<PathBuf>,
    /// W3: journal fsync every this many tasks (the broker's group commit).
    #[arg(long, default_value_t = 32)]
    pub floor_batch: usize,
    /// W4/W5: history sizes (finished tasks already in the journal).
    #[arg(long, value_delimiter = ',')]
    pub history: Vec<usize>,
    /// W4: tasks per run (default: the W1 count, at most 5,000).
    #[arg(long)]
    pub history_tasks: Option<usize>,
    /// W6: tasks per durability mode.
    #[arg(long)]
    pub durability_tasks: Option<usize>,
    /// W7: samples for the agent blocked in `claim_wait` (inotify).
    #[arg(long)]
    pub wake_samples: Option<usize>,
    /// W7: samples for the agent polling `claim` every second.
    #[arg(long)]
    pub poll_samples: Option<usize>,
    /// Extra `[broker]` settings for every broker of the run, e.g. `tick_ms = 100` (repeatable).
    #[arg(long = "broker-setting")]
    pub broker_settings: Vec<String>,
    /// Where to put the temporary roots (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the temporary roots.
    #[arg(long)]
    pub keep: bool,
}

/// The effective parameters of a run.
#[derive(Debug, Clone)]
struct Plan {
    tasks: usize,
    repeat: usize,
    legacy_tasks: usize,
    history: Vec<usize>,
    history_tasks: usize,
    durability_tasks: usize,
    wake_samples: usize,
    poll_samples: usize,
}

impl Plan {
    fn new(a: &BenchArgs) -> Self {
        let (tasks, repeat, legacy, history, dur, wake, poll) = if a.smoke {
            (200, 1, 100, vec![0, 2_000], 100, 10, 2)
        } else if a.quick {
            (2_000, 1, 1_000, vec![0, 100_000], 1_000, 50, 5)
        } else {
            (10_000, 3, 2_000, vec![0, 100_000, 1_000_000], 2_000, 200, 15)
        };
        let tasks = a.tasks.unwrap_or(tasks);
        Self {
            tasks,
            repeat: a.repeat.unwrap_or(repeat).max(1),
            legacy_tasks: a.legacy_tasks.unwrap_or(legacy),
            history: if a.history.is_empty() { history } else { a.history.clone() },
            history_tasks: a.history_tasks.unwrap_or(tasks.min(5_000)),
            durability_tasks: a.durability_tasks.unwrap_or(dur),
            wake_samples: a.wake_samples.unwrap_or(wake),
            poll_samples: a.poll_samples.unwrap_or(poll),
        }
    }
}

/// p50 and p99 of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Lat {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Lat {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self { n: v.len(), p50: at(0.5), p99: at(0.99), max: v[v.len() - 1] }
    }
    fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": r3(self.p50), "p99_ms": r3(self.p99), "max_ms": r3(self.max)})
    }
    fn show(&self) -> String {
        format!("p50 {:.2} ms, p99 {:.2} ms", self.p50, self.p99)
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One pipeline run.
#[derive(Debug, Clone)]
struct Pipe {
    tasks: usize,
    producers: usize,
    agents: usize,
    body_bytes: usize,
    assigned_pct: usize,
    broker_durability: String,
    client_durability: Option<String>,
    broker_settings: Vec<String>,
    /// Task ids are `<prefix>-<n>`: runs on the same root use different prefixes.
    prefix: String,
}

#[derive(Debug, Clone, Default)]
struct PipeOut {
    tasks: usize,
    completed: usize,
    lost: usize,
    duplicated: usize,
    claimed_twice: usize,
    secs: f64,
    tasks_per_s: f64,
    submit_to_claimable: Lat,
    submit_to_claimed: Lat,
    claim_to_working: Lat,
    cpu_us_per_task: f64,
    rss_mb: f64,
    ready_ms: f64,
}

impl PipeOut {
    fn json(&self) -> Value {
        json!({
            "tasks": self.tasks, "completed": self.completed, "lost": self.lost,
            "duplicated": self.duplicated, "claimed_twice": self.claimed_twice,
            "secs": r3(self.secs), "tasks_per_s": self.tasks_per_s.round(),
            "submit_to_claimable": self.submit_to_claimable.json(),
            "submit_to_claimed": self.submit_to_claimed.json(),
            "claim_to_working": self.claim_to_working.json(),
            "broker_cpu_us_per_task": self.cpu_us_per_task.round(),
            "broker_peak_rss_mb": r3(self.rss_mb), "broker_ready_ms": r3(self.ready_ms),
        })
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn write_config(root: &Path, p: &Pipe) -> Result<(), String> {
    let layout = Layout::new(root);
    layout.create(&RealFs).map_err(|e| e.to_string())?;
    let mut text = format!("[broker]\ndurability = \"{}\"\n", p.broker_durability);
    for line in &p.broker_settings {
        text.push_str(line);
        text.push('\n');
    }
    mailroom::config::Config::parse(&text).map_err(|e| format!("--broker-setting: {e}"))?;
    std::fs::write(layout.config_file(), text).map_err(|e| e.to_string())
}

struct Ctx {
    dir: PathBuf,
    n: usize,
}

impl Ctx {
    /// A fresh directory for one workload run.
    fn fresh(&mut self, label: &str) -> Result<PathBuf, String> {
        self.n += 1;
        let d = self.dir.join(format!("{:02}-{label}", self.n));
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    }
}

fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

/// W1 on a fresh root.
fn pipeline(ctx: &mut Ctx, label: &str, p: &Pipe) -> Result<PipeOut, String> {
    let d = ctx.fresh(label)?;
    let root = d.join("runtime");
    write_config(&root, p)?;
    let before = segments(&root)?;
    let (broker, ready) = start_broker(&root, &d.join("broker.log"))?;
    pipeline_on(&d, &root, broker, ready, &before, p)
}

/// The journal segments there are now (a run reads only the ones it added).
fn segments(root: &Path) -> Result<HashSet<PathBuf>, String> {
    let dir = Layout::new(root).journal_dir();
    Ok(journal::all_segments(&RealFs, &dir).map_err(|e| e.to_string())?.into_iter().collect())
}

/// W1 against a broker that is already serving `root`; stops the broker at the end.
fn pipeline_on(
    d: &Path,
    root: &Path,
    broker: Proc,
    ready: Duration,
    before: &HashSet<PathBuf>,
    p: &Pipe,
) -> Result<PipeOut, String> {
    let layout = Layout::new(root);
    let mut tail = JournalTail::new(&layout);
    let stop = d.join("stop");
    let _ = std::fs::remove_file(&stop);
    let agents: Vec<String> = (1..=p.agents).map(|i| format!("Agent-{i}")).collect();
    for a in &agents {
        layout.mailbox(a).create(&RealFs, true).map_err(|e| e.to_string())?;
    }
    let cpu0 = cpu_time(broker.pid()).unwrap_or_default();
    let mut agent_procs = Vec::new();
    for a in &agents {
        let mut args = vec![
            "agent".to_string(),
            "--name".into(),
            a.clone(),
            "--stop".into(),
            stop.display().to_string(),
            "--out".into(),
            d.join(format!("{a}.json")).display().to_string(),
        ];
        if let Some(c) = &p.client_durability {
            args.extend(["--durability".into(), c.clone()]);
        }
        agent_procs.push(spawn(root, &args, &d.join(format!("{a}.log")), a)?);
    }
    let mut producers = Vec::new();
    for i in 0..p.producers {
        let mut args = vec![
            "producer".to_string(),
            "--index".into(),
            i.to_string(),
            "--of".into(),
            p.producers.to_string(),
            "--tasks".into(),
            p.tasks.to_string(),
            "--body-bytes".into(),
            p.body_bytes.to_string(),
            "--assigned-pct".into(),
            p.assigned_pct.to_string(),
            "--agents".into(),
            p.agents.to_string(),
            "--prefix".into(),
            p.prefix.clone(),
        ];
        if let Some(c) = &p.client_durability {
            args.extend(["--durability".into(), c.clone()]);
        }
        producers.push(spawn(root, &args, &d.join(format!("producer-{i}.log")), &format!("producer {i}"))?);
    }
    // Wait until the journal shows every task completed.
    let mut last = (0, Instant::now());
    while tail.completes < p.tasks {
        std::thread::sleep(Duration::from_millis(20));
        tail.poll();
        if tail.completes != last.0 {
            last = (tail.completes, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            let _ = std::fs::write(&stop, b"");
            return Err(format!(
                "stalled: {} of {} tasks completed, nothing for 60 s (logs in {})",
                tail.completes,
                p.tasks,
                d.display()
            ));
        }
        for pr in &mut producers {
            if let Ok(Some(s)) = pr.child.try_wait()
                && !s.success()
            {
                return Err(format!("{} failed ({s}); logs in {}", pr.what, d.display()));
            }
        }
    }
    let cpu = cpu_time(broker.pid()).unwrap_or_default().saturating_sub(cpu0);
    let rss = peak_rss(broker.pid()).unwrap_or(0);
    std::fs::write(&stop, b"").map_err(|e| e.to_string())?;
    for a in agent_procs {
        a.wait(Duration::from_secs(60))?;
    }
    for pr in producers {
        pr.wait(Duration::from_secs(60))?;
    }
    broker.terminate()?;

    // Read what happened from the journal (only the segments written by this run).
    let prefix = format!("{}-", p.prefix);
    let mut out = PipeOut { tasks: p.tasks, ..Default::default() };
    let mut ids = HashSet::new();
    let (mut s2q, mut s2c, mut c2w) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first, mut lastc) = (i64::MAX, i64::MIN);
    let mut completes = 0;
    let mut torn = Vec::new();
    for seg in journal::all_segments(&RealFs, &layout.journal_dir()).map_err(|e| e.to_string())? {
        if before.contains(&seg) {
            continue;
        }
        journal::read_segment(
            &RealFs,
            &seg,
            |rec| {
                if rec.op != Op::Complete {
                    return;
                }
                let Some(t) = rec.task else { return };
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
                if let Some(q) = at("dispatch") {
                    s2q.push(ms(q - sub));
                }
                s2c.push(ms(claimed - sub));
                if let Some(c) = at("claim") {
                    c2w.push(ms(c - claimed));
                }
                first = first.min(sub);
                lastc = lastc.max(rec.ts.as_micros());
            },
            &mut torn,
        )
        .map_err(|e| e.to_string())?;
    }
    let mut claims = 0;
    let mut claimed_ids = HashSet::new();
    for a in &agents {
        let v: Value = std::fs::read(d.join(format!("{a}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        claims += v["claims"].as_u64().unwrap_or(0) as usize;
        for id in v["ids"].as_array().into_iter().flatten() {
            claimed_ids.insert(id.as_str().unwrap_or_default().to_string());
        }
    }
    out.completed = ids.len();
    out.lost = (0..p.tasks).filter(|i| !ids.contains(&format!("{prefix}{i:08}"))).count();
    out.duplicated = completes - ids.len();
    out.claimed_twice = claims - claimed_ids.len();
    out.secs = (lastc - first) as f64 / 1e6;
    out.tasks_per_s = out.completed as f64 / out.secs.max(1e-9);
    out.submit_to_claimable = Lat::of(s2q);
    out.submit_to_claimed = Lat::of(s2c);
    out.claim_to_working = Lat::of(c2w);
    out.cpu_us_per_task = cpu.as_secs_f64() * 1e6 / p.tasks.max(1) as f64;
    out.rss_mb = mb(rss);
    out.ready_ms = ready.as_secs_f64() * 1000.0;
    Ok(out)
}

/// The legacy board's summary line, parsed.
#[derive(Debug, Clone, Default)]
struct Legacy {
    line: String,
    tasks_per_s: f64,
    lost: usize,
    duplicated: usize,
}

fn legacy_script(a: &BenchArgs) -> Option<PathBuf> {
    if let Some(p) = &a.legacy_script {
        return Some(p.clone());
    }
    let rel = Path::new("../shared/bench/legacy_board.py");
    let mut candidates = vec![rel.to_path_buf()];
    if let Ok(cwd) = std::env::current_dir() {
        for anc in cwd.ancestors() {
            candidates.push(anc.join(rel));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel));
    candidates.into_iter().find(|p| p.is_file())
}

fn legacy(ctx: &mut Ctx, script: &Path, tasks: usize, p: &Pipe, unlocked: bool) -> Result<Legacy, String> {
    let d = ctx.fresh(if unlocked { "legacy-unlocked" } else { "legacy" })?;
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg("--dir")
        .arg(d.join("boards"))
        .args(["--tasks", &tasks.to_string(), "--producers", &p.producers.to_string()])
        .args(["--agents", &p.agents.to_string(), "--timeout", "600"]);
    if unlocked {
        cmd.arg("--unlocked-rmw");
    }
    let out = cmd.output().map_err(|e| format!("python3 {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("legacy:")).ok_or_else(|| {
        format!("legacy board printed no summary: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let num_before = |key: &str| -> f64 {
        line.split(key)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    let num_after = |key: &str| -> usize {
        line.split(key)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    Ok(Legacy {
        line: line.to_string(),
        tasks_per_s: num_before(" tasks/s"),
        lost: num_after("lost="),
        duplicated: num_after("duplicated="),
    })
}

/// W5 figures for one history size.
#[derive(Debug, Clone, Default)]
struct Restart {
    history: usize,
    build_secs: f64,
    ready_ms: f64,
    rss_ready_mb: f64,
    trace_ms: f64,
    run: PipeOut,
    rounds: Vec<PipeOut>,
    rounds_tasks_per_s: Vec<f64>,
    root: PathBuf,
    dir: PathBuf,
}

fn with_history(ctx: &mut Ctx, n: usize, p: &Pipe) -> Result<Restart, String> {
    let d = ctx.fresh(&format!("history-{n}"))?;
    let root = d.join("runtime");
    let t = Instant::now();
    history::build(&root, n, p.body_bytes, 1000)?;
    write_config(&root, p)?;
    let build_secs = t.elapsed().as_secs_f64();
    let before = segments(&root)?;
    // Drop the page cache's advantage as far as an unprivileged process can: nothing. The build
    // just wrote these files, so the restart reads them warm (as a restart after a crash would).
    let (broker, ready) = start_broker(&root, &d.join("broker.log"))?;
    let rss_ready = peak_rss(broker.pid()).unwrap_or(0);
    let mut trace_ms = 0.0;
    if n > 0 {
        let exe = &procs::BINS.get().ok_or("binaries not located")?.0;
        let t = Instant::now();
        let o = std::process::Command::new(exe)
            .arg("--root")
            .arg(&root)
            .args(["trace", &history::history_id(0), "--json"])
            .env("MAILROOM_LOG", "warn")
            .output()
            .map_err(|e| e.to_string())?;
        trace_ms = t.elapsed().as_secs_f64() * 1000.0;
        if !o.status.success() {
            return Err(format!("trace failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    let run = pipeline_on(&d, &root, broker, ready, &before, p)?;
    Ok(Restart {
        history: n,
        build_secs,
        ready_ms: ready.as_secs_f64() * 1000.0,
        rss_ready_mb: mb(rss_ready),
        trace_ms,
        run: run.clone(),
        rounds: vec![run],
        rounds_tasks_per_s: Vec::new(),
        root,
        dir: d,
    })
}

/// W7: one agent, tasks submitted one at a time; submit → agent holds the task.
fn wake(ctx: &mut Ctx, samples: usize, poll_ms: u64, p: &Pipe) -> Result<Lat, String> {
    let d = ctx.fresh(if poll_ms == 0 { "wake-inotify" } else { "wake-poll" })?;
    let root = d.join("runtime");
    write_config(&root, p)?;
    let (broker, _) = start_broker(&root, &d.join("broker.log"))?;
    let layout = Layout::new(&root);
    layout.mailbox("Agent-1").create(&RealFs, true).map_err(|e| e.to_string())?;
    let stop = d.join("stop");
    let mut args = vec![
        "agent".to_string(),
        "--name".into(),
        "Agent-1".into(),
        "--stop".into(),
        stop.display().to_string(),
        "--out".into(),
        d.join("agent.json").display().to_string(),
        "--poll-ms".into(),
        poll_ms.to_string(),
    ];
    if let Some(c) = &p.client_durability {
        args.extend(["--durability".into(), c.clone()]);
    }
    let agent = spawn(&root, &args, &d.join("agent.log"), "agent")?;
    let mut client = agent_sdk::Client::open(&root).map_err(|e| e.to_string())?;
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
        client.submit(&procs::bench_task("B", i, p.body_bytes, None)).map_err(|e| e.to_string())?;
        let t = Instant::now();
        while tail.completes <= i {
            std::thread::sleep(Duration::from_millis(2));
            tail.poll();
            if t.elapsed() > Duration::from_secs(30) {
                return Err(format!("W7: task {i} not completed within 30 s (logs in {})", d.display()));
            }
        }
        // A random gap, so a polling agent is met at a random phase of its loop.
        std::thread::sleep(if poll_ms == 0 {
            Duration::from_millis(5) + jitter(20)
        } else {
            jitter(poll_ms)
        });
    }
    std::fs::write(&stop, b"").map_err(|e| e.to_string())?;
    agent.wait(Duration::from_secs(30))?;
    broker.terminate()?;
    let mut v = Vec::new();
    let mut torn = Vec::new();
    for seg in journal::all_segments(&RealFs, &layout.journal_dir()).map_err(|e| e.to_string())? {
        journal::read_segment(
            &RealFs,
            &seg,
            |rec| {
                if rec.op == Op::Complete
                    && let Some(t) = rec.task
                {
                    let sub = t.params["submitted_us"].as_i64().unwrap_or(0);
                    let claimed = t.result["claimed_us"].as_i64().unwrap_or(0);
                    v.push((claimed - sub) as f64 / 1000.0);
                }
            },
            &mut torn,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(Lat::of(v))
}

fn median_run(mut runs: Vec<PipeOut>) -> (PipeOut, Vec<f64>) {
    let all: Vec<f64> = runs.iter().map(|r| r.tasks_per_s).collect();
    runs.sort_by(|a, b| a.tasks_per_s.total_cmp(&b.tasks_per_s));
    let m = runs.swap_remove(runs.len() / 2);
    (m, all)
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| (k / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    json!({"nproc": nproc, "cpu": cpu, "kernel": read("/proc/sys/kernel/osrelease").trim(), "mem_gib": mem_gib})
}

/// The filesystem type of `dir`, from `/proc/self/mounts` (longest matching mount point).
fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
        })
        .max()
        .map(|(_, t)| t)
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mailroom = match &a.mailroom {
        Some(p) => p.clone(),
        None => bench.with_file_name("mailroom"),
    };
    if !mailroom.is_file() {
        return Err(format!(
            "{}: no mailroom binary (build it with `cargo build --release -p mailroom`, or pass --mailroom PATH)",
            mailroom.display()
        ));
    }
    let _ = procs::BINS.set((mailroom, bench));
    let plan = Plan::new(a);
    let want = |w: &str| a.only.is_empty() || a.only.iter().any(|o| o.eq_ignore_ascii_case(w));
    let client_dur = a.client_durability.clone();
    if let Some(c) = &client_dur {
        parse_durability(c)?;
    }
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("mailroom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut ctx = Ctx { dir: dir.clone(), n: 0 };
    let result = run_all(a, &plan, &want, client_dur, &mut ctx);
    if a.keep || result.is_err() {
        log(&format!("roots kept in {}", dir.display()));
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (report, summary) = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn run_all(
    a: &BenchArgs,
    plan: &Plan,
    want: &dyn Fn(&str) -> bool,
    client_dur: Option<String>,
    ctx: &mut Ctx,
) -> Result<(Value, String), String> {
    let mut m = machine();
    m["fs"] = json!(fs_type(&ctx.dir));
    m["dir"] = json!(ctx.dir.display().to_string());
    let base = Pipe {
        tasks: plan.tasks,
        producers: a.producers,
        agents: a.agents,
        body_bytes: a.body_bytes,
        assigned_pct: a.assigned_pct,
        broker_durability: "batch".into(),
        client_durability: client_dur.clone(),
        broker_settings: a.broker_settings.clone(),
        prefix: "B".into(),
    };
    let client_label = client_dur.clone().unwrap_or_else(|| "always (SDK default)".into());
    let mut report = json!({
        "machine": m,
        "params": {
            "tasks": plan.tasks, "producers": a.producers, "agents": a.agents, "repeat": plan.repeat,
            "body_bytes": a.body_bytes, "assigned_pct": a.assigned_pct,
            "broker_durability": "batch", "client_durability": client_label,
        },
    });
    let mut s = String::new();
    let mut key: Vec<String> = Vec::new();
    s.push_str(&format!(
        "mailroom bench: {} cores ({}), kernel {}, {} at {}\n",
        report["machine"]["nproc"],
        report["machine"]["cpu"].as_str().unwrap_or(""),
        report["machine"]["kernel"].as_str().unwrap_or(""),
        report["machine"]["fs"].as_str().unwrap_or(""),
        ctx.dir.display()
    ));
    s.push_str(&format!(
        "  {} tasks of ~{} B, {} producers, {} agents, broker durability batch, client durability {}\n",
        plan.tasks, a.body_bytes, a.producers, a.agents, client_label
    ));

    // W3 first: the floor, on the same disk, with the same durability.
    let mut floor_tps = None;
    if want("w3") {
        log("W3 filesystem floor");
        let d = ctx.fresh("floor")?;
        let client = client_dur.as_deref().map(parse_durability).transpose()?.unwrap_or(Durability::Always);
        let f = floor::run(
            &d,
            a.producers + a.agents,
            plan.tasks,
            a.body_bytes,
            a.floor_batch,
            Durability::Batch,
            client,
        )?;
        floor_tps = Some(f.tasks_per_s());
        report["w3_floor"] = json!({"tasks": f.tasks, "threads": f.threads, "secs": r3(f.elapsed.as_secs_f64()),
            "tasks_per_s": f.tasks_per_s().round(), "journal_fsync_every": a.floor_batch});
    }

    let mut w1: Option<PipeOut> = None;
    if want("w1") {
        let mut runs = Vec::new();
        for r in 0..plan.repeat {
            log(&format!("W1 pipeline, run {} of {}", r + 1, plan.repeat));
            runs.push(pipeline(ctx, "w1", &base)?);
        }
        let (o, all) = median_run(runs);
        report["w1_pipeline"] = o.json();
        report["w1_pipeline"]["runs_tasks_per_s"] = json!(all.iter().map(|x| x.round()).collect::<Vec<_>>());
        s.push_str(&format!(
            "W1 pipeline     {:>8.0} tasks/s (median of {}: {}), completed {}/{}, lost {}, duplicated {}, claimed twice {}\n",
            o.tasks_per_s,
            all.len(),
            all.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "),
            o.completed,
            o.tasks,
            o.lost,
            o.duplicated,
            o.claimed_twice
        ));
        s.push_str(&format!(
            "                submit->claimable {}; submit->claimed {}; claim->working (journaled) {}\n",
            o.submit_to_claimable.show(),
            o.submit_to_claimed.show(),
            o.claim_to_working.show()
        ));
        s.push_str(&format!(
            "                broker CPU {:.0} us/task, peak RSS {:.1} MB, ready in {:.0} ms\n",
            o.cpu_us_per_task, o.rss_mb, o.ready_ms
        ));
        key.push(format!(
            "W1 {:.0} tasks/s p99 claimable {:.1} ms",
            o.tasks_per_s, o.submit_to_claimable.p99
        ));
        w1 = Some(o);
    }
    if let Some(f) = floor_tps {
        let frac = w1.as_ref().map(|o| o.tasks_per_s / f);
        report["w3_floor"]["w1_fraction"] = json!(frac.map(r3));
        s.push_str(&format!(
            "W3 floor        {:>8.0} tasks/s (same file operations in {} threads, no broker, journal fsync every {} tasks){}\n",
            f,
            a.producers + a.agents,
            a.floor_batch,
            frac.map(|x| format!("; W1 = {:.0}% of floor", x * 100.0)).unwrap_or_default()
        ));
        key.push(match frac {
            Some(x) => format!("W3 {f:.0}/s (W1 {:.0}%)", x * 100.0),
            None => format!("W3 {f:.0}/s"),
        });
    }

    if want("w2") {
        match legacy_script(a) {
            None => {
                s.push_str("W2 legacy       skipped: legacy_board.py not found (--legacy-script PATH)\n");
                report["w2_legacy"] = json!({"skipped": "legacy_board.py not found"});
                key.push("W2 skipped".into());
            }
            Some(_) if std::process::Command::new("python3").arg("--version").output().is_err() => {
                s.push_str("W2 legacy       skipped: python3 not found\n");
                report["w2_legacy"] = json!({"skipped": "python3 not found"});
                key.push("W2 skipped".into());
            }
            Some(script) => {
                let n = plan.legacy_tasks;
                log(&format!("W2 legacy board, {n} tasks"));
                let l = legacy(ctx, &script, n, &base, false)?;
                log("W2 legacy board --unlocked-rmw");
                let u = legacy(ctx, &script, n, &base, true)?;
                let mr = match &w1 {
                    Some(o) if o.tasks == n => o.clone(),
                    _ => {
                        log(&format!("W2 mailroom at {n} tasks"));
                        pipeline(ctx, "w2-mailroom", &Pipe { tasks: n, ..base.clone() })?
                    }
                };
                let ratio = mr.tasks_per_s / l.tasks_per_s.max(1e-9);
                report["w2_legacy"] = json!({
                    "tasks": n, "script": script.display().to_string(),
                    "legacy_tasks_per_s": l.tasks_per_s, "legacy_line": l.line,
                    "legacy_lost": l.lost, "legacy_duplicated": l.duplicated,
                    "unlocked_tasks_per_s": u.tasks_per_s, "unlocked_line": u.line,
                    "unlocked_lost": u.lost, "unlocked_duplicated": u.duplicated,
                    "mailroom": mr.json(), "ratio": r3(ratio),
                });
                s.push_str(&format!(
                    "W2 legacy       {:>8.1} tasks/s locked (lost {}, dup {}), {:.1} tasks/s --unlocked-rmw (lost {}, dup {}); mailroom {:.0} tasks/s (lost {}, dup {}) = {:.0}x, {} tasks\n",
                    l.tasks_per_s,
                    l.lost,
                    l.duplicated,
                    u.tasks_per_s,
                    u.lost,
                    u.duplicated,
                    mr.tasks_per_s,
                    mr.lost,
                    mr.duplicated,
                    ratio,
                    n
                ));
                key.push(format!(
                    "W2 {ratio:.0}x legacy, lost {}/{} unlocked vs {}",
                    u.lost,
                    n,
                    mr.lost + mr.duplicated
                ));
            }
        }
    }

    if want("w6") {
        let mut rows = serde_json::Map::new();
        let mut line = Vec::new();
        for mode in ["always", "batch", "never"] {
            log(&format!("W6 durability {mode}"));
            let client = match mode {
                "batch" => client_dur.clone(),
                m => Some(m.to_string()),
            };
            let p = Pipe {
                tasks: plan.durability_tasks,
                broker_durability: mode.into(),
                client_durability: client,
                ..base.clone()
            };
            let o = pipeline(ctx, &format!("w6-{mode}"), &p)?;
            s.push_str(&format!(
                "W6 {:<6}       {:>8.0} tasks/s, submit->claimable {}, broker CPU {:.0} us/task ({} tasks)\n",
                mode,
                o.tasks_per_s,
                o.submit_to_claimable.show(),
                o.cpu_us_per_task,
                o.tasks
            ));
            line.push(format!("{:.0}", o.tasks_per_s));
            rows.insert(mode.into(), o.json());
        }
        report["w6_durability"] = Value::Object(rows);
        key.push(format!("W6 always/batch/never {}/s", line.join("/")));
    }

    if want("w7") {
        log("W7 wake-up latency, claim_wait (inotify)");
        let w = wake(ctx, plan.wake_samples, 0, &base)?;
        log("W7 wake-up latency, 1 s polling");
        let pl = wake(ctx, plan.poll_samples, 1000, &base)?;
        report["w7_wakeup"] = json!({"inotify": w.json(), "poll_1s": pl.json()});
        s.push_str(&format!(
            "W7 wake-up      claim_wait (inotify) {} (n={}); 1 s polling {} (n={})\n",
            w.show(),
            w.n,
            pl.show(),
            pl.n
        ));
        key.push(format!("W7 p99 {:.1} ms (poll {:.0} ms)", w.p99, pl.p99));
    }

    if want("w4") || want("w5") {
        let mut rows = Vec::new();
        let p = Pipe { tasks: plan.history_tasks, ..base.clone() };
        for &h in &plan.history {
            log(&format!("W4/W5 history {h}: building, restarting, tracing, running {} tasks", p.tasks));
            rows.push(with_history(ctx, h, &p)?);
        }
        // Further rounds interleave the history sizes, so a change in the machine's load hits
        // every size alike; each size reports its median round.
        for round in 1..plan.repeat {
            for r in rows.iter_mut() {
                log(&format!("W4 history {}: round {} of {}", r.history, round + 1, plan.repeat));
                let p = Pipe { prefix: format!("R{round}"), ..p.clone() };
                let before = segments(&r.root)?;
                let (broker, ready) = start_broker(&r.root, &r.dir.join(format!("broker-{round}.log")))?;
                r.rounds.push(pipeline_on(&r.dir, &r.root, broker, ready, &before, &p)?);
            }
        }
        for r in rows.iter_mut() {
            let (m, all) = median_run(std::mem::take(&mut r.rounds));
            r.run = m;
            r.rounds_tasks_per_s = all;
        }
        let zero = rows.iter().find(|r| r.history == 0).map(|r| r.run.tasks_per_s);
        let mut arr = Vec::new();
        let mut ratios = Vec::new();
        for r in &rows {
            let ratio = zero.map(|z| r.run.tasks_per_s / z.max(1e-9));
            s.push_str(&format!(
                "W4 history {:>9}: {:>8.0} tasks/s (median of {}){}  | W5 ready {:.0} ms, RSS {:.0} MB at ready / {:.0} MB after run{}\n",
                r.history,
                r.run.tasks_per_s,
                r.rounds_tasks_per_s.len(),
                ratio.map(|x| format!(" ({:.0}% of empty)", x * 100.0)).unwrap_or_default(),
                r.ready_ms,
                r.rss_ready_mb,
                r.run.rss_mb,
                if r.history > 0 { format!(", trace {:.0} ms", r.trace_ms) } else { String::new() }
            ));
            arr.push(json!({
                "history": r.history, "build_secs": r3(r.build_secs), "ready_ms": r3(r.ready_ms),
                "rss_ready_mb": r3(r.rss_ready_mb), "trace_ms": r3(r.trace_ms),
                "ratio_to_empty": ratio.map(r3), "run": r.run.json(),
                "rounds_tasks_per_s": r.rounds_tasks_per_s.iter().map(|x| x.round()).collect::<Vec<_>>(),
            }));
            ratios.push((r.history, ratio, r));
        }
        report["w4_w5_history"] = Value::Array(arr);
        if let Some((h, Some(ratio), r)) = ratios.iter().max_by_key(|(h, _, _)| *h) {
            key.push(format!(
                "W4 {} {:.0}% of empty, W5 ready {:.2} s RSS {:.0} MB trace {:.1} s",
                short(*h),
                ratio * 100.0,
                r.ready_ms / 1000.0,
                r.run.rss_mb.max(r.rss_ready_mb),
                r.trace_ms / 1000.0
            ));
        }
    }
    s.push_str(&format!("bench: {}\n", key.join(" | ")));
    report["summary"] = json!(key.join(" | "));
    Ok((report, s))
}

fn short(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

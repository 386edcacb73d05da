//! The processes a benchmark run is made of: the broker child (`mailroom run`), producers and
//! agents (the `producer` / `agent` subcommands of `mailroom-bench`, using the SDK), and what the
//! orchestrator reads from them (`/proc`, the journal, their output files).

use agent_sdk::{Agent, Client};
use runtime_layout::{Durability, Layout};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Wall clock in microseconds since the epoch (the same clock the broker stamps history with).
pub fn now_us() -> i64 {
    runtime_layout::now().as_micros()
}

pub fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "always" => Ok(Durability::Always),
        "batch" => Ok(Durability::Batch),
        "never" => Ok(Durability::Never),
        _ => Err(format!("durability `{s}`: must be always, batch or never")),
    }
}

/// Arguments of the `producer` subcommand.
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
}

/// Arguments of the `agent` subcommand.
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
    /// 0: block in `claim_wait` (inotify); otherwise poll `claim` every this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
}

/// The task a producer submits: about `body_bytes` of JSON, with its submit time in `params`.
pub fn bench_task(prefix: &str, i: usize, body_bytes: usize, assigned: Option<String>) -> Value {
    let priority = ["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4];
    let mut t = json!({
        "task_id": format!("{prefix}-{i:08}"),
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

pub fn producer_main(a: &ProducerArgs) -> Result<(), String> {
    let mut client = Client::open(&a.root).map_err(|e| e.to_string())?;
    if let Some(d) = &a.durability {
        client = client.with_durability(parse_durability(d)?);
    }
    let mut i = a.index;
    while i < a.tasks {
        let assigned = (a.assigned_pct > 0 && i % 100 < a.assigned_pct)
            .then(|| format!("Agent-{}", i / 100 % a.agents.max(1) + 1));
        client.submit(&bench_task(&a.prefix, i, a.body_bytes, assigned)).map_err(|e| e.to_string())?;
        i += a.of.max(1);
    }
    Ok(())
}

pub fn agent_main(a: &AgentArgs) -> Result<(), String> {
    let mut agent = Agent::open(&a.root, &a.name).map_err(|e| e.to_string())?;
    if let Some(d) = &a.durability {
        agent = agent.with_durability(parse_durability(d)?);
    }
    let pools = vec![a.pool.clone()];
    let mut ids: Vec<String> = Vec::new();
    loop {
        // Try without a watcher first: under load there is nearly always a task waiting.
        let claim = match agent.claim(&pools).map_err(|e| e.to_string())? {
            Some(c) => Some(c),
            None if a.stop.exists() => break,
            None if a.poll_ms > 0 => {
                std::thread::sleep(Duration::from_millis(a.poll_ms));
                None
            }
            None => agent.claim_wait(&pools, Duration::from_millis(250)).map_err(|e| e.to_string())?,
        };
        let Some(c) = claim else { continue };
        let claimed_us = now_us();
        ids.push(c.task.task_id.clone());
        agent.complete(&c.name, json!({"claimed_us": claimed_us})).map_err(|e| e.to_string())?;
    }
    let out = json!({"agent": a.name, "claims": ids.len(), "ids": ids});
    std::fs::write(&a.out, out.to_string()).map_err(|e| format!("{}: {e}", a.out.display()))
}

/// A child process killed on drop if it is still running.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process; an error names it when it failed.
    pub fn wait(mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("{} exited with {s}", self.what)),
                Ok(None) if start.elapsed() > timeout => {
                    return Err(format!("{} still running after {timeout:?}", self.what));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{}: {e}", self.what)),
            }
        }
    }

    /// SIGTERM (a clean broker shutdown), then wait.
    pub fn terminate(mut self) -> Result<(), String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        match self.child.wait() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("{} exited with {s}", self.what)),
            Err(e) => Err(format!("{}: {e}", self.what)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The binaries a run starts: `mailroom` for brokers and `trace`, this binary for producers and
/// agents. Set once by [`crate::run`].
pub static BINS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();

/// `<exe> <args> --root <root>` as a child of this process (`exe` is `mailroom` for `run`,
/// `mailroom-bench` for `producer` and `agent`).
pub fn spawn(root: &Path, args: &[String], log: &Path, what: &str) -> Result<Proc, String> {
    let (mailroom, bench) = BINS.get().ok_or("binaries not located")?;
    let exe = if args.first().map(String::as_str) == Some("run") { mailroom } else { bench };
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        .arg("--root")
        .arg(root)
        .env("MAILROOM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    Ok(Proc { child, what: what.to_string() })
}

/// Starts `mailroom run` on `root` and waits until it serves (it has written its boards, the
/// readiness signal the end-to-end tests use too). Returns the process and the time to serve.
pub fn start_broker(root: &Path, log: &Path) -> Result<(Proc, Duration), String> {
    let layout = Layout::new(root);
    let ready = layout.board(runtime_layout::Board::Backlog);
    let _ = std::fs::remove_file(&ready);
    let t0 = Instant::now();
    let mut p = spawn(root, &["run".to_string()], log, "broker")?;
    while !ready.exists() {
        if let Ok(Some(s)) = p.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("broker exited early ({s}): {log}"));
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err("broker not serving after 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t0.elapsed();
    p.what = "broker".into();
    Ok((p, took))
}

/// User+system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm field: state is field 3, utime 14, stime 15 (1-based) -> index 11, 12.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Peak resident set (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Counts `complete` records appended to the journal, reading only the new bytes of each
/// segment on every poll (cheap enough not to disturb the run it watches).
pub struct JournalTail {
    dir: PathBuf,
    offsets: HashMap<String, u64>,
    pub completes: usize,
}

impl JournalTail {
    pub fn new(layout: &Layout) -> Self {
        let dir = layout.journal_dir();
        let mut offsets = HashMap::new();
        // Whatever is there before the run (a built history) is not counted.
        for d in [dir.clone(), dir.join("archive")] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".jsonl") {
                    offsets.insert(name, e.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
        Self { dir, offsets, completes: 0 }
    }

    pub fn poll(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        for d in [self.dir.clone(), self.dir.join("archive")] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".jsonl") {
                    continue;
                }
                let off = self.offsets.get(&name).copied().unwrap_or(0);
                let Ok(mut f) = std::fs::File::open(e.path()) else { continue };
                if f.seek(SeekFrom::Start(off)).is_err() {
                    continue;
                }
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_err() {
                    continue;
                }
                // Only whole lines: a record being appended is counted on the next poll.
                let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { continue };
                let needle = b"\"op\":\"complete\"";
                self.completes += buf[..end].windows(needle.len()).filter(|w| w == needle).count();
                self.offsets.insert(name, off + end as u64 + 1);
            }
        }
    }
}

//! Filesystem operations per task, as the product counts them: every process's `RootFs` counts
//! what it does ([`runtime_layout::FsCounts`]). The broker's counts are read from its HTTP
//! surface (`GET /api/stats`, `engine.fs`: the bench's brokers listen on a free loopback port,
//! written to `broker/http.addr`) before the load starts and after it ends; producers and agents
//! write their SDK handle's counts into their report files at exit. [`FsTally`] holds the three
//! sums; its `Display` is the per-task table of a pipeline run.

use runtime_layout::{Fs, FsCounts, Layout};
use serde::Serialize;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the processes of one pipeline run did to the root, summed per side.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FsTally {
    /// Tasks of the run (the divisor of the table).
    pub tasks: usize,
    /// The broker, from the load's start to its end.
    pub broker: FsCounts,
    /// Every producer process, whole lifetime.
    pub producers: FsCounts,
    /// Every agent process, whole lifetime (registration included).
    pub agents: FsCounts,
}

/// The broker's own account of its loop, from `GET /api/stats` (`engine`): passes and journal
/// commits, and the seconds they took. Differences of two readings describe a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LoopCounts {
    pub passes: u64,
    pub pass_secs: f64,
    pub commits: u64,
    pub commit_secs: f64,
}

impl LoopCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &LoopCounts) -> LoopCounts {
        LoopCounts {
            passes: self.passes.saturating_sub(earlier.passes),
            pass_secs: (self.pass_secs - earlier.pass_secs).max(0.0),
            commits: self.commits.saturating_sub(earlier.commits),
            commit_secs: (self.commit_secs - earlier.commit_secs).max(0.0),
        }
    }

    /// Both summed (the nodes of a cluster run).
    pub fn plus(&self, other: &LoopCounts) -> LoopCounts {
        LoopCounts {
            passes: self.passes + other.passes,
            pass_secs: self.pass_secs + other.pass_secs,
            commits: self.commits + other.commits,
            commit_secs: self.commit_secs + other.commit_secs,
        }
    }
}

/// A run's [`LoopCounts`], with what to divide them by; its `Display` is one line of the report.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LoopTally {
    /// Tasks of the run.
    pub tasks: usize,
    /// Wall time between the two readings.
    pub secs: f64,
    /// Brokers read (one per node).
    pub nodes: usize,
    pub counts: LoopCounts,
}

impl fmt::Display for LoopTally {
    /// Passes and commits per task, their mean durations, and how much of the span the brokers'
    /// loops spent in passes (near 100%: the loop is what the run waits for).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let n = self.tasks.max(1) as f64;
        let mean_us = |secs: f64, count: u64| secs * 1e6 / count.max(1) as f64;
        writeln!(
            f,
            "                broker loop: {:.2} passes/task of {:.0} us mean, busy {:.0}% of the load; {:.2} commits/task of {:.0} us mean",
            c.passes as f64 / n,
            mean_us(c.pass_secs, c.passes),
            100.0 * c.pass_secs / (self.secs * self.nodes.max(1) as f64).max(1e-9),
            c.commits as f64 / n,
            mean_us(c.commit_secs, c.commits),
        )
    }
}

/// One reading of the broker's HTTP surface on `root`: its filesystem counts and its loop's.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerReading {
    pub fs: FsCounts,
    pub looped: LoopCounts,
}

/// The broker's counts now, from its HTTP surface on `root`; `None` (and a note on stderr) when it
/// has none or does not answer within a few seconds.
pub fn broker_counts(fs: &dyn Fs, root: &Path) -> Option<BrokerReading> {
    let addr_file = Layout::new(root).http_addr_file();
    let start = Instant::now();
    let addr = loop {
        match fs.read(&addr_file, 256) {
            Ok(b) => break String::from_utf8_lossy(&b).trim().to_string(),
            Err(_) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                eprintln!("bench: no broker operation counts ({e})");
                return None;
            }
        }
    };
    match get_json(&addr, "/api/stats") {
        Ok(v) => {
            let e = &v["engine"];
            let fs = serde_json::from_value::<FsCounts>(e["fs"].clone()).ok()?;
            let looped = LoopCounts {
                passes: e["passes"].as_u64().unwrap_or(0),
                pass_secs: e["pass_secs"].as_f64().unwrap_or(0.0),
                commits: e["commits"].as_u64().unwrap_or(0),
                commit_secs: e["commit_secs"].as_f64().unwrap_or(0.0),
            };
            Some(BrokerReading { fs, looped })
        }
        Err(e) => {
            eprintln!("bench: no broker operation counts from http://{addr}/api/stats: {e}");
            None
        }
    }
}

/// `GET path` on a loopback HTTP/1.1 server, the body as JSON (reads on loopback need no token).
fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    serde_json::from_str(body).map_err(|e| format!("the body: {e}"))
}

/// The `fs` object of a load process's report file (absent: zero).
pub fn from_report(v: &serde_json::Value) -> FsCounts {
    serde_json::from_value::<FsCounts>(v["fs"].clone()).unwrap_or_default()
}

/// A row of the table: its label and the count it shows.
type Row = (&'static str, fn(&FsCounts) -> u64);

impl fmt::Display for FsTally {
    /// One row per kind of operation: per task, the broker's, the producers', the agents'.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.tasks.max(1) as f64;
        let per = |x: u64| x as f64 / n;
        let (b, p, a) = (&self.broker, &self.producers, &self.agents);
        writeln!(
            f,
            "                filesystem operations per task       broker  producers     agents      total"
        )?;
        let rows: [Row; 14] = [
            ("files created", |c| c.creates),
            ("files rewritten in place", |c| c.rewrites),
            ("renames", |c| c.renames),
            ("unlinks", |c| c.unlinks),
            ("fsyncs of files", |c| c.file_fsyncs),
            ("fsyncs of directories", |c| c.dir_fsyncs),
            ("journal appends", |c| c.appends),
            ("journal bytes", |c| c.appended_bytes),
            ("bytes written to files", |c| c.created_bytes),
            ("files read", |c| c.reads),
            ("bytes read", |c| c.read_bytes),
            ("directories listed", |c| c.lists),
            ("stats", |c| c.stats),
            ("mtimes set (heartbeats)", |c| c.touches),
        ];
        for (name, get) in rows {
            let (x, y, z) = (get(b), get(p), get(a));
            writeln!(
                f,
                "                  {name:<31}{:>11.2}{:>11.2}{:>11.2}{:>11.2}",
                per(x),
                per(y),
                per(z),
                per(x + y + z)
            )?;
        }
        Ok(())
    }
}

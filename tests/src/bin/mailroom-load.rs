//! A load generator for the crash and race suites, built on the agent SDK: `produce` submits
//! tasks and `agent` claims, sometimes heartbeats, and completes, fails or releases them. Each
//! acknowledged call (the SDK returned `Ok`) is appended to a JSON-lines log *after* it returned,
//! so a process killed at any moment never logs an acknowledgement it did not receive.
//!
//! ```text
//! mailroom-load produce --root R --prefix P --count N --log F --seed S [--pool P] [--assign A,B] [--gap-us U] [--stop F]
//! mailroom-load agent   --root R --agent A --log F --seed S --stop F [--pool P]... [--work-ms M] [--fail-pct N]
//! ```

use agent_sdk::{Agent, Client, Error};
use mailroom_tests::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Args {
    one: HashMap<String, String>,
    pools: Vec<String>,
}

impl Args {
    fn parse(v: &[String]) -> Self {
        let mut one = HashMap::new();
        let mut pools = Vec::new();
        let mut it = v.iter();
        while let Some(k) = it.next() {
            let key = k.trim_start_matches("--").to_string();
            let val = it.next().unwrap_or_else(|| die(&format!("{k} needs a value"))).clone();
            if key == "pool" {
                pools.push(val);
            } else {
                one.insert(key, val);
            }
        }
        Self { one, pools }
    }
    fn get(&self, k: &str) -> &str {
        self.one.get(k).map(String::as_str).unwrap_or_else(|| die(&format!("--{k} is required")))
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.one
            .get(k)
            .map(|v| v.parse().unwrap_or_else(|_| die(&format!("--{k}: a number"))))
            .unwrap_or(default)
    }
}

fn die(msg: &str) -> ! {
    eprintln!("mailroom-load: {msg}");
    std::process::exit(2)
}

/// Appends one JSON line in a single write (O_APPEND), after the call it records returned.
struct Log(std::fs::File);

impl Log {
    fn open(p: &str) -> Self {
        Self(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| die(&format!("{p}: {e}"))),
        )
    }
    fn write(&mut self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.0.write_all(line.as_bytes()).unwrap_or_else(|e| die(&format!("log: {e}")));
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else { die("produce or agent") };
    let args = Args::parse(rest);
    match cmd.as_str() {
        "produce" => produce(&args),
        "agent" => agent(&args),
        other => die(&format!("unknown command {other}")),
    }
}

fn stopped(stop: Option<&Path>) -> bool {
    stop.is_some_and(Path::exists)
}

fn produce(a: &Args) {
    let root = PathBuf::from(a.get("root"));
    let prefix = a.get("prefix");
    let count = a.num("count", 100);
    let first = a.num("first", 0);
    let gap = Duration::from_micros(a.num("gap-us", 0));
    let pool = a.pools.first().cloned().unwrap_or_else(|| "work".into());
    let assign: Vec<String> =
        a.one.get("assign").map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default();
    let assign_pct = a.num("assign-pct", 0);
    let stop = a.one.get("stop").map(PathBuf::from);
    let mut rng = Rng::new(a.num("seed", 1));
    let mut log = Log::open(a.get("log"));
    let client = Client::open(&root).unwrap_or_else(|e| die(&e.to_string()));
    for i in first..first + count {
        if stopped(stop.as_deref()) {
            break;
        }
        let id = format!("{prefix}-{i:06}");
        let mut task = json!({"task_id": id, "task_type": pool, "max_attempts": 1000, "params": {"i": i}});
        if !assign.is_empty() && rng.chance(assign_pct) {
            task["assigned_to"] = json!(assign[rng.range(0, assign.len() as u64) as usize]);
        }
        match client.submit(&task) {
            Ok(msg) => log.write(
                json!({"op": "submit", "task_id": id, "msg": msg, "assigned_to": task["assigned_to"]}),
            ),
            // Not taken (yet): not acknowledged, so not logged as submitted.
            Err(e @ (Error::Refused { .. } | Error::Unanswered { .. })) => {
                log.write(json!({"op": "unacknowledged", "task_id": id, "why": e.to_string()}))
            }
            Err(e) => die(&format!("submit {id}: {e}")),
        }
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
}

fn agent(a: &Args) {
    let root = PathBuf::from(a.get("root"));
    let name = a.get("agent");
    let stop = PathBuf::from(a.get("stop"));
    let work_ms = a.num("work-ms", 20);
    let fail_pct = a.num("fail-pct", 5);
    let release_pct = a.num("release-pct", 5);
    let mut rng = Rng::new(a.num("seed", 1));
    let mut log = Log::open(a.get("log"));
    let agent = Agent::register(&root, name).unwrap_or_else(|e| die(&e.to_string()));
    loop {
        let claim = match agent.claim_wait(&a.pools, Duration::from_millis(300)) {
            Ok(Some(c)) => c,
            Ok(None) if stopped(Some(&stop)) => return,
            Ok(None) => continue,
            Err(e) => die(&format!("{name}: claim: {e}")),
        };
        let id = claim.task.task_id.clone();
        let rec = |op: &str| json!({"op": op, "task_id": id, "claim": claim.name, "agent": name});
        log.write(rec("claim"));
        if rng.chance(50) {
            match agent.heartbeat(&claim.name) {
                Ok(()) => {}
                Err(Error::ClaimLost { .. }) => {
                    log.write(rec("lost"));
                    continue;
                }
                Err(e) => die(&format!("{name}: heartbeat: {e}")),
            }
        }
        if work_ms > 0 {
            std::thread::sleep(Duration::from_millis(rng.range(0, work_ms)));
        }
        let roll = rng.range(0, 100);
        let (op, res) = if roll < fail_pct {
            ("fail", agent.fail(&claim.name, "injected failure", true))
        } else if roll < fail_pct + release_pct {
            ("release", agent.release(&claim.name))
        } else {
            ("complete", agent.complete(&claim.name, json!({"by": name, "claim": claim.name})))
        };
        match res {
            Ok(_) => log.write(rec(op)),
            // Refused (the claim was taken back meanwhile) or not answered: not acknowledged.
            Err(Error::ClaimLost { .. } | Error::Refused { .. } | Error::Unanswered { .. }) => {
                log.write(rec("lost"))
            }
            Err(e) => die(&format!("{name}: {op}: {e}")),
        }
    }
}

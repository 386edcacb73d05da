//! Peers: the same workflow through mailroom, PostgreSQL, Redis and NATS JetStream, side by side
//! in one run (`crate::peers` holds the systems). N tasks of about 1 KB, P producer and A agent
//! processes, every submit and every completion acknowledged before the client goes on. Rounds
//! interleave the systems (mailroom, postgres, redis, nats, mailroom, ...) so that a change in the
//! machine's load hits them alike; each system reports its median round, and mailroom's ratio to
//! each peer is the median over the median. A peer whose server is not installed is reported as
//! skipped, with why, never as a number.
//!
//! A round: the system prepares a fresh queue, the agents and then the producers start, the
//! orchestrator asks the system how many tasks are completed until all are, the agents are told
//! to stop, and the system itself is asked what it completed. tasks/s is the tasks completed over
//! the time from the first submit to the last acknowledged completion (both taken by the clients).

use super::Workload;
use crate::error::BenchError;
use crate::peers::load::{AgentOut, ProducerOut, peer_task_id, read_report};
use crate::peers::{self, Side, System, Tally, Target};
use crate::pipeline::{logs_in, path_arg};
use crate::procs::{Proc, write_file};
use crate::report::{Lat, Section, round};
use crate::run::{Ctx, log};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

/// A round that completes nothing for this long has failed.
const STALL: Duration = Duration::from_secs(60);

pub struct Peers;

#[derive(Debug, Clone, Serialize)]
pub struct PeersReport {
    pub tasks: usize,
    pub body_bytes: usize,
    pub producers: usize,
    pub agents: usize,
    pub rounds: usize,
    pub mailroom: SystemRun,
    pub postgres: PeerResult,
    pub redis: PeerResult,
    pub nats: PeerResult,
}

/// A peer's figures, or why it did not run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PeerResult {
    Skipped { skipped: String },
    Ran(Box<PeerRun>),
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerRun {
    #[serde(flatten)]
    pub run: SystemRun,
    /// mailroom's median tasks/s over this peer's.
    #[serde(serialize_with = "round::r3")]
    pub mailroom_ratio: f64,
}

/// One system's rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemRun {
    pub version: String,
    /// The median round's tasks/s.
    #[serde(serialize_with = "round::r0")]
    pub tasks_per_s: f64,
    #[serde(serialize_with = "round::r0_all")]
    pub rounds_tasks_per_s: Vec<f64>,
    /// Tasks submitted over all rounds.
    pub submitted: usize,
    /// Distinct tasks completed over all rounds.
    pub completed: usize,
    /// Tasks submitted and never completed.
    pub lost: usize,
    /// Completions beyond the first of a task.
    pub duplicated: usize,
    /// Tasks still queued or held in the system after the last round.
    pub left: usize,
    /// The median round's submit to acknowledged completion.
    pub submit_to_done: Lat,
    /// How completions were checked, as the system recorded them.
    pub checked: String,
}

/// One round of one system.
struct Round {
    tasks_per_s: f64,
    completed: usize,
    lost: usize,
    duplicated: usize,
    left: usize,
    submit_to_done: Lat,
    checked: String,
}

impl Workload for Peers {
    fn names(&self) -> &'static [&'static str] {
        &["peers"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let mut sides: Vec<Box<dyn Side>> = Vec::new();
        let mut skipped: HashMap<System, String> = HashMap::new();
        for system in std::iter::once(System::Mailroom).chain(System::PEERS) {
            if !cx.plan.peers.contains(&system) && system != System::Mailroom {
                skipped.insert(system, "not selected (--peers)".into());
                continue;
            }
            log(&format!("peers: starting {}", system.name()));
            match peers::start(system, cx)? {
                Ok(side) => sides.push(side),
                Err(skip) => {
                    log(&format!("peers: {} skipped: {}", system.name(), skip.0));
                    skipped.insert(system, skip.0);
                }
            }
        }
        let result = rounds(cx, &mut sides);
        // Every server is stopped, whatever happened (their guards would on drop as well).
        let mut stopped = Ok(());
        for side in sides {
            let s = side.stop();
            if stopped.is_ok() {
                stopped = s;
            }
        }
        let mut runs = result?;
        stopped?;
        let p = &cx.plan;
        let mailroom = runs.remove(&System::Mailroom).unwrap_or_default();
        let mut peer = |system: System| match (runs.remove(&system), skipped.remove(&system)) {
            (Some(run), _) => PeerResult::Ran(Box::new(PeerRun {
                mailroom_ratio: mailroom.tasks_per_s / run.tasks_per_s.max(1e-9),
                run,
            })),
            (None, why) => PeerResult::Skipped { skipped: why.unwrap_or_else(|| "did not run".into()) },
        };
        Ok(Box::new(PeersReport {
            tasks: p.peer_tasks,
            body_bytes: p.body_bytes,
            producers: p.peer_producers,
            agents: p.peer_agents,
            rounds: p.repeat,
            postgres: peer(System::Postgres),
            redis: peer(System::Redis),
            nats: peer(System::Nats),
            mailroom,
        }))
    }
}

/// Every round of every system, interleaved; each system's median round and totals.
fn rounds(cx: &mut Ctx, sides: &mut [Box<dyn Side>]) -> Result<HashMap<System, SystemRun>, BenchError> {
    let mut all: HashMap<System, Vec<Round>> = HashMap::new();
    let repeat = cx.plan.repeat;
    for r in 0..repeat {
        for side in sides.iter_mut() {
            log(&format!(
                "peers: {} round {} of {repeat}, {} tasks",
                side.system().name(),
                r + 1,
                cx.plan.peer_tasks
            ));
            let round = one_round(cx, side.as_mut(), r)?;
            all.entry(side.system()).or_default().push(round);
        }
    }
    let mut out = HashMap::new();
    for side in sides.iter() {
        let mut rounds = all.remove(&side.system()).unwrap_or_default();
        let rounds_tasks_per_s: Vec<f64> = rounds.iter().map(|r| r.tasks_per_s).collect();
        let sum = |f: fn(&Round) -> usize| rounds.iter().map(f).sum::<usize>();
        let (completed, lost, duplicated) = (sum(|r| r.completed), sum(|r| r.lost), sum(|r| r.duplicated));
        let left = rounds.last().map(|r| r.left).unwrap_or(0);
        rounds.sort_by(|a, b| a.tasks_per_s.total_cmp(&b.tasks_per_s));
        let median = rounds.swap_remove(rounds.len() / 2);
        out.insert(
            side.system(),
            SystemRun {
                version: side.version(),
                tasks_per_s: median.tasks_per_s,
                rounds_tasks_per_s,
                submitted: cx.plan.peer_tasks * repeat,
                completed,
                lost,
                duplicated,
                left,
                submit_to_done: median.submit_to_done,
                checked: median.checked,
            },
        );
    }
    Ok(out)
}

/// One round of one system: its load processes, then its own account of what was completed.
fn one_round(cx: &mut Ctx, side: &mut dyn Side, r: usize) -> Result<Round, BenchError> {
    let t = side.prepare(cx, r)?;
    let p = &cx.plan;
    let n = p.peer_tasks;
    let system = side.system().name();
    let stop = t.dir.join("stop");
    let common = |t: &Target| {
        vec!["--system".into(), system.into(), "--url".into(), t.url.clone(), "--ns".into(), t.ns.clone()]
    };
    let mut agents = Vec::new();
    for a in 1..=p.peer_agents {
        let name = format!("Agent-{a}");
        let mut args = common(&t);
        args.extend(["--name".into(), name.clone(), "--stop".into(), path_arg(&stop)]);
        args.extend(["--out".into(), path_arg(&t.dir.join(format!("{name}.json")))]);
        agents.push(cx.bins.role(
            "peer-agent",
            &args,
            &t.dir.join(format!("{name}.log")),
            &format!("{system} {name}"),
        )?);
    }
    let mut producers = Vec::new();
    for i in 0..p.peer_producers {
        let mut args = common(&t);
        for (flag, value) in [
            ("--index", i.to_string()),
            ("--of", p.peer_producers.to_string()),
            ("--tasks", n.to_string()),
            ("--body-bytes", p.body_bytes.to_string()),
            ("--out", path_arg(&t.dir.join(format!("producer-{i}.json")))),
        ] {
            args.extend([flag.to_string(), value]);
        }
        let log = t.dir.join(format!("producer-{i}.log"));
        producers.push(cx.bins.role("peer-producer", &args, &log, &format!("{system} producer {i}"))?);
    }
    wait_for_all(side, &t, n, &mut producers, &mut agents).inspect_err(|_| {
        let _ = write_file(&stop, b"");
    })?;
    write_file(&stop, b"")?;
    for pr in agents.into_iter().chain(producers) {
        pr.wait(Duration::from_secs(60)).map_err(|e| logs_in(e, &t.dir))?;
    }
    let tally = side.finish(&t)?;
    Ok(tally_round(&t, n, p.peer_producers, p.peer_agents, tally))
}

/// Waits until the system says all `n` tasks are completed; fails on a stall or a failed process.
fn wait_for_all(
    side: &mut dyn Side,
    t: &Target,
    n: usize,
    producers: &mut [Proc],
    agents: &mut [Proc],
) -> Result<(), BenchError> {
    let mut last = (0, Instant::now());
    loop {
        let done = side.completed(t)?;
        if done >= n {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(BenchError::Stalled {
                workload: format!("peers {}", side.system().name()),
                done,
                tasks: n,
                secs: STALL.as_secs(),
                logs: t.dir.clone(),
            });
        }
        for pr in producers.iter_mut().chain(agents.iter_mut()) {
            pr.check().map_err(|e| logs_in(e, &t.dir))?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A round's figures from the processes' reports and the system's tally.
fn tally_round(t: &Target, n: usize, producers: usize, agents: usize, tally: Tally) -> Round {
    let first = (0..producers)
        .map(|i| read_report::<ProducerOut>(&t.dir.join(format!("producer-{i}.json"))))
        .filter(|o| o.submitted > 0)
        .map(|o| o.first_us)
        .min()
        .unwrap_or(0);
    let (mut reported, mut last, mut lat) = (HashMap::<String, u64>::new(), i64::MIN, Vec::new());
    for a in 1..=agents {
        let out: AgentOut = read_report(&t.dir.join(format!("Agent-{a}.json")));
        for ((id, done), sub) in out.ids.into_iter().zip(out.done_us).zip(out.submitted_us) {
            *reported.entry(id).or_default() += 1;
            last = last.max(done);
            lat.push((done - sub) as f64 / 1000.0);
        }
    }
    let dups = |m: &HashMap<String, u64>| m.values().map(|c| c.saturating_sub(1) as usize).sum::<usize>();
    let by_system = tally.completions.as_ref();
    let expected: HashSet<String> = (0..n).map(peer_task_id).collect();
    let done = |id: &String| by_system.unwrap_or(&reported).get(id).is_some_and(|c| *c > 0);
    let completed = expected.iter().filter(|id| done(id)).count();
    let secs = (last - first) as f64 / 1e6;
    Round {
        tasks_per_s: if secs > 0.0 { completed as f64 / secs } else { 0.0 },
        completed,
        lost: n - completed,
        duplicated: by_system.map(dups).unwrap_or(0).max(dups(&reported)),
        left: tally.left,
        submit_to_done: Lat::of(lat),
        checked: tally.checked,
    }
}

impl PeersReport {
    fn peers(&self) -> [(&'static str, &PeerResult); 3] {
        [("postgres", &self.postgres), ("redis", &self.redis), ("nats", &self.nats)]
    }
}

impl Section for PeersReport {
    fn key(&self) -> &'static str {
        "peers"
    }

    fn headline(&self) -> Option<String> {
        let parts: Vec<String> = self
            .peers()
            .iter()
            .map(|(name, r)| match r {
                PeerResult::Ran(r) => format!("{:.2}x {name}", r.mailroom_ratio),
                PeerResult::Skipped { .. } => format!("{name} skipped"),
            })
            .collect();
        Some(format!("peers: mailroom {}", parts.join(", ")))
    }
}

fn line(f: &mut fmt::Formatter<'_>, name: &str, r: &SystemRun) -> fmt::Result {
    let all: Vec<String> = r.rounds_tasks_per_s.iter().map(|x| format!("{x:.0}")).collect();
    write!(
        f,
        "  {name:<9} {:>8.0} tasks/s (rounds {}), submit->done {}, completed {}/{}, lost {}, dup {}, left {}",
        r.tasks_per_s,
        all.join(", "),
        r.submit_to_done,
        r.completed,
        r.submitted,
        r.lost,
        r.duplicated,
        r.left
    )
}

impl fmt::Display for PeersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Peers           {} tasks of ~{} B, {} producers, {} agents, median of {} interleaved round(s); every submit and completion acknowledged",
            self.tasks, self.body_bytes, self.producers, self.agents, self.rounds
        )?;
        line(f, "mailroom", &self.mailroom)?;
        writeln!(f)?;
        for (name, r) in self.peers() {
            match r {
                PeerResult::Ran(r) => {
                    line(f, name, &r.run)?;
                    writeln!(f, "; mailroom = {:.2}x  ({})", r.mailroom_ratio, r.run.version)?;
                }
                PeerResult::Skipped { skipped } => writeln!(f, "  {name:<9} skipped: {skipped}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tps: f64) -> SystemRun {
        SystemRun {
            version: "v".into(),
            tasks_per_s: tps,
            completed: 10,
            submitted: 10,
            ..SystemRun::default()
        }
    }

    /// A skipped peer is a reason in both outputs, never a figure.
    #[test]
    fn a_skipped_peer_is_reported_without_figures() {
        let r = PeersReport {
            tasks: 10,
            body_bytes: 1024,
            producers: 4,
            agents: 8,
            rounds: 1,
            mailroom: run(500.0),
            postgres: PeerResult::Ran(Box::new(PeerRun { run: run(1000.0), mailroom_ratio: 0.5 })),
            redis: PeerResult::Skipped { skipped: "Redis not installed".into() },
            nats: PeerResult::Skipped { skipped: "not selected (--peers)".into() },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["redis"], serde_json::json!({"skipped": "Redis not installed"}));
        assert_eq!(v["postgres"]["mailroom_ratio"], 0.5);
        assert_eq!(v["postgres"]["tasks_per_s"], 1000.0);
        let text = r.to_string();
        assert!(text.contains("redis     skipped: Redis not installed"), "{text}");
        assert!(text.contains("mailroom = 0.50x"), "{text}");
        assert_eq!(r.headline().unwrap(), "peers: mailroom 0.50x postgres, redis skipped, nats skipped");
    }

    /// Completions are counted as the system recorded them; duplicates and losses from either
    /// account.
    #[test]
    fn a_round_counts_what_the_system_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target { url: String::new(), ns: String::new(), dir: dir.path().to_path_buf() };
        let p = ProducerOut { submitted: 3, first_us: 1_000_000 };
        write_file(&dir.path().join("producer-0.json"), serde_json::to_string(&p).unwrap()).unwrap();
        let ids: Vec<String> = [0, 1, 1].iter().map(|&i| peer_task_id(i)).collect();
        let a = AgentOut {
            ids,
            done_us: vec![1_100_000, 1_200_000, 1_500_000],
            submitted_us: vec![1_000_000; 3],
        };
        write_file(&dir.path().join("Agent-1.json"), serde_json::to_string(&a).unwrap()).unwrap();
        let tally = Tally {
            completions: Some(HashMap::from([(peer_task_id(0), 1), (peer_task_id(1), 2)])),
            left: 1,
            checked: "rows".into(),
        };
        let r = tally_round(&t, 3, 1, 1, tally);
        assert_eq!((r.completed, r.lost, r.duplicated, r.left), (2, 1, 1, 1));
        assert!((r.tasks_per_s - 4.0).abs() < 1e-9, "2 tasks in 0.5 s: {}", r.tasks_per_s);
        assert_eq!(r.submit_to_done.n, 3);
        // Without the system's account, the agents' reports count.
        let r = tally_round(&t, 3, 1, 1, Tally::default());
        assert_eq!((r.completed, r.lost, r.duplicated), (2, 1, 1));
    }
}

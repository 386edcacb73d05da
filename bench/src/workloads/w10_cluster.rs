//! W10, the cluster (docs/CLUSTER.md): W1's pipeline across 1, 2 and 3 brokers of one machine
//! that share the pool `bench` through a private NATS JetStream server, and once on a single
//! broker without `[cluster]` for reference. Producer `i` and agent `i` use node `i mod n`, with
//! the same producers and agents in all (at least three of each, so that every node has one), so
//! the node count is the only difference between the rows.
//!
//! Each run has fresh roots and a fresh `nats-server -js` (loopback port, store in the run's
//! directory), stopped at the end. The runs are interleaved (local, 1, 2, 3 nodes, then again
//! for `--repeat`), and each row is the median run. Beside the pipeline's figures (tasks/s from
//! the first submit to the last completion, submit->claimed from the times the producer and the
//! agent stamp), each run checks the cluster-wide record once every node's journal shows all
//! tasks completed: it waits until `mailroom board --cluster --json` says COMPLETED for every task
//! and counts those missing and those a node took more than once.
//!
//! The nodes are processes of one machine sharing its cores with the NATS server and the load:
//! more nodes bring no more CPU (each is one more broker), so the figure is not how the cluster
//! scales across machines. What more nodes do bring is more cluster links pulling at once (one
//! node pulls at most its idle agents' worth per pass of its link, docs/CLUSTER.md).
//! submit->claimed includes the wait in the backlog: the producers submit faster than the
//! cluster drains, so it is mostly queueing, not the cost of one claim.
//!
//! The fleet: [`FLEET`] simulated agents ([`SMOKE_FLEET`] with `--smoke`) across three nodes, as threads of six agent processes
//! (two per node), each thread an SDK `Agent` of its own that claims by polling every
//! [`FLEET_POLL_MS`] when it finds nothing (a fleet of hundreds cannot each hold an inotify
//! watcher), the same producers and tasks; run once, after the rounds.
//!
//! Without `nats-server` the workload is reported skipped, with the reason, never with a figure.

use super::Workload;
use crate::error::BenchError;
use crate::peers::find_program;
use crate::peers::server::{Server, start};
use crate::pipeline::{Node, Pipe, PipeReport, median_run, run_fresh, run_nodes, write_config};
use crate::procs::start_broker;
use crate::report::{Section, round};
use crate::run::{Ctx, log};
use rustix::process::Signal;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct W10;

/// The node counts compared.
const NODES: [usize; 3] = [1, 2, 3];
/// At most this many tasks per run (W1's count when smaller).
const MAX_TASKS: usize = 3_000;
/// The simulated fleet: agents in all, agent processes, and how often an idle one polls.
const FLEET: usize = 1_000;
const SMOKE_FLEET: usize = 60;
const FLEET_PROCS: usize = 6;
const FLEET_POLL_MS: u64 = 500;
/// How long the cluster-wide records may take to say COMPLETED once the journals do.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum W10Report {
    Ran(Box<ClusterRuns>),
    Skipped { skipped: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterRuns {
    /// Cores of the machine, shared by every node, the NATS server and the load.
    pub cores: usize,
    pub tasks: usize,
    pub producers: usize,
    pub agents: usize,
    /// One broker without `[cluster]`, same load: the pipeline without NATS.
    pub local: PipeReport,
    #[serde(serialize_with = "round::r0_all")]
    pub local_runs_tasks_per_s: Vec<f64>,
    /// One row per node count.
    pub nodes: Vec<NodeRow>,
    /// [`FLEET`] agents across three nodes ([`SMOKE_FLEET`] with `--smoke`).
    pub fleet: FleetRow,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    pub nodes: usize,
    pub agents: usize,
    pub agent_processes: usize,
    pub poll_ms: u64,
    #[serde(flatten)]
    pub run: PipeReport,
    pub record: RecordTally,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub nodes: usize,
    /// The median run (lost/duplicated: from every node's journal together).
    #[serde(flatten)]
    pub run: PipeReport,
    #[serde(serialize_with = "round::r0_all")]
    pub runs_tasks_per_s: Vec<f64>,
    /// tasks/s over the 1-node row's.
    #[serde(serialize_with = "round::r3")]
    pub ratio_to_1: f64,
    /// What the cluster-wide record says of the median run.
    pub record: RecordTally,
}

/// The cluster-wide records of a run's tasks.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RecordTally {
    /// Tasks whose record says COMPLETED.
    pub completed: usize,
    /// Tasks with no record, or one that is not COMPLETED.
    pub lost: usize,
    /// Tasks a node took from the work queue more than once.
    pub taken_twice: usize,
}

impl Workload for W10 {
    fn names(&self) -> &'static [&'static str] {
        &["w10", "cluster"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let Some(bin) = find_program("nats-server", &["/usr/sbin", "/usr/bin", "/usr/local/bin"]) else {
            let why = "nats-server not installed (Debian package nats-server)".to_string();
            log(&format!("W10 cluster skipped: {why}"));
            return Ok(Box::new(W10Report::Skipped { skipped: why }));
        };
        let base = cx.base();
        let p = Pipe {
            tasks: base.tasks.min(MAX_TASKS),
            producers: base.producers.max(3),
            agents: base.agents.max(3),
            assigned_pct: 0,
            ..base
        };
        let repeat = cx.plan.repeat;
        let mut local = Vec::new();
        let mut runs: Vec<Vec<(PipeReport, RecordTally)>> = vec![Vec::new(); NODES.len()];
        for r in 0..repeat {
            log(&format!("W10 cluster, round {} of {repeat}: local", r + 1));
            local.push(run_fresh(cx, "w10-local", &p)?);
            for (i, &n) in NODES.iter().enumerate() {
                log(&format!("W10 cluster, round {} of {repeat}: {n} node(s)", r + 1));
                runs[i].push(cluster_run(cx, &bin, n, &p)?);
            }
        }
        let size = if cx.plan.smoke { SMOKE_FLEET } else { FLEET };
        log(&format!("W10 cluster: a fleet of {size} agents on 3 nodes"));
        let fleet =
            Pipe { agents: FLEET_PROCS, fleet: Some(size), fleet_poll_ms: FLEET_POLL_MS, ..p.clone() };
        let (run, record) = cluster_run(cx, &bin, 3, &fleet)?;
        let fleet = FleetRow {
            nodes: 3,
            agents: size,
            agent_processes: FLEET_PROCS,
            poll_ms: FLEET_POLL_MS,
            run,
            record,
        };
        let (local, local_runs_tasks_per_s) = median_run(local);
        let mut rows = Vec::new();
        for (i, rs) in runs.into_iter().enumerate() {
            let (run, all) = median_run(rs.iter().map(|(r, _)| r.clone()).collect());
            let record = median_tally(&rs, run.tasks_per_s);
            rows.push(NodeRow { nodes: NODES[i], run, runs_tasks_per_s: all, ratio_to_1: 0.0, record });
        }
        let one = rows[0].run.tasks_per_s.max(1e-9);
        for row in &mut rows {
            row.ratio_to_1 = row.run.tasks_per_s / one;
        }
        Ok(Box::new(W10Report::Ran(Box::new(ClusterRuns {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            tasks: p.tasks,
            producers: p.producers,
            agents: p.agents,
            local,
            local_runs_tasks_per_s,
            nodes: rows,
            fleet,
        }))))
    }
}

/// The record tally of the run whose tasks/s is `median`.
fn median_tally(rs: &[(PipeReport, RecordTally)], median: f64) -> RecordTally {
    rs.iter().find(|(r, _)| r.tasks_per_s == median).map(|(_, t)| *t).unwrap_or_default()
}

/// One run on `n` nodes sharing `bench` through a fresh private NATS server.
fn cluster_run(
    cx: &mut Ctx,
    bin: &Path,
    n: usize,
    p: &Pipe,
) -> Result<(PipeReport, RecordTally), BenchError> {
    let d = cx.fresh(&format!("w10-{n}-nodes"))?;
    let (server, port) = nats_server(bin, &d)?;
    let url = format!("nats://127.0.0.1:{port}");
    let mut nodes = Vec::new();
    for k in 1..=n {
        let root = d.join(format!("node-{k}"));
        let q = Pipe {
            extra_config: format!(
                "[cluster]\nnats = \"{url}\"\nnode = \"node-{k}\"\nshared_pools = [\"bench\"]\n"
            ),
            ..p.clone()
        };
        write_config(cx.fs(), &root, &q)?;
        let before = crate::journal_watch::sealed_segments(cx.fs(), &root)?;
        let (broker, ready) = start_broker(cx.fs(), &cx.bins, &root, &d.join(format!("broker-{k}.log")))?;
        nodes.push(Node { root, broker, ready, before });
    }
    let first = nodes[0].root.clone();
    let mut tally = RecordTally::default();
    let cx_ref: &Ctx = cx;
    let mut settle = || {
        tally = wait_for_records(cx_ref, &first, p)?;
        Ok(())
    };
    let report = run_nodes(cx_ref, &d, nodes, p, &mut settle)?;
    server.stop()?;
    Ok((report, tally))
}

/// `nats-server -js` on a free loopback port, its store and log in `d`; with its port.
fn nats_server(bin: &Path, d: &Path) -> Result<(Server, u16), BenchError> {
    let store: PathBuf = d.join("nats-store");
    std::fs::create_dir_all(&store).map_err(|e| BenchError::io(&store, e))?;
    start(
        "nats-server",
        |port| {
            let mut cmd = Command::new(bin);
            cmd.args(["-js", "-sd"]).arg(&store).args(["-a", "127.0.0.1", "-p"]).arg(port.to_string());
            Server::spawn(cmd, "nats-server", &d.join("nats.log"), Signal::TERM)
        },
        // JetStream is up before the server listens for clients.
        |port| {
            TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| BenchError::io(format!("127.0.0.1:{port}"), e))
        },
    )
}

/// Waits until the cluster-wide board, read on `root`, says COMPLETED for every task of the run
/// (or [`SETTLE`] has passed), and tallies it.
fn wait_for_records(cx: &Ctx, root: &Path, p: &Pipe) -> Result<RecordTally, BenchError> {
    let t0 = Instant::now();
    loop {
        let out = cx.bins.mailroom_output(root, &["board", "--cluster", "--json"])?;
        if !out.status.success() {
            return Err(BenchError::process(
                "mailroom board --cluster",
                format!("exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            ));
        }
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout)
            .map_err(|e| BenchError::process("mailroom board --cluster --json", e))?;
        let tally = tally(&rows, p);
        if tally.lost == 0 || t0.elapsed() > SETTLE {
            return Ok(tally);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The tally of the board's rows for the run's task ids (`<prefix>-<n>`).
fn tally(rows: &[Value], p: &Pipe) -> RecordTally {
    let prefix = format!("{}-", p.prefix);
    let mine = || rows.iter().filter(|r| r["task_id"].as_str().is_some_and(|id| id.starts_with(&prefix)));
    let completed = mine().filter(|r| r["status"] == "COMPLETED").count();
    RecordTally {
        completed,
        lost: p.tasks.saturating_sub(completed),
        taken_twice: mine().filter(|r| r["takes"].as_u64().unwrap_or(0) > 1).count(),
    }
}

impl Section for W10Report {
    fn key(&self) -> &'static str {
        "w10_cluster"
    }

    fn headline(&self) -> Option<String> {
        Some(match self {
            W10Report::Skipped { .. } => "W10 skipped".into(),
            W10Report::Ran(c) => {
                let per: Vec<String> = c.nodes.iter().map(|r| format!("{:.0}", r.run.tasks_per_s)).collect();
                format!("W10 1/2/3 nodes {} tasks/s", per.join("/"))
            }
        })
    }
}

impl fmt::Display for W10Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            W10Report::Skipped { skipped } => return writeln!(f, "W10 cluster     skipped: {skipped}"),
            W10Report::Ran(c) => c,
        };
        writeln!(
            f,
            "W10 cluster     {} tasks, {} producers and {} agents spread over the nodes; every node, NATS \
             and the load share this machine's {} cores: more nodes bring no more CPU here",
            c.tasks, c.producers, c.agents, c.cores
        )?;
        let all = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
        let l = &c.local;
        writeln!(
            f,
            "  local (no cluster) {:>6.0} tasks/s ({}), submit->claimed {}",
            l.tasks_per_s,
            all(&c.local_runs_tasks_per_s),
            l.submit_to_claimed
        )?;
        for r in &c.nodes {
            let o = &r.run;
            writeln!(
                f,
                "  {} node(s)          {:>6.0} tasks/s ({}), {:.2}x 1 node, submit->claimed {}, \
                 submit->claimable {}",
                r.nodes,
                o.tasks_per_s,
                all(&r.runs_tasks_per_s),
                r.ratio_to_1,
                o.submit_to_claimed,
                o.submit_to_claimable
            )?;
            exactly_once(f, o, &r.record)?;
        }
        let (fl, o) = (&c.fleet, &c.fleet.run);
        writeln!(
            f,
            "  fleet: {} agents   {:>6.0} tasks/s on {} nodes ({} processes, idle agents poll every {} ms), \
             submit->claimed {}",
            fl.agents, o.tasks_per_s, fl.nodes, fl.agent_processes, fl.poll_ms, o.submit_to_claimed
        )?;
        exactly_once(f, o, &fl.record)
    }
}

/// The exactly-once line of a row: what the nodes' journals and the cluster-wide record say.
fn exactly_once(f: &mut fmt::Formatter<'_>, o: &PipeReport, record: &RecordTally) -> fmt::Result {
    writeln!(
        f,
        "                     journals: completed {}/{}, lost {}, duplicated {}, claimed twice {}; \
         cluster-wide record: completed {}, lost {}, taken twice {}",
        o.completed,
        o.tasks,
        o.lost,
        o.duplicated,
        o.claimed_twice,
        record.completed,
        record.lost,
        record.taken_twice
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipe(tasks: usize) -> Pipe {
        Pipe {
            tasks,
            producers: 3,
            agents: 3,
            body_bytes: 10,
            assigned_pct: 0,
            broker_durability: "batch".into(),
            client_durability: None,
            broker_settings: Vec::new(),
            journal_settings: Vec::new(),
            prefix: "B".into(),
            extra_config: String::new(),
            fleet: None,
            fleet_poll_ms: 0,
        }
    }

    /// Only the run's own tasks count; a task not COMPLETED is lost, one taken twice is counted.
    #[test]
    fn the_record_tally_counts_the_runs_tasks() {
        let rows = vec![
            json!({"task_id": "B-00000000", "status": "COMPLETED", "takes": 1}),
            json!({"task_id": "B-00000001", "status": "COMPLETED", "takes": 2}),
            json!({"task_id": "B-00000002", "status": "IN_PROGRESS", "takes": 1}),
            json!({"task_id": "X-00000003", "status": "COMPLETED", "takes": 1}),
        ];
        let t = tally(&rows, &pipe(4));
        assert_eq!((t.completed, t.lost, t.taken_twice), (2, 2, 1));
    }

    /// A skipped cluster workload is a reason in both outputs, never a figure.
    #[test]
    fn a_skipped_cluster_is_reported_without_figures() {
        let r = W10Report::Skipped { skipped: "nats-server not installed".into() };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v, json!({"skipped": "nats-server not installed"}));
        assert_eq!(r.to_string(), "W10 cluster     skipped: nats-server not installed\n");
        assert_eq!(r.headline().unwrap(), "W10 skipped");
    }
}

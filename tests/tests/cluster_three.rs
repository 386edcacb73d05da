//! The cluster at scale, end to end: a three-server JetStream cluster on loopback (stream and
//! bucket with three replicas) and three real brokers, `a`, `b` and `k`, each with four agents
//! (`mailroom-load` processes) and a producer submitting its share of 3,000 tasks into the
//! shared pool `leads` (docs/CLUSTER.md). Mid-run, `k` is SIGKILLed (its agents with it) while
//! claims are held there (two of them taken by the test itself, so that there are some), and
//! one NATS server is stopped and started again on its store. The tasks `k` held are completed
//! by `a` and `b` after `ack_wait`; `k` restarts, publishes what it had not, and the completions
//! reported for its claims while it was down are fenced.
//!
//! At the end, exactly: the cluster-wide record (`board --cluster --json`) has every task
//! `COMPLETED`, none missing, none extra; across the three journals each task has exactly one
//! outcome that was not fenced, on the node the record names; a fenced outcome is on a node the
//! record does not name (or one that ran the task again later, whose outcome stands).
//!
//! `MAILROOM_CLUSTER3_TASKS` changes the number of tasks per node (default 1,000). Without
//! `nats-server` the test says SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::nats::{NatsCluster, nats_server_or_skip};
use mailroom_tests::{AgentProfile, Proc, Root, env_usize, read_json_lines, spawn_load_agent};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_mailroom-load");
const NODES: [&str; 3] = ["a", "b", "k"];
const AGENTS_PER_NODE: usize = 4;
/// The redelivery deadline: short, so that the killed node's tasks move on quickly.
const ACK_WAIT_SECS: u64 = 2;
const T: Duration = Duration::from_secs(120);
const PROFILE: AgentProfile = AgentProfile { pool: "leads", work_ms: 2, fail_pct: 0, release_pct: 0 };

fn node(urls: &[String], name: &str) -> Root {
    let servers: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let root = Root::new();
    root.write_config(&format!(
        "[cluster]\nnats = [{}]\nnode = \"{name}\"\nshared_pools = [\"leads\"]\nack_wait_secs = {ACK_WAIT_SECS}\nreplicas = 3\n",
        servers.join(", ")
    ));
    root
}

/// A node's agents: `mailroom-load` processes, with their logs and stop file in `dir`.
struct Agents {
    procs: Vec<Proc>,
    logs: Vec<PathBuf>,
    stop: PathBuf,
}

fn agents(root: &Root, name: &str, round: usize, seed: u64) -> Agents {
    let dir = root.scratch();
    let stop = dir.join(format!("stop-{round}"));
    let mut a = Agents { procs: Vec::new(), logs: Vec::new(), stop };
    for i in 0..AGENTS_PER_NODE {
        let agent = format!("Agent-{name}{i}");
        let log = dir.join(format!("{agent}-{round}.jsonl"));
        a.procs.push(spawn_load_agent(LOAD, root, &agent, &log, &a.stop, seed + i as u64, &PROFILE));
        a.logs.push(log);
    }
    a
}

fn producer(root: &Root, prefix: &str, count: usize) -> (Proc, PathBuf) {
    let log = root.scratch().join("produce.jsonl");
    let child = std::process::Command::new(LOAD)
        .args(["produce", "--root", root.path.to_str().unwrap(), "--prefix", prefix])
        .args(["--count", &count.to_string(), "--pool", "leads", "--seed", "1"])
        .arg("--log")
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a producer");
    (Proc(child), log)
}

fn completes(logs: &[PathBuf]) -> usize {
    logs.iter().map(|l| read_json_lines(l).iter().filter(|r| r["op"] == "complete").count()).sum()
}

/// The task ids of a journal's records of kind `op` (`settled`: those fenced or not, as
/// `fenced` says), once per record.
fn ids_of(journal: &[Value], op: &str, fenced: Option<bool>) -> Vec<String> {
    journal
        .iter()
        .filter(|r| r["op"] == op && fenced.is_none_or(|f| (r["fenced"] == true) == f))
        .map(|r| r["task_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The tasks a node pulled from the cluster and has not settled there (each pull is settled
/// once: with an outcome, fenced or not, or cancelled cluster-wide).
fn unsettled(journal: &[Value]) -> BTreeSet<String> {
    let mut n: BTreeMap<String, i64> = BTreeMap::new();
    for id in ids_of(journal, "pull", None) {
        *n.entry(id).or_default() += 1;
    }
    for id in ids_of(journal, "settled", None) {
        *n.entry(id).or_default() -= 1;
    }
    n.into_iter().filter(|(_, c)| *c > 0).map(|(id, _)| id).collect()
}

/// The claims an agent holds on a root: (agent, claim name, task id).
fn claims_held(root: &Root) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for agent in root.ls("mailboxes") {
        for claim in root.ls(&format!("mailboxes/{agent}/cur")) {
            let p = root.comms().join(format!("mailboxes/{agent}/cur/{claim}"));
            let Ok(bytes) = std::fs::read(&p) else { continue };
            let task: Value = serde_json::from_slice(&bytes).expect("a claimed task is JSON");
            v.push((agent.clone(), claim, task["task_id"].as_str().unwrap_or_default().to_string()));
        }
    }
    v
}

/// The cluster-wide board, task id → record.
fn cluster_board(root: &Root) -> BTreeMap<String, Value> {
    let out = root.run(&["board", "--cluster", "--json"]);
    assert!(out.status.success(), "board --cluster: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    rows.into_iter().map(|r| (r["task_id"].as_str().unwrap().to_string(), r)).collect()
}

/// Polls `cond` every `pause` until it holds; panics after [`T`]. The conditions read whole
/// journals and boards: polled gently, so that the brokers keep the machine's cores.
fn wait_every(pause: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < T, "condition not met within {T:?}");
        std::thread::sleep(pause);
    }
}

/// What is left when the run does not finish: tasks not recorded COMPLETED, pulled tasks not
/// settled, with their journal records and the brokers' last cluster log lines.
fn explain(roots: &[Root], expected: &BTreeSet<String>, a: &Root) {
    let board = cluster_board(a);
    let open: Vec<&String> =
        expected.iter().filter(|id| board.get(*id).is_none_or(|r| r["status"] != "COMPLETED")).collect();
    eprintln!("{} tasks not COMPLETED cluster-wide: {:?}", open.len(), &open[..open.len().min(10)]);
    for id in open.iter().take(3) {
        eprintln!("record of {id}: {:?}", board.get(*id));
    }
    for (r, n) in roots.iter().zip(NODES) {
        let j = r.journal();
        let left = unsettled(&j);
        eprintln!("{n}: {} unsettled: {:?}", left.len(), left.iter().take(10).collect::<Vec<_>>());
        for id in left.iter().chain(open.iter().copied()).take(3) {
            let recs: Vec<String> = j
                .iter()
                .filter(|x| x["task_id"] == id.as_str())
                .map(|x| format!("{} {} {}", x["op"], x["revision"], x["fenced"]))
                .collect();
            eprintln!("{n}: {id}: {recs:?}");
        }
        for e in std::fs::read_dir(r.scratch()).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("broker-") {
                let log = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().filter(|l| l.contains("cluster")).collect();
                eprintln!("{n} {}: {:#?}", e.path().display(), &tail[tail.len().saturating_sub(12)..]);
            }
        }
    }
}

fn stop_agents(a: &mut Agents) {
    std::fs::write(&a.stop, b"").unwrap();
    for p in &mut a.procs {
        p.wait();
    }
}

#[test]
fn three_brokers_three_nats_servers_every_task_completed_once_through_a_kill_and_a_restart() {
    let Some(bin) = nats_server_or_skip(
        "three_brokers_three_nats_servers_every_task_completed_once_through_a_kill_and_a_restart",
    ) else {
        return;
    };
    let per_node = env_usize("MAILROOM_CLUSTER3_TASKS", 1000);
    let started = Instant::now();
    let mut nats = NatsCluster::start(&bin);
    let cluster_up = started.elapsed();
    let urls = nats.urls();
    let roots: Vec<Root> = NODES.iter().map(|n| node(&urls, n)).collect();
    let (a, k) = (&roots[0], &roots[2]);
    let mut brokers: Vec<_> = roots.iter().map(Root::broker).collect();
    let mut crew: Vec<Agents> =
        roots.iter().zip(NODES).enumerate().map(|(i, (r, n))| agents(r, n, 0, 100 * i as u64)).collect();
    let expected: BTreeSet<String> = NODES
        .iter()
        .flat_map(|n| (0..per_node).map(move |i| format!("{}-{i:06}", n.to_uppercase())))
        .collect();
    // One producer per node, all at once.
    let producers: Vec<_> =
        roots.iter().zip(NODES).map(|(r, n)| producer(r, &n.to_uppercase(), per_node)).collect();
    for ((mut p, log), n) in producers.into_iter().zip(NODES) {
        assert!(p.wait().success(), "producer on {n}");
        let submitted = read_json_lines(&log).iter().filter(|r| r["op"] == "submit").count();
        assert_eq!(submitted, per_node, "every submission on {n} acknowledged");
    }
    let submitted_in = started.elapsed() - cluster_up;

    // Mid-run: once a third of the tasks are done, kill `k` while claims are held there, and
    // its agents with it.
    let logs: Vec<PathBuf> = crew.iter().flat_map(|c| c.logs.clone()).collect();
    let third = || completes(&logs) >= expected.len() / 3;
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_every(Duration::from_millis(200), third)
    }))
    .is_err()
    {
        explain(&roots, &expected, a);
        panic!("a third of the tasks not done");
    }
    let third_at = started.elapsed();
    // Two claims on k that no agent of its own will finish: taken here, as agents `Agent-kx*`
    // would, so that claims are certainly in hand when k dies.
    for x in ["Agent-kx0", "Agent-kx1"] {
        let out = k.run(&["agent", "add", x]);
        assert!(out.status.success(), "agent add: {}", String::from_utf8_lossy(&out.stderr));
        let out = k.run(&["claim", "--agent", x, "--wait", "60"]);
        if !out.status.success() {
            explain(&roots, &expected, a);
            panic!("{x} claims a task on k: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    brokers.remove(2).kill9();
    let killed_at = Instant::now();
    for p in &mut crew.remove(2).procs {
        p.kill9();
    }
    // What `k` held: pulled and not settled (queued or claimed there, or finished and not
    // written cluster-wide yet).
    let held = unsettled(&k.journal());
    // Its agents report their claims done while it is down (the reports wait in its inbox).
    let late = claims_held(k);
    assert!(!late.is_empty(), "k's agents held claims when it was killed");
    for (agent, claim, _) in &late {
        let out = k.run(&["--no-wait", "complete", "--agent", agent, "--claim", claim]);
        assert!(out.status.success(), "late complete: {}", String::from_utf8_lossy(&out.stderr));
    }
    // One NATS server stops (cleanly) and starts again on its store while the others go on.
    nats.stop(0);
    std::thread::sleep(Duration::from_secs(1));
    nats.restart(0);

    // Every task k held is completed while k is down, once `ack_wait` let the others take it.
    let held_done = || {
        let board = cluster_board(a);
        held.iter().all(|id| board.get(id).is_some_and(|r| r["status"] == "COMPLETED"))
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_every(Duration::from_millis(500), held_done)
    }))
    .is_err()
    {
        explain(&roots, &held, a);
        panic!("k's tasks not completed on the other nodes");
    }
    let moved_on = killed_at.elapsed();

    // k restarts with new agents: it publishes what it had not yet, settles the late
    // completions (fenced) and its agents drain what it had queued.
    brokers.insert(2, k.broker());
    crew.push(agents(k, "k", 1, 900));
    // Every pulled task settled on every node, and every task recorded COMPLETED cluster-wide
    // (the board is read only once the journals say so: it is the costlier read).
    let done = || {
        roots.iter().all(|r| unsettled(&r.journal()).is_empty()) && {
            let board = cluster_board(a);
            board.len() == expected.len() && board.values().all(|r| r["status"] == "COMPLETED")
        }
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_every(Duration::from_secs(1), done)))
        .is_err()
    {
        explain(&roots, &expected, a);
        panic!("tasks not finished cluster-wide");
    }
    let total = started.elapsed();
    for c in &mut crew {
        stop_agents(c);
    }

    // The cluster-wide record: every task, once, COMPLETED.
    let board = cluster_board(a);
    let on_board: BTreeSet<String> = board.keys().cloned().collect();
    assert_eq!(on_board.len(), expected.len(), "tasks on the cluster-wide board");
    assert_eq!(on_board, expected, "none lost, none extra");
    for (id, r) in &board {
        assert_eq!(r["status"], "COMPLETED", "{id}: {r}");
    }
    // The journals: each task has exactly one outcome that was not fenced, on the node the
    // record names; a fenced outcome is on another node (or that node ran the task again in a
    // later life, after the cluster offered it back, and that outcome stands).
    let journals: Vec<Vec<Value>> = roots.iter().map(Root::journal).collect();
    let mut outcome_nodes: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (journal, name) in journals.iter().zip(NODES) {
        for id in ids_of(journal, "settled", Some(false)) {
            outcome_nodes.entry(id).or_default().push(name);
        }
    }
    assert_eq!(outcome_nodes.len(), expected.len(), "every task has a recorded outcome");
    for (id, nodes) in &outcome_nodes {
        assert_eq!(nodes.len(), 1, "{id}: outcomes not fenced on {nodes:?}");
        assert_eq!(board[id]["node"], nodes[0], "{id}: the record names the node of its outcome");
    }
    let mut fenced_total = 0;
    for (journal, name) in journals.iter().zip(NODES) {
        for id in ids_of(journal, "settled", Some(true)) {
            fenced_total += 1;
            assert!(board[&id]["node"] != name || outcome_nodes[&id] == [name], "{id}: fenced on {name}");
        }
    }
    // k's unfinished tasks were taken again by the others (unless k's own write of the outcome
    // went through before it died), and its late completions were refused.
    let elsewhere = held.iter().filter(|id| board[*id]["node"] != "k").count();
    assert!(elsewhere >= 1, "k's unfinished tasks completed on the other nodes");
    for id in held.iter().filter(|id| board[*id]["node"] != "k") {
        assert!(board[id]["takes"].as_u64() >= Some(2), "{id}: taken again after the kill: {}", board[id]);
    }
    let fenced_k: BTreeSet<String> = ids_of(&journals[2], "settled", Some(true)).into_iter().collect();
    for (_, _, id) in &late {
        assert!(fenced_k.contains(id) || board[id]["node"] == "k", "{id}: a late completion of k is fenced");
    }
    assert!(!fenced_k.is_empty(), "k's late completions were refused cluster-wide");
    eprintln!(
        "cluster_three: {} tasks in {:.1} s (JetStream cluster up in {:.1} s, submitted in {:.1} s, \
         a third done at {:.1} s); k held {} at the kill ({} claimed), {elsewhere} completed \
         elsewhere within {:.1} s; {fenced_total} outcomes fenced; checked in {:.1} s more",
        expected.len(),
        total.as_secs_f64(),
        cluster_up.as_secs_f64(),
        submitted_in.as_secs_f64(),
        third_at.as_secs_f64(),
        held.len(),
        late.len(),
        moved_on.as_secs_f64(),
        (started.elapsed() - total).as_secs_f64(),
    );
}

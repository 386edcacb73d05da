//! Failover of a cluster node, end to end: a private `nats-server` with JetStream and two real
//! brokers sharing the pool `leads` with a short `ack_wait_secs` (docs/CLUSTER.md). Node `k`
//! pulls tasks and its agents claim them; `k` is SIGKILLed while it holds them. The cluster
//! offers them again after `ack_wait`, node `s` runs them to completion: none lost. When `k`
//! restarts, the completions its agents reported while it was down are refused cluster-wide by
//! the record's revision (fenced): exactly one completion is recorded per task.
//!
//! Without `nats-server` the test says SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::cluster::{claim, cluster_board, node, ok};
use mailroom_tests::nats::{NatsServer, free_port, nats_server_or_skip};
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// The redelivery deadline: short, so the test is quick.
const ACK_WAIT_SECS: u64 = 2;

fn records(root: &Root, op: &str) -> Vec<Value> {
    root.journal().into_iter().filter(|r| r["op"] == op).collect()
}

fn ids(recs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> =
        recs.iter().map(|r| r["task_id"].as_str().unwrap_or_default().to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_killed_nodes_tasks_complete_elsewhere_and_its_late_completions_are_fenced() {
    let Some(bin) =
        nats_server_or_skip("a_killed_nodes_tasks_complete_elsewhere_and_its_late_completions_are_fenced")
    else {
        return;
    };
    let nats = NatsServer::start(&bin, free_port());
    let (k, s) = (node(&nats.url(), "k", ACK_WAIT_SECS), node(&nats.url(), "s", ACK_WAIT_SECS));
    // Only `k` has agents at first, so it pulls what they can take: two of the three tasks.
    ok(&k, &["agent", "add", "Agent-K1"]);
    ok(&k, &["agent", "add", "Agent-K2"]);
    let broker_k = k.broker();
    let broker_s = s.broker();
    let all = ["F-1", "F-2", "F-3"];
    for id in all {
        let task = json!({"task_id": id, "task_type": "LEAD"});
        let out = s.run_with_input(&["submit", "-"], task.to_string().as_bytes());
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for(T, || ids(&records(&s, "forwarded")) == all);
    let held: Vec<Value> = ["Agent-K1", "Agent-K2"]
        .iter()
        .map(|a| {
            let mut t = claim(&k, a, "20").expect("k's agents claim what k pulled");
            t["agent"] = json!(a);
            t
        })
        .collect();
    let mut held_ids: Vec<String> = held.iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect();
    held_ids.sort();
    assert_eq!(ids(&records(&k, "pull")), held_ids, "k pulled only what its two agents could take");
    // Held long enough for in-progress acks to keep them with `k` past one `ack_wait`.
    std::thread::sleep(Duration::from_secs(ACK_WAIT_SECS + 1));
    assert!(records(&s, "pull").is_empty(), "s has no agent yet: nothing redelivered to it while k is alive");
    for r in
        cluster_board(&s).iter().filter(|r| held_ids.contains(&r["task_id"].as_str().unwrap().to_string()))
    {
        assert_eq!((r["node"].as_str(), r["takes"].as_u64()), (Some("k"), Some(1)), "{r}");
    }

    // `k` dies holding two claimed tasks. `s` gets an agent: after `ack_wait` the cluster
    // offers k's tasks again, and s's agent does every task.
    broker_k.kill9();
    let killed_at = Instant::now();
    ok(&s, &["agent", "add", "Agent-S1"]);
    let mut done = Vec::new();
    while done.len() < all.len() {
        assert!(killed_at.elapsed() < T, "tasks lost after the kill: only {done:?} done on s");
        if let Some(t) = claim(&s, "Agent-S1", "1") {
            ok(&s, &["complete", "--agent", "Agent-S1", "--claim", t["claim"].as_str().unwrap()]);
            done.push(t["task_id"].as_str().unwrap().to_string());
        }
    }
    done.sort();
    assert_eq!(done, all, "every task done on s, each once");
    let completed_on_s = |board: &[Value]| {
        board
            .iter()
            .filter(|r| r["status"] == "COMPLETED" && r["node"] == "s" && r["agent"] == "Agent-S1")
            .count()
    };
    wait_for(T, || completed_on_s(&cluster_board(&s)) == all.len());

    // While k is down, its agents report their claims done (the reports wait in k's inbox).
    for t in &held {
        let (agent, name) = (t["agent"].as_str().unwrap(), t["claim"].as_str().unwrap());
        ok(&k, &["--no-wait", "complete", "--agent", agent, "--claim", name]);
    }
    // k restarts: it completes them locally, but the cluster-wide records moved on (s took them
    // since): both outcomes are fenced, and the records still say s completed them.
    let broker_k = k.broker();
    wait_for(T, || records(&k, "settled").len() == held.len());
    for r in records(&k, "settled") {
        assert_eq!(r["fenced"], true, "a late completion from the killed node is refused: {r}");
    }
    assert_eq!(ids(&records(&k, "settled")), held_ids);
    let board = cluster_board(&k);
    assert_eq!(completed_on_s(&board), all.len(), "{board:?}");
    for r in &board {
        let took_twice = held_ids.contains(&r["task_id"].as_str().unwrap().to_string());
        assert_eq!(r["takes"].as_u64(), Some(if took_twice { 2 } else { 1 }), "{r}");
    }
    assert!(records(&s, "settled").iter().all(|r| r.get("fenced").is_none()), "s's outcomes stand");

    // `trace --cluster`: a task k held, revision by revision: published by s, taken by k, taken
    // again by s after the kill, completed on s; k's late write is not among them.
    let id = held_ids[0].as_str();
    let out = k.run(&["trace", "--cluster", id, "--json"]);
    assert!(out.status.success(), "trace --cluster: {}", String::from_utf8_lossy(&out.stderr));
    let revs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let steps: Vec<(Option<&str>, &str, u64)> = revs
        .iter()
        .map(|r| (r["node"].as_str(), r["status"].as_str().unwrap(), r["takes"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            (None, "PENDING", 0),
            (Some("k"), "PENDING", 1),
            (Some("s"), "PENDING", 2),
            (Some("s"), "COMPLETED", 2)
        ],
        "{revs:?}"
    );
    assert!(revs.windows(2).all(|w| w[0]["revision"].as_u64() < w[1]["revision"].as_u64()));
    assert_eq!(s.run(&["trace", "--cluster", "NO-SUCH-TASK"]).status.code(), Some(3));
    drop((broker_k, broker_s));
}

//! The cluster end to end: a private `nats-server` with JetStream and two real brokers on two
//! roots, nodes `a` and `b`, sharing the pool `leads` (docs/CLUSTER.md). A task submitted on `a`
//! is pulled, claimed and completed on `b`; while NATS is unreachable, shared submissions are
//! held in `a`'s journal and its local pools keep serving; once NATS is back nothing is lost.
//!
//! Without `nats-server` the tests say SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::cluster::{claim, cluster_board, node};
use mailroom_tests::nats::{NatsServer, free_port, nats_server_or_skip};
use mailroom_tests::{Broker, Root, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn submit(root: &Root, task: Value) {
    let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
    assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn complete(root: &Root, agent: &str, task: &Value) {
    let name = task["claim"].as_str().expect("a claim name");
    let out = root.run(&["complete", "--agent", agent, "--claim", name]);
    assert!(out.status.success(), "complete failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn ops(root: &Root, op: &str) -> Vec<String> {
    root.journal()
        .iter()
        .filter(|r| r["op"] == op)
        .map(|r| r["task_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn completed_on(board: &[Value], node: &str) -> Vec<String> {
    let mut ids: Vec<String> = board
        .iter()
        .filter(|r| r["status"] == "COMPLETED" && r["node"] == node)
        .map(|r| r["task_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn start(root: &Root) -> Broker {
    root.broker()
}

#[test]
fn a_task_submitted_on_a_is_claimed_and_completed_on_b() {
    let Some(bin) = nats_server_or_skip("a_task_submitted_on_a_is_claimed_and_completed_on_b") else {
        return;
    };
    let nats = NatsServer::start(&bin, free_port());
    let (a, b) = (node(&nats.url(), "a", 30), node(&nats.url(), "b", 30));
    let (_ba, _bb) = (start(&a), start(&b));
    assert!(b.run(&["agent", "add", "Agent-B"]).status.success());

    submit(&a, json!({"task_id": "L-1", "task_type": "LEAD", "name": "qualify"}));
    // `a` holds no agent for it and queues no file: the task went to the cluster.
    wait_for(T, || ops(&a, "forwarded") == ["L-1"]);
    assert_eq!(ops(&a, "forward"), ["L-1"]);
    assert!(a.ls("queues/leads/new").is_empty(), "a shared task is not queued on its origin");

    let task = claim(&b, "Agent-B", "30").expect("b's agent claims the task submitted on a");
    assert_eq!(task["task_id"], "L-1");
    assert_eq!(ops(&b, "pull"), ["L-1"]);
    complete(&b, "Agent-B", &task);

    wait_for(T, || ops(&b, "settled") == ["L-1"]);
    let settled = b.journal().into_iter().find(|r| r["op"] == "settled").unwrap();
    assert!(settled.get("fenced").is_none(), "not fenced: {settled}");
    // The cluster-wide record, read from either node: completed on b by Agent-B, taken once.
    for root in [&a, &b] {
        let board = cluster_board(root);
        assert_eq!(completed_on(&board, "b"), ["L-1"], "{board:?}");
        assert_eq!(board[0]["agent"], "Agent-B");
        assert_eq!(board[0]["origin"], "a");
        assert_eq!(board[0]["takes"], 1);
    }
}

#[test]
fn nats_unreachable_then_back_loses_nothing() {
    let Some(bin) = nats_server_or_skip("nats_unreachable_then_back_loses_nothing") else { return };
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let (a, b) = (node(&url, "a", 30), node(&url, "b", 30));
    let (_ba, _bb) = (start(&a), start(&b));
    assert!(a.run(&["agent", "add", "Agent-A"]).status.success());
    assert!(b.run(&["agent", "add", "Agent-B"]).status.success());

    // No NATS: shared submissions are accepted and held in a's journal...
    let ids: Vec<String> = (1..=4).map(|i| format!("H-{i}")).collect();
    for id in &ids {
        submit(&a, json!({"task_id": id, "task_type": "LEAD"}));
    }
    assert_eq!(ops(&a, "forward"), ids);
    assert!(ops(&a, "forwarded").is_empty(), "nothing can be forwarded without NATS");
    // ...and a's local pools keep serving.
    submit(&a, json!({"task_id": "LOCAL-1", "task_type": "build"}));
    let local = claim(&a, "Agent-A", "20").expect("a local task is served while NATS is down");
    assert_eq!(local["task_id"], "LOCAL-1");
    complete(&a, "Agent-A", &local);

    // NATS comes up: a publishes what it held; the agents of both nodes (each node pulls only
    // what its idle agents can take) do every task, none twice.
    let mut nats = NatsServer::start(&bin, port);
    let mut done = Vec::new();
    let mut stopped_once = false;
    let started = std::time::Instant::now();
    while done.len() < ids.len() {
        assert!(started.elapsed() < T, "tasks lost: only {done:?} were done");
        for (root, agent) in [(&b, "Agent-B"), (&a, "Agent-A")] {
            if let Some(t) = claim(root, agent, "1") {
                done.push(t["task_id"].as_str().unwrap().to_string());
                complete(root, agent, &t);
                if !stopped_once {
                    // NATS stops (cleanly) and starts again mid-run, on the same store.
                    stopped_once = true;
                    nats.stop();
                    std::thread::sleep(Duration::from_millis(500));
                    nats.restart();
                }
            }
        }
    }
    done.sort();
    assert_eq!(done, ids, "each held task done exactly once");
    wait_for(T, || {
        let board = cluster_board(&a);
        let mut all = [completed_on(&board, "a"), completed_on(&board, "b")].concat();
        all.sort();
        all == ids
    });
    let mut forwarded = ops(&a, "forwarded");
    forwarded.sort();
    assert_eq!(forwarded, ids);
    wait_for(T, || ops(&a, "settled").len() + ops(&b, "settled").len() == ids.len());
    for root in [&a, &b] {
        assert!(root.journal().iter().all(|r| r["op"] != "settled" || r.get("fenced").is_none()));
    }
    assert_eq!(claim(&b, "Agent-B", "1"), None, "nothing left, nothing twice");
    assert_eq!(claim(&a, "Agent-A", "1"), None, "nothing left, nothing twice");
}

//! Cluster-wide retry, end to end: a private `nats-server` with JetStream and two real brokers
//! sharing the pool `leads` (docs/CLUSTER.md). Node `a` submits; node `b`'s one agent runs
//! everything. A task that failed on `b` and one cancelled cluster-wide while `b` held it are
//! retried with `retry --cluster`: each goes back to the cluster's work queue once (two retries
//! racing on one task: one wins, the other is refused), `b` pulls them again although it
//! finished them before, and its agent completes them.
//!
//! Without `nats-server` the test says SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::cluster::{claim, node, ok, task_ops};
use mailroom_tests::nats::{NatsServer, free_port, nats_server_or_skip};
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The statuses of a task's kept cluster-wide revisions, oldest first, with the node of each.
fn revisions(root: &Root, id: &str) -> Vec<(String, Option<String>)> {
    let out = root.run(&["trace", "--cluster", id, "--json"]);
    assert!(out.status.success(), "trace --cluster: {}", String::from_utf8_lossy(&out.stderr));
    let revs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    revs.iter()
        .map(|r| (r["status"].as_str().unwrap().to_string(), r["node"].as_str().map(str::to_string)))
        .collect()
}

fn status(root: &Root, id: &str) -> String {
    revisions(root, id).last().map(|r| r.0.clone()).unwrap_or_default()
}

#[test]
fn retry_cluster_wide_sends_a_failed_or_cancelled_task_back_to_the_work_queue_once() {
    let Some(bin) = nats_server_or_skip(
        "retry_cluster_wide_sends_a_failed_or_cancelled_task_back_to_the_work_queue_once",
    ) else {
        return;
    };
    let nats = NatsServer::start(&bin, free_port());
    let (a, b) = (node(&nats.url(), "a", 3), node(&nats.url(), "b", 3));
    ok(&b, &["agent", "add", "Agent-B"]);
    let (_ba, _bb) = (a.broker(), b.broker());

    // R-1 fails on b for good.
    let submit = |id: &str| {
        let task = json!({"task_id": id, "task_type": "LEAD"});
        let out = a.run_with_input(&["submit", "-"], task.to_string().as_bytes());
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    };
    submit("R-1");
    let t = claim(&b, "Agent-B", "20").expect("b's agent claims R-1");
    assert_eq!(t["task_id"], "R-1");
    ok(
        &b,
        &[
            "fail",
            "--agent",
            "Agent-B",
            "--claim",
            t["claim"].as_str().unwrap(),
            "--error",
            "no",
            "--no-retry",
        ],
    );
    wait_for(T, || task_ops(&b, "settled", "R-1").len() == 1);
    assert_eq!(status(&a, "R-1"), "FAILED");
    // Not failed or cancelled cluster-wide: nothing to retry (6).
    submit("R-2");
    let t2 = claim(&b, "Agent-B", "20").expect("b's agent claims R-2");
    assert_eq!(t2["task_id"], "R-2");
    assert_eq!(a.run(&["retry", "--cluster", "R-2"]).status.code(), Some(6), "a task in hand is not retried");
    // R-2 is cancelled cluster-wide while b's agent holds it.
    ok(&a, &["cancel", "--cluster", "R-2"]);
    wait_for(T, || task_ops(&b, "settled", "R-2").len() == 1);
    assert_eq!(status(&a, "R-2"), "CANCELLED");

    // Two retries of R-2 race, from both nodes: exactly one wins, the other is refused (6).
    let racers: Vec<_> = [&a, &b]
        .iter()
        .map(|r| r.cmd(&["retry", "--cluster", "R-2"]).stdout(std::process::Stdio::null()).spawn().unwrap())
        .collect();
    let mut codes: Vec<i32> =
        racers.into_iter().map(|c| c.wait_with_output().unwrap().status.code().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, [0, 6], "one retry wins, the other is refused");
    ok(&b, &["retry", "--cluster", "R-1"]);

    // b pulls both again although it finished them before; its agent completes each once.
    let mut done = Vec::new();
    for _ in 0..2 {
        let t = claim(&b, "Agent-B", "20").expect("a retried task comes back");
        ok(&b, &["complete", "--agent", "Agent-B", "--claim", t["claim"].as_str().unwrap()]);
        done.push(t["task_id"].as_str().unwrap().to_string());
    }
    done.sort();
    assert_eq!(done, ["R-1", "R-2"]);
    assert_eq!(claim(&b, "Agent-B", "2"), None, "each retried task went back to the work queue once");
    for id in ["R-1", "R-2"] {
        wait_for(T, || task_ops(&b, "settled", id).len() == 2);
        assert_eq!(task_ops(&b, "pull", id).len(), 2, "{id} pulled twice by b");
        assert!(task_ops(&b, "settled", id).iter().all(|r| r.get("fenced").is_none()));
    }
    let b_ = Some("b".to_string());
    assert_eq!(
        revisions(&a, "R-1"),
        [
            ("PENDING".to_string(), None),
            ("PENDING".to_string(), b_.clone()),
            ("FAILED".to_string(), b_.clone()),
            ("PENDING".to_string(), None),
            ("PENDING".to_string(), b_.clone()),
            ("COMPLETED".to_string(), b_.clone()),
        ]
    );
    let out = a.run(&["board", "--cluster", "--json"]);
    let board: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    for r in &board {
        assert_eq!((r["status"].as_str(), r["takes"].as_u64()), (Some("COMPLETED"), Some(2)), "{r}");
        assert!(r.get("task").is_none(), "the board leaves the kept task body out: {r}");
    }
    assert_eq!(board[0]["retried_by"], "b");
    assert_eq!(board.len(), 2);
    // Completed cluster-wide: refused (6); an unknown task: not found (3).
    assert_eq!(a.run(&["retry", "--cluster", "R-1"]).status.code(), Some(6));
    assert_eq!(a.run(&["retry", "--cluster", "NO-SUCH-TASK"]).status.code(), Some(3));
}

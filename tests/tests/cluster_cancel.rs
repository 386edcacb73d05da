//! Cluster-wide cancel, end to end: a private `nats-server` with JetStream and two real brokers
//! sharing the pool `leads` (docs/CLUSTER.md). From the origin node `a`, `cancel --cluster`
//! cancels one task claimed by an agent on node `b` (b cancels its copy and revokes the claim)
//! and one still waiting in the cluster's work queue (no node ever runs it).
//!
//! Without `nats-server` the test says SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::cluster::{cluster_board, node, task_ops};
use mailroom_tests::nats::{NatsServer, free_port, nats_server_or_skip};
use mailroom_tests::wait_for;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn cancel_cluster_wide_reaches_the_node_holding_the_task_and_the_work_queue() {
    let Some(bin) =
        nats_server_or_skip("cancel_cluster_wide_reaches_the_node_holding_the_task_and_the_work_queue")
    else {
        return;
    };
    let nats = NatsServer::start(&bin, free_port());
    let (a, b) = (node(&nats.url(), "a", 3), node(&nats.url(), "b", 3));
    assert!(b.run(&["agent", "add", "Agent-B"]).status.success());
    let (_ba, _bb) = (a.broker(), b.broker());
    for id in ["C-1", "C-2"] {
        let task = json!({"task_id": id, "task_type": "LEAD"});
        let out = a.run_with_input(&["submit", "-"], task.to_string().as_bytes());
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        // One at a time, so b's one agent takes C-1 first and C-2 waits in the work queue.
        wait_for(T, || !task_ops(&a, "forwarded", id).is_empty());
        if id == "C-1" {
            let out = b.run(&["claim", "--agent", "Agent-B", "--wait", "20"]);
            assert!(out.status.success(), "claim: {}", String::from_utf8_lossy(&out.stderr));
            let t: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(t["task_id"], "C-1");
        }
    }
    let held = b.ls("mailboxes/Agent-B/cur");
    assert_eq!(held.len(), 1, "Agent-B holds C-1");

    // Cancel the task still in the work queue (b's one agent is busy, so b pulls nothing).
    let out = a.run(&["cancel", "--cluster", "C-2"]);
    assert!(out.status.success(), "cancel --cluster: {}", String::from_utf8_lossy(&out.stderr));

    // Cancel the held task from a: b sees its record cancelled, cancels its copy, settles it.
    let out = a.run(&["cancel", "--cluster", "C-1"]);
    assert!(out.status.success(), "cancel --cluster: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(T, || task_ops(&b, "cancel", "C-1").len() == 1 && task_ops(&b, "settled", "C-1").len() == 1);
    assert!(task_ops(&b, "settled", "C-1")[0].get("fenced").is_none());
    // The journal is ahead of the tree: the revocation follows its record.
    wait_for(T, || b.ls("mailboxes/Agent-B/cur").is_empty());
    let late = b.run(&["complete", "--agent", "Agent-B", "--claim", &held[0]]);
    assert!(!late.status.success(), "a revoked claim cannot complete");

    // b's agent is idle now: b pulls C-2, finds its record cancelled and drops it unrun.
    let out = b.run(&["claim", "--agent", "Agent-B", "--wait", "4"]);
    assert_eq!(out.status.code(), Some(3), "nothing to claim: {}", String::from_utf8_lossy(&out.stdout));
    assert!(task_ops(&b, "pull", "C-2").is_empty(), "a task cancelled cluster-wide is never queued");

    let board = cluster_board(&b);
    assert_eq!(board.len(), 2, "{board:?}");
    for r in &board {
        assert_eq!((r["status"].as_str(), r["cancelled_by"].as_str()), (Some("CANCELLED"), Some("a")), "{r}");
    }
    // Finished cluster-wide: a second cancel is refused (6); an unknown task is not found (3).
    assert_eq!(a.run(&["cancel", "--cluster", "C-1"]).status.code(), Some(6));
    assert_eq!(b.run(&["cancel", "--cluster", "NO-SUCH-TASK"]).status.code(), Some(3));
}

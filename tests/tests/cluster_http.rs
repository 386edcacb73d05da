//! `GET /api/cluster` on real brokers and a private `nats-server`: a node serves the cluster-wide
//! record of a task submitted on it and completed on another node; a broker that is not a
//! cluster node answers 404 with why; with NATS down the node answers 503 with the reason.
//!
//! Without `nats-server` the test says SKIPPED (a failure under `MAILROOM_REQUIRE_ALL`).

use mailroom_tests::cluster::node;
use mailroom_tests::nats::{NatsServer, free_port, nats_server_or_skip};
use mailroom_tests::{Root, wait_for};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn the_cluster_board_is_served_over_http() {
    let Some(bin) = nats_server_or_skip("the_cluster_board_is_served_over_http") else { return };
    let mut nats = NatsServer::start(&bin, free_port());
    let (a, b, alone) = (node(&nats.url(), "a", 300), node(&nats.url(), "b", 300), Root::new());
    let (_ba, _bb, _bc) = (a.broker(), b.broker(), alone.broker());
    let (api_a, api_b) = (a.api(), b.api());

    // Nothing shared yet: an empty board, and the node says who it is.
    let r = api_a.get("/api/cluster");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"node": "a", "tasks": []}));

    // A task submitted on a, claimed and completed by b's agent.
    assert!(b.run(&["agent", "add", "Agent-B"]).status.success());
    let task = json!({"task_id": "L-1", "task_type": "LEAD"}).to_string();
    assert!(a.run_with_input(&["submit", "-"], task.as_bytes()).status.success());
    let out = b.run(&["claim", "--agent", "Agent-B", "--wait", "30"]);
    assert!(out.status.success(), "claim: {}", String::from_utf8_lossy(&out.stderr));
    let claimed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claimed["task_id"], "L-1");
    let name = claimed["claim"].as_str().unwrap();
    assert!(b.run(&["complete", "--agent", "Agent-B", "--claim", name]).status.success());

    // Both nodes serve the same record: completed on b by Agent-B, taken once.
    for (api, me) in [(&api_a, "a"), (&api_b, "b")] {
        wait_for(T, || api.get("/api/cluster").json["tasks"][0]["status"] == "COMPLETED");
        let r = api.get("/api/cluster");
        assert_eq!(r.json["node"], me);
        let rows = r.json["tasks"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!(
            (&row["task_id"], &row["node"], &row["agent"]),
            (&json!("L-1"), &json!("b"), &json!("Agent-B"))
        );
        assert_eq!((&row["origin"], &row["takes"]), (&json!("a"), &json!(1)));
        assert!(row["revision"].as_u64().is_some_and(|r| r >= 3), "published, taken, completed: {row}");
    }

    // A broker that is not a cluster node says so.
    let r = alone.api().get("/api/cluster");
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json["error"], "not_a_cluster_node");

    // NATS down: the node cannot read the cluster, and says why; its own API still serves.
    nats.stop();
    let r = api_a.get("/api/cluster");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["error"], "cluster_unreachable");
    assert!(r.json["reason"].as_str().is_some_and(|s| s.contains("NATS")), "{}", r.text);
    assert_eq!(api_a.get("/api/tasks").status, 200);
}

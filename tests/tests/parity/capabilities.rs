//! Capability routing: agents declare capabilities (`agent add --capability`, the SDK), a pool
//! task that requires some is claimed only by an agent holding all of them (`claim` exits 3 for
//! the others), and a raw rename by an agent lacking one is put back by the broker with a
//! `refused` notice while the task stays available.

use super::{T, agent_add, claim, notices, submit};
use mailroom_tests::{Root, stdout, wait_for};
use serde_json::{Value, json};

fn agent_list(root: &Root) -> Vec<Value> {
    let out = root.run(&["agent", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("agent list --json prints a list")
}

#[test]
fn only_an_agent_holding_every_capability_claims_a_gated_task() {
    let root = Root::new();
    agent_add(&root, "Agent-1", &["--capability", "python", "--capability", "web"]);
    agent_add(&root, "Agent-2", &["--capability", "python"]);
    let profile: Value =
        serde_json::from_slice(&std::fs::read(root.comms().join("mailboxes/Agent-1/agent.json")).unwrap())
            .unwrap();
    assert_eq!(profile["capabilities"], json!(["python", "web"]));
    let listed: Vec<(Value, Value)> =
        agent_list(&root).into_iter().map(|a| (a["agent"].clone(), a["capabilities"].clone())).collect();
    assert_eq!(listed, [(json!("Agent-1"), json!(["python", "web"])), (json!("Agent-2"), json!(["python"]))]);
    let text = stdout(&root.run(&["agent", "list"]));
    assert!(text.contains("python, web"), "{text}");

    let _b = root.broker();
    submit(
        &root,
        &json!({"task_id": "W-1", "task_type": "site", "required_capabilities": ["PYTHON", "web"]}),
    );
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    assert_eq!(claim(&root, "Agent-2", &[]), None, "Agent-2 lacks `web`: nothing it may claim");
    let t = claim(&root, "Agent-1", &[]).expect("Agent-1 holds both");
    assert_eq!(t["task_id"], "W-1");

    // Settable through the SDK.
    let sdk = agent_sdk::Agent::register(&root.path, "Agent-3").unwrap();
    sdk.set_capabilities(&["python", "web"]).unwrap();
    assert_eq!(sdk.capabilities().unwrap(), ["python", "web"]);
    submit(&root, &json!({"task_id": "W-2", "task_type": "site", "required_capabilities": ["web"]}));
    wait_for(T, || !root.ls("queues/site/new").is_empty());
    assert_eq!(
        claim(&root, "Agent-3", &["--wait", "5"]).expect("declared through the SDK")["task_id"],
        "W-2"
    );
}

#[test]
fn a_raw_rename_by_an_agent_lacking_a_capability_is_taken_back_with_a_refused_notice() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    agent_add(&root, "Agent-9", &[]);
    agent_add(&root, "Agent-1", &["--capability", "gpu"]);
    let _b = root.broker();
    submit(&root, &json!({"task_id": "R-1", "task_type": "render", "required_capabilities": ["gpu"]}));
    wait_for(T, || root.ls("queues/render/new").len() == 1);
    let name = root.ls("queues/render/new").remove(0);
    assert!(name.contains(".caps-"), "the name says the task is gated: {name}");
    // A script that knows only the file protocol renames the file anyway.
    std::fs::rename(
        root.comms().join("queues/render/new").join(&name),
        root.comms().join("mailboxes/Agent-9/cur").join(&name),
    )
    .unwrap();
    wait_for(T, || notices(&root, "Agent-9").iter().any(|n| n["notice"] == "refused"));
    wait_for(T, || root.ls("queues/render/new") == [name.clone()]);
    assert!(root.ls("mailboxes/Agent-9/cur").is_empty());
    let n = notices(&root, "Agent-9").into_iter().find(|n| n["notice"] == "refused").unwrap();
    assert_eq!((&n["task_id"], &n["claim"]), (&json!("R-1"), &json!(name)));
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    let ready = root.board("task_ready_queue");
    assert_eq!(
        (&ready[0]["task_id"], &ready[0]["status"], &ready[0]["attempts"]),
        (&json!("R-1"), &json!("PENDING"), &json!(0))
    );
    let trace = stdout(&root.run(&["trace", "R-1"]));
    assert!(trace.contains("refuse") && trace.contains("lacks the capabilities"), "{trace}");
    // Still available to an agent that may claim it.
    assert_eq!(claim(&root, "Agent-1", &[]).expect("still available")["task_id"], "R-1");
}

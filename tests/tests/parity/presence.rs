//! Agent presence: last seen from any claim, heartbeat or message, and the state (busy, idle,
//! stale after `[agents] stale_secs`) in `mailroom agent list`, on the agents board, in the HTTP
//! API, and after a restart.

use super::{T, agent_add, claim, submit};
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};

fn listed(root: &Root) -> Vec<Value> {
    let out = root.run(&["agent", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("agent list --json prints a list")
}

fn state(root: &Root, agent: &str) -> Value {
    listed(root).into_iter().find(|a| a["agent"] == agent).expect("listed")["state"].clone()
}

fn board(root: &Root) -> Vec<Value> {
    match std::fs::read(root.comms().join("central_task_boards/agents.json")) {
        Ok(b) => serde_json::from_slice(&b).expect("the agents board is a JSON list"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read the agents board: {e}"),
    }
}

#[test]
fn claims_heartbeats_and_messages_keep_an_agent_from_going_stale() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n[agents]\nstale_secs = 2\n");
    for a in ["Worker", "Silent"] {
        agent_add(&root, a, &[]);
    }
    agent_add(&root, "Talker", &["--capability", "chat"]);
    let b = root.broker();
    assert_eq!(state(&root, "Silent"), "stale", "never seen");
    submit(&root, &json!({"task_id": "P-1"}));
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    let t = claim(&root, "Worker", &[]).expect("a task");
    let out = root.run_with_input(&["send", "--from", "Talker", "--to", "Worker", "-"], b"\"hello\"");
    assert!(out.status.success());
    wait_for(T, || state(&root, "Worker") == "busy" && state(&root, "Talker") == "idle");
    // The HTTP API judges them alike, with their capabilities.
    let api = root.api().get("/api/agents");
    let of = |name: &str| {
        api.json["agents"].as_array().unwrap().iter().find(|a| a["agent"] == name).cloned().unwrap()
    };
    assert_eq!(of("Silent")["state"], "stale", "never seen: {}", api.text);
    assert_eq!(of("Worker")["held"].as_array().map(Vec::len), Some(1), "{}", api.text);
    assert_eq!(of("Talker")["capabilities"], json!(["chat"]), "{}", api.text);
    let on_board: Vec<(Value, Value)> =
        board(&root).into_iter().map(|a| (a["name"].clone(), a["held"].clone())).collect();
    assert!(on_board.contains(&(json!("Worker"), json!([t["claim"]]))), "{on_board:?}");

    // Nothing from the worker for longer than stale_secs: stale, although it holds a claim; a
    // heartbeat makes it busy again.
    wait_for(T, || state(&root, "Worker") == "stale");
    let hb = root.run(&["heartbeat", "--agent", "Worker", "--claim", t["claim"].as_str().unwrap()]);
    assert!(hb.status.success());
    wait_for(T, || state(&root, "Worker") == "busy");

    // The last sight of an agent survives a restart (it is in the journal).
    wait_for(T, || state(&root, "Talker") == "stale");
    let before = listed(&root).into_iter().find(|a| a["agent"] == "Talker").unwrap()["last_seen"].clone();
    assert!(before.is_string(), "{before}");
    b.kill9();
    let _b = root.broker();
    wait_for(T, || board(&root).iter().any(|a| a["name"] == "Talker" && a["last_seen"] == before));
    let text = mailroom_tests::stdout(&root.run(&["board"]));
    assert!(text.contains("AGENT") && text.contains("Talker"), "the board shows the agents: {text}");
}

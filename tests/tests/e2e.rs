//! End-to-end: real `mailroom` processes (broker, CLI, SDK and Python agents) on temporary roots.

use mailroom_tests::{Root, have_python, skip_unless_required, stdout, wait_for, workspace};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn submit(root: &Root, task: Value) {
    let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
    assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Claims as `agent`, registering it first (agents are made explicitly; `agent add` is idempotent).
fn claim(root: &Root, agent: &str, extra: &[&str]) -> Option<Value> {
    assert!(root.run(&["agent", "add", agent]).status.success());
    let mut args = vec!["claim", "--agent", agent];
    args.extend_from_slice(extra);
    let out = root.run(&args);
    match out.status.code() {
        Some(0) => Some(serde_json::from_slice(&out.stdout).expect("claim prints JSON")),
        Some(3) => None,
        other => panic!("claim exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn completed_ids(root: &Root) -> Vec<String> {
    root.board("completed_tasks").iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn cli_round_trip_with_trace_and_board() {
    let root = Root::new();
    let _b = root.broker();
    submit(&root, json!({"task_id": "T-1", "name": "say hi", "task_type": "greet", "priority": "HIGH"}));
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    let task = loop {
        if let Some(t) = claim(&root, "Agent-1", &["--wait", "5"]) {
            break t;
        }
    };
    assert_eq!(task["task_id"], "T-1");
    let name = task["claim"].as_str().unwrap().to_string();
    assert!(root.ls("mailboxes/Agent-1/cur").contains(&name));
    assert!(root.run(&["heartbeat", "--agent", "Agent-1", "--claim", &name]).status.success());
    let out = root.run_with_input(
        &["complete", "--agent", "Agent-1", "--claim", &name, "--result", "-"],
        b"{\"said\":\"hi\"}",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(T, || completed_ids(&root) == ["T-1"]);
    assert_eq!(root.board("completed_tasks")[0]["result"], json!({"said": "hi"}));

    let tr = root.run(&["trace", "T-1"]);
    assert!(tr.status.success());
    let text = stdout(&tr);
    for needle in [
        "submit",
        "dispatch",
        "claim",
        "complete",
        &format!("mailboxes/Agent-1/cur/{name}"),
        "status: COMPLETED",
    ] {
        assert!(text.contains(needle), "trace lacks {needle:?}:\n{text}");
    }
    let tj: Value = serde_json::from_slice(&root.run(&["trace", "T-1", "--json"]).stdout).unwrap();
    assert_eq!(tj["status"], "COMPLETED");
    let bj: Value =
        serde_json::from_slice(&root.run(&["board", "--status", "COMPLETED", "--json"]).stdout).unwrap();
    assert_eq!(bj.as_array().unwrap().len(), 1);
    assert_eq!(root.run(&["trace", "nope"]).status.code(), Some(3));
    let schema: Value = serde_json::from_slice(&root.run(&["schema"]).stdout).unwrap();
    assert!(schema["messages"]["complete"].is_object());
}

#[test]
fn second_broker_refuses_and_sigterm_exits_cleanly() {
    let root = Root::new();
    let b = root.broker();
    let out = root.run(&["run"]);
    assert_eq!(out.status.code(), Some(4), "second broker: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another broker"));
    let (code, _) = b.terminate();
    assert_eq!(code, Some(0));
    // The lock is released: a new broker starts.
    let b = root.broker();
    b.kill9();
}

#[test]
fn killed_agent_task_comes_back_after_its_lease() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 100\n");
    let _b = root.broker();
    submit(&root, json!({"task_id": "L", "lease_secs": 1}));
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    // The agent claims and then dies without heartbeating or completing.
    let first = claim(&root, "Agent-1", &["--wait", "5"]).expect("claimed");
    let first_name = first["claim"].as_str().unwrap().to_string();
    wait_for(T, || root.board("working_tasks").len() == 1);
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    let again = claim(&root, "Agent-2", &["--wait", "5"]).expect("claimed again");
    assert_eq!(again["task_id"], "L");
    assert_ne!(again["claim"].as_str().unwrap(), first_name, "a new name on re-dispatch");
    // Printed as the claim makes it: the second attempt (the lapsed one counted).
    assert_eq!((again["attempts"].as_u64(), again["status"].as_str()), (Some(2), Some("IN_PROGRESS")));
    // The dead agent's late completion is stale: refused by the SDK (its claim file is gone).
    let late = root.run(&["complete", "--agent", "Agent-1", "--claim", &first_name]);
    assert_eq!(late.status.code(), Some(5));
}

#[test]
fn stale_and_spoofed_completions_are_rejected() {
    let root = Root::new();
    let _b = root.broker();
    assert!(root.run(&["agent", "add", "Agent-2"]).status.success());
    submit(&root, json!({"task_id": "S"}));
    let t = loop {
        if let Some(t) = claim(&root, "Agent-1", &["--wait", "5"]) {
            break t;
        }
    };
    let name = t["claim"].as_str().unwrap();
    // Agent-2 claims Agent-1's task, bypassing the SDK: the broker refuses it.
    let spoof = json!({"kind": "complete", "agent": "Agent-2", "claim": name});
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp/spoof.json"), spoof.to_string()).unwrap();
    std::fs::rename(inbox.join("tmp/spoof.json"), inbox.join("new/spoof.json")).unwrap();
    wait_for(T, || root.ls("broker/quarantine").iter().any(|n| n.ends_with("spoof.json.error.json")));
    wait_for(T, || root.ls("mailboxes/Agent-2/new").iter().any(|n| n.starts_with("notice-")));
    let notice_name =
        root.ls("mailboxes/Agent-2/new").into_iter().find(|n| n.starts_with("notice-")).unwrap();
    let notice: Value = serde_json::from_slice(
        &std::fs::read(root.comms().join("mailboxes/Agent-2/new").join(notice_name)).unwrap(),
    )
    .unwrap();
    assert_eq!(notice["notice"], "stale");
    wait_for(T, || root.board("working_tasks").len() == 1); // still Agent-1's
    // The same spoof through the CLI is refused before it is even sent.
    assert_eq!(root.run(&["complete", "--agent", "Agent-2", "--claim", name]).status.code(), Some(5));
    // The holder completes; a second completion is stale.
    assert!(root.run(&["complete", "--agent", "Agent-1", "--claim", name]).status.success());
    wait_for(T, || completed_ids(&root) == ["S"]);
    assert_eq!(root.run(&["complete", "--agent", "Agent-1", "--claim", name]).status.code(), Some(5));
}

#[test]
fn half_written_drop_file_is_taken_once_complete() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\nsettle_ms = 300\n");
    let _b = root.broker();
    let body = json!({"task_id": "LEAD-TWITTER-0001", "name": "a lead", "priority": "MEDIUM"}).to_string();
    let path = root.comms().join("drop/LEAD-TWITTER-0001.json");
    // A legacy script writing with a plain open('w'), byte by byte, with pauses.
    let mut f = std::fs::File::create(&path).unwrap();
    for (i, b) in body.bytes().enumerate() {
        std::io::Write::write_all(&mut f, &[b]).unwrap();
        std::thread::sleep(Duration::from_millis(if i % 10 == 0 { 120 } else { 5 }));
        assert!(path.exists(), "taken before it was complete (after {i} bytes)");
    }
    drop(f);
    wait_for(T, || !path.exists());
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    assert_eq!(root.board("task_ready_queue")[0]["name"], "a lead");
    assert!(root.ls("broker/quarantine").is_empty(), "{:?}", root.ls("broker/quarantine"));
}

#[test]
fn sigkill_and_restart_loses_nothing() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    let n = 300;
    let b = root.broker();
    for i in 0..n / 2 {
        submit(&root, json!({"task_id": format!("K-{i:04}")}));
    }
    std::thread::sleep(Duration::from_millis(50));
    b.kill9();
    // Producers keep writing while the broker is down (not waiting for an answer that cannot
    // come: their messages are fsynced and wait in the inbox); agents keep claiming.
    for i in n / 2..n {
        let task = json!({"task_id": format!("K-{i:04}")}).to_string();
        let out = root.run_with_input(&["--no-wait", "submit", "-"], task.as_bytes());
        assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let held = claim(&root, "Agent-1", &[]);
    let _b = root.broker();
    let mut done = 0;
    if let Some(t) = held {
        assert!(
            root.run(&["complete", "--agent", "Agent-1", "--claim", t["claim"].as_str().unwrap()])
                .status
                .success()
        );
        done += 1;
    }
    while done < n {
        let t = claim(&root, "Agent-2", &["--wait", "10"]).expect("every task reaches an agent");
        assert!(
            root.run(&["complete", "--agent", "Agent-2", "--claim", t["claim"].as_str().unwrap()])
                .status
                .success()
        );
        done += 1;
    }
    wait_for(T, || completed_ids(&root).len() == n);
    let mut ids = completed_ids(&root);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "each task completed exactly once");
    assert!(root.board("task_ready_queue").is_empty() && root.board("working_tasks").is_empty());
}

/// Many agent processes (Python, standard library only, through the raw file protocol) race on
/// one pool: every task is claimed and completed exactly once.
#[test]
fn python_agents_racing_on_one_pool_claim_each_task_once() {
    if !have_python() {
        return skip_unless_required("python_agents_racing_on_one_pool", "python3 is not installed");
    }
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    let _b = root.broker();
    let n = 400;
    for i in 0..n {
        let task = json!({"task_id": format!("P-{i:04}"), "task_type": "race", "params": {"i": i}});
        let name = format!("{i:06}.json");
        let inbox = root.comms().join("broker/inbox");
        std::fs::write(inbox.join("tmp").join(&name), task.to_string()).unwrap();
        std::fs::rename(inbox.join("tmp").join(&name), inbox.join("new").join(&name)).unwrap();
    }
    wait_for(T, || root.ls("queues/race/new").len() + root.board("completed_tasks").len() >= n / 2);
    let script = workspace().join("examples/python_agent.py");
    let agents: Vec<_> = (1..=8)
        .map(|i| {
            Command::new("python3")
                .arg(&script)
                .args([
                    "--root",
                    root.path.to_str().unwrap(),
                    "--agent",
                    &format!("Agent-{i}"),
                    "--pool",
                    "race",
                ])
                .args(["--wait", "3"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start python agent")
        })
        .collect();
    for a in agents {
        let out = a.wait_with_output().unwrap();
        assert!(out.status.success(), "python agent failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for(T, || completed_ids(&root).len() == n);
    let mut by_agent: HashMap<String, usize> = HashMap::new();
    let mut ids = completed_ids(&root);
    for t in root.board("completed_tasks") {
        *by_agent.entry(t["assigned_to"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        let claims = t["history"].as_array().unwrap().iter().filter(|h| h["action"] == "claim").count();
        assert_eq!(claims, 1, "claimed once: {}", t["task_id"]);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    assert!(
        root.ls("broker/quarantine").is_empty(),
        "no rejected completion: {:?}",
        root.ls("broker/quarantine")
    );
    assert!(by_agent.len() > 1, "the work was shared: {by_agent:?}");
}

/// With the periodic look a quarter of an hour away, only the kernel's events can wake the
/// broker: a message in its inbox, a new agent's mailbox made while it runs, and a claim renamed
/// into that agent's `cur/` are each acted on at once.
#[test]
fn arrivals_wake_the_broker_without_its_periodic_look() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 900000\n");
    let _b = root.broker();
    let status = |id: &str| -> Value {
        let out = root.run(&["trace", id, "--json"]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"].clone()
    };
    // The agent's mailbox is made after the broker started watching.
    assert!(root.run(&["agent", "add", "Late-1"]).status.success());
    submit(&root, json!({"task_id": "W-1", "name": "wake", "task_type": "t"}));
    wait_for(Duration::from_secs(20), || status("W-1") == "PENDING");
    let task = claim(&root, "Late-1", &["--wait", "20"]).expect("the task was queued");
    wait_for(Duration::from_secs(20), || status("W-1") == "IN_PROGRESS");
    let name = task["claim"].as_str().unwrap();
    let out =
        root.run_with_input(&["complete", "--agent", "Late-1", "--claim", name, "--result", "-"], b"{}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status("W-1"), "COMPLETED", "the completion was answered, so it is journaled");
}

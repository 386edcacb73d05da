//! End-to-end: the operators' commands against a real broker — `status`, `board` filters and
//! `--watch`, `quarantine list|show|requeue` (a fixed input goes through, a bad one comes back
//! with its reason, traversal names are refused by the CLI and by the broker), `mail read` and
//! `agent list` — their `--json` shapes and exit codes, and exit 7 on a root that is not one.

use mailroom_tests::{Root, stdout, wait_for};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn submit(root: &Root, task: Value) {
    let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
    assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs a command expecting `code`, returning its stdout as JSON.
fn json_of(root: &Root, args: &[&str], code: i32) -> Value {
    let out = root.run(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Delivers raw bytes into the broker's inbox, as a writer that does not use the SDK would.
fn deliver_raw(root: &Root, name: &str, bytes: &[u8]) {
    let tmp = root.comms().join("broker/inbox/tmp").join(name);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, root.comms().join("broker/inbox/new").join(name)).unwrap();
}

fn entries(root: &Root) -> Vec<Value> {
    json_of(root, &["quarantine", "list", "--json"], 0).as_array().unwrap().clone()
}

#[test]
fn a_directory_that_is_not_a_root_exits_7_for_every_command() {
    let root = Root::new();
    let elsewhere = root.scratch().join("not-a-root");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["board", "--pool", "x"],
        &["board", "--watch"],
        &["quarantine", "list"],
        &["quarantine", "show", "x.json"],
        &["quarantine", "requeue", "x.json"],
        &["mail", "read", "--agent", "A"],
        &["agent", "list", "--json"],
    ] {
        let out = std::process::Command::new(mailroom_tests::bin())
            .arg("--root")
            .arg(&elsewhere)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a mailroom root"), "{args:?}");
    }
}

#[test]
fn status_says_whether_a_broker_runs_and_what_waits_where() {
    let root = Root::new();
    let down = json_of(&root, &["status", "--json"], 10);
    assert_eq!(down["broker"]["running"], false);
    assert_eq!(down["broker"]["judged_by"], "never");
    let b = root.broker();
    root.run(&["agent", "add", "Agent-1"]);
    for i in 0..3 {
        submit(&root, json!({"task_id": format!("ST-{i}"), "task_type": "build"}));
    }
    submit(&root, json!({"task_id": "ST-d", "assigned_to": "Agent-1"}));
    deliver_raw(&root, "bad.json", br#"{"task_id": "ST-bad", "priority": "SOON"}"#);
    wait_for(T, || root.board("task_ready_queue").len() == 4 && root.ls("broker/quarantine").len() == 2);
    let st = json_of(&root, &["status", "--json"], 0);
    assert_eq!(st["broker"]["running"], true, "{st}");
    assert_eq!(st["broker"]["pid"], b.pid());
    assert_eq!(st["boards"], json!({"backlog": 0, "completed": 0, "ready": 4, "working": 0}));
    assert_eq!(st["statuses"]["PENDING"], 4);
    let build = st["pools"].as_array().unwrap().iter().find(|p| p["pool"] == "build").expect("pool build");
    assert_eq!(build["waiting"], 3);
    assert!(build["oldest_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(st["agents"], json!([{"agent": "Agent-1", "held": 0, "waiting": 1, "unread": 0}]));
    assert_eq!((st["inbox"].as_u64(), st["quarantine"].as_u64()), (Some(0), Some(1)));
    assert!(st["journal"]["age_secs"].as_f64().unwrap() < 60.0, "{st}");
    let text = stdout(&root.run(&["status"]));
    assert!(text.contains("running as pid") && text.contains("build"), "{text}");

    let (code, _) = b.terminate();
    assert_eq!(code, Some(0));
    let after = json_of(&root, &["status", "--json"], 10);
    assert_eq!(after["broker"]["running"], false, "a stopped broker's note stays, its lock does not");
}

#[test]
fn board_filters_by_pool_agent_and_type_and_watch_redraws_until_sigint() {
    let root = Root::new();
    root.write_config("[routes]\nreview = \"pool:people\"\n");
    let _b = root.broker();
    root.run(&["agent", "add", "Agent-7"]);
    submit(&root, json!({"task_id": "B-1", "task_type": "build"}));
    submit(&root, json!({"task_id": "B-2", "task_type": "review"}));
    submit(&root, json!({"task_id": "B-3", "task_type": "build", "assigned_to": "Agent-7"}));
    wait_for(T, || root.board("task_ready_queue").len() == 3);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["board", "--json"];
        a.extend_from_slice(args);
        let v = json_of(&root, &a, 0);
        v.as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&["--pool", "build"]), ["B-1", "B-3"]);
    assert_eq!(ids(&["--pool", "people"]), ["B-2"], "a route names the pool");
    assert_eq!(ids(&["--type", "review"]), ["B-2"]);
    assert_eq!(ids(&["--agent", "Agent-7"]), ["B-3"]);
    assert_eq!(ids(&["--agent", "Agent-7", "--pool", "people"]), Vec::<String>::new());
    assert_eq!(root.run(&["board", "--status", "LATE"]).status.code(), Some(2));

    let mut watch = root
        .cmd(&["board", "--watch", "--json", "--pool", "build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    submit(&root, json!({"task_id": "B-4", "task_type": "build"}));
    submit(&root, json!({"task_id": "B-5", "task_type": "review"}));
    loop {
        let frame: Value = serde_json::from_str(&lines.next().expect("a redraw").unwrap()).unwrap();
        let frame: Vec<&str> =
            frame.as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
        assert!(!frame.contains(&"B-5"), "filtered: {frame:?}");
        if frame.contains(&"B-4") {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(watch.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    assert_eq!(watch.wait().unwrap().code(), Some(0), "SIGINT ends the watch cleanly");
}

#[test]
fn quarantine_entries_are_listed_shown_and_requeued_through_the_broker() {
    let root = Root::new();
    let _b = root.broker();
    let refused = root.run_with_input(
        &["submit", "-"],
        json!({"task_id": "Q-1", "assigned_to": "Agent-4"}).to_string().as_bytes(),
    );
    assert_eq!(refused.status.code(), Some(6), "the verdict: refused, and quarantined");
    deliver_raw(&root, "garbled.json", b"{\"task_id\": ");
    wait_for(T, || entries(&root).len() == 2);
    let list = entries(&root);
    let good = list.iter().find(|e| e["task_id"] == "Q-1").expect("the refused submit");
    assert_eq!(good["field"], "task.assigned_to");
    assert!(good["rule"].as_str().unwrap().contains("no agent `Agent-4`"));
    assert_eq!(good["kind"], "submit");
    let good = good["name"].as_str().unwrap().to_string();
    let bad = list.iter().find(|e| e["name"] != good.as_str()).unwrap()["name"].as_str().unwrap().to_string();
    assert!(stdout(&root.run(&["quarantine", "list"])).contains(&good));

    let shown = json_of(&root, &["quarantine", "show", &good, "--json"], 0);
    assert_eq!(shown["content"]["task"]["task_id"], "Q-1");
    assert_eq!(shown["error"]["field"], "task.assigned_to");
    assert_eq!(json_of(&root, &["quarantine", "show", &bad, "--json"], 0)["content"], "{\"task_id\": ");
    assert_eq!(root.run(&["quarantine", "show", "nope.json"]).status.code(), Some(3));
    for traversal in ["../journal", "../../mailroom.toml", "..", &format!("{good}.error.json")] {
        assert_eq!(root.run(&["quarantine", "show", traversal]).status.code(), Some(6), "{traversal}");
        assert_eq!(root.run(&["quarantine", "requeue", traversal]).status.code(), Some(6), "{traversal}");
    }
    assert_eq!(root.run(&["quarantine", "requeue", "nope.json"]).status.code(), Some(3));

    // Fixed: the agent exists now. The requeue goes through the broker's inbox.
    root.run(&["agent", "add", "Agent-4"]);
    let sent = json_of(&root, &["quarantine", "requeue", &good], 0);
    assert_eq!(sent["entry"], good.as_str());
    wait_for(T, || root.board("task_ready_queue").iter().any(|t| t["task_id"] == "Q-1"));
    assert!(root.ls("broker/quarantine/requeued").contains(&format!("{good}.error.json")));
    assert!(root.journal().iter().any(|r| r["op"] == "requeue" && r["name"] == good.as_str()));

    // Still bad: back in quarantine, under a new name, with its reason; nothing lost.
    json_of(&root, &["quarantine", "requeue", &bad], 0);
    wait_for(T, || {
        let e = entries(&root);
        e.len() == 1 && e[0]["name"] != bad.as_str()
    });
    let back = &entries(&root)[0];
    assert!(back["reason"].as_str().unwrap().contains("JSON"), "{back}");
    let content = json_of(&root, &["quarantine", "show", back["name"].as_str().unwrap(), "--json"], 0);
    assert_eq!(content["content"], "{\"task_id\": ");

    // A requeue message naming a path is refused by the broker itself, and quarantined.
    let client = agent_sdk::Client::open(&root.path).unwrap();
    assert!(client.requeue("../journal").is_err(), "the SDK refuses it first");
    let requeue = protocol::Message::Requeue { name: "../journal".into() };
    let refused = client.send_message(&requeue).unwrap_err();
    assert!(refused.to_string().contains("name"), "refused by the broker, naming the field: {refused}");
    // That was on the broker's socket: nothing to keep. As a file, it is quarantined.
    assert!(entries(&root).iter().all(|e| e["field"] != "name"));
    let refused = client.with_socket(false).send_message(&requeue).unwrap_err();
    assert!(refused.to_string().contains("name"), "{refused}");
    wait_for(T, || entries(&root).iter().any(|e| e["field"] == "name"));
    assert!(root.ls("broker/journal").iter().any(|n| n.starts_with("segment-")), "the journal is untouched");
}

#[test]
fn mail_read_takes_mail_and_notices_once() {
    let root = Root::new();
    let _b = root.broker();
    root.run(&["agent", "add", "Agent-1"]);
    root.run(&["agent", "add", "Agent-2"]);
    let out = root.run_with_input(
        &["send", "--from", "Agent-1", "--to", "Agent-2", "--subject", "hi", "-"],
        b"\"hello\"",
    );
    assert!(out.status.success());
    // A report about a claim never held earns a `stale` notice.
    let client = agent_sdk::Client::open(&root.path).unwrap();
    let stale = protocol::Message::Complete {
        agent: "Agent-2".into(),
        claim: "1-20260101T000000000000-000000000001-X.json".into(),
        result: Value::Null,
    };
    client.send_message(&stale).unwrap_err(); // refused as stale: the verdict, and a notice
    wait_for(T, || root.ls("mailboxes/Agent-2/new").len() == 2);
    let got = json_of(&root, &["mail", "read", "--agent", "Agent-2", "--json"], 0);
    let kinds: Vec<&str> = got.as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"mail") && kinds.contains(&"notice"), "{got}");
    let mail = got.as_array().unwrap().iter().find(|m| m["kind"] == "mail").unwrap();
    assert_eq!(
        (mail["from"].as_str(), mail["subject"].as_str(), &mail["body"]),
        (Some("Agent-1"), Some("hi"), &json!("hello"))
    );
    let notice = got.as_array().unwrap().iter().find(|m| m["kind"] == "notice").unwrap();
    assert_eq!(notice["notice"], "stale");
    assert!(root.ls("mailboxes/Agent-2/new").is_empty());
    assert_eq!(root.ls("mailboxes/Agent-2/cur").len(), 2, "read once: moved to cur/");
    assert_eq!(json_of(&root, &["mail", "read", "--agent", "Agent-2", "--json"], 0), json!([]));
    assert_eq!(root.run(&["mail", "read", "--agent", "Nobody"]).status.code(), Some(6));
    assert_eq!(root.run(&["mail", "read", "--agent", "../x"]).status.code(), Some(6));
}

#[test]
fn agent_list_shows_held_claims_leases_and_activity() {
    let root = Root::new();
    root.write_config("[broker]\nlease_secs = 120\n");
    let _b = root.broker();
    root.run(&["agent", "add", "Idle-1"]);
    root.run(&["agent", "add", "Busy-1"]);
    submit(&root, json!({"task_id": "A-1", "task_type": "work"}));
    submit(&root, json!({"task_id": "A-2", "task_type": "work", "lease_secs": 900}));
    wait_for(T, || root.board("task_ready_queue").len() == 2);
    for _ in 0..2 {
        let out = root.run(&["claim", "--agent", "Busy-1", "--wait", "5"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list = json_of(&root, &["agent", "list", "--json"], 0);
    let agents: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["Busy-1", "Idle-1"]);
    let busy = &list[0];
    let held = busy["held"].as_array().unwrap();
    let mut tasks: Vec<(&str, u64)> =
        held.iter().map(|c| (c["task_id"].as_str().unwrap(), c["lease_secs"].as_u64().unwrap())).collect();
    tasks.sort();
    assert_eq!(tasks, [("A-1", 120), ("A-2", 900)]);
    for c in held {
        let left = c["lease_left_secs"].as_f64().unwrap();
        assert!(left > 0.0 && left <= c["lease_secs"].as_f64().unwrap(), "{c}");
    }
    assert!(busy["last_activity"].is_string());
    assert_eq!(list[1]["held"], json!([]));
    assert!(stdout(&root.run(&["agent", "list"])).contains("Busy-1"));
}

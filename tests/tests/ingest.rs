//! The lenient front door end to end: legacy scripts writing task files non-atomically, boards
//! edited behind the broker's back, legacy mailbox inboxes, and `mailroom import`.

use mailroom_tests::{Root, wait_for, workspace};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn all_tasks(root: &Root) -> Vec<Value> {
    ["task_backlog", "task_ready_queue", "working_tasks", "completed_tasks"]
        .iter()
        .flat_map(|b| root.board(b))
        .collect()
}

fn ids(root: &Root) -> Vec<String> {
    let mut v: Vec<String> =
        all_tasks(root).iter().map(|t| t["task_id"].as_str().unwrap_or("?").to_string()).collect();
    v.sort();
    v
}

fn find(root: &Root, id: &str) -> Option<Value> {
    all_tasks(root).into_iter().find(|t| t["task_id"] == id)
}

#[test]
fn a_lead_written_byte_by_byte_into_a_task_dir_is_taken_once_and_normalised() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\nsettle_ms = 300\n[ingest]\ntask_dirs = [\"tasks\"]\n");
    let tasks = root.path.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let _b = root.broker();
    // The shape a legacy lead scanner writes: its own spellings for every field.
    let body = json!({
        "id": "LEAD-TWITTER-42", "title": "follow up", "priority": "high", "status": "new",
        "created": "2026-11-20 10:00:00", "platform": "twitter", "params": {"url": "https://x"}
    })
    .to_string();
    let path = tasks.join("LEAD-TWITTER-42.json");
    let mut f = std::fs::File::create(&path).unwrap();
    for (i, b) in body.bytes().enumerate() {
        std::io::Write::write_all(&mut f, &[b]).unwrap();
        std::thread::sleep(Duration::from_millis(if i % 16 == 0 { 60 } else { 2 }));
        assert!(path.exists(), "taken before it was complete (after {i} bytes)");
    }
    drop(f);
    wait_for(T, || find(&root, "LEAD-TWITTER-42").is_some());
    let t = find(&root, "LEAD-TWITTER-42").unwrap();
    assert_eq!(t["priority"], "HIGH");
    assert_eq!(t["name"], "follow up");
    assert_eq!(t["platform"], "twitter", "unknown fields are preserved");
    assert_eq!(t["params"]["url"], "https://x");
    assert!(
        t["history"].as_array().unwrap().iter().any(|h| h["action"] == "normalise"),
        "the normalisation is in the task's history: {t}"
    );
    // The script writes the same task again: not a new task, nothing quarantined.
    std::fs::write(&path, &body).unwrap();
    wait_for(T, || !path.exists());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ids(&root), ["LEAD-TWITTER-42"]);
    assert!(root.ls("broker/quarantine").is_empty(), "{:?}", root.ls("broker/quarantine"));
}

#[test]
fn a_drop_file_that_never_parses_is_quarantined_with_its_bytes() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\nsettle_ms = 100\nsettle_timeout_secs = 1\n");
    let _b = root.broker();
    let bytes = b"{\"task_id\": \"X\", \"name\": ";
    std::fs::write(root.comms().join("drop/broken.json"), bytes).unwrap();
    wait_for(T, || root.ls("broker/quarantine").len() == 2);
    let q = root.ls("broker/quarantine");
    let kept = q.iter().find(|n| !n.ends_with(".error.json")).unwrap();
    assert_eq!(std::fs::read(root.comms().join("broker/quarantine").join(kept)).unwrap(), bytes);
    let why: Value = serde_json::from_slice(
        &std::fs::read(root.comms().join("broker/quarantine").join(format!("{kept}.error.json"))).unwrap(),
    )
    .unwrap();
    let reason = why["reason"].as_str().unwrap();
    assert!(reason.contains("line") && reason.contains("column"), "the position is given: {reason}");
}

#[test]
fn a_board_edited_behind_the_brokers_back_loses_nothing() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\nsettle_ms = 200\n");
    let _b = root.broker();
    for id in ["A", "B", "C"] {
        let out = root.run_with_input(&["submit", "-"], json!({"task_id": id}).to_string().as_bytes());
        assert!(out.status.success());
    }
    wait_for(T, || root.board("task_ready_queue").len() == 3);
    // An old script reads the ready board, edits it, and writes it back in place.
    let path = root.comms().join("central_task_boards/task_ready_queue.json");
    let mut board: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    board.retain(|t| t["task_id"] != "C"); // a task dropped by a careless rewrite
    for t in board.iter_mut() {
        match t["task_id"].as_str() {
            Some("A") => t["status"] = json!("cancelled"),
            Some("B") => t["status"] = json!("done"), // not the board's to decide
            _ => {}
        }
    }
    board.push(json!({"id": "D", "title": "added by hand", "priority": "P1"}));
    std::fs::write(&path, serde_json::to_vec_pretty(&board).unwrap()).unwrap();
    wait_for(T, || {
        find(&root, "D").is_some() && find(&root, "A").is_some_and(|t| t["status"] == "CANCELLED")
    });
    wait_for(T, || find(&root, "C").is_some());
    assert_eq!(ids(&root), ["A", "B", "C", "D"], "nothing lost, the new task taken");
    assert_eq!(find(&root, "B").unwrap()["status"], "PENDING", "an agent's outcome cannot be edited in");
    assert_eq!(find(&root, "D").unwrap()["priority"], "HIGH");
    let q = root.ls("broker/quarantine");
    let reason_file = q.iter().find(|n| n.ends_with(".error.json")).expect("the refused edit is quarantined");
    let why: Value = serde_json::from_slice(
        &std::fs::read(root.comms().join("broker/quarantine").join(reason_file)).unwrap(),
    )
    .unwrap();
    assert_eq!(why["task_id"], "B");
    assert!(why["reason"].as_str().unwrap().contains("COMPLETED"), "{why}");
    // The edited file itself is kept for operators.
    assert!(root.ls("broker/inbox/cur").iter().any(|n| n.contains("task_ready_queue")));
}

#[test]
fn legacy_mailbox_messages_are_delivered_and_unknown_recipients_refused() {
    let root = Root::new();
    root.write_config(
        "[broker]\ntick_ms = 50\nsettle_ms = 100\n[ingest]\nmail_dirs = [\"agent_mailboxes\"]\n",
    );
    assert!(root.run(&["agent", "add", "Agent-2"]).status.success());
    let inbox = root.path.join("agent_mailboxes/Agent-2/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let _b = root.broker();
    std::fs::write(
        inbox.join("m1.json"),
        json!({"sender_agent_id": "Agent 1", "recipient_agent_id": "agent-2", "subject": "hi", "content": "hello"})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        inbox.join("m2.json"),
        json!({"sender": "Agent-1", "recipient": "yall", "body": "x"}).to_string(),
    )
    .unwrap();
    wait_for(T, || root.ls("mailboxes/Agent-2/new").iter().any(|n| n.starts_with("mail-")));
    let mail_name = root.ls("mailboxes/Agent-2/new").into_iter().find(|n| n.starts_with("mail-")).unwrap();
    let mail: Value = serde_json::from_slice(
        &std::fs::read(root.comms().join("mailboxes/Agent-2/new").join(mail_name)).unwrap(),
    )
    .unwrap();
    assert_eq!(mail["from"], "Agent-1");
    assert_eq!(mail["to"], "Agent-2");
    wait_for(T, || root.ls("broker/quarantine").iter().any(|n| n.ends_with(".error.json")));
    assert!(!root.comms().join("mailboxes/yall").exists(), "no mailbox is made up for an unknown name");
}

/// Writes a small legacy tree: boards in three shapes with duplicates, a one-task file, a
/// mailbox message and a file that is not JSON.
fn legacy_tree(dir: &Path) {
    let boards = dir.join("runtime/agent_comms/central_task_boards");
    std::fs::create_dir_all(&boards).unwrap();
    std::fs::write(
        boards.join("completed_tasks.json"),
        json!([
            {"task_id": "T1", "status": "COMPLETED", "priority": "HIGH"},
            {"task_id": 2, "status": "done", "priority": 1}
        ])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        boards.join("working_tasks.json"),
        json!({"T1": {"status": "in progress", "assigned_agent": "Agent 3"}, "T3": {"status": "claimed"}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        boards.join("future_tasks.json"),
        json!({"future_tasks": [{"id": "T4", "status": "todo", "priority": "TaskPriority.LOW"}]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("runtime/agent_comms/broken.json"), "<<<<<<< HEAD\n{\"task_id\": \n").unwrap();
    let mb = dir.join("runtime/agent_comms/agent_mailboxes/Agent-3/inbox");
    std::fs::create_dir_all(&mb).unwrap();
    std::fs::write(
        mb.join("msg.json"),
        json!({"sender": "Agent-1", "recipient": "Agent-3", "message": "hi"}).to_string(),
    )
    .unwrap();
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn import(root: &Root, args: &[&str]) -> Value {
    let mut a = vec!["import", "--json"];
    a.extend_from_slice(args);
    let out = root.run(&a);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("import --json prints JSON")
}

#[test]
fn import_migrates_a_legacy_tree_once_and_never_touches_it() {
    let legacy = tempfile::tempdir().unwrap();
    legacy_tree(legacy.path());
    let before = snapshot(legacy.path());
    let root = Root::new();
    let src = legacy.path().to_str().unwrap();

    let root_before = snapshot(&root.path);
    let dry = import(&root, &["--dry-run", src]);
    assert_eq!(dry["totals"]["tasks_accepted"], 4, "{dry:#}");
    assert_eq!(snapshot(&root.path), root_before, "a dry run writes nothing in the root");

    let first = import(&root, &[src]);
    let t = &first["totals"];
    assert_eq!(t["files"], 5, "{first:#}");
    assert_eq!(t["tasks_accepted"], 4, "{first:#}");
    assert_eq!(t["duplicates_merged"], 1, "{first:#}");
    assert_eq!(t["files_quarantined"], 1, "{first:#}");
    for f in first["files"].as_array().unwrap() {
        let accounted = !f["accepted"].as_array().unwrap().is_empty()
            || !f["refused"].as_array().unwrap().is_empty()
            || f.get("mail").is_some()
            || f.get("quarantined").is_some();
        assert!(accounted, "every file is accounted for: {f}");
    }
    // T1 was COMPLETED on one board and in progress on another: the most advanced state wins.
    let t1 = find(&root, "T1").unwrap();
    assert_eq!(t1["status"], "COMPLETED");
    assert!(t1["history"].as_array().unwrap().iter().any(|h| h["action"] == "merge"), "{t1}");
    assert_eq!(find(&root, "2").unwrap()["status"], "COMPLETED");
    assert_eq!(find(&root, "T3").unwrap()["status"], "PENDING", "unbacked in-progress work is offered again");
    assert_eq!(find(&root, "T4").unwrap()["priority"], "LOW");

    let mail_in =
        |root: &Root| root.ls("mailboxes/Agent-3/new").iter().filter(|n| n.starts_with("mail-")).count();
    assert_eq!(mail_in(&root), 1, "the legacy message is delivered as mail");

    let second = import(&root, &[src]);
    assert_eq!(mail_in(&root), 1, "a second import does not deliver the message again");
    assert_eq!(second["totals"]["tasks_accepted"], 0, "{second:#}");
    assert_eq!(second["totals"]["tasks_already_present"], 4);
    assert_eq!(snapshot(legacy.path()), before, "input files are never modified");
}

#[test]
fn import_accounts_for_every_corpus_file() {
    let corpus = workspace().join("../shared/corpus/dreamos");
    if !corpus.is_dir() {
        eprintln!("{} not found: skipping", corpus.display());
        return;
    }
    let root = Root::new();
    let before = snapshot(&corpus);
    let report = import(&root, &[corpus.to_str().unwrap()]);
    let files = report["files"].as_array().unwrap();
    for f in files {
        let accounted = !f["accepted"].as_array().unwrap().is_empty()
            || !f["already"].as_array().unwrap().is_empty()
            || !f["refused"].as_array().unwrap().is_empty()
            || f.get("mail").is_some()
            || f.get("quarantined").is_some_and(|q| q.as_str().is_some_and(|s| !s.is_empty()));
        assert!(accounted, "every file is accounted for: {f}");
    }
    eprintln!("corpus import totals: {:#}", report["totals"]);
    let again = import(&root, &[corpus.to_str().unwrap()]);
    assert_eq!(again["totals"]["tasks_accepted"], 0, "the second import is a no-op");
    assert_eq!(snapshot(&corpus), before, "the corpus is never modified");
}

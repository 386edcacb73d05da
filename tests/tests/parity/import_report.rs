//! An honest import report: a file whose task was merged into another file's copy says so and is
//! not quarantined; legacy mail marked delivered or read lands in `cur/`; a broadcast reaches
//! every agent the import brings; the report lists every agent it created and why.

use super::mail;
use mailroom_tests::{Root, stdout};
use serde_json::{Value, json};
use std::path::Path;

fn write(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, v.to_string()).unwrap();
}

fn import(root: &Root, args: &[&str]) -> Value {
    let mut a = vec!["import", "--json"];
    a.extend_from_slice(args);
    let out = root.run(&a);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("import --json prints JSON")
}

fn file<'a>(report: &'a Value, path: &Path) -> &'a Value {
    let want = path.display().to_string();
    report["files"].as_array().unwrap().iter().find(|f| f["file"] == want.as_str()).expect("reported")
}

#[test]
fn a_file_whose_task_was_merged_into_another_says_so_and_is_not_quarantined() {
    let legacy = tempfile::tempdir().unwrap();
    let board = legacy.path().join("central_task_boards/completed_tasks.json");
    let loose = legacy.path().join("temp_tasks/T9.json");
    write(&board, &json!([{"task_id": "T9", "status": "done"}, {"task_id": "T10", "status": "done"}]));
    write(&loose, &json!({"task_id": "T9", "status": "todo", "title": "the draft"}));
    let root = Root::new();
    let src = legacy.path().to_str().unwrap();
    let report = import(&root, &[src]);
    let f = file(&report, &loose);
    assert_eq!(f["merged_into"], json!({board.display().to_string(): ["T9"]}), "{f}");
    assert!(f.get("quarantined").is_none(), "{f}");
    assert_eq!(file(&report, &board)["accepted"], json!(["T10", "T9"]));
    assert_eq!(report["totals"]["files_quarantined"], 0);
    assert!(root.ls("broker/quarantine").is_empty());
    let text = stdout(&root.run(&["import", "--dry-run", src]));
    assert!(text.contains(&format!("merged into {}: T9", board.display())), "{text}");
}

#[test]
fn read_mail_lands_in_cur_broadcasts_reach_every_agent_brought_and_created_agents_are_listed() {
    let legacy = tempfile::tempdir().unwrap();
    let l = legacy.path();
    // Walked first: a broadcast, before any file that brings an agent.
    write(
        &l.join("a_broadcasts/all.json"),
        &json!({"sender": "Agent-1", "recipient": "BROADCAST", "body": "hello all"}),
    );
    write(
        &l.join("agent_mailboxes/Agent-4/inbox/old.json"),
        &json!({"sender": "Agent-1", "recipient": "Agent-4", "content": "seen", "status": "read"}),
    );
    write(
        &l.join("agent_mailboxes/Agent-4/inbox/new.json"),
        &json!({"sender": "Agent-1", "recipient": "Agent-4", "content": "fresh", "status": "pending"}),
    );
    write(
        &l.join("boards/working_tasks.json"),
        &json!([{"id": "W-1", "status": "open", "assignee": "Agent-7"}]),
    );
    let root = Root::new();
    let src = l.to_str().unwrap();

    let dry = import(&root, &["--dry-run", src]);
    let would: Vec<&str> =
        dry["agents_created"].as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap()).collect();
    assert_eq!(would, ["Agent-7", "Agent-4"], "{dry:#}");
    assert_eq!(
        file(&dry, &l.join("a_broadcasts/all.json"))["mail"],
        "would deliver mail from Agent-1 to ALL (2 agents)"
    );
    assert!(root.ls("mailboxes").is_empty(), "a dry run creates no mailbox");

    let report = import(&root, &[src]);
    let created: Vec<(String, String)> = report["agents_created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent"].as_str().unwrap().to_string(), a["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        created,
        [
            ("Agent-7".to_string(), "assignee of task `W-1`".to_string()),
            ("Agent-4".to_string(), "recipient of mail from `Agent-1`".to_string()),
        ]
    );
    assert_eq!(report["totals"]["agents_created"], 2);
    assert_eq!(root.ls("mailboxes"), ["Agent-4", "Agent-7"], "no mailbox for the sender nor for `BROADCAST`");
    let bodies = |agent: &str, sub: &str| -> Vec<Value> {
        mail(&root, agent, sub).into_iter().map(|m| m["body"].clone()).collect()
    };
    assert_eq!(bodies("Agent-4", "cur"), [json!("seen")], "marked read: cur/");
    let mut fresh = bodies("Agent-4", "new");
    fresh.sort_by_key(|v| v.to_string());
    assert_eq!(fresh, [json!("fresh"), json!("hello all")]);
    assert_eq!(
        bodies("Agent-7", "new"),
        [json!("hello all")],
        "the broadcast reached the agent a later file brought"
    );
    assert_eq!(
        file(&report, &l.join("agent_mailboxes/Agent-4/inbox/old.json"))["mail"],
        "delivered mail from Agent-1 to Agent-4 as read"
    );
    let text = stdout(&root.run(&["import", "--dry-run", src]));
    assert!(text.contains("already delivered"), "{text}");

    let again = import(&root, &[src]);
    assert_eq!(again["totals"]["agents_created"], 0);
    assert_eq!(bodies("Agent-7", "new").len(), 1, "a second import delivers nothing again");
}

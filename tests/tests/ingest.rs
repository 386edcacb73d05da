//! The lenient front door end to end: legacy scripts writing task files non-atomically, boards
//! edited behind the broker's back, legacy mailbox inboxes, and `mailroom import` of a small
//! tree, of the fixture tree `protocol/tests/fixtures/legacy` (always), of files it may not read
//! (run as `nobody` when the tests run as root), and of the reference corpus beside the
//! repository when it is there (otherwise the test prints `SKIPPED:`).

use mailroom_tests::{Root, skipped, wait_for, workspace};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
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
        assert!(accounted(f), "every file is accounted for: {f}");
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

/// Does the report say what became of the file: tasks accepted, already present, refused or
/// merged into another file's copy, mail, or a reason it was quarantined?
fn accounted(f: &Value) -> bool {
    let some = |k: &str| f[k].as_array().is_some_and(|a| !a.is_empty());
    some("accepted")
        || some("already")
        || some("refused")
        || f["merged_into"].as_object().is_some_and(|m| !m.is_empty())
        || f.get("mail").is_some()
        || f.get("quarantined").is_some_and(|q| q.as_str().is_some_and(|s| !s.is_empty()))
}

/// A file the report quarantines must not be one whose tasks were merged into another file's,
/// nor a broadcast (mail to every agent is delivered, not refused).
fn honestly_quarantined(f: &Value) -> bool {
    let Some(q) = f["quarantined"].as_str() else { return true };
    let merged = f["merged_into"].as_object().is_some_and(|m| !m.is_empty());
    let broadcast =
        protocol::legacy::BROADCAST_WORDS.iter().any(|w| q.to_ascii_lowercase().contains(&format!("`{w}`")));
    !merged && !broadcast
}

/// The report of one file, by its path under `base`.
fn report_of<'a>(report: &'a Value, base: &Path, rel: &str) -> &'a Value {
    let want = base.join(rel).display().to_string();
    let files = report["files"].as_array().expect("a list of files");
    files.iter().find(|f| f["file"] == want.as_str()).unwrap_or_else(|| panic!("no report of {want}"))
}

/// How many mail files each mailbox holds.
fn mail_by_agent(root: &Root) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for agent in root.ls("mailboxes") {
        let n = root.ls(&format!("mailboxes/{agent}/new")).iter().filter(|n| n.starts_with("mail-")).count();
        if n > 0 {
            m.insert(agent, n);
        }
    }
    m
}

/// The fixture tree of `protocol/tests/fixtures/legacy` (synthetic files in the corpus's shapes,
/// part of the repository), imported twice.
#[test]
fn import_accounts_for_every_fixture_file() {
    let fixtures = workspace().join("protocol/tests/fixtures/legacy");
    let before = snapshot(&fixtures);
    assert_eq!(before.len(), 40, "the fixture tree the counts below describe");
    let root = Root::new();
    let src = fixtures.to_str().unwrap();

    let root_before = snapshot(&root.path);
    let dry = import(&root, &["--dry-run", src]);
    assert_eq!(dry["totals"]["tasks_accepted"], 29, "{:#}", dry["totals"]);
    assert_eq!(snapshot(&root.path), root_before, "a dry run writes nothing in the root");

    let first = import(&root, &[src]);
    let t = &first["totals"];
    assert_eq!(
        (&t["files"], &t["tasks_accepted"], &t["tasks_refused"], &t["duplicates_merged"]),
        (&json!(40), &json!(29), &json!(3), &json!(2)),
        "{t:#}"
    );
    // Since broadcasts are delivered, the broadcast is mail (7, was 6) and not quarantined (11,
    // was 12).
    assert_eq!((&t["mail"], &t["files_quarantined"]), (&json!(7), &json!(11)), "{t:#}");
    assert_eq!(
        t["quarantined_by_reason"],
        json!({
            "mailbox message refused": 3, // a pronoun, a template, no sender
            "no task in this file": 2,    // two empty boards
            "not a task file": 4,         // a claim, a lock, a schema, a shared mailbox
            "not parseable": 2,           // a board cut short, a text log
        })
    );
    for f in first["files"].as_array().unwrap() {
        assert!(accounted(f), "every file is accounted for: {f}");
        assert!(honestly_quarantined(f), "{f}");
    }
    // The backlog board's copies of WX-102 and WX-103 lost to more advanced ones: it says where.
    let backlog = report_of(&first, &fixtures, "runtime/agent_comms/central_task_boards/task_backlog.json");
    let cb = fixtures.join("runtime/agent_comms/central_task_boards");
    assert_eq!(
        backlog["merged_into"],
        json!({
            cb.join("completed_tasks.json").display().to_string(): ["WX-102"],
            cb.join("working_tasks.json").display().to_string(): ["WX-103"],
        })
    );
    assert_eq!(t["files_merged_into_others"], 1);
    // Every agent the import created, and why.
    let created: BTreeMap<String, String> = first["agents_created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent"].as_str().unwrap().to_string(), a["reason"].as_str().unwrap().to_string()))
        .collect();
    let want_created = BTreeMap::from(
        [
            ("Agent-1", "recipient of mail from `Agent-6`"),
            ("Agent-2", "assignee of task `WX-180`"),
            ("Agent-4", "assignee of task `WX-103`"),
            ("Agent-5", "assignee of task `WX-104`"),
            ("Agent-6", "assignee of task `WX-150`"),
            ("Agent-7", "assignee of task `WX-133`"),
            ("Agent-8", "recipient of mail from `Agent-9`"),
        ]
        .map(|(a, r)| (a.to_string(), r.to_string())),
    );
    assert_eq!(created, want_created);
    assert_eq!(root.ls("mailboxes"), want_created.keys().cloned().collect::<Vec<_>>(), "no other mailbox");
    let mut want: Vec<String> = (101..=104)
        .chain([110, 120, 130, 131, 133, 140, 150, 151, 152, 160, 161])
        .chain([170, 171, 180])
        .chain(190..=196)
        .map(|n| format!("WX-{n}"))
        .collect();
    want.extend(["7", "LEAD-FORUM-1a2b3c4d", "LEAD-FORUM-5e6f7a8b", "LEAD-FORUM-9c0d1e2f"].map(String::from));
    want.sort();
    assert_eq!(ids(&root), want);

    // Duplicates: the most advanced copy is kept, the other recorded in its history.
    let merged = |id: &str, from: &str| {
        let t = find(&root, id).unwrap();
        let h = t["history"].as_array().unwrap();
        assert!(h.iter().any(|h| h["action"] == "merge" && h["from"] == from), "{t}");
        t
    };
    assert_eq!(merged("WX-102", "PENDING")["status"], "COMPLETED");
    assert_eq!(merged("WX-103", "BLOCKED")["assigned_to"], "Agent-4", "the dict-by-id copy won");
    let t = find(&root, "WX-191").unwrap();
    assert_eq!((&t["status"], &t["legacy"]["status"]), (&json!("PENDING"), &json!("PARKED_UNTIL_AUDIT")));
    let drafts = report_of(&first, &fixtures, "runtime/temp_tasks/drafts.json");
    assert_eq!(drafts["accepted"], json!(["WX-193"]));
    assert_eq!(drafts["refused"].as_array().unwrap().len(), 2, "{drafts}");

    // Mail: one per message read, the message without a recipient to the owner of its inbox, the
    // broadcast from Agent-1 to every other agent the import brought (one more each, Agent-1
    // none), and the queue message marked DELIVERED into Agent-6's cur/ rather than its new/.
    let mail = BTreeMap::from(
        [
            ("Agent-1", 1),
            ("Agent-2", 3),
            ("Agent-4", 2),
            ("Agent-5", 2),
            ("Agent-6", 1),
            ("Agent-7", 1),
            ("Agent-8", 2),
        ]
        .map(|(a, n)| (a.to_string(), n)),
    );
    assert_eq!(mail_by_agent(&root), mail);
    let read = root.ls("mailboxes/Agent-6/cur");
    assert_eq!(read.len(), 1, "{read:?}");
    let delivered: Value = serde_json::from_slice(
        &std::fs::read(root.comms().join("mailboxes/Agent-6/cur").join(&read[0])).unwrap(),
    )
    .unwrap();
    assert_eq!((&delivered["from"], &delivered["body"]), (&json!("Agent-1"), &json!("Ridge survey first.")));
    for nobody in ["yall", "ALL", "ALL_AGENTS", "Unknown-Agent"] {
        assert!(!root.comms().join("mailboxes").join(nobody).exists(), "no mailbox for `{nobody}`");
    }
    let bc =
        report_of(&first, &fixtures, "runtime/agent_comms/agent_mailboxes/broadcast/all_hands_20250309.json");
    assert_eq!(bc["mail"], "delivered mail from Agent-1 to ALL (6 agents)", "{bc}");
    let records = root.journal();
    let fanout: Vec<&Value> = records.iter().filter(|r| r["op"] == "mail" && r["to"] == "ALL").collect();
    assert_eq!(fanout.len(), 1, "one record for the whole broadcast");
    assert_eq!(
        fanout[0]["fanout"],
        json!(["Agent-2", "Agent-4", "Agent-5", "Agent-6", "Agent-7", "Agent-8"]),
        "{}",
        fanout[0]
    );

    // Quarantine: a byte-for-byte copy of each file beside its reason.
    let q = root.ls("broker/quarantine");
    assert_eq!(q.len(), 22, "{q:?}");
    let cut = report_of(&first, &fixtures, "runtime/agent_comms/central_task_boards/task_backlog.json.tmp");
    let copy = root.comms().join(cut["quarantine_path"].as_str().unwrap());
    assert_eq!(
        std::fs::read(copy).unwrap(),
        before[&fixtures.join("runtime/agent_comms/central_task_boards/task_backlog.json.tmp")]
    );

    let second = import(&root, &[src]);
    let t = &second["totals"];
    assert_eq!((&t["tasks_accepted"], &t["tasks_already_present"]), (&json!(0), &json!(29)), "{t:#}");
    assert_eq!(mail_by_agent(&root), mail, "a second import delivers nothing again");
    assert_eq!(root.ls("broker/quarantine"), q, "nor quarantines anything again");
    assert_eq!(snapshot(&fixtures), before, "input files are never modified");
}

/// Restores the modes of entries a test made unreadable, so that its temporary directory can be
/// removed when the tests do not run as root.
struct Unseal(Vec<(PathBuf, u32)>);

impl Drop for Unseal {
    fn drop(&mut self) {
        for (p, mode) in &self.0 {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// A file the importer may not read and a directory it may not list are reported, each with its
/// reason, beside the file it could read. Root reads everything, so when the tests run as root
/// the import runs as `nobody`.
#[test]
fn import_reports_what_it_may_not_read() {
    let legacy = tempfile::tempdir().unwrap();
    let tree = legacy.path().join("runtime");
    std::fs::create_dir_all(tree.join("sealed")).unwrap();
    std::fs::write(tree.join("open.json"), json!({"task_id": "WX-201", "status": "open"}).to_string())
        .unwrap();
    std::fs::write(tree.join("locked.json"), json!({"task_id": "WX-202", "status": "open"}).to_string())
        .unwrap();
    std::fs::write(tree.join("sealed/inside.json"), json!({"task_id": "WX-203"}).to_string()).unwrap();
    let root = Root::new();
    let mut cmd = root
        .cmd_unprivileged(&["import", "--json", tree.to_str().unwrap()], &[legacy.path()])
        .expect("hand the trees to an unprivileged user");
    let _unseal = Unseal(vec![(tree.join("locked.json"), 0o644), (tree.join("sealed"), 0o755)]);
    for p in [tree.join("locked.json"), tree.join("sealed")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = cmd.output().expect("run mailroom import");
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("import --json prints JSON");
    let t = &report["totals"];
    assert_eq!(
        (&t["files"], &t["tasks_accepted"], &t["files_quarantined"]),
        (&json!(3), &json!(1), &json!(2)),
        "{t:#}"
    );
    for (rel, why) in [("locked.json", "cannot read"), ("sealed", "cannot list")] {
        let f = report_of(&report, &tree, rel);
        let q = f["quarantined"].as_str().unwrap_or_default();
        assert!(q.starts_with(why) && q.contains("Permission denied"), "{rel}: {f}");
    }
    assert_eq!(ids(&root), ["WX-201"]);
}

/// The reference corpus (`../shared/corpus/dreamos` beside the repository, or
/// `MAILROOM_CORPUS`), when present; a clean clone does not have it.
#[test]
fn import_accounts_for_every_corpus_file() {
    let corpus = match std::env::var_os("MAILROOM_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => workspace().join("../shared/corpus/dreamos"),
    };
    if !corpus.is_dir() {
        assert!(
            std::env::var_os("MAILROOM_CORPUS").is_none(),
            "MAILROOM_CORPUS={} is not a directory",
            corpus.display()
        );
        return skipped(
            "import_accounts_for_every_corpus_file",
            &format!(
                "no reference corpus at {}; import_accounts_for_every_fixture_file covers its shapes",
                corpus.display()
            ),
        );
    }
    let root = Root::new();
    let before = snapshot(&corpus);
    let report = import(&root, &[corpus.to_str().unwrap()]);
    for f in report["files"].as_array().unwrap() {
        assert!(accounted(f), "every file is accounted for: {f}");
        assert!(honestly_quarantined(f), "no file is quarantined for a broadcast or a merged duplicate: {f}");
    }
    eprintln!("corpus import totals: {:#}", report["totals"]);
    let again = import(&root, &[corpus.to_str().unwrap()]);
    assert_eq!(again["totals"]["tasks_accepted"], 0, "the second import is a no-op");
    assert_eq!(snapshot(&corpus), before, "the corpus is never modified");
}

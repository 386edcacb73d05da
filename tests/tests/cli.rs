//! The command line as a new user meets it: a wrong root, a closed pipe, a typo in an agent's
//! name, a resubmission with its keys in another order, a legacy spelling, the task a claim
//! prints, what a dry run says, board edits made while the broker is stopped, a stale report
//! tied to its task, a claim into a mailbox no agent can have. Each was a bug; each test would
//! fail on the code that had it.

use mailroom_tests::{Root, have_python, skip_unless_required, stdout, wait_for, workspace};
use serde_json::{Value, json};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn trace(root: &Root, id: &str) -> Value {
    let out = root.run(&["trace", id, "--json"]);
    assert!(out.status.success(), "trace {id}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn submit(root: &Root, task: &Value) -> std::process::Output {
    root.run_with_input(&["submit", "-"], task.to_string().as_bytes())
}

#[test]
fn a_wrong_root_exits_7_with_not_a_mailroom_root() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a root").unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bin = mailroom_tests::bin();
    for (root, args) in [
        (&empty, vec!["board"]),
        (&empty, vec!["board", "--json"]),
        (&empty, vec!["trace", "X"]),
        (&file, vec!["run"]),
        (&file, vec!["board"]),
        (&empty, vec!["claim", "--agent", "A"]),
    ] {
        let out = Command::new(&bin).arg("--root").arg(root).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?} on {}", root.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a mailroom root"), "{args:?}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a root", "the file is left alone");
}

#[test]
fn a_reader_that_stops_reading_is_not_an_error() {
    let root = Root::new();
    for args in [vec!["schema"], vec!["board", "--json"]] {
        let mut child = root.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn a_typo_never_creates_an_agent() {
    let root = Root::new();
    let mailboxes = || root.ls("mailboxes");
    let claim = root.run(&["claim", "--agent", "NoSuchAgent"]);
    assert_eq!(claim.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&claim.stderr).contains("mailroom agent add NoSuchAgent"));
    let send = root.run_with_input(&["send", "--from", "Ghost-1", "--to", "Ghost-2", "-"], b"hi");
    assert_eq!(send.status.code(), Some(6));
    let release = root.run(&["release", "--agent", "Ghost-3", "--claim", "0-x-1-y.json"]);
    assert_eq!(release.status.code(), Some(6));
    assert!(mailboxes().is_empty(), "{:?}", mailboxes());
    // The error about a bad name names the field once.
    let bad = root.run(&["claim", "--agent", "bad name"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("field `agent`") && !err.contains("agent.agent"), "{err}");
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    assert_eq!(mailboxes(), ["Agent-1"]);
}

#[test]
fn a_claim_prints_the_task_as_held_and_a_resubmission_in_another_key_order_is_the_same_task() {
    let root = Root::new();
    assert!(root.run(&["agent", "add", "A"]).status.success());
    let _broker = root.broker();
    let first = json!({"task_id": "K-1", "params": {"a": 1, "b": {"x": [1, 2], "y": "z"}}});
    let reordered: Value =
        serde_json::from_str(r#"{"params": {"b": {"y": "z", "x": [1, 2]}, "a": 1}, "task_id": "K-1"}"#)
            .unwrap();
    assert!(submit(&root, &first).status.success());
    assert!(submit(&root, &reordered).status.success());
    wait_for(T, || trace(&root, "K-1")["steps"].as_array().unwrap().iter().any(|s| s["op"] == "duplicate"));
    assert!(root.ls("broker/quarantine").is_empty(), "the same task is not refused as different content");
    let out = root.run(&["claim", "--agent", "A", "--wait", "10"]);
    assert!(out.status.success());
    let task: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (task["status"].as_str(), task["attempts"].as_u64()),
        (Some("IN_PROGRESS"), Some(1)),
        "{task}"
    );
    assert_eq!(task["assigned_to"], "A");
}

#[test]
fn submit_takes_the_spellings_drop_takes_and_records_what_it_ignored() {
    let root = Root::new();
    let _broker = root.broker();
    let legacy = json!({"id": 42, "title": "legacy lead", "priority": "P1"});
    let out = submit(&root, &legacy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("normalised"));
    wait_for(T, || root.board("task_ready_queue").iter().any(|t| t["task_id"] == "42"));
    let t = root.board("task_ready_queue").into_iter().find(|t| t["task_id"] == "42").unwrap();
    assert_eq!((t["priority"].as_str(), t["name"].as_str()), (Some("HIGH"), Some("legacy lead")));
    // A submission starts PENDING with no attempt made; what it claimed is kept in its history.
    assert!(submit(&root, &json!({"task_id": "S-1", "status": "COMPLETED", "attempts": 2})).status.success());
    wait_for(T, || root.board("task_ready_queue").iter().any(|t| t["task_id"] == "S-1"));
    let s = root.board("task_ready_queue").into_iter().find(|t| t["task_id"] == "S-1").unwrap();
    assert_eq!((s["status"].as_str(), s["attempts"].as_u64()), (Some("PENDING"), Some(0)));
    assert_eq!(s["history"][0]["details"], json!({"ignored_status": "COMPLETED", "ignored_attempts": 2}));
}

#[test]
fn a_dry_run_says_what_it_would_do_and_a_noop_import_leaves_nothing_behind() {
    let root = Root::new();
    let legacy = tempfile::tempdir().unwrap();
    std::fs::write(legacy.path().join("notes.json"), b"{\"hello\": \"world\"}").unwrap();
    let out = root.run(&["import", "--dry-run", legacy.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("would be quarantined") && !text.contains("  quarantined:"), "{text}");
    let empty = tempfile::tempdir().unwrap();
    assert!(root.run(&["import", empty.path().to_str().unwrap()]).status.success());
    let mut broker = root.broker();
    assert!(!broker.log().contains("torn"), "{}", broker.log());
    assert!(broker.is_running());
}

#[test]
fn board_edits_made_while_the_broker_is_stopped_are_absorbed_at_start() {
    let root = Root::new();
    let broker = root.broker();
    assert!(submit(&root, &json!({"task_id": "E-1"})).status.success());
    wait_for(T, || root.board("task_ready_queue").iter().any(|t| t["task_id"] == "E-1"));
    let (code, _) = broker.terminate();
    assert_eq!(code, Some(0));
    // While it is stopped, someone cancels E-1 and adds E-2 by editing the boards.
    let ready = root.comms().join("central_task_boards/task_ready_queue.json");
    let mut tasks: Vec<Value> = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    tasks[0]["status"] = json!("CANCELLED");
    tasks.push(json!({"task_id": "E-2", "name": "added by hand"}));
    std::fs::write(&ready, serde_json::to_vec_pretty(&tasks).unwrap()).unwrap();
    let _broker = root.broker();
    wait_for(T, || trace(&root, "E-1")["status"] == "CANCELLED");
    wait_for(T, || root.run(&["trace", "E-2"]).status.success());
}

#[test]
fn a_stale_report_is_tied_to_its_task() {
    let root = Root::new();
    assert!(root.run(&["agent", "add", "A"]).status.success());
    let _broker = root.broker();
    assert!(submit(&root, &json!({"task_id": "ST-1"})).status.success());
    let out = root.run(&["claim", "--agent", "A", "--wait", "10"]);
    let claim = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["claim"].as_str().unwrap().to_string();
    assert!(
        root.run_with_input(&["complete", "--agent", "A", "--claim", &claim, "--result", "-"], b"1")
            .status
            .success()
    );
    wait_for(T, || trace(&root, "ST-1")["status"] == "COMPLETED");
    // A second report about the finished claim, written by hand (the CLI would refuse to send it).
    let msg = json!({"kind": "complete", "agent": "A", "claim": claim});
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp/msg-late.json"), msg.to_string()).unwrap();
    std::fs::rename(inbox.join("tmp/msg-late.json"), inbox.join("new/msg-late.json")).unwrap();
    wait_for(T, || root.ls("broker/quarantine").iter().any(|n| n.ends_with("msg-late.json.error.json")));
    let q =
        root.ls("broker/quarantine").into_iter().find(|n| n.ends_with("msg-late.json.error.json")).unwrap();
    let why: Value =
        serde_json::from_slice(&std::fs::read(root.comms().join("broker/quarantine").join(q)).unwrap())
            .unwrap();
    assert_eq!(why["task_id"], "ST-1", "{why}");
    let steps = trace(&root, "ST-1")["steps"].as_array().unwrap().clone();
    assert!(steps.iter().any(|s| s["op"] == "reject"), "{steps:?}");
    wait_for(T, || root.ls("mailboxes/A/new").iter().any(|n| n.starts_with("notice-")));
    let notice = root.ls("mailboxes/A/new").into_iter().find(|n| n.starts_with("notice-")).expect("a notice");
    let n: Value =
        serde_json::from_slice(&std::fs::read(root.comms().join("mailboxes/A/new").join(notice)).unwrap())
            .unwrap();
    assert_eq!((n["notice"].as_str(), n["task_id"].as_str()), (Some("stale"), Some("ST-1")));
}

#[test]
fn a_claim_into_a_mailbox_no_agent_can_have_is_taken_back() {
    let root = Root::new();
    let _broker = root.broker();
    assert!(submit(&root, &json!({"task_id": "BN-1"})).status.success());
    wait_for(T, || !root.ls("queues/default/new").is_empty());
    let name = root.ls("queues/default/new").remove(0);
    let bad = root.comms().join("mailboxes/bad name/cur");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::rename(root.comms().join("queues/default/new").join(&name), bad.join(&name)).unwrap();
    wait_for(T, || !bad.join(&name).exists());
    wait_for(T, || root.ls("queues/default/new").iter().any(|n| n.ends_with("-BN-1.json") && *n != name));
    // The example agent refuses such a name before it touches anything.
    if !have_python() {
        skip_unless_required(
            "a_claim_into_a_mailbox_no_agent_can_have_is_taken_back (python part)",
            "python3 not found",
        );
        return;
    }
    let out = Command::new("python3")
        .arg(workspace().join("examples/python_agent.py"))
        .args(["--root", root.path.to_str().unwrap(), "--agent", "bad name 2", "--wait", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid agent name"));
    assert!(!root.comms().join("mailboxes/bad name 2").exists());
    assert!(root.ls("queues/default/new").iter().any(|n| n.ends_with("-BN-1.json")), "nothing stranded");
}

/// With no broker running on the root, a command says so after a second's grace instead of
/// sitting out its whole wait; the message stays in the inbox, and the next broker takes it.
#[test]
fn a_message_sent_with_no_broker_running_says_so_at_once() {
    let root = Root::new();
    let started = std::time::Instant::now();
    let out = root.run_with_input(&["--answer-within", "120", "submit", "-"], br#"{"task_id":"NB-1"}"#);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{err}");
    assert!(err.contains("no broker is running") && err.contains("nothing is lost"), "{err}");
    assert!(took < std::time::Duration::from_secs(60), "waited {took:?} of the 120 s asked for");
    assert_eq!(root.ls("broker/inbox/new").len(), 1, "the message waits in the inbox");
    let _broker = root.broker();
    wait_for(T, || root.ls("broker/inbox/new").is_empty());
    assert!(root.run(&["trace", "NB-1"]).status.success());
}

/// A broker that runs for part of the grace (one a supervisor restarts, killed again before its
/// first pass) is seen: the command does not say that none runs, and waits the rest of its time.
#[test]
fn a_broker_seen_during_the_grace_gets_the_rest_of_the_wait() {
    use runtime_layout::{BrokerLock, Layout, RootFs};
    use std::io::Write;
    let root = Root::new();
    let started = std::time::Instant::now();
    let mut cli = root
        .cmd(&["--answer-within", "3", "submit", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin.take().unwrap().write_all(br#"{"task_id":"RS-1"}"#).unwrap();
    // The message is sent after the command's first look found no broker; then a "broker"
    // (this test, holding the lock and naming itself its holder) runs for half a second.
    wait_for(T, || !root.ls("broker/inbox/new").is_empty());
    let (fs, layout) = (RootFs::open(&root.path).unwrap(), Layout::new(&root.path));
    let lock = BrokerLock::acquire(&fs, &layout).unwrap();
    lock.record_holder(&fs).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(lock);
    let out = cli.wait_with_output().unwrap();
    let (took, err) = (started.elapsed(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(10), "{err}");
    assert!(err.contains("no broker consumed it") && !err.contains("no broker is running"), "{err}");
    assert!(took >= Duration::from_millis(2900), "gave up after {took:?}, not the 3 s asked for");
    assert_eq!(root.ls("broker/inbox/new").len(), 1, "the message waits in the inbox");
}

#[test]
fn every_message_waits_for_the_brokers_verdict() {
    let root = Root::new();
    assert!(root.run(&["agent", "add", "A"]).status.success());
    // No broker yet: the command says so after the wait (exit 10) and the message stays queued.
    let out = root.run_with_input(&["--answer-within", "0.3", "submit", "-"], br#"{"task_id":"V-0"}"#);
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no broker consumed it"));
    assert_eq!(root.ls("broker/inbox/new").len(), 1, "nothing lost");
    let _broker = root.broker();
    wait_for(T, || root.ls("broker/inbox/new").is_empty());
    assert!(submit(&root, &json!({"task_id": "V-1"})).status.success());
    let refusals: Vec<(Vec<&str>, Vec<u8>, &str)> = vec![
        (vec!["cancel", "NOPE"], vec![], "no task `NOPE`"),
        (vec!["send", "--from", "A", "--to", "Nobody", "-"], b"hi".to_vec(), "no agent `Nobody`"),
        (
            vec!["submit", "-"],
            json!({"task_id": "V-2", "assigned_to": "Nobody"}).to_string().into_bytes(),
            "no agent",
        ),
        (
            vec!["submit", "-"],
            json!({"task_id": "V-3", "params": "x".repeat(2 << 20)}).to_string().into_bytes(),
            "limit",
        ),
    ];
    for (args, input, why) in refusals {
        let out = root.run_with_input(&args, &input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // A retry of a COMPLETED task is refused; of a finished-but-failed one, accepted.
    let out = root.run(&["claim", "--agent", "A", "--wait", "10"]);
    let c = serde_json::from_str::<Value>(&stdout(&out)).unwrap();
    let claim = c["claim"].as_str().unwrap();
    let done = root.run_with_input(&["complete", "--agent", "A", "--claim", claim, "--result", "-"], b"1");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let task = c["task_id"].as_str().unwrap();
    let retry = root.run(&["retry", task]);
    assert_eq!(retry.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&retry.stderr).contains("COMPLETED"));
    // A report about a claim already finished: the claim is lost (exit 5).
    let again = root
        .run_with_input(&["--no-wait", "complete", "--agent", "A", "--claim", claim, "--result", "-"], b"1");
    assert_eq!(again.status.code(), Some(5));
}

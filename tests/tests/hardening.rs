//! What a careless or hostile client can write, against a real broker process: a timestamp that
//! would not read back, a journal line that cannot be read, input the broker may not read, a
//! reused message name, a queued file deleted or rewritten, a copy or a hard link passed off as a
//! claim, numbers beyond 64 bits, a heartbeat from the far future. In each case nothing
//! acknowledged is lost or duplicated and the broker keeps serving.

use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(30);

/// Delivers `body` into the inbox under `name` the way any client may (tmp/, then new/).
fn raw(root: &Root, name: &str, body: &str) {
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp").join(name), body).unwrap();
    std::fs::rename(inbox.join("tmp").join(name), inbox.join("new").join(name)).unwrap();
}

/// The task's status as `trace --json` reports it, if the journal knows the task.
fn status(root: &Root, id: &str) -> Option<String> {
    let out = root.run(&["trace", id, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["status"].as_str().map(str::to_string)
}

fn wait_status(root: &Root, id: &str, want: &str) {
    wait_for(T, || status(root, id).as_deref() == Some(want));
}

/// The quarantine's reasons (the `.error.json` beside each entry), by entry name.
fn reasons(root: &Root) -> Vec<(String, Value)> {
    let q = root.comms().join("broker/quarantine");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&q).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(entry) = name.strip_suffix(".error.json") {
            // One the broker moves aside between the listing and the read is no longer a reason.
            let bytes = match std::fs::read(e.path()) {
                Ok(b) => b,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => panic!("{}: {err}", e.path().display()),
            };
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            out.push((entry.to_string(), v));
        }
    }
    out
}

/// The queued task files of a pool, by task id fragment.
fn queued(root: &Root, pool: &str) -> Vec<(String, PathBuf)> {
    let dir = root.comms().join("queues").join(pool).join("new");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            protocol::names::DispatchName::parse(&n).map(|d| (d.id_fragment, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn queued_file(root: &Root, pool: &str, id: &str) -> Option<PathBuf> {
    queued(root, pool).into_iter().find(|(i, _)| i == id).map(|(_, p)| p)
}

fn agent(root: &Root, name: &str) -> agent_sdk::Agent {
    assert!(root.run(&["agent", "add", name]).status.success());
    agent_sdk::Agent::open(&root.path, name).unwrap()
}

/// Delivers a submission without waiting for the broker's answer (some are sent before it runs);
/// the tests look at what became of it.
fn submit(root: &Root, task: Value) {
    let client = agent_sdk::Client::open(&root.path).unwrap().with_ack(agent_sdk::Ack::None);
    client.submit(&task).unwrap();
}

#[test]
fn a_timestamp_that_would_not_read_back_is_refused_and_the_root_keeps_starting() {
    let root = Root::new();
    let broker = root.broker();
    let bad = json!({"task_id": "TS-1", "created_at": "9999-12-31T23:30:00-01:00"});
    raw(&root, "msg-ts-1.json", &bad.to_string());
    wait_for(T, || reasons(&root).iter().any(|(n, _)| n.ends_with("msg-ts-1.json")));
    let (_, why) = reasons(&root).into_iter().find(|(n, _)| n.ends_with("msg-ts-1.json")).unwrap();
    assert_eq!(why["field"], "task.created_at", "{why}");
    assert!(why["rule"].as_str().unwrap().contains("0000-9999"), "{why}");
    // The CLI says the same before anything is sent.
    let out = root.run_with_input(&["submit", "-"], bad.to_string().as_bytes());
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created_at"));
    submit(&root, json!({"task_id": "TS-2"}));
    wait_status(&root, "TS-2", "PENDING");
    let (code, _) = broker.terminate();
    assert_eq!(code, Some(0));
    // The root starts again, and every task can be traced.
    let _broker = root.broker();
    assert_eq!(status(&root, "TS-2").as_deref(), Some("PENDING"));
    assert!(status(&root, "TS-1").is_none(), "never accepted");
}

#[test]
fn a_journal_line_that_cannot_be_read_is_set_aside_and_the_broker_serves_the_rest() {
    let root = Root::new();
    let broker = root.broker();
    submit(&root, json!({"task_id": "J-1"}));
    wait_for(T, || queued_file(&root, "default", "J-1").is_some());
    broker.terminate();
    // Damage in the middle of the newest segment, and a record of an operation this version
    // does not know.
    let dir = root.comms().join("broker/journal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("segment-"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segs.sort();
    let seg = segs.last().unwrap();
    let text = std::fs::read_to_string(seg).unwrap();
    let future = r#"{"seq":999999,"ts":"2026-01-01T00:00:00Z","op":"teleport","task_id":"J-1"}"#;
    // (Damage without zeros: zeros end a segment's records, see `journal::read_segment`.)
    std::fs::write(seg, format!("\u{7f}garbage\n{future}\n{text}")).unwrap();
    let mut broker = root.broker();
    assert!(broker.is_running());
    assert!(broker.log().contains("set aside"), "{}", broker.log());
    submit(&root, json!({"task_id": "J-2"}));
    wait_for(T, || queued_file(&root, "default", "J-2").is_some());
    assert_eq!(status(&root, "J-1").as_deref(), Some("PENDING"));
}

#[test]
fn input_the_broker_may_not_read_is_quarantined_or_skipped_and_never_stops_it() {
    let root = Root::new();
    let a = agent(&root, "A");
    submit(&root, json!({"task_id": "U-0"}));
    let mut broker = root.broker_unprivileged();
    wait_for(T, || queued_file(&root, "default", "U-0").is_some());
    let claim = a.claim(&[]).unwrap().expect("U-0 to claim");
    // A message, a dropped file and an agent's claims the broker may not read.
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp/msg-locked.json"), json!({"task_id": "U-1"}).to_string()).unwrap();
    std::fs::set_permissions(inbox.join("tmp/msg-locked.json"), PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::rename(inbox.join("tmp/msg-locked.json"), inbox.join("new/msg-locked.json")).unwrap();
    let drop = root.comms().join("drop/locked.json");
    std::fs::write(&drop, json!({"task_id": "U-2"}).to_string()).unwrap();
    std::fs::set_permissions(&drop, PermissionsExt::from_mode(0o000)).unwrap();
    let cur = root.comms().join("mailboxes/A/cur");
    std::fs::set_permissions(&cur, PermissionsExt::from_mode(0o000)).unwrap();
    wait_for(T, || {
        let r = reasons(&root);
        ["msg-locked.json", "locked.json"].iter().all(|f| {
            r.iter()
                .any(|(n, v)| n.ends_with(f) && v["reason"].as_str().unwrap_or("").contains("cannot be read"))
        })
    });
    submit(&root, json!({"task_id": "U-3"}));
    wait_for(T, || queued_file(&root, "default", "U-3").is_some());
    assert!(broker.is_running(), "{}", broker.log());
    // The claim the broker could not look at was not taken from its agent; once readable again
    // it completes.
    std::fs::set_permissions(&cur, PermissionsExt::from_mode(0o755)).unwrap();
    a.complete(&claim.name, json!("done")).unwrap();
    wait_status(&root, "U-0", "COMPLETED");
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");
    // And it starts again on the same root.
    let _again = root.broker_unprivileged();
}

#[test]
fn a_reused_message_name_is_handled_and_nothing_kept_is_overwritten() {
    let root = Root::new();
    let _broker = root.broker();
    let cur = root.comms().join("broker/inbox/cur");
    raw(&root, "msg-reused.json", &json!({"task_id": "R-1"}).to_string());
    wait_for(T, || cur.join("msg-reused.json").exists());
    raw(&root, "msg-reused.json", &json!({"task_id": "R-2"}).to_string());
    wait_status(&root, "R-2", "PENDING");
    wait_for(T, || cur.join("msg-reused.json~1").exists());
    let first: Value = serde_json::from_slice(&std::fs::read(cur.join("msg-reused.json")).unwrap()).unwrap();
    let second: Value =
        serde_json::from_slice(&std::fs::read(cur.join("msg-reused.json~1")).unwrap()).unwrap();
    assert_eq!((first["task_id"].as_str(), second["task_id"].as_str()), (Some("R-1"), Some("R-2")));
    // A refused message moved back by hand under its name is read again, not swallowed.
    let bad = json!({"task_id": "R-3", "assigned_to": "Later-1"}).to_string();
    raw(&root, "msg-redrive.json", &bad);
    wait_for(T, || reasons(&root).iter().any(|(n, _)| n.ends_with("msg-redrive.json")));
    let q = root.comms().join("broker/quarantine");
    let entry = reasons(&root).into_iter().find(|(n, _)| n.ends_with("msg-redrive.json")).unwrap().0;
    assert!(root.run(&["agent", "add", "Later-1"]).status.success());
    std::fs::rename(q.join(&entry), root.comms().join("broker/inbox/new/msg-redrive.json")).unwrap();
    wait_status(&root, "R-3", "PENDING");
}

#[test]
fn a_deleted_queued_file_comes_back_and_a_rewritten_one_is_never_claimed() {
    let root = Root::new();
    root.write_config("[broker]\naudit_secs = 1\n");
    let a = agent(&root, "A");
    let _broker = root.broker();
    for id in ["Q-1", "Q-2", "Q-3"] {
        submit(&root, json!({"task_id": id, "name": "the real task"}));
    }
    wait_for(T, || queued(&root, "default").len() == 3);
    // Deleted: delivered again under a new name without a restart.
    let q1 = queued_file(&root, "default", "Q-1").unwrap();
    std::fs::remove_file(&q1).unwrap();
    wait_for(T, || queued_file(&root, "default", "Q-1").is_some_and(|p| p != q1));
    // Rewritten in the queue: the audit replaces it before anyone works on it.
    let q2 = queued_file(&root, "default", "Q-2").unwrap();
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&q2).unwrap()).unwrap();
    forged["name"] = json!("rm -rf / (forged)");
    std::fs::write(&q2, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    wait_for(T, || queued_file(&root, "default", "Q-2").is_some_and(|p| p != q2));
    assert!(reasons(&root).iter().any(|(_, v)| v["reason"].as_str().unwrap_or("").contains("rewritten")));
    // Rewritten and claimed at once (before the audit): the claim is revoked, never adopted.
    let q3 = queued_file(&root, "default", "Q-3").unwrap();
    std::fs::write(&q3, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let stolen = root.comms().join("mailboxes/A/cur").join(q3.file_name().unwrap());
    std::fs::rename(&q3, &stolen).unwrap();
    wait_for(T, || queued_file(&root, "default", "Q-3").is_some());
    assert!(!stolen.exists(), "the forged claim was taken back");
    // Every task completes once, with what was submitted.
    let mut done = Vec::new();
    while done.len() < 3 {
        let c = a.claim_wait(&[], T).unwrap().expect("a task to claim");
        assert_eq!(c.task.name.as_deref(), Some("the real task"), "{:?}", c.task);
        a.complete(&c.name, json!(null)).unwrap();
        done.push(c.task.task_id);
    }
    done.sort();
    assert_eq!(done, ["Q-1", "Q-2", "Q-3"]);
    for id in ["Q-1", "Q-2", "Q-3"] {
        wait_status(&root, id, "COMPLETED");
    }
}

#[test]
fn a_copy_or_a_hard_link_is_not_a_claim_shared_with_the_real_holder() {
    let root = Root::new();
    let (a, b) = (agent(&root, "A"), agent(&root, "B"));
    let _broker = root.broker();
    submit(&root, json!({"task_id": "C-1"}));
    wait_for(T, || queued_file(&root, "default", "C-1").is_some());
    let original = queued_file(&root, "default", "C-1").unwrap();
    let copy = root.comms().join("mailboxes/A/cur").join(original.file_name().unwrap());
    std::fs::copy(&original, &copy).unwrap();
    wait_for(T, || !copy.exists());
    let claim = b.claim(&[]).unwrap().expect("the original is still queued");
    assert!(a.complete(&claim.name, json!("mine")).is_err(), "A holds nothing");
    b.complete(&claim.name, json!("done")).unwrap();
    wait_status(&root, "C-1", "COMPLETED");
    let notices = a.read_mail().unwrap();
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, agent_sdk::Inbound::Notice(n) if n.reason.contains("not a claim"))),
        "{notices:?}"
    );
    // A hard link: whoever ends up holding the task holds it alone, and it completes once.
    submit(&root, json!({"task_id": "C-2"}));
    wait_for(T, || queued_file(&root, "default", "C-2").is_some());
    let original = queued_file(&root, "default", "C-2").unwrap();
    let link = root.comms().join("mailboxes/A/cur").join(original.file_name().unwrap());
    std::fs::hard_link(&original, &link).unwrap();
    let b_claim = b.claim(&[]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let a_done = a.complete(&original.file_name().unwrap().to_string_lossy(), json!("a")).is_ok();
    let b_done = b_claim.as_ref().is_some_and(|c| b.complete(&c.name, json!("b")).is_ok());
    wait_for(T, || {
        if status(&root, "C-2").as_deref() == Some("COMPLETED") {
            return true;
        }
        // Taken from both and queued again: someone claims it properly.
        if let Ok(Some(c)) = a.claim(&[]) {
            let _ = a.complete(&c.name, json!("again"));
        }
        false
    });
    let completes = root.journal().iter().filter(|r| r["op"] == "complete" && r["task_id"] == "C-2").count();
    assert_eq!(completes, 1, "completed once (A sent {a_done}, B sent {b_done})");
}

#[test]
fn numbers_beyond_64_bits_are_kept_exactly() {
    let root = Root::new();
    let a = agent(&root, "A");
    let _broker = root.broker();
    let text = r#"{"task_id":"N-1","params":{"big":123456789012345678901234567890,"x":0.1000}}"#;
    assert!(root.run_with_input(&["submit", "-"], text.as_bytes()).status.success());
    let c = a.claim_wait(&[], T).unwrap().expect("N-1");
    let bytes = std::fs::read(&c.path).unwrap();
    let shown = String::from_utf8_lossy(&bytes);
    assert!(shown.contains("123456789012345678901234567890") && shown.contains("0.1000"), "{shown}");
    let result: Value = serde_json::from_str(r#"{"n":-98765432109876543210987654321}"#).unwrap();
    a.complete(&c.name, result).unwrap();
    wait_status(&root, "N-1", "COMPLETED");
    let board = root.comms().join("central_task_boards/completed_tasks.json");
    wait_for(T, || {
        let text = std::fs::read_to_string(&board).unwrap_or_default();
        text.contains("123456789012345678901234567890") && text.contains("-98765432109876543210987654321")
    });
}

#[test]
fn a_heartbeat_from_the_far_future_holds_a_claim_no_longer_than_any_other() {
    let root = Root::new();
    let a = agent(&root, "A");
    let _broker = root.broker();
    submit(&root, json!({"task_id": "F-1", "lease_secs": 2, "max_attempts": 5}));
    let c = a.claim_wait(&[], T).unwrap().expect("F-1");
    wait_status(&root, "F-1", "IN_PROGRESS");
    let year_2100 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    std::fs::File::options().write(true).open(&c.path).unwrap().set_modified(year_2100).unwrap();
    // Taken back within the lease plus a few passes, and offered again under a new name.
    wait_for(T, || !c.path.exists());
    wait_for(T, || queued_file(&root, "default", "F-1").is_some());
    assert!(a.complete(&c.name, json!(null)).is_err(), "the old claim is gone");
    assert_eq!(status(&root, "F-1").as_deref(), Some("PENDING"));
}

#[test]
fn a_message_too_large_to_read_is_tied_to_the_task_it_names() {
    let root = Root::new();
    root.write_config("[broker]\nmax_message_bytes = 4096\n");
    let _broker = root.broker();
    let big = json!({"task_id": "HUGE-1", "params": {"blob": "x".repeat(8192)}});
    raw(&root, "msg-huge-1.json", &big.to_string());
    wait_for(T, || reasons(&root).iter().any(|(n, _)| n.ends_with("msg-huge-1.json")));
    let (_, why) = reasons(&root).into_iter().find(|(n, _)| n.ends_with("msg-huge-1.json")).unwrap();
    assert!(why["rule"].as_str().unwrap().contains("limit"), "{why}");
    assert_eq!(why["task_id"], "HUGE-1", "the refusal names the task: {why}");
    // `trace` shows the refusal under the task's id.
    let out = root.run(&["trace", "HUGE-1", "--json"]);
    let trace: Value = serde_json::from_slice(&out.stdout).expect("the task has a trace");
    let ops: Vec<&str> = trace["steps"].as_array().unwrap().iter().filter_map(|s| s["op"].as_str()).collect();
    assert_eq!(ops, ["reject"], "{trace}");
}

#[test]
fn files_planted_at_a_put_back_claims_name_or_a_reasons_name_cost_neither_the_task_nor_the_reason() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    let _lacking = agent(&root, "Agent-9");
    assert!(root.run(&["agent", "add", "Agent-1", "--capability", "gpu"]).status.success());
    let broker = root.broker();
    submit(&root, json!({"task_id": "G-1", "task_type": "render", "required_capabilities": ["gpu"]}));
    wait_for(T, || queued_file(&root, "render", "G-1").is_some());
    let queued = queued_file(&root, "render", "G-1").unwrap();
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");

    // While the broker is down: an agent lacking the capability renames the task into its cur/
    // (the broker will put it back), and someone plants another file at the queued name.
    let name = queued.file_name().unwrap().to_owned();
    std::fs::rename(&queued, root.comms().join("mailboxes/Agent-9/cur").join(&name)).unwrap();
    let forged = json!({"task_id": "G-1", "task_type": "render", "description": "forged"}).to_string();
    std::fs::write(&queued, &forged).unwrap();
    // And reasons planted at the names the next quarantine entries will take.
    let q = root.comms().join("broker/quarantine");
    for seq in 1..=400u64 {
        std::fs::write(q.join(format!("{seq:012}-msg-bad.json.error.json")), r#"{"reason":"planted"}"#)
            .unwrap();
    }

    let broker = root.broker();
    raw(&root, "msg-bad.json", "this is not JSON");
    let real_reason = |v: &Value| v["reason"].as_str().is_some_and(|r| r != "planted");
    wait_for(T, || reasons(&root).iter().any(|(n, v)| n.ends_with("-msg-bad.json") && real_reason(v)));
    let (entry, _) =
        reasons(&root).into_iter().find(|(n, v)| n.ends_with("-msg-bad.json") && real_reason(v)).unwrap();
    assert_eq!(std::fs::read(q.join(&entry)).unwrap(), b"this is not JSON", "the refused message, whole");
    let planted_aside = std::fs::read_dir(&q).unwrap().flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(&format!("{entry}.error.json.displaced-"))
            && std::fs::read(e.path()).unwrap() == br#"{"reason":"planted"}"#
    });
    assert!(planted_aside, "the planted reason is kept beside, not taken for the real one");

    // The refused claim is taken back; whatever the planted file became (the queue audit or the
    // put-back met it first), the task claimed is the task's own and the planted bytes are kept.
    wait_for(T, || root.ls("mailboxes/Agent-9/cur").is_empty());
    let kept_somewhere = [q.clone(), root.comms().join("queues/render/new")].iter().any(|dir| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == forged.as_bytes()))
    });
    assert!(kept_somewhere, "the planted file is kept (moved aside or quarantined):\n{}", broker.log());
    let holder = agent_sdk::Agent::open(&root.path, "Agent-1").unwrap();
    let claimed = holder.claim(&["render".to_string()]).unwrap().expect("the task is still there to claim");
    assert_eq!(claimed.task.task_id, "G-1");
    assert_ne!(claimed.task.description.as_deref(), Some("forged"));
    assert_eq!(claimed.task.required_capabilities, ["gpu"]);
}

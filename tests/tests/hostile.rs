//! Hostile input and containment: symlinks (to files outside the root, to `/etc/passwd`, to
//! directories, to a FIFO outside that would hang a reader that followed it), FIFOs, sockets and
//! directories where files belong, empty, oversized (a sparse 10 GiB file), non-UTF-8, NUL-laden,
//! 100,000-deep and huge-array JSON, hostile file names, ids and agent names that try to leave
//! their directory, symlinked destinations, duplicate ids, invalid transitions, spoofed and stale
//! completions. Each is refused with a reason; the broker stays up and keeps serving, never
//! writes outside its root, never follows a symlink, and its peak memory stays bounded.

use mailroom_tests::{Root, vm_hwm_kib, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const LIMIT: u64 = 256 * 1024;

/// Everything under `dir` (recursively), with sizes and a digest of small files' bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            let bytes = if md.is_file() { std::fs::read(e.path()).unwrap() } else { Vec::new() };
            out.insert(e.path(), (md.len(), bytes));
        }
    }
    out
}

/// Creates an entry with `make` under a hidden name, then renames it to `name` in `dir`, so
/// that the broker never sees it half made.
fn put(dir: &Path, name: impl Into<OsString>, make: impl FnOnce(&Path)) -> OsString {
    let name = name.into();
    let hidden = dir.join(format!(".making-{}", std::process::id()));
    make(&hidden);
    std::fs::rename(&hidden, dir.join(&name)).unwrap();
    name
}

fn file(bytes: &[u8]) -> impl FnOnce(&Path) + '_ {
    move |p| std::fs::write(p, bytes).unwrap()
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// The quarantine's reasons, keyed by the file they were about.
fn quarantined(root: &Root) -> BTreeMap<String, Value> {
    let q = root.comms().join("broker/quarantine");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&q).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.chars().any(char::is_control), "a quarantine name keeps a control character: {n:?}");
        assert!(n.len() <= 255);
        if n.ends_with(".error.json") {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            out.insert(v["file"].as_str().unwrap().to_string(), v);
        }
    }
    out
}

fn reason_of(root: &Root, rel: &str) -> Option<String> {
    quarantined(root).get(rel).map(|v| v["reason"].as_str().unwrap_or_default().to_string())
}

fn journal_rejections(root: &Root) -> Vec<Value> {
    root.journal().into_iter().filter(|r| r["op"] == "reject").collect()
}

fn deliver_raw(root: &Root, name: &str, msg: &Value) {
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp").join(name), msg.to_string()).unwrap();
    std::fs::rename(inbox.join("tmp").join(name), inbox.join("new").join(name)).unwrap();
}

/// Every log file of the root's scratch directory (the broker's among them), for a failure.
fn logs(root: &Root) -> String {
    let mut out = String::new();
    for p in std::fs::read_dir(root.scratch()).into_iter().flatten().flatten().map(|e| e.path()) {
        if p.extension().is_some_and(|x| x == "log") {
            out += &format!("== {}\n{}\n", p.display(), std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    out
}

fn submit(root: &Root, task: Value) {
    // A generous answer window (this test is about refusals, not latency), and the broker's log
    // when even that runs out: no answer within it has meant a broker that stopped (a socket in
    // the inbox did, see the last test).
    let out = root.run_with_input(&["--answer-within", "120", "submit", "-"], task.to_string().as_bytes());
    assert!(out.status.success(), "submit: {}\nlogs:\n{}", String::from_utf8_lossy(&out.stderr), logs(root));
}

#[test]
fn hostile_inputs_are_refused_with_reasons_and_contained() {
    let root = Root::new();
    root.write_config(&format!(
        "[broker]\ntick_ms = 50\nsettle_ms = 100\nsettle_timeout_secs = 1\nmax_message_bytes = {LIMIT}\n"
    ));
    let comms = root.comms();
    // Outside the root: a sentinel file, a directory and a FIFO nobody writes to.
    let outside = root.scratch().join("outside");
    std::fs::create_dir_all(outside.join("box/new")).unwrap();
    std::fs::create_dir_all(outside.join("box/tmp")).unwrap();
    std::fs::create_dir_all(outside.join("box/cur")).unwrap();
    std::fs::write(outside.join("sentinel"), b"do not touch").unwrap();
    mkfifo(&outside.join("fifo"));
    let before = snapshot(&outside);
    let passwd_before = std::fs::read("/etc/passwd").unwrap_or_default();
    for a in ["Agent-1", "Agent-2", "Agent-3"] {
        assert!(root.run(&["agent", "add", a]).status.success());
    }
    let mut broker = root.broker();
    let mut tried = 0usize;

    // --- inbox/new: every kind of thing where a message file belongs.
    let inbox_new = comms.join("broker/inbox/new");
    let sentinel = outside.join("sentinel");
    let fifo = outside.join("fifo");
    let mut nested = String::from("{\"task_id\":\"DEEP\",\"params\":");
    nested.push_str(&"[".repeat(100_000));
    let big_array = format!("{{\"task_id\":\"ARR\",\"params\":[{}0]}}", "0,".repeat(200_000));
    let in_limit_array = format!("{{\"task_id\":\"ARR-OK\",\"params\":[{}0]}}", "0,".repeat(30_000));
    let long_name = format!("{}.json", "L".repeat(250));
    let expect_inbox: Vec<(OsString, &str)> = vec![
        (put(&inbox_new, "link-sentinel.json", |p| symlink(&sentinel, p).unwrap()), "symbolic link"),
        (put(&inbox_new, "link-passwd.json", |p| symlink("/etc/passwd", p).unwrap()), "symbolic link"),
        (put(&inbox_new, "link-dir.json", |p| symlink(&outside, p).unwrap()), "symbolic link"),
        (put(&inbox_new, "link-fifo.json", |p| symlink(&fifo, p).unwrap()), "symbolic link"),
        (put(&inbox_new, "link-dangling.json", |p| symlink("/nonexistent/x", p).unwrap()), "symbolic link"),
        (put(&inbox_new, "fifo.json", mkfifo), "FIFO"),
        (
            put(&inbox_new, "socket.json", |p| {
                std::mem::forget(std::os::unix::net::UnixListener::bind(p).unwrap());
            }),
            "socket",
        ),
        (put(&inbox_new, "dir.json", |p| std::fs::create_dir(p).unwrap()), "directory"),
        (put(&inbox_new, "empty.json", file(b"")), "must be JSON"),
        (
            put(&inbox_new, "sparse-10GiB.json", |p| {
                std::fs::File::create(p).unwrap().set_len(10 << 30).unwrap();
            }),
            "limit",
        ),
        (put(&inbox_new, "not-utf8.json", file(b"{\"task_id\":\"\xff\xfe\"}")), "UTF-8"),
        (put(&inbox_new, "nul.json", file(b"{\"task_id\":\"a\0b\"}")), "must be JSON"),
        (put(&inbox_new, "escaped-nul.json", file(b"{\"task_id\":\"a\\u0000b\"}")), "control characters"),
        (put(&inbox_new, "deep.json", file(nested.as_bytes())), "recursion limit"),
        (put(&inbox_new, "big-array.json", file(big_array.as_bytes())), "limit"),
        (put(&inbox_new, "not-an-object.json", file(b"[1,2,3]")), "object"),
        (put(&inbox_new, "new\nline.json", file(b"garbage")), "must be JSON"),
        (put(&inbox_new, "a..b.json", file(b"garbage")), "must be JSON"),
        (put(&inbox_new, long_name.clone(), file(b"garbage")), "must be JSON"),
        (put(&inbox_new, OsString::from_vec(b"bad-\xff-name.json".to_vec()), file(b"{}")), "UTF-8"),
        (
            put(
                &inbox_new,
                "escape-assigned.json",
                file(br#"{"task_id":"E1","assigned_to":"../../outside/box"}"#),
            ),
            "assigned_to",
        ),
        (
            put(
                &inbox_new,
                "escape-agent.json",
                file(br#"{"kind":"complete","agent":"../../../outside","claim":"1-x.json"}"#),
            ),
            "agent",
        ),
        (
            put(
                &inbox_new,
                "escape-send.json",
                file(br#"{"kind":"send","from":"Agent-1","to":"../../outside"}"#),
            ),
            "to",
        ),
        (
            put(
                &inbox_new,
                "escape-claim.json",
                file(br#"{"kind":"complete","agent":"Agent-1","claim":"../../../../outside/sentinel"}"#),
            ),
            "not a claim",
        ),
        (put(&inbox_new, "bad-kind.json", file(br#"{"kind":"rm -rf /","task_id":"X"}"#)), "unknown kind"),
        (put(&inbox_new, "bad-priority.json", file(br#"{"task_id":"P","priority":"URGENT!!"}"#)), "priority"),
    ];
    // Dot-files are not messages (writers use them while writing): left alone, never read.
    put(&inbox_new, ".hidden.json", file(b"{\"task_id\":\"HIDDEN\"}"));
    put(&inbox_new, "..dots.json", |p| symlink(&sentinel, p).unwrap());
    put(&inbox_new, "ok-array.json", file(in_limit_array.as_bytes()));
    tried += expect_inbox.len() + 3;

    // --- drop/: the same kinds of things.
    let drop = comms.join("drop");
    let expect_drop: Vec<(OsString, &str)> = vec![
        (put(&drop, "d-link-passwd.json", |p| symlink("/etc/passwd", p).unwrap()), "symbolic link"),
        (put(&drop, "d-link-fifo.json", |p| symlink(&fifo, p).unwrap()), "symbolic link"),
        (put(&drop, "d-link-dir", |p| symlink(&outside, p).unwrap()), "symbolic link"),
        (put(&drop, "d-fifo.json", mkfifo), "FIFO"),
        (put(&drop, "d-dir", |p| std::fs::create_dir(p).unwrap()), "directory"),
        (
            put(&drop, "d-sparse.json", |p| {
                std::fs::File::create(p).unwrap().set_len(10 << 30).unwrap();
            }),
            "limit",
        ),
        (put(&drop, "d-garbage.json", file(b"{\"task_id\": \"half")), "not parseable"),
        (put(&drop, "d-deep.json", file(nested.as_bytes())), "recursion limit"),
        (put(&drop, OsString::from_vec(b"d-\xff.json".to_vec()), file(b"{}")), "UTF-8"),
    ];
    tried += expect_drop.len();

    // --- symlinks where the broker writes: pool and mailbox directories, a mailbox's cur/.
    symlink(outside.join("box"), comms.join("queues/evil")).unwrap();
    symlink(outside.join("box"), comms.join("mailboxes/Evil")).unwrap();
    let a3 = comms.join("mailboxes/Agent-3");
    std::fs::remove_dir(a3.join("cur")).unwrap();
    symlink(outside.join("box/cur"), a3.join("cur")).unwrap();
    deliver_raw(&root, "to-evil-pool.json", &json!({"task_id": "EVIL-POOL", "task_type": "evil"}));
    deliver_raw(&root, "to-evil-box.json", &json!({"task_id": "EVIL-BOX", "assigned_to": "Evil"}));
    deliver_raw(&root, "to-agent3.json", &json!({"task_id": "EVIL-CUR", "assigned_to": "Agent-3"}));
    // Symlinks in the boards and journal directories.
    let boards = comms.join("central_task_boards");
    std::fs::remove_file(boards.join("working_tasks.json")).unwrap();
    symlink(&sentinel, boards.join("working_tasks.json")).unwrap();
    symlink("/etc/passwd", boards.join("evil.json")).unwrap();
    let journal = comms.join("broker/journal");
    symlink(&sentinel, journal.join("segment-9999999999999999.jsonl")).unwrap();
    symlink("/etc/passwd", journal.join("snapshot-9999999999999999.json")).unwrap();
    symlink(&fifo, journal.join("segment-9999999999999998.jsonl")).unwrap();
    tried += 10;

    // Ids that look like paths stay ids: the file name is made safe, the content is the id.
    submit(&root, json!({"task_id": "../../../../outside/pwn", "task_type": "work"}));
    submit(&root, json!({"task_id": "T-type", "task_type": "../../../outside"}));
    // Duplicate ids and invalid transitions.
    submit(&root, json!({"task_id": "DUP", "name": "first", "task_type": "work"}));
    // Until the broker rewrites it, working_tasks.json is the symlink to the sentinel put above.
    wait_for(T, || root.try_all_boards().is_ok_and(|b| b.iter().any(|(_, t)| t["task_id"] == "DUP")));
    deliver_raw(&root, "dup.json", &json!({"task_id": "DUP", "name": "second"}));
    deliver_raw(&root, "retry-pending.json", &json!({"kind": "retry", "task_id": "DUP"}));
    deliver_raw(&root, "cancel-unknown.json", &json!({"kind": "cancel", "task_id": "NOPE"}));
    tried += 6;

    let rel_inbox = |n: &OsString| format!("broker/inbox/new/{}", n.to_string_lossy());
    let rel_drop = |n: &OsString| format!("drop/{}", n.to_string_lossy());
    let mut want: Vec<String> = expect_inbox.iter().map(|(n, _)| rel_inbox(n)).collect();
    want.extend(expect_drop.iter().map(|(n, _)| rel_drop(n)));
    for n in ["to-evil-pool.json", "to-evil-box.json", "to-agent3.json", "dup.json", "retry-pending.json"] {
        want.push(format!("broker/inbox/new/{n}"));
    }
    let start = std::time::Instant::now();
    loop {
        let q = quarantined(&root);
        let missing: Vec<&String> = want.iter().filter(|w| !q.contains_key(*w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < T && broker.is_running(),
            "not quarantined: {missing:?}\nquarantine: {:?}\nbroker log:\n{}",
            q.keys().collect::<Vec<_>>(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (n, want) in &expect_inbox {
        let r = reason_of(&root, &rel_inbox(n)).unwrap();
        assert!(r.contains(want), "{n:?}: reason {r:?} lacks {want:?}");
    }
    for (n, want) in &expect_drop {
        let r = reason_of(&root, &rel_drop(n)).unwrap();
        assert!(r.contains(want), "{n:?}: reason {r:?} lacks {want:?}");
    }
    for (n, want) in [
        ("to-evil-pool.json", "symbolic link"),
        ("to-evil-box.json", "symbolic link"),
        ("to-agent3.json", "symbolic link"),
        ("dup.json", "duplicate"),
        ("retry-pending.json", "PENDING"),
    ] {
        let r = reason_of(&root, &format!("broker/inbox/new/{n}")).unwrap();
        assert!(r.contains(want), "{n}: reason {r:?} lacks {want:?}");
    }
    wait_for(T, || journal_rejections(&root).iter().any(|r| r["msg"] == "cancel-unknown.json"));
    // Quarantined symlinks are moved as links, never followed or copied.
    let q = comms.join("broker/quarantine");
    let links =
        std::fs::read_dir(&q).unwrap().flatten().filter(|e| e.file_type().unwrap().is_symlink()).count();
    assert!(links >= 8, "the symlinks went to quarantine as links ({links})");
    assert!(inbox_new.join(".hidden.json").exists() && inbox_new.join("..dots.json").is_symlink());
    wait_for(T, || root.board("task_ready_queue").iter().any(|t| t["task_id"] == "ARR-OK"));

    // --- claims: a spoofed completion and one of a claim taken back.
    let claim = |agent: &str| -> Value {
        let out = root.run(&["claim", "--agent", agent, "--pool", "work", "--wait", "10"]);
        assert!(out.status.success(), "claim: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Symlinks posing as tasks in a pool and in mailboxes: claims skip them.
    let pool_new = comms.join("queues/work/new");
    wait_for(T, || pool_new.exists());
    symlink("/etc/passwd", pool_new.join("0-20000101T000000000000-000000000001-PASSWD.json")).unwrap();
    symlink(&fifo, comms.join("mailboxes/Agent-1/new/0-20000101T000000000000-000000000002-FIFO.json"))
        .unwrap();
    symlink(&sentinel, comms.join("mailboxes/Agent-2/cur/0-20000101T000000000000-000000000003-S.json"))
        .unwrap();
    tried += 3;
    for i in 0..3 {
        submit(&root, json!({"task_id": format!("W-{i}"), "task_type": "work"}));
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        let t = claim("Agent-1");
        assert!(!t["task_id"].as_str().unwrap().contains("PASSWD"));
        held.push(t);
    }
    let first = held[0]["claim"].as_str().unwrap().to_string();
    wait_for(T, || root.board("working_tasks").len() >= 4);
    deliver_raw(&root, "spoof.json", &json!({"kind": "complete", "agent": "Agent-2", "claim": first}));
    wait_for(T, || quarantined(&root).contains_key("broker/inbox/new/spoof.json"));
    let r = reason_of(&root, "broker/inbox/new/spoof.json").unwrap();
    assert!(r.contains("held by"), "{r}");
    // Agent-1 gives its claim back; its later completion of that name is stale.
    assert!(root.run(&["release", "--agent", "Agent-1", "--claim", &first]).status.success());
    wait_for(T, || !comms.join("mailboxes/Agent-1/cur").join(&first).exists());
    deliver_raw(&root, "taken-back.json", &json!({"kind": "complete", "agent": "Agent-1", "claim": first}));
    tried += 2;
    wait_for(T, || {
        let q = quarantined(&root);
        q.contains_key("broker/inbox/new/spoof.json") && q.contains_key("broker/inbox/new/taken-back.json")
    });
    let r = reason_of(&root, "broker/inbox/new/taken-back.json").unwrap();
    assert!(r.contains("no longer a claim"), "{r}");
    // Invalid transition: cancelling a finished task.
    let second = held[1]["claim"].as_str().unwrap().to_string();
    let done_id = held[1]["task_id"].as_str().unwrap().to_string();
    assert!(root.run(&["complete", "--agent", "Agent-1", "--claim", &second]).status.success());
    wait_for(T, || root.board("completed_tasks").iter().any(|t| t["task_id"] == done_id.as_str()));
    deliver_raw(&root, "cancel-done.json", &json!({"kind": "cancel", "task_id": done_id}));
    tried += 1;
    wait_for(T, || journal_rejections(&root).iter().any(|r| r["msg"] == "cancel-done.json"));

    // --- the broker is still up, bounded, and serves a normal task end to end.
    assert!(broker.is_running(), "the broker died:\n{}", broker.log());
    let hwm = vm_hwm_kib(broker.pid()).unwrap();
    assert!(hwm < 200 * 1024, "broker peak memory {hwm} KiB");
    submit(&root, json!({"task_id": "NORMAL", "task_type": "after"}));
    let out = root.run(&["claim", "--agent", "Agent-2", "--pool", "after", "--wait", "10"]);
    assert!(out.status.success());
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["task_id"], "NORMAL");
    assert!(
        root.run(&["complete", "--agent", "Agent-2", "--claim", t["claim"].as_str().unwrap()])
            .status
            .success()
    );
    wait_for(T, || root.board("completed_tasks").iter().any(|t| t["task_id"] == "NORMAL"));
    // The path-like id is held safely inside the root.
    assert!(root.all_boards().iter().any(|(_, t)| t["task_id"] == "../../../../outside/pwn"));

    // A restart with symlinks in the journal, the queues and the mailboxes: it starts, ignores
    // or quarantines them, and follows none.
    broker.kill9();
    let broker = root.broker();
    wait_for(T, || {
        let q = quarantined(&root);
        q.keys().any(|k| k.ends_with("PASSWD.json")) && q.keys().any(|k| k.ends_with("FIFO.json"))
    });
    assert!(broker.log().contains("not a regular file"), "journal symlinks reported:\n{}", broker.log());
    let mut broker = broker;
    assert!(broker.is_running());

    // Nothing outside the root changed: no file written, read-only targets untouched.
    assert_eq!(snapshot(&outside), before, "something outside the root changed");
    assert_eq!(std::fs::read("/etc/passwd").unwrap_or_default(), passwd_before);
    let refused = journal_rejections(&root).len();
    eprintln!(
        "hostile suite: {tried} hostile inputs, {refused} journaled rejections, broker peak memory {} MiB; \
         nothing outside the root touched",
        hwm / 1024
    );
}

/// A socket renamed into an idle broker's inbox: the event names it, and the pass reads it
/// without listing, so nothing says beforehand that it is not a file. Opening a socket fails
/// (ENXIO): that stopped the broker (exit 8), and every client then waited in vain.
#[test]
fn a_socket_in_the_inbox_of_an_idle_broker_is_refused_and_the_broker_serves_on() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    let mut broker = root.broker();
    submit(&root, json!({"task_id": "BEFORE", "task_type": "work"}));
    let inbox_new = root.comms().join("broker/inbox/new");
    let hidden = inbox_new.join(".making-socket");
    let _listener = std::os::unix::net::UnixListener::bind(&hidden).unwrap();
    std::fs::rename(&hidden, inbox_new.join("socket.json")).unwrap();
    // A generous wait, as for `submit`: a slow disk delays the answer, never changes it.
    let (start, window) = (std::time::Instant::now(), Duration::from_secs(120));
    while reason_of(&root, "broker/inbox/new/socket.json").is_none() && broker.is_running() {
        assert!(start.elapsed() < window, "no answer within {window:?}:\n{}", logs(&root));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(broker.is_running(), "the broker stopped:\n{}", logs(&root));
    let reason = reason_of(&root, "broker/inbox/new/socket.json").unwrap();
    assert!(reason.contains("socket"), "{reason}");
    submit(&root, json!({"task_id": "AFTER", "task_type": "work"}));
    assert!(broker.is_running());
}

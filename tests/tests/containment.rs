//! Containment (issue 11, classes 3, 4 and 5) against real broker processes. Every directory the
//! broker owns is replaced by a symlink to a directory outside the root that holds bait (a valid
//! task, a valid message, old files the inbox prune would delete), before the broker starts and
//! while it runs; files are planted where the broker creates files (a hard link to an outside file
//! at the next journal segment's name and at the lock note); the lock file is removed and replaced
//! under a running broker. Then traffic: submits, claims and completions, a file dropped into
//! `drop/` and into an ingest directory, a message that must be quarantined, a board edit, the
//! inbox prune (retention 1 s) and journal compaction.
//!
//! What must hold: outside the root nothing changed (names, kinds, modes, sizes, mtimes and bytes
//! of every entry, recursively), no bait was read (no bait id anywhere in the journal), every
//! acknowledged task was completed exactly once, and the broker kept serving, having moved each
//! impostor aside (`<name>.displaced-<time>`) and made the directory again. The journal is the
//! exception, by design: replaced before start or while running, the broker stops with exit code 8
//! and a message saying what to put back, and starts cleanly once it is back. A second broker is
//! refused whatever was done to `broker.lock`.

use mailroom_tests::{Broker, Root, wait_for};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(30);
const CONFIG: &str = "[broker]\ntick_ms = 50\nsettle_ms = 100\ninbox_retention_secs = 1\ncompact_after_records = 40\n\
                      [ingest]\ntask_dirs = [\"tasks\"]\n";
/// The directories the broker owns (relative to the root) that it moves aside and makes again.
const OWNED: [&str; 10] = [
    "agent_comms/drop",
    "agent_comms/broker/inbox/new",
    "agent_comms/broker/inbox/cur",
    "agent_comms/broker/inbox/tmp",
    "agent_comms/broker/quarantine",
    "agent_comms/central_task_boards",
    "agent_comms/queues",
    "agent_comms/mailboxes",
    "agent_comms/broker/journal/archive",
    "tasks",
];

/// A directory outside the root full of bait, and its fingerprint.
struct Outside {
    dir: PathBuf,
    /// A file outside the root that hard links and symlinks inside it point to.
    hard: PathBuf,
}

type Fingerprint = BTreeMap<PathBuf, (String, u32, u64, i64, i64, Vec<u8>)>;

impl Outside {
    fn new(root: &Root) -> Self {
        let dir = root.scratch().join("outside");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for sub in ["", "new", "cur", "tmp"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            let task = json!({"task_id": "BAIT-TASK", "task_type": "work"});
            let msg = json!({"kind": "submit", "task": {"task_id": "BAIT-MSG", "task_type": "work"}});
            for (name, v) in [("bait-task.json", task), ("msg-bait.json", msg)] {
                std::fs::write(d.join(name), v.to_string()).unwrap();
                std::fs::File::options().write(true).open(d.join(name)).unwrap().set_modified(old).unwrap();
            }
        }
        // No newline: read as a journal segment, this is a torn record, not corruption.
        let hard = dir.join("hard-bait");
        std::fs::write(&hard, b"precious bytes of someone else").unwrap();
        std::fs::File::options().write(true).open(&hard).unwrap().set_modified(old).unwrap();
        Self { dir, hard }
    }
}

/// Every entry under `dir`, recursively, links not followed: kind, mode, size, mtime, and the
/// bytes of a file or the target of a link. (Not the link count or ctime, which a rename or
/// removal of a planted link's name inside the root changes by definition.)
fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let (kind, bytes) = if md.is_dir() {
                stack.push(e.path());
                ("dir", Vec::new())
            } else if md.is_symlink() {
                ("link", std::fs::read_link(e.path()).unwrap().into_os_string().into_encoded_bytes())
            } else {
                ("file", std::fs::read(e.path()).unwrap())
            };
            out.insert(e.path(), (kind.to_string(), md.mode(), md.len(), md.mtime(), md.mtime_nsec(), bytes));
        }
    }
    out
}

/// Replaces the directory at `path` by a symlink to `to`; what was there goes to `stash`. A
/// running broker may make the directory again between the two steps (as an attacker would, the
/// test then moves that one aside too and tries again).
fn swap(path: &Path, to: &Path, stash: &Path) {
    for attempt in 0..20 {
        if std::fs::symlink_metadata(path).is_ok() {
            std::fs::create_dir_all(stash.parent().unwrap()).unwrap();
            let dest = if attempt == 0 {
                stash.to_path_buf()
            } else {
                stash.with_extension(format!("again-{attempt}"))
            };
            std::fs::rename(path, dest).unwrap();
        }
        match symlink(to, path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("symlink {}: {e}", path.display()),
        }
    }
    panic!("{} was made again every time it was moved away", path.display());
}

/// `path` is a real directory again, and the link that stood there sits beside it, moved aside.
fn displaced(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let aside = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(&format!("{name}.displaced-"))
            && e.file_type().unwrap().is_symlink()
    });
    aside && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn submit(root: &Root, id: &str) {
    submit_with(root, id, &[]);
}

/// Submits without waiting for the broker's answer, for a submit the broker is expected to stop
/// on: the message is delivered to the inbox and the next broker takes it.
fn submit_unanswered(root: &Root, id: &str) {
    submit_with(root, id, &["--no-wait"]);
}

fn submit_with(root: &Root, id: &str, flags: &[&str]) {
    let task = json!({"task_id": id, "task_type": "work"});
    let args: Vec<&str> = ["submit"].into_iter().chain(flags.iter().copied()).chain(["-"]).collect();
    let out = root.run_with_input(&args, task.to_string().as_bytes());
    assert!(out.status.success(), "submit {id}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `bytes` into `dir` under a hidden name, then renames it to `name` (never seen half made).
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let hidden = dir.join(format!(".making-{name}"));
    std::fs::write(&hidden, bytes).unwrap();
    std::fs::rename(&hidden, dir.join(name)).unwrap();
}

/// Claims and completes tasks as `Agent-1` until every one of `ids` is on the completed board.
fn complete_all(root: &Root, broker: &mut Broker, ids: &BTreeSet<String>) {
    let mut left = ids.clone();
    while !left.is_empty() {
        assert!(broker.is_running(), "the broker stopped:\n{}", broker.log());
        let out = root.run(&["claim", "--agent", "Agent-1", "--pool", "work", "--wait", "20"]);
        assert!(
            out.status.success(),
            "claim ({left:?} left): {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            broker.log()
        );
        let t: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (id, claim) = (t["task_id"].as_str().unwrap(), t["claim"].as_str().unwrap());
        let out = root.run(&["complete", "--agent", "Agent-1", "--claim", claim]);
        assert!(out.status.success(), "complete {id}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(left.remove(id), "{id} claimed but not expected (or twice)");
    }
    wait_for(T, || {
        let done: BTreeSet<String> = root
            .board("completed_tasks")
            .iter()
            .filter_map(|t| t["task_id"].as_str().map(str::to_string))
            .collect();
        ids.is_subset(&done)
    });
}

/// A round of traffic named `tag`: `n` submits, a legacy file in `drop/` and one in `tasks/`, a
/// message that must be quarantined, a board edit; every task claimed and completed. Returns the
/// ids of the tasks acknowledged.
fn traffic(root: &Root, broker: &mut Broker, tag: &str, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let id = format!("{tag}-{i}");
        submit(root, &id);
        ids.insert(id);
    }
    for (dir, id) in
        [(root.comms().join("drop"), format!("{tag}-D")), (root.path.join("tasks"), format!("{tag}-T"))]
    {
        let legacy = json!({"id": id, "title": "a legacy task", "task_type": "work", "status": "open"});
        put(&dir, &format!("{id}.json"), legacy.to_string().as_bytes());
        ids.insert(id);
    }
    let inbox = root.comms().join("broker/inbox");
    std::fs::write(inbox.join("tmp").join(format!("{tag}-bad.json")), b"this is not JSON").unwrap();
    std::fs::rename(
        inbox.join("tmp").join(format!("{tag}-bad.json")),
        inbox.join("new").join(format!("{tag}-bad.json")),
    )
    .unwrap();
    complete_all(root, broker, &ids);
    wait_for(T, || {
        root.ls("broker/quarantine").iter().any(|n| n.ends_with(&format!("{tag}-bad.json.error.json")))
    });
    // A board edited behind the broker's back is read and rewritten, in the real directory.
    let backlog = root.comms().join("central_task_boards/task_backlog.json");
    let mut bytes = std::fs::read(&backlog).unwrap();
    bytes.extend_from_slice(b"\n\n");
    put(&root.comms().join("central_task_boards"), "task_backlog.json", &bytes);
    wait_for(T, || std::fs::read(&backlog).is_ok_and(|b| !b.ends_with(b"\n\n")));
    ids
}

/// Every id submitted once and completed once, from the journal; no bait id anywhere in it.
fn exactly_once(root: &Root, ids: &BTreeSet<String>) {
    let journal = root.journal();
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &journal {
        if let (Some(op), Some(id)) = (r["op"].as_str(), r["task_id"].as_str()) {
            *count.entry((op.to_string(), id.to_string())).or_default() += 1;
        }
    }
    for id in ids {
        for op in ["submit", "complete"] {
            assert_eq!(count.get(&(op.to_string(), id.clone())), Some(&1), "{op} records of {id}");
        }
    }
    let text = serde_json::to_string(&journal).unwrap();
    assert!(!text.contains("BAIT-"), "a bait file outside the root was read");
}

/// Starts a broker that must not serve: waits for it to exit (a broken defence fails the wait,
/// never hangs the test) and returns its exit code and log.
fn must_stop(root: &Root) -> (Option<i32>, String) {
    let mut b = root.spawn_broker();
    wait_for(T, || b.exit_status().is_some());
    (b.exit_status().and_then(|s| s.code()), b.log())
}

fn start(root: &Root) -> Broker {
    let mut b = root.spawn_broker();
    assert!(b.wait_serving(T), "the broker did not start:\n{}", b.log());
    b
}

/// Every owned directory (and the ingest directory) a symlink out of the root before the broker
/// starts, a hard link to an outside file at the lock note's name and at the first journal
/// segment's: the broker moves each aside, serves, and touches nothing outside.
fn before_start(root: Root, resolution: &str) {
    root.write_config(CONFIG);
    let outside = Outside::new(&root);
    for rel in OWNED {
        swap(&root.path.join(rel), &outside.dir, &root.scratch().join("stash").join(rel));
    }
    std::fs::hard_link(&outside.hard, root.comms().join("broker/broker.lock")).unwrap();
    std::fs::hard_link(&outside.hard, root.comms().join("broker/journal/segment-0000000000000001.jsonl"))
        .unwrap();
    let before = fingerprint(&outside.dir);
    let mut broker = start(&root);
    assert!(broker.log().contains(&format!("resolution=\"{resolution}\"")), "{}", broker.log());
    for rel in OWNED {
        assert!(displaced(&root.path.join(rel)), "{rel} not moved aside:\n{}", broker.log());
    }
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let mut ids = traffic(&root, &mut broker, "A", 12);
    // Compaction archived segments into the real archive/, and the prune emptied inbox/cur/.
    wait_for(T, || root.ls("broker/journal/archive").iter().any(|n| n.starts_with("segment-")));
    wait_for(T, || root.ls("broker/inbox/cur").is_empty());
    ids.extend(traffic(&root, &mut broker, "B", 4));
    assert!(broker.is_running(), "{}", broker.log());
    assert_eq!(fingerprint(&outside.dir), before, "something outside the root changed");
    exactly_once(&root, &ids);
    let note = std::fs::read_to_string(root.comms().join("broker/broker.lock")).unwrap();
    assert!(note.starts_with(&format!("pid={}", broker.pid())), "the lock note: {note:?}");
}

#[test]
fn owned_directories_replaced_before_start_are_moved_aside_and_never_followed() {
    before_start(Root::new(), "openat2");
}

/// The same on the fallback resolution (one `openat(O_NOFOLLOW)` per component), which kernels
/// without `openat2` get.
#[test]
fn the_fallback_resolution_keeps_the_broker_inside_too() {
    before_start(Root::new().with_env("MAILROOM_RESOLVE", "walk"), "walk");
}

/// Each owned directory replaced while the broker runs (what was there moved out of the root):
/// moved aside in turn, the broker serving throughout.
#[test]
fn owned_directories_replaced_while_running_are_moved_aside_and_never_followed() {
    let root = Root::new();
    root.write_config(CONFIG);
    let outside = Outside::new(&root);
    std::fs::create_dir(root.path.join("tasks")).unwrap();
    let before = fingerprint(&outside.dir);
    let mut broker = start(&root);
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let mut ids = traffic(&root, &mut broker, "W", 3);
    let stolen = root.scratch().join("stolen");
    for (i, rel) in OWNED.iter().enumerate() {
        let path = root.path.join(rel);
        wait_for(T, || root.ls("broker/inbox/new").iter().all(|n| n.starts_with('.')));
        swap(&path, &outside.dir, &stolen.join(rel));
        let stash = fingerprint(&stolen);
        // Some directories the broker looks into every pass (or, `inbox/tmp/`, with every prune);
        // the others when there is work: a submit, and a message to quarantine.
        let by_itself = ["drop", "inbox/new", "inbox/tmp", "tasks", "central_task_boards"];
        let mut n = 0;
        let started = std::time::Instant::now();
        while !displaced(&path) {
            assert!(broker.is_running(), "{rel}: the broker stopped:\n{}", broker.log());
            assert!(started.elapsed() < T, "{rel} never moved aside:\n{}", broker.log());
            if !by_itself.iter().any(|d| rel.ends_with(d)) && n < 20 {
                let id = format!("S{i}-{n}");
                submit(&root, &id);
                ids.insert(id);
                put(&root.comms().join("broker/inbox/new"), &format!("S{i}-{n}-bad.json"), b"not JSON");
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if rel.ends_with("mailboxes") {
            // The mailboxes went with the directory the attacker took: the agent comes back.
            assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
        }
        let pending: BTreeSet<String> = (0..n).map(|k| format!("S{i}-{k}")).collect();
        complete_all(&root, &mut broker, &pending);
        ids.extend(traffic(&root, &mut broker, &format!("R{i}"), 2));
        assert_eq!(
            fingerprint(&stolen),
            stash,
            "{rel}: the broker wrote into the directory taken out of the root"
        );
    }
    assert!(broker.is_running(), "{}", broker.log());
    assert_eq!(fingerprint(&outside.dir), before, "something outside the root changed");
    exactly_once(&root, &ids);
}

/// The journal replaced by a symlink, before start and while running, and the segment being
/// written replaced by a hard link to an outside file: the broker stops with exit code 8 and says
/// what to put back; put back, it starts and nothing acknowledged is lost.
#[test]
fn a_replaced_journal_stops_the_broker_until_it_is_put_back() {
    let root = Root::new();
    root.write_config(CONFIG);
    let outside = Outside::new(&root);
    std::fs::create_dir(root.path.join("tasks")).unwrap();
    let before = fingerprint(&outside.dir);
    let journal = root.comms().join("broker/journal");
    let aside = root.scratch().join("journal-taken");
    let mut broker = start(&root);
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let mut ids = traffic(&root, &mut broker, "J", 3);
    let (code, _) = broker.terminate();
    assert_eq!(code, Some(0));

    // Before start.
    swap(&journal, &outside.dir, &aside);
    let (code, err) = must_stop(&root);
    assert_eq!(code, Some(8), "{err}");
    assert!(
        err.contains("broker/journal") && err.contains("symbolic link") && err.contains("Put the journal"),
        "{err}"
    );
    std::fs::remove_file(&journal).unwrap();
    std::fs::rename(&aside, &journal).unwrap();
    let mut broker = start(&root);
    ids.extend(traffic(&root, &mut broker, "K", 2));

    // While running: the next commit finds the journal gone and stops before writing it.
    swap(&journal, &outside.dir, &aside);
    let taken = fingerprint(&aside);
    submit_unanswered(&root, "L-0");
    wait_for(T, || !broker.is_running());
    assert_eq!(broker.exit_status().unwrap().code(), Some(8), "{}", broker.log());
    assert!(broker.log().contains("Put the journal"), "{}", broker.log());
    assert_eq!(fingerprint(&aside), taken, "the broker wrote into the journal after it left the root");
    std::fs::remove_file(&journal).unwrap();
    std::fs::rename(&aside, &journal).unwrap();
    let mut broker = start(&root);
    complete_all(&root, &mut broker, &BTreeSet::from(["L-0".to_string()]));
    ids.insert("L-0".into());

    // The open segment itself replaced by a hard link to a file outside the root.
    let segment = newest_segment(&journal);
    std::fs::rename(&segment, root.scratch().join("segment-taken")).unwrap();
    std::fs::hard_link(&outside.hard, &segment).unwrap();
    submit_unanswered(&root, "M-0");
    wait_for(T, || !broker.is_running());
    assert_eq!(broker.exit_status().unwrap().code(), Some(8), "{}", broker.log());
    assert!(broker.log().contains("no longer the file"), "{}", broker.log());
    std::fs::remove_file(&segment).unwrap();
    std::fs::rename(root.scratch().join("segment-taken"), &segment).unwrap();
    let mut broker = start(&root);
    complete_all(&root, &mut broker, &BTreeSet::from(["M-0".to_string()]));
    ids.insert("M-0".into());

    assert_eq!(fingerprint(&outside.dir), before, "something outside the root changed");
    exactly_once(&root, &ids);
}

fn newest_segment(journal: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(journal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".jsonl"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

/// `broker.lock` removed, or replaced by a symlink or a hard link to an outside file, under a
/// running broker: a second broker (and an import) is refused every time, the target never
/// written, and the first broker serves on alone.
#[test]
fn a_second_broker_is_refused_whatever_was_done_to_the_lock_file() {
    let root = Root::new();
    root.write_config(CONFIG);
    let outside = Outside::new(&root);
    std::fs::create_dir(root.path.join("tasks")).unwrap();
    let mut broker = start(&root);
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let note = root.comms().join("broker/broker.lock");
    type Tamper = fn(&Path, &Path);
    let tampering: [(&str, Tamper); 4] = [
        ("left alone", |_, _| {}),
        ("removed", |note, _| std::fs::remove_file(note).unwrap()),
        ("a symlink", |note, bait| symlink(bait, note).unwrap()),
        ("a hard link", |note, bait| std::fs::hard_link(bait, note).unwrap()),
    ];
    let before = fingerprint(&outside.dir);
    let mut ids = BTreeSet::new();
    for (what, tamper) in tampering {
        if what != "left alone" && what != "removed" {
            let _ = std::fs::remove_file(&note);
        }
        tamper(&note, &outside.hard);
        let (code, err) = must_stop(&root);
        assert_eq!(code, Some(4), "lock file {what}: a second broker: {err}");
        assert!(err.contains("another broker holds"), "{err}");
        let out = root.run(&["import", root.scratch().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(4), "lock file {what}: an import");
        ids.extend(traffic(&root, &mut broker, &format!("L{}", ids.len()), 2));
    }
    assert!(broker.is_running(), "{}", broker.log());
    // A restart over a lock note that is a symlink to an outside file: started, note rewritten.
    drop(broker);
    let _ = std::fs::remove_file(&note);
    symlink(&outside.hard, &note).unwrap();
    let mut broker = start(&root);
    ids.extend(traffic(&root, &mut broker, "N", 2));
    assert!(std::fs::symlink_metadata(&note).unwrap().is_file(), "the note is a file of its own again");
    assert_eq!(fingerprint(&outside.dir), before, "something outside the root changed");
    exactly_once(&root, &ids);
}

/// Hard links to an outside file planted at names the broker creates or moves files to while it
/// runs: the temporaries of board rewrites, the next snapshots, the quarantine entry of a message
/// it will refuse, and the `inbox/cur/` name of a message it will consume. None is ever opened
/// for writing (the outside file is unchanged); a planted file in the way of a move is moved
/// aside, so the message itself is kept, whole, where the journal says it went.
#[test]
fn files_planted_at_names_the_broker_creates_are_never_written_through() {
    let root = Root::new();
    root.write_config(
        "[broker]\ntick_ms = 50\nsettle_ms = 100\ncompact_after_records = 40\n[ingest]\ntask_dirs = [\"tasks\"]\n",
    );
    let outside = Outside::new(&root);
    std::fs::create_dir(root.path.join("tasks")).unwrap();
    let mut broker = start(&root);
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let pid = broker.pid();
    let link = |p: PathBuf| {
        std::fs::hard_link(&outside.hard, &p).unwrap();
        p
    };
    let (boards, journal, quarantine) = (
        root.comms().join("central_task_boards"),
        root.comms().join("broker/journal"),
        root.comms().join("broker/quarantine"),
    );
    let mut temps = Vec::new();
    for board in root.ls("central_task_boards").iter().filter(|n| n.ends_with(".json")) {
        temps.extend((0..400).map(|k| link(boards.join(format!(".{board}.tmp-{pid}-{k}")))));
    }
    assert!(!temps.is_empty(), "the boards are written at start");
    let snaps: Vec<PathBuf> =
        (1..=400).map(|seq| link(journal.join(format!("snapshot-{seq:016}.json")))).collect();
    let entries: Vec<PathBuf> =
        (1..=600).map(|seq| link(quarantine.join(format!("{seq:012}-P-bad.json")))).collect();
    let submit = json!({"kind": "submit", "task": {"task_id": "P-HAND", "task_type": "work"}}).to_string();
    let consumed = link(root.comms().join("broker/inbox/cur/msg-P-hand.json"));
    let before = fingerprint(&outside.dir);

    let ino = std::fs::metadata(&outside.hard).unwrap().ino();
    let planted = |p: &PathBuf| std::fs::symlink_metadata(p).is_ok_and(|m| m.ino() == ino);
    let moved_aside = |p: &Path| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}.displaced-")))
    };

    put(&root.comms().join("broker/inbox/new"), "msg-P-hand.json", submit.as_bytes());
    complete_all(&root, &mut broker, &BTreeSet::from(["P-HAND".to_string()]));
    // Checked before the first inbox prune (a minute after start) removes consumed messages.
    assert_eq!(std::fs::read_to_string(&consumed).unwrap(), submit, "the consumed message, whole");
    assert!(moved_aside(&consumed), "nothing moved aside beside {}:\n{}", consumed.display(), broker.log());
    let mut ids = traffic(&root, &mut broker, "P", 12);
    ids.insert("P-HAND".into());
    wait_for(T, || root.ls("broker/journal/archive").iter().any(|n| n.starts_with("segment-")));
    assert!(broker.is_running(), "{}", broker.log());
    assert_eq!(fingerprint(&outside.dir), before, "something outside the root changed");
    exactly_once(&root, &ids);

    assert!(temps.iter().any(|p| !planted(p)), "no board rewrite met a planted temporary");
    assert!(snaps.iter().any(|p| !planted(p)), "no snapshot was written over a planted name");
    // The refused message is where the journal says it went, whole; what stood in its way sits
    // beside it.
    let kept = entries.iter().find(|p| !planted(p)).expect("the refused message's entry");
    assert_eq!(std::fs::read(kept).unwrap(), b"this is not JSON", "{}", kept.display());
    assert!(moved_aside(kept), "nothing moved aside beside {}:\n{}", kept.display(), broker.log());
}

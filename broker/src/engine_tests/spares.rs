//! Finished claims' files written again as the next task files (`engine/spares.rs`): the inode
//! is reused, a file with another name is never written, and a start clears what a crash left.

use super::Root;
use runtime_layout::{Fs, RealFs};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

fn task_id(p: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["task_id"].as_str().unwrap().to_string()
}

/// Submits `id`, claims it as `agent` and completes it; returns the claim file's inode.
fn run_one(r: &Root, e: &mut crate::engine::Engine, id: &str, agent: &str) -> u64 {
    r.send(json!({"task_id": id, "name": "n"}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), agent);
    let held = ino(&r.layout.mailbox(agent).cur().join(&claim));
    e.step().unwrap();
    r.send(json!({"kind": "complete", "agent": agent, "claim": claim}));
    e.step().unwrap();
    assert!(r.list(&r.layout.mailbox(agent).cur()).is_empty(), "the claim left the agent's cur/");
    held
}

#[test]
fn a_finished_claims_file_becomes_the_next_task_file() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    let first = run_one(&r, &mut e, "T1", "A");
    assert_eq!(r.list(&r.layout.spare_dir()).len(), 1, "kept as a spare");
    r.send(json!({"task_id": "T2", "name": "second, with a longer name than the first had"}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    let queued = r.list(&pool);
    assert_eq!(queued.len(), 1);
    let path = pool.join(&queued[0]);
    assert_eq!(ino(&path), first, "the spare's inode is the task file");
    assert!(r.list(&r.layout.spare_dir()).is_empty());
    let expected = crate::engine::task_bytes(&e.live("T2").unwrap().task);
    assert_eq!(std::fs::read(&path).unwrap(), expected, "rewritten whole, cut to its length");
    // And the task goes on as any other: the broker adopts the claim of the rewritten file.
    let claim = r.claim(&pool, "A");
    e.step().unwrap();
    let held = &e.live("T2").unwrap().task;
    assert_eq!(
        (held.status, held.assigned_to.as_deref()),
        (protocol::Status::InProgress, Some("A")),
        "{claim}"
    );
}

#[test]
fn a_claim_with_another_name_is_never_written_again() {
    let r = Root::new();
    r.agent("A");
    let outside = tempfile::tempdir().unwrap();
    let bait = outside.path().join("bait");
    let mut e = r.engine();
    r.send(json!({"task_id": "T1"}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    // The agent links its claim to a file of its own outside the root, then completes.
    std::fs::hard_link(r.layout.mailbox("A").cur().join(&claim), &bait).unwrap();
    let before = std::fs::read(&bait).unwrap();
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim}));
    e.step().unwrap();
    r.send(json!({"task_id": "T2"}));
    e.step().unwrap();
    assert_eq!(std::fs::read(&bait).unwrap(), before, "the linked file is untouched");
    let pool = r.layout.queue("default").new_dir();
    let queued = pool.join(&r.list(&pool)[0]);
    assert_ne!(ino(&queued), ino(&bait), "a new file instead");
    assert_eq!(task_id(&queued), "T2");
    assert!(r.list(&r.layout.spare_dir()).is_empty(), "the refused spare is removed");
    assert_eq!(std::fs::metadata(&bait).unwrap().nlink(), 1);
}

/// Runs T1 through, then submits T2, whose task file is written into T1's finished claim's
/// file; returns the broker and T2's bytes as written.
fn t2_through_a_spare(r: &Root) -> (crate::engine::Engine, Vec<u8>) {
    r.agent("A");
    let mut e = r.engine();
    run_one(r, &mut e, "T1", "A");
    r.send(json!({"task_id": "T2"}));
    e.step().unwrap();
    let bytes = crate::engine::task_bytes(&e.live("T2").unwrap().task);
    (e, bytes)
}

/// `bytes` with the JSON string `from` written as `to`: what a power loss can leave in a file
/// written in place (another task's bytes, or this task's own earlier ones).
fn relabelled(bytes: &[u8], from: &str, to: &str) -> String {
    String::from_utf8(bytes.to_vec()).unwrap().replace(&format!("\"{from}\""), &format!("\"{to}\""))
}

#[test]
fn a_start_clears_the_spares_and_redelivers_a_file_that_holds_another_task() {
    let r = Root::new();
    let (e, written) = t2_through_a_spare(&r);
    drop(e);
    // What a power loss can leave: the queued file with the bytes its inode held before (another
    // task's), and a spare that was never renamed into place.
    let pool = r.layout.queue("default").new_dir();
    let queued = pool.join(&r.list(&pool)[0]);
    let other = relabelled(&written, "T2", "T1");
    RealFs.overwrite(&queued, other.as_bytes(), false).unwrap();
    RealFs.create_new(&r.layout.spare_dir().join("left-by-a-crash"), b"{}", false).unwrap();
    let e = r.engine();
    assert!(r.list(&r.layout.spare_dir()).is_empty(), "spares removed at the start");
    let queued = pool.join(&r.list(&pool)[0]);
    assert_eq!(task_id(&queued), "T2", "delivered again with its own bytes");
    let own = crate::engine::task_bytes(&e.live("T2").unwrap().task);
    assert_eq!(std::fs::read(&queued).unwrap(), own);
    drop(e);
    // The task's own bytes from an earlier dispatch (a released task written into its own
    // former claim's file): the right id, the wrong content.
    let earlier = relabelled(&own, "PENDING", "IN_PROGRESS");
    assert_ne!(earlier.as_bytes(), own.as_slice());
    RealFs.overwrite(&queued, earlier.as_bytes(), false).unwrap();
    let e = r.engine();
    let queued = pool.join(&r.list(&pool)[0]);
    assert_eq!(std::fs::read(&queued).unwrap(), crate::engine::task_bytes(&e.live("T2").unwrap().task));
}

#[test]
fn a_held_claim_whose_file_holds_another_task_after_a_restart_is_taken_back() {
    let r = Root::new();
    let (mut e, _) = t2_through_a_spare(&r);
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    assert_eq!(e.live("T2").unwrap().task.status, protocol::Status::InProgress);
    let earlier = crate::engine::task_bytes(&e.live("T2").unwrap().task);
    drop(e);
    // What a power loss can leave: the claim adopted, its rewrite lost, the finished task's bytes.
    let path = r.layout.mailbox("A").cur().join(&claim);
    let other = relabelled(&earlier, "T2", "T1");
    RealFs.overwrite(&path, other.as_bytes(), false).unwrap();
    let e = r.engine();
    let t2 = e.live("T2").unwrap();
    assert_eq!((t2.task.status, t2.task.assigned_to.as_deref()), (protocol::Status::Pending, None));
    let why = |h: &protocol::task::HistoryEntry| {
        h.details.as_ref().is_some_and(|d| d.to_string().contains("holds task"))
    };
    assert!(t2.task.history.iter().any(why), "{:?}", t2.task.history);
    assert!(!path.exists(), "the claim's file is taken away");
    let notices: Vec<Value> = r
        .list(&r.layout.mailbox("A").new_dir())
        .iter()
        .filter(|n| n.starts_with("notice"))
        .map(|n| {
            serde_json::from_slice(&std::fs::read(r.layout.mailbox("A").new_dir().join(n)).unwrap()).unwrap()
        })
        .collect();
    assert!(notices.iter().any(|n| n["notice"] == "rejected" && n["claim"] == claim.as_str()), "{notices:?}");
    let pool = r.layout.queue("default").new_dir();
    assert_eq!(task_id(&pool.join(&r.list(&pool)[0])), "T2", "queued again with its own bytes");
}

#[test]
fn a_spare_directory_that_cannot_be_listed_does_not_stop_a_start() {
    let r = Root::new();
    r.agent("A");
    let mut e =
        crate::engine::Engine::open(std::sync::Arc::new(RealFs), r.layout.clone(), Default::default())
            .unwrap();
    // Replaced by a file after the tree was made (the broker's own start moves it aside first).
    std::fs::remove_dir(r.layout.spare_dir()).unwrap();
    std::fs::write(r.layout.spare_dir(), b"not a directory").unwrap();
    e.reconcile().unwrap();
    // Claims are removed as before while there is nowhere to keep them.
    run_one(&r, &mut e, "T1", "A");
    r.send(json!({"task_id": "T2"}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    assert_eq!(task_id(&pool.join(&r.list(&pool)[0])), "T2");
    assert_eq!(std::fs::read(r.layout.spare_dir()).unwrap(), b"not a directory");
}

#[test]
fn a_directory_put_at_a_held_claim_s_name_never_stops_the_broker() {
    use std::sync::atomic::Ordering;
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    let (clock, skew) = super::skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "D", "lease_secs": 30, "max_attempts": 3}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    // The agent swaps its claim for a directory of the same name (with a file in it), and lets
    // the lease run out: the take-back cannot remove a directory.
    let at = r.layout.mailbox("A").cur().join(&claim);
    std::fs::remove_file(&at).unwrap();
    std::fs::create_dir(&at).unwrap();
    std::fs::write(at.join("inside"), b"x").unwrap();
    skew.store(31, Ordering::SeqCst);
    e.step().expect("a directory in an agent's cur/ is the agent's, not a failure");
    skew.store(0, Ordering::SeqCst);
    assert_eq!(r.list(&r.layout.queue("default").new_dir()).len(), 1, "D queued again");
    assert_eq!(std::fs::read(at.join("inside")).unwrap(), b"x", "nothing of the agent's removed");
}

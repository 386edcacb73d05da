//! Engine tests on temporary roots: the lifecycle, fencing, restart and leases, driven by hand
//! (files placed and renamed the way agents do) so each rule is checked in isolation.

mod aging;
mod boards;
mod capabilities;
mod dependencies;
mod offers;
mod passes;
mod presence;
mod socket;
mod spares;
mod window;

use crate::config::Config;
use crate::engine::Engine;
use crate::journal::Place;
use protocol::{Status, Timestamp};
use runtime_layout::{Board, Clock, Durability, Layout, NameSource, RealFs, deliver};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The wall clock (file mtimes follow it) moved by a number of seconds the test sets.
fn skewed() -> (Clock, Arc<AtomicI64>) {
    let skew = Arc::new(AtomicI64::new(0));
    let s = skew.clone();
    let clock = Clock::from_fn(move || {
        Timestamp::from_micros(runtime_layout::now().as_micros() + s.load(Ordering::SeqCst) * 1_000_000)
    });
    (clock, skew)
}

struct Root {
    _dir: tempfile::TempDir,
    layout: Layout,
    names: NameSource,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("runtime"));
        layout.create(&RealFs).unwrap();
        Self { _dir: dir, layout, names: NameSource::new() }
    }

    fn engine(&self) -> Engine {
        self.engine_with(Config::default())
    }

    fn engine_with(&self, cfg: Config) -> Engine {
        let mut e = Engine::open(Arc::new(RealFs), self.layout.clone(), cfg).unwrap();
        e.reconcile().unwrap();
        e
    }

    fn send(&self, v: Value) -> String {
        let name = self.names.next("msg");
        deliver(&RealFs, &self.layout.broker_inbox(), &name, v.to_string().as_bytes(), Durability::Never)
            .unwrap();
        name
    }

    fn agent(&self, name: &str) {
        self.layout.mailbox(name).create(&RealFs, true).unwrap();
    }

    fn list(&self, dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn board(&self, b: Board) -> Vec<Value> {
        serde_json::from_slice(&std::fs::read(self.layout.board(b)).unwrap()).unwrap()
    }

    /// Claims like an agent: rename from new/ to the agent's cur/.
    fn claim(&self, pool_new: &Path, agent: &str) -> String {
        let name = self.list(pool_new).into_iter().next().expect("a task to claim");
        std::fs::rename(pool_new.join(&name), self.layout.mailbox(agent).cur().join(&name)).unwrap();
        name
    }
}

#[test]
fn submit_dispatch_claim_complete() {
    let r = Root::new();
    r.agent("Agent-1");
    let mut e = r.engine();
    r.send(
        json!({"task_id": "T1", "name": "first", "task_type": "build/x", "priority": "HIGH", "custom": [1]}),
    );
    e.step().unwrap();
    e.write_boards(true).unwrap();
    let pool = r.layout.queue("build_x").new_dir();
    let queued = r.list(&pool);
    assert_eq!(queued.len(), 1);
    assert!(queued[0].starts_with("1-") && queued[0].ends_with("-T1.json"), "{queued:?}");
    let file: Value = serde_json::from_slice(&std::fs::read(pool.join(&queued[0])).unwrap()).unwrap();
    assert_eq!(file["custom"], json!([1]), "unknown fields are preserved");
    assert_eq!(r.board(Board::Ready)[0]["task_id"], "T1");
    assert_eq!(r.list(&r.layout.broker_inbox().new_dir()).len(), 0, "message consumed");
    assert_eq!(r.list(&r.layout.broker_inbox().cur()).len(), 1);

    let claim = r.claim(&pool, "Agent-1");
    e.step().unwrap();
    e.write_boards(true).unwrap();
    assert_eq!(r.board(Board::Working)[0]["status"], "IN_PROGRESS");
    assert_eq!(r.board(Board::Working)[0]["assigned_to"], "Agent-1");

    r.send(json!({"kind": "complete", "agent": "Agent-1", "claim": claim, "result": {"ok": true}}));
    e.step().unwrap();
    e.write_boards(true).unwrap();
    let done = r.board(Board::Completed);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["status"], "COMPLETED");
    assert_eq!(done[0]["result"], json!({"ok": true}));
    assert!(r.board(Board::Working).is_empty() && r.board(Board::Ready).is_empty());
    assert!(r.list(&r.layout.mailbox("Agent-1").cur()).is_empty(), "claim file removed");
    let actions: Vec<String> = done[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["submit", "dispatch", "claim", "complete"]);

    let t = crate::trace::trace(&RealFs, &r.layout, "T1").unwrap().unwrap();
    assert_eq!(t.status, Some(Status::Completed));
    assert!(t.render().contains(&format!("mailboxes/Agent-1/cur/{claim}")));
    // Where its two messages (the submit, the completion) went.
    let messages: Vec<(&str, &String)> = t
        .steps
        .iter()
        .flat_map(|s| s.paths.iter().filter(|p| p.starts_with("message ")).map(move |p| (s.op, p)))
        .collect();
    assert_eq!(
        messages.iter().map(|(op, _)| *op).collect::<Vec<_>>(),
        ["submit", "complete"],
        "{messages:?}"
    );
    assert!(messages.iter().all(|(_, p)| p.contains(" -> broker/inbox/cur/")), "{messages:?}");
}

#[test]
fn stale_and_spoofed_completions_are_rejected_with_notices() {
    let r = Root::new();
    r.agent("A");
    r.agent("B");
    let mut e = r.engine();
    r.send(json!({"task_id": "T"}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    // B claims to have finished A's task.
    r.send(json!({"kind": "complete", "agent": "B", "claim": claim}));
    // A completion of a claim nobody ever had.
    r.send(json!({"kind": "complete", "agent": "A", "claim": "2-20250101T000000000000-000000000001-X.json"}));
    e.step().unwrap();
    assert_eq!(e.live("T").unwrap().task.status, Status::InProgress, "spoof changed nothing");
    let q = r.list(&r.layout.quarantine_dir());
    assert_eq!(q.iter().filter(|n| n.ends_with(".error.json")).count(), 2, "{q:?}");
    let notices = r.list(&r.layout.mailbox("B").new_dir());
    assert_eq!(notices.len(), 1);
    let n: Value =
        serde_json::from_slice(&std::fs::read(r.layout.mailbox("B").new_dir().join(&notices[0])).unwrap())
            .unwrap();
    assert_eq!(n["kind"], "notice");
    assert_eq!(n["notice"], "stale");
    assert!(n["reason"].as_str().unwrap().contains("held by `A`"), "{n}");
    // The real holder still completes.
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim}));
    e.step().unwrap();
    assert!(e.live("T").is_none());
    // Completing twice is stale.
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim}));
    e.step().unwrap();
    assert_eq!(r.list(&r.layout.quarantine_dir()).len(), 6);
}

#[test]
fn restart_rebuilds_state_and_sees_claims_made_while_down() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    for i in 0..5 {
        let p = ["LOW", "CRITICAL"][i % 2];
        r.send(json!({"task_id": format!("T{i}"), "priority": p}));
    }
    e.step().unwrap();
    drop(e);
    let pool = r.layout.queue("default").new_dir();
    let first = r.claim(&pool, "A");
    assert!(first.starts_with("0-") && first.ends_with("-T1.json"), "critical and oldest first: {first}");
    let mut e = r.engine();
    assert!(matches!(&e.live("T1").unwrap().place, Place::Held { agent, .. } if agent == "A"));
    assert_eq!(e.live("T1").unwrap().task.status, Status::InProgress);
    assert_eq!(r.list(&pool).len(), 4);
    // A resubmission after restart is recognised.
    r.send(json!({"task_id": "T1", "priority": "CRITICAL"}));
    r.send(json!({"task_id": "T1", "priority": "LOW"}));
    e.step().unwrap();
    let q = r.list(&r.layout.quarantine_dir());
    assert_eq!(q.len(), 2, "only the conflicting duplicate is quarantined: {q:?}");
    assert_eq!(r.list(&pool).len(), 4, "no second copy dispatched");
}

#[test]
fn expired_lease_is_taken_back_and_redispatched_under_a_new_name() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "L", "lease_secs": 30, "max_attempts": 2}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    let first = r.claim(&pool, "A");
    e.step().unwrap();
    skew.store(31, Ordering::SeqCst);
    e.step().unwrap();
    let again = r.list(&pool);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], first, "a new name on every dispatch");
    assert!(r.list(&r.layout.mailbox("A").cur()).is_empty());
    assert_eq!(e.live("L").unwrap().task.attempts, 1);
    let notices = r.list(&r.layout.mailbox("A").new_dir());
    assert!(notices.iter().any(|n| n.starts_with("notice-")));
    // The old holder's completion is now stale.
    r.send(json!({"kind": "complete", "agent": "A", "claim": first}));
    e.step().unwrap();
    assert_eq!(e.live("L").unwrap().task.status, Status::Pending);
    // Second claim also expires: attempts are used up, so it is dead-lettered.
    r.claim(&pool, "A");
    e.step().unwrap();
    skew.store(62, Ordering::SeqCst);
    e.step().unwrap();
    skew.store(0, Ordering::SeqCst);
    assert!(e.live("L").is_none());
    assert_eq!(e.state().finished("L").unwrap().status, Status::Failed);
}

#[test]
fn a_completion_waiting_in_a_backlog_beats_the_lease() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = Config::default();
    cfg.broker.batch_size = 2;
    let mut e = r.engine_with(cfg);
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "B", "lease_secs": 30}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    // A backlog ahead of the completion, and the lease runs out before the broker reaches it.
    for i in 0..3 {
        r.send(json!({"task_id": format!("F-{i}")}));
    }
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim}));
    skew.store(31, Ordering::SeqCst);
    while e.step().unwrap().more {}
    e.step().unwrap();
    assert!(e.live("B").is_none(), "the waiting completion was refused as stale");
    assert_eq!(e.state().finished("B").unwrap().status, Status::Completed);
}

#[test]
fn dependencies_hold_tasks_and_failures_block_them() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    r.send(json!({"task_id": "child", "depends_on": ["parent"]}));
    r.send(json!({"task_id": "parent"}));
    r.send(json!({"task_id": "grandchild", "depends_on": ["child"]}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    assert_eq!(r.list(&pool).len(), 1, "only the parent is ready");
    let claim = r.claim(&pool, "A");
    r.send(json!({"kind": "fail", "agent": "A", "claim": claim, "error": "nope", "retryable": false}));
    e.step().unwrap();
    assert_eq!(e.live("child").unwrap().task.status, Status::Blocked);
    // (Before issue 13 the grandchild stayed PENDING here: BLOCKED did not cascade.)
    assert_eq!(e.live("grandchild").unwrap().task.status, Status::Blocked, "BLOCKED cascades");
    // A retry of the failed parent unblocks what its failure blocked, transitively.
    r.send(json!({"kind": "retry", "task_id": "parent"}));
    e.step().unwrap();
    assert_eq!(e.live("child").unwrap().task.status, Status::Pending);
    assert_eq!(e.live("grandchild").unwrap().task.status, Status::Pending);
    let claim = r.claim(&pool, "A");
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim}));
    e.step().unwrap();
    assert_eq!(r.list(&pool).len(), 1, "child dispatched after its parent completed");
}

#[test]
fn cancel_revokes_a_held_claim_and_unknown_agents_are_refused() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    r.send(json!({"task_id": "C"}));
    r.send(json!({"task_id": "D", "assigned_to": "Nobody"}));
    r.send(json!({"task_id": "E", "assigned_to": "A"}));
    e.step().unwrap();
    assert!(e.live("D").is_none(), "unknown agent refused");
    assert_eq!(r.list(&r.layout.mailbox("A").new_dir()).len(), 1, "direct task in A's mailbox");
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    r.send(json!({"kind": "cancel", "task_id": "C"}));
    e.step().unwrap();
    assert_eq!(e.state().finished("C").unwrap().status, Status::Cancelled);
    assert!(!r.layout.mailbox("A").cur().join(&claim).exists(), "claim revoked");
    let notices: Vec<String> =
        r.list(&r.layout.mailbox("A").new_dir()).into_iter().filter(|n| n.starts_with("notice-")).collect();
    assert_eq!(notices.len(), 1);
}

#[test]
fn hostile_files_in_the_inbox_are_quarantined_not_followed() {
    let r = Root::new();
    let mut e = r.engine();
    let new = r.layout.broker_inbox().new_dir();
    std::os::unix::fs::symlink("/etc/passwd", new.join("evil-link.json")).unwrap();
    std::fs::create_dir(new.join("a-dir")).unwrap();
    std::fs::write(new.join("garbage.json"), b"{not json").unwrap();
    std::fs::write(new.join("big.json"), vec![b' '; 2 << 20]).unwrap();
    std::fs::write(new.join(".hidden"), b"{}").unwrap();
    e.step().unwrap();
    let q = r.list(&r.layout.quarantine_dir());
    assert_eq!(q.iter().filter(|n| n.ends_with(".error.json")).count(), 4, "{q:?}");
    assert!(q.iter().any(|n| n.ends_with("evil-link.json")));
    let link = r.layout.quarantine_dir().join(q.iter().find(|n| n.ends_with("evil-link.json")).unwrap());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "moved, not followed");
    assert_eq!(r.list(&new), vec![".hidden".to_string()], "dot-files are left alone");
    let err: Value = serde_json::from_slice(
        &std::fs::read(
            r.layout
                .quarantine_dir()
                .join(q.iter().find(|n| n.ends_with("garbage.json.error.json")).unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(err["reason"].as_str().unwrap().contains("JSON"), "{err}");
}

#[test]
fn drop_files_are_taken_only_when_complete() {
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.broker.settle_ms = 0;
    let mut e = r.engine_with(cfg);
    let f = r.layout.drop_dir().join("LEAD-X.json");
    std::fs::write(&f, br#"{"task_id": "LEAD-X", "name": "half"#).unwrap();
    e.step().unwrap();
    e.step().unwrap();
    assert!(f.exists(), "a file that does not parse yet is left alone");
    std::fs::write(&f, br#"{"task_id": "LEAD-X", "name": "whole"}"#).unwrap();
    e.step().unwrap();
    assert!(f.exists(), "changed since the last look: wait");
    e.step().unwrap();
    e.step().unwrap();
    assert!(!f.exists());
    assert_eq!(e.live("LEAD-X").unwrap().task.name.as_deref(), Some("whole"));
}

#[test]
fn a_refusal_finished_after_a_crash_keeps_its_precise_reason() {
    let r = Root::new();
    let mut e = r.engine();
    let name = r.send(json!({"task_id": "Q", "priority": "whenever"}));
    e.step().unwrap();
    drop(e);
    // A crash after the journal commit but before the move: put the file back where it was and
    // take away what the move wrote.
    let q = r.layout.quarantine_dir();
    let kept = r.list(&q).into_iter().find(|n| !n.ends_with(".error.json")).unwrap();
    std::fs::rename(q.join(&kept), r.layout.broker_inbox().new_dir().join(&name)).unwrap();
    std::fs::remove_file(q.join(format!("{kept}.error.json"))).unwrap();
    let mut e = r.engine();
    e.step().unwrap();
    let why: Value =
        serde_json::from_slice(&std::fs::read(q.join(format!("{kept}.error.json"))).unwrap()).unwrap();
    let reason = why["reason"].as_str().unwrap();
    assert!(reason.contains("priority"), "the journaled reason, not a generic one: {reason}");
    assert!(r.list(&r.layout.broker_inbox().new_dir()).is_empty());
}

#[test]
fn a_redriven_task_leaves_the_completed_board_and_goes_back_to_its_pool() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    r.send(json!({"task_id": "R", "task_type": "build"}));
    e.step().unwrap();
    let pool = r.layout.queue("build").new_dir();
    let claim = r.claim(&pool, "A");
    e.step().unwrap();
    r.send(json!({"kind": "fail", "agent": "A", "claim": claim, "error": "boom", "retryable": false}));
    e.step().unwrap();
    e.write_boards(true).unwrap();
    let done = r.board(Board::Completed);
    assert_eq!(
        (done.len(), done[0]["status"].as_str(), done[0]["assigned_to"].as_str()),
        (1, Some("FAILED"), Some("A"))
    );
    assert!(e.state().finished("R").unwrap().pooled, "it finished on a claim from a pool");
    r.send(json!({"kind": "retry", "task_id": "R"}));
    e.step().unwrap();
    e.write_boards(true).unwrap();
    assert!(r.board(Board::Completed).is_empty(), "a redriven task is on one board only");
    assert_eq!(r.list(&pool).len(), 1, "back in its pool, not in A's mailbox");
    assert!(r.list(&r.layout.mailbox("A").new_dir()).iter().all(|n| !n.ends_with("-R.json")));
    assert_eq!(r.board(Board::Ready)[0]["assigned_to"], Value::Null);
    // A restart rebuilds the same boards from the journal.
    drop(e);
    let mut e = r.engine();
    e.write_boards(true).unwrap();
    assert!(r.board(Board::Completed).is_empty());
    assert_eq!(r.board(Board::Ready).len(), 1);
}

/// The broker remembers at most `finished_keep_count` finished tasks, forgetting the oldest
/// first; a restart (from the journal, and from a snapshot) forgets exactly the same ones, and a
/// forgotten id may be submitted again as a new task.
#[test]
fn the_oldest_finished_tasks_are_forgotten_beyond_the_limit_and_replay_agrees() {
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.broker.finished_keep_count = 3;
    let mut e = r.engine_with(cfg.clone());
    for id in ["F1", "F2", "F3", "F4", "F5"] {
        r.send(json!({"task_id": id}));
        e.step().unwrap();
        r.send(json!({"kind": "cancel", "task_id": id}));
        e.step().unwrap();
    }
    let remembered = |e: &Engine| -> Vec<bool> {
        ["F1", "F2", "F3", "F4", "F5"].iter().map(|id| e.state().finished(id).is_some()).collect()
    };
    assert_eq!(remembered(&e), [false, false, true, true, true]);
    assert_eq!(e.state().finished_count(), 3);
    drop(e);
    let e = r.engine_with(cfg.clone());
    assert_eq!(remembered(&e), [false, false, true, true, true], "replayed from the journal");
    drop(e);
    cfg.broker.compact_after_records = 1;
    let mut e = r.engine_with(cfg.clone());
    // A forgotten id is a new task; one still remembered is a duplicate.
    r.send(json!({"task_id": "F1", "name": "again"}));
    r.send(json!({"task_id": "F5", "name": "again"}));
    e.step().unwrap();
    assert_eq!(e.live("F1").map(|l| l.task.status), Some(Status::Pending));
    assert!(e.live("F5").is_none(), "F5 is remembered: not submitted again");
    r.send(json!({"kind": "cancel", "task_id": "F1"}));
    e.step().unwrap();
    assert_eq!(remembered(&e), [true, false, false, true, true], "F1 is the newest now");
    drop(e);
    let e = r.engine_with(cfg);
    assert_eq!(remembered(&e), [true, false, false, true, true], "from the snapshot and what follows");
}

/// A finished task a live task still depends on is never forgotten, however many finish after
/// it: the dependent must find it finished when its other dependencies are done.
#[test]
fn a_finished_dependency_is_remembered_beyond_the_limit_while_a_task_waits_on_it() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = Config::default();
    cfg.broker.finished_keep_count = 2;
    let mut e = r.engine_with(cfg.clone());
    r.send(json!({"task_id": "DEP"}));
    r.send(json!({"task_id": "SLOW", "task_type": "slow"}));
    r.send(json!({"task_id": "AFTER", "depends_on": ["DEP", "SLOW"]}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "A");
    e.step().unwrap();
    r.send(json!({"kind": "complete", "agent": "A", "claim": claim, "result": {}}));
    e.step().unwrap();
    assert_eq!(e.state().finished("DEP").map(|f| f.status), Some(Status::Completed));
    for i in 0..5 {
        r.send(json!({"task_id": format!("X{i}")}));
        e.step().unwrap();
        r.send(json!({"kind": "cancel", "task_id": format!("X{i}")}));
        e.step().unwrap();
    }
    assert!(e.state().finished("DEP").is_some(), "AFTER still depends on it");
    assert!(e.state().finished("X0").is_none(), "the others are forgotten beyond the limit");
    drop(e);
    let mut e = r.engine_with(cfg);
    assert!(e.state().finished("DEP").is_some(), "and replay agrees");
    r.send(json!({"kind": "cancel", "task_id": "SLOW"}));
    e.step().unwrap();
    // Both dependencies are found finished: a cancelled one blocks it.
    assert_eq!(e.live("AFTER").map(|l| l.task.status), Some(Status::Blocked));
}

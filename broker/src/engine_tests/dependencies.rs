//! Dependency dead ends in the engine: a dependency that does not exist is shown and ends
//! BLOCKED after `missing_dependency_secs`, a cycle is refused when it would close, BLOCKED
//! cascades, and fixing the dependency (a retry, or the missing task turning up) unblocks.

use super::{Root, skewed};
use crate::config::Config;
use crate::engine::dependencies::waiting_note;
use protocol::Status;
use runtime_layout::RealFs;
use serde_json::json;
use std::sync::atomic::Ordering;

#[test]
fn a_missing_dependency_is_shown_then_blocks_and_blocks_its_dependents() {
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.dispatch.missing_dependency_secs = 100;
    let mut e = r.engine_with(cfg);
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "W", "depends_on": ["GHOST", "ALSO-GHOST"]}));
    r.send(json!({"task_id": "X", "depends_on": ["W"]}));
    e.step().unwrap();
    let w = &e.live("W").unwrap().task;
    assert_eq!(w.status, Status::Pending);
    assert_eq!(waiting_note(w).as_deref(), Some("waiting for unknown tasks GHOST, ALSO-GHOST"));
    assert_eq!(waiting_note(&e.live("X").unwrap().task), None, "X waits for a task that exists");
    // One of them turns up: the note follows, once; the wait for the other goes on.
    r.send(json!({"task_id": "ALSO-GHOST"}));
    skew.store(60, Ordering::SeqCst);
    e.step().unwrap();
    e.step().unwrap();
    let w = &e.live("W").unwrap().task;
    assert_eq!(waiting_note(w).as_deref(), Some("waiting for unknown task GHOST"));
    assert_eq!(w.history.iter().filter(|h| h.action == "waiting").count(), 2, "once per change");
    // Still missing after 100 s (counted from when it was first missed): BLOCKED, and X with it.
    skew.store(101, Ordering::SeqCst);
    e.step().unwrap();
    let w = &e.live("W").unwrap().task;
    assert_eq!(w.status, Status::Blocked);
    assert!(w.error.as_deref().unwrap().contains("`GHOST` does not exist"), "{:?}", w.error);
    assert_eq!(e.live("X").unwrap().task.status, Status::Blocked, "BLOCKED cascades");
    let t = crate::trace::trace(&RealFs, &r.layout, "W").unwrap().unwrap();
    let text = t.render();
    assert!(text.contains("waiting for unknown tasks GHOST, ALSO-GHOST") && text.contains("block"), "{text}");
    // The missing task is submitted at last: W and X wait again (for it to complete).
    r.send(json!({"task_id": "GHOST"}));
    e.step().unwrap();
    assert_eq!(e.live("W").unwrap().task.status, Status::Pending);
    assert_eq!(e.live("X").unwrap().task.status, Status::Pending);
    assert_eq!(waiting_note(&e.live("W").unwrap().task), None);
    skew.store(0, Ordering::SeqCst);
}

#[test]
fn a_cycle_is_refused_when_it_would_close_and_named() {
    let r = Root::new();
    let mut e = r.engine();
    r.send(json!({"task_id": "A", "depends_on": ["B"]}));
    r.send(json!({"task_id": "B", "depends_on": ["C"]}));
    e.step().unwrap();
    r.send(json!({"task_id": "C", "depends_on": ["A"]}));
    e.step().unwrap();
    assert!(e.live("C").is_none(), "the task that closes the cycle is refused");
    let t = crate::trace::trace(&RealFs, &r.layout, "C").unwrap().unwrap();
    let reject = t.steps.iter().find(|s| s.op == "reject").expect("the refusal is in C's trace");
    assert!(reject.reason.as_deref().unwrap().contains("C -> A -> B -> C"), "{:?}", reject.reason);
    r.send(json!({"task_id": "C"}));
    e.step().unwrap();
    assert_eq!(e.live("C").unwrap().task.status, Status::Pending, "the same id without the cycle is fine");
}

#[test]
fn blocked_cascades_transitively_and_a_retry_unblocks_the_chain() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    r.send(json!({"task_id": "root"}));
    for i in 1..=50 {
        let dep = if i == 1 { "root".to_string() } else { format!("c{}", i - 1) };
        r.send(json!({"task_id": format!("c{i}"), "depends_on": [dep]}));
    }
    r.send(json!({"task_id": "side", "depends_on": ["c25", "other"]}));
    r.send(json!({"task_id": "other"}));
    e.step().unwrap();
    r.send(json!({"kind": "cancel", "task_id": "root"}));
    e.step().unwrap();
    for i in 1..=50 {
        assert_eq!(e.live(&format!("c{i}")).unwrap().task.status, Status::Blocked, "c{i}");
    }
    assert_eq!(e.live("side").unwrap().task.status, Status::Blocked);
    r.send(json!({"kind": "retry", "task_id": "root"}));
    e.step().unwrap();
    for i in 1..=50 {
        assert_eq!(e.live(&format!("c{i}")).unwrap().task.status, Status::Pending, "c{i}");
    }
    assert_eq!(e.live("side").unwrap().task.status, Status::Pending);
    let h = &e.live("c50").unwrap().task.history;
    assert_eq!(h.iter().filter(|h| h.action == "unblock").count(), 1);
}

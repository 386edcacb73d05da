//! Priority aging in the engine: a queued task is renamed one level up per `aging_secs` it waits,
//! never above CRITICAL, each change in its history once; a claim made first stands, and the old
//! name is fenced like any former name.

use super::{Root, skewed};
use crate::config::Config;
use protocol::Status;
use serde_json::json;
use std::sync::atomic::Ordering;

fn ages(e: &crate::engine::Engine, id: &str) -> Vec<String> {
    e.live(id)
        .unwrap()
        .task
        .history
        .iter()
        .filter(|h| h.action == "age")
        .map(|h| h.details.as_ref().unwrap()["dispatched_as"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_waiting_task_rises_a_level_per_period_up_to_critical_once_per_change() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = Config::default();
    cfg.dispatch.aging_secs = 10;
    let mut e = r.engine_with(cfg);
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "L", "priority": "LOW"}));
    e.step().unwrap();
    let pool = r.layout.queue("default");
    let first = r.list(&pool.new_dir()).remove(0);
    assert!(first.starts_with("3-"), "{first}");
    let mut names = vec![first.clone()];
    for (secs, rank) in [(5, "3-"), (10, "2-"), (21, "1-"), (30, "0-"), (45, "0-"), (80, "0-")] {
        skew.store(secs, Ordering::SeqCst);
        e.step().unwrap();
        let now = r.list(&pool.new_dir());
        assert_eq!(now.len(), 1, "one file, under one name: {now:?}");
        assert!(now[0].starts_with(rank), "after {secs} s: {}", now[0]);
        assert!(r.list(&pool.tmp()).is_empty(), "nothing left in tmp/");
        if names.last() != Some(&now[0]) {
            names.push(now[0].clone());
        }
    }
    assert_eq!(names.len(), 4, "renamed once per level: {names:?}");
    assert_eq!(ages(&e, "L"), ["MEDIUM", "HIGH", "CRITICAL"], "each change in the history, once");
    let was: Vec<String> = e
        .live("L")
        .unwrap()
        .task
        .history
        .iter()
        .filter(|h| h.action == "age")
        .map(|h| h.details.as_ref().unwrap()["was"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(was, ["LOW", "MEDIUM", "HIGH"]);
    assert_eq!(e.live("L").unwrap().task.priority, protocol::Priority::Low, "its own priority stands");
    let t = crate::trace::trace(&runtime_layout::RealFs, &r.layout, "L").unwrap().unwrap();
    assert_eq!(t.steps.iter().filter(|s| s.op == "age").count(), 3, "{}", t.render());

    // The first name is a former name now: a report about it is stale.
    std::fs::write(r.layout.mailbox("A").cur().join(&first), b"{}").unwrap();
    r.send(json!({"kind": "complete", "agent": "A", "claim": first}));
    e.step().unwrap();
    assert_eq!(e.live("L").unwrap().task.status, Status::Pending);
    skew.store(0, Ordering::SeqCst);
}

#[test]
fn a_late_look_renames_once_and_says_from_which_level() {
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.dispatch.aging_secs = 10;
    let mut e = r.engine_with(cfg);
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "L", "priority": "LOW"}));
    e.step().unwrap();
    skew.store(25, Ordering::SeqCst);
    e.step().unwrap();
    let h: Vec<(String, String)> = e
        .live("L")
        .unwrap()
        .task
        .history
        .iter()
        .filter(|h| h.action == "age")
        .map(|h| {
            let d = h.details.as_ref().unwrap();
            (d["was"].as_str().unwrap().to_string(), d["dispatched_as"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(h, [("LOW".to_string(), "HIGH".to_string())]);
    assert!(r.list(&r.layout.queue("default").new_dir())[0].starts_with("1-"));
    skew.store(0, Ordering::SeqCst);
}

#[test]
fn a_claim_made_before_the_rename_stands_and_a_new_wait_starts_from_its_own_priority() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = Config::default();
    cfg.dispatch.aging_secs = 10;
    let mut e = r.engine_with(cfg);
    let (clock, skew) = skewed();
    e.set_clock(clock);
    r.send(json!({"task_id": "L", "priority": "LOW"}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    skew.store(25, Ordering::SeqCst);
    let claim = r.claim(&pool, "A");
    e.step().unwrap();
    assert_eq!(e.live("L").unwrap().task.status, Status::InProgress, "the claim stands");
    assert!(ages(&e, "L").is_empty());
    r.send(json!({"kind": "release", "agent": "A", "claim": claim}));
    e.step().unwrap();
    let again = r.list(&pool);
    assert!(again[0].starts_with("3-"), "a new wait starts from LOW: {again:?}");
    skew.store(0, Ordering::SeqCst);
}

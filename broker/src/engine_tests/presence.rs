//! Agent presence in the engine: last seen from claims, heartbeats (claim-file mtimes) and
//! messages; busy, idle and stale; and what survives a restart.

use super::{Root, skewed};
use crate::agents::Presence;
use crate::config::Config;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

fn state_of(e: &crate::engine::Engine, agent: &str) -> (Presence, Option<protocol::Timestamp>) {
    let all = e.agents().unwrap();
    let s = all.into_iter().find(|s| s.name == agent).unwrap();
    (s.state, s.last_seen)
}

#[test]
fn claims_heartbeats_and_messages_make_an_agent_seen_and_that_survives_a_restart() {
    let r = Root::new();
    for a in ["Worker", "Talker", "Silent"] {
        r.agent(a);
    }
    let mut cfg = Config::default();
    cfg.agents.stale_secs = 100;
    let mut e = r.engine_with(cfg.clone());
    let (clock, skew) = skewed();
    e.set_clock(clock.clone());
    r.send(json!({"task_id": "T"}));
    r.send(json!({"kind": "send", "from": "Talker", "to": "Worker", "body": "hi"}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("default").new_dir(), "Worker");
    e.step().unwrap();
    assert_eq!(state_of(&e, "Worker").0, Presence::Busy);
    assert_eq!(state_of(&e, "Talker").0, Presence::Idle);
    assert_eq!(state_of(&e, "Silent"), (Presence::Stale, None));

    // Time passes with no sign from anyone: everyone is stale, even with a claim held.
    skew.store(150, Ordering::SeqCst);
    assert_eq!(state_of(&e, "Worker").0, Presence::Stale);
    assert_eq!(state_of(&e, "Talker").0, Presence::Stale);
    // A heartbeat (a touch of the claim file) makes the worker busy again.
    let f = std::fs::File::options().write(true).open(r.layout.mailbox("Worker").cur().join(&claim)).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(150)).unwrap();
    let (state, seen) = state_of(&e, "Worker");
    assert_eq!(state, Presence::Busy);

    // A restart replays the journal: what the records showed is still known, and the heartbeat is
    // still in the claim file.
    let talker = state_of(&e, "Talker").1;
    drop(e);
    let mut e = r.engine_with(cfg);
    e.set_clock(clock);
    assert_eq!(state_of(&e, "Talker").1, talker);
    assert_eq!(state_of(&e, "Worker"), (Presence::Busy, seen));
    skew.store(0, Ordering::SeqCst);
}

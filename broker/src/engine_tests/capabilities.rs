//! Capability routing in the engine: a gated pool task carries its tag, the set is written for
//! agents to read, the SDK skips what its agent may not claim, and a raw rename by an agent that
//! lacks a capability is refused and put back under the same name.

use super::Root;
use crate::journal::Place;
use protocol::Status;
use protocol::capability::CapabilitySet;
use runtime_layout::{RealFs, read_capability_set};
use serde_json::{Value, json};
use std::sync::Arc;

fn sdk(r: &Root, name: &str) -> agent_sdk::Agent {
    agent_sdk::Agent::register_with(Arc::new(RealFs), r.layout.root(), name).unwrap()
}

#[test]
fn a_gated_task_is_claimed_only_by_an_agent_holding_every_capability() {
    let r = Root::new();
    let mut e = r.engine();
    let (able, unable) = (sdk(&r, "Able"), sdk(&r, "Unable"));
    able.set_capabilities(&["PYTHON", "web"]).unwrap();
    unable.set_capabilities(&["python"]).unwrap();
    r.send(json!({"task_id": "G", "task_type": "build", "required_capabilities": ["python", "Web"]}));
    r.send(json!({"task_id": "open", "task_type": "build", "priority": "LOW"}));
    e.step().unwrap();
    let pool = r.layout.queue("build").new_dir();
    let set = CapabilitySet::of(&["python".into(), "web".into()]).unwrap();
    let gated = r.list(&pool).into_iter().find(|n| n.ends_with(&format!(".caps-{}.json", set.tag))).unwrap();
    assert_eq!(read_capability_set(&RealFs, &r.layout, &set.tag).unwrap(), Some(set));

    // The SDK skips what its agent may not claim (here: the gated task first in order).
    let c = unable.claim(&[]).unwrap().expect("the ungated task");
    assert_eq!(c.task.task_id, "open");
    assert!(unable.claim(&[]).unwrap().is_none(), "nothing else it may claim");
    let c = able.claim(&[]).unwrap().expect("the gated task");
    assert_eq!((c.task.task_id.as_str(), c.name.as_str()), ("G", gated.as_str()));
    e.step().unwrap();
    assert_eq!(e.live("G").unwrap().task.status, Status::InProgress);
}

#[test]
fn a_raw_rename_by_an_agent_lacking_a_capability_is_put_back_with_a_notice() {
    let r = Root::new();
    r.agent("Raw");
    let mut e = r.engine();
    r.send(json!({"task_id": "G", "required_capabilities": ["gpu"]}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    let name = r.claim(&pool, "Raw");
    e.step().unwrap();
    assert_eq!(r.list(&pool), std::slice::from_ref(&name), "back in the pool under the same name");
    assert!(r.list(&r.layout.mailbox("Raw").cur()).is_empty());
    let live = e.live("G").unwrap();
    assert_eq!((live.task.status, live.task.attempts), (Status::Pending, 0), "no attempt counted");
    assert!(matches!(&live.place, Place::Queued { name: n, .. } if *n == name));
    let notices: Vec<Value> = r
        .list(&r.layout.mailbox("Raw").new_dir())
        .iter()
        .map(|n| {
            serde_json::from_slice(&std::fs::read(r.layout.mailbox("Raw").new_dir().join(n)).unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!((&notices[0]["notice"], &notices[0]["task_id"]), (&json!("refused"), &json!("G")));
    assert!(notices[0]["reason"].as_str().unwrap().contains("gpu"), "{}", notices[0]);
    let t = crate::trace::trace(&RealFs, &r.layout, "G").unwrap().unwrap();
    assert!(t.steps.iter().any(|s| s.op == "refuse" && s.actor.as_deref() == Some("Raw")), "{}", t.render());

    // A report sent at once, before the broker saw the rename, is refused too, and the file put back.
    let name = r.claim(&pool, "Raw");
    r.send(json!({"kind": "complete", "agent": "Raw", "claim": name}));
    e.step().unwrap();
    assert_eq!(r.list(&pool), [name]);
    assert_eq!(e.live("G").unwrap().task.status, Status::Pending);

    // Once it declares the capability, the same rename is a claim.
    sdk(&r, "Raw").set_capabilities(&["GPU"]).unwrap();
    r.claim(&pool, "Raw");
    e.step().unwrap();
    assert_eq!(e.live("G").unwrap().task.status, Status::InProgress);
}

#[test]
fn a_task_addressed_to_one_agent_is_not_gated() {
    let r = Root::new();
    let mut e = r.engine();
    let a = sdk(&r, "A");
    r.send(json!({"task_id": "mine", "assigned_to": "A", "required_capabilities": ["gpu"]}));
    e.step().unwrap();
    let c = a.claim(&[]).unwrap().expect("its own task");
    assert!(!c.name.contains(".caps-"), "{}", c.name);
}

#[test]
fn a_file_planted_at_a_claimed_tasks_queued_name_is_moved_aside_and_costs_no_claim() {
    let r = Root::new();
    r.agent("Raw");
    let mut e = r.engine();
    r.send(json!({"task_id": "G", "required_capabilities": ["gpu"]}));
    e.step().unwrap();
    let pool = r.layout.queue("default").new_dir();
    let own = std::fs::read(pool.join(&r.list(&pool)[0])).unwrap();
    let name = r.claim(&pool, "Raw");
    // Someone puts another file at the name before the broker puts the claim back.
    std::fs::write(pool.join(&name), br#"{"task_id": "G", "description": "forged"}"#).unwrap();
    e.step().unwrap();
    assert_eq!(std::fs::read(pool.join(&name)).unwrap(), own, "the claim went back, not the planted file");
    let aside: Vec<String> =
        r.list(&pool).into_iter().filter(|n| n.starts_with(&format!("{name}.displaced-"))).collect();
    assert_eq!(aside.len(), 1, "{:?}", r.list(&pool));
    assert!(std::fs::read_to_string(pool.join(&aside[0])).unwrap().contains("forged"));
    assert!(r.list(&r.layout.mailbox("Raw").cur()).is_empty());

    // An ordinary claim stands the same way: the planted file is not taken for the task.
    r.send(json!({"task_id": "P", "task_type": "plain"}));
    e.step().unwrap();
    let plain = r.layout.queue("plain").new_dir();
    let name = r.claim(&plain, "Raw");
    std::fs::write(plain.join(&name), b"planted").unwrap();
    e.step().unwrap();
    let live = e.live("P").unwrap();
    assert!(matches!(&live.place, Place::Held { agent, .. } if agent == "Raw"), "{:?}", live.place);
    assert!(
        r.list(&plain).iter().all(|n| n.starts_with(&format!("{name}.displaced-"))),
        "{:?}",
        r.list(&plain)
    );
}

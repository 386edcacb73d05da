//! Offers ([`Command::Await`]): agents waiting on the socket are named task files after a pass's
//! commit, one file per agent, the best first, in the order they asked; a file named to one is
//! kept from the others for a moment; nothing is named that an agent may not claim; at its
//! deadline an agent hears that nothing came.

use super::Root;
use crate::engine::Look;
use crate::engine::commands::{Command, Offer};
use protocol::capability::CapabilitySet;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

fn waits(agent: &str, pools: &[&str], wait: Duration) -> (Command, oneshot::Receiver<Offer>) {
    let (reply, answer) = oneshot::channel();
    let pools = pools.iter().map(|p| p.to_string()).collect();
    (Command::Await { agent: agent.into(), pools, deadline: Instant::now() + wait, reply }, answer)
}

fn offered(answer: &mut oneshot::Receiver<Offer>) -> Option<String> {
    match answer.try_recv() {
        Ok(Offer::Offered { maildir, name }) => Some(format!("{maildir}/{name}")),
        Ok(Offer::Nothing) => Some("nothing".into()),
        Err(_) => None,
    }
}

#[test]
fn waiting_agents_are_named_the_best_files_one_each_in_the_order_they_asked() {
    let r = Root::new();
    for a in ["A", "B", "C", "D"] {
        r.agent(a);
    }
    let mut e = r.engine();
    r.send(json!({"task_id": "low", "task_type": "work", "priority": "LOW"}));
    r.send(json!({"task_id": "urgent", "task_type": "work", "priority": "CRITICAL"}));
    e.step().unwrap();
    let files = r.list(&r.layout.queue("work").new_dir());
    assert_eq!(files.len(), 2);
    assert!(files[0].starts_with("0-") && files[1].starts_with("3-"), "{files:?}");

    let long = Duration::from_secs(30);
    let (a, mut to_a) = waits("A", &["work"], long);
    let (b, mut to_b) = waits("B", &["work"], long);
    let (c, mut to_c) = waits("C", &[], long);
    e.take([a, b, c]);
    assert_eq!(offered(&mut to_a), None, "answered after a pass's commit, not when asked");
    assert!(e.wake_at().is_some());
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(
        offered(&mut to_a),
        Some(format!("queues/work/{}", files[0])),
        "the first to ask, the best file"
    );
    assert_eq!(offered(&mut to_b), Some(format!("queues/work/{}", files[1])));
    assert_eq!(offered(&mut to_c), None, "both files are named already: C waits");

    // A file that lands is named to the agent waiting; one for an agent only to that agent.
    r.send(json!({"task_id": "mine", "task_type": "work", "assigned_to": "D"}));
    let (d, mut to_d) = waits("D", &["other"], long);
    e.take([d]);
    e.step().unwrap();
    let mine = r.list(&r.layout.mailbox("D").new_dir()).into_iter().find(|n| n.contains("mine")).unwrap();
    assert_eq!(offered(&mut to_d), Some(format!("mailboxes/D/{mine}")));
    // C is never named D's own task; A's file, never claimed, once the hold is over (which a
    // slow pass may already have seen).
    let mut to_c_now = offered(&mut to_c);
    if to_c_now.is_none() {
        std::thread::sleep(crate::engine::offers::HOLD + Duration::from_millis(20));
        e.step_looking(Look::QUIET).unwrap();
        to_c_now = offered(&mut to_c);
    }
    assert_eq!(to_c_now, Some(format!("queues/work/{}", files[0])));
    assert_eq!(e.wake_at(), None, "nobody waits");

    // A file an agent claimed since the broker last looked is not named: it is looked at first.
    let (b, mut to_b) = waits("B", &["work"], long);
    std::fs::rename(
        r.layout.queue("work").new_dir().join(&files[0]),
        r.layout.mailbox("B").cur().join(&files[0]),
    )
    .unwrap();
    std::thread::sleep(crate::engine::offers::HOLD + Duration::from_millis(20));
    e.take([b]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_b), Some(format!("queues/work/{}", files[1])), "the one left");
}

#[test]
fn nothing_is_named_that_an_agent_may_not_claim_and_the_deadline_is_answered() {
    let r = Root::new();
    let mut e = r.engine();
    let gpu =
        agent_sdk::Agent::register_with(Arc::new(runtime_layout::RealFs), r.layout.root(), "Gpu").unwrap();
    gpu.set_capabilities(&["gpu"]).unwrap();
    r.agent("Plain");
    r.send(json!({"task_id": "G", "task_type": "render", "required_capabilities": ["GPU"]}));
    e.step().unwrap();
    let tag = CapabilitySet::of(&["gpu".into()]).unwrap().tag;
    let gated = r.list(&r.layout.queue("render").new_dir()).pop().unwrap();
    assert!(gated.ends_with(&format!(".caps-{tag}.json")), "{gated}");

    let (plain, mut to_plain) = waits("Plain", &["render"], Duration::from_secs(1));
    e.take([plain]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_plain), None, "waits: the only file is not one it may claim");
    let due = e.wake_at().expect("a deadline to wake at");
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_plain), Some("nothing".into()));

    let (able, mut to_able) = waits("Gpu", &["render"], Duration::from_secs(30));
    e.take([able]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_able), Some(format!("queues/render/{gated}")));
}

//! Offers ([`Command::Await`]): agents waiting on the socket are named task files after a pass's
//! commit, one file per agent, the best first, in the order they asked; a file named to one is
//! kept from the others for a moment; nothing is named that an agent may not claim; at its
//! deadline an agent hears that nothing came. Agents that ask for a claim get one: the file
//! moved into their `cur/` by the broker and the claim journaled.

use super::Root;
use crate::engine::commands::{Command, Offer, Report};
use crate::engine::{Engine, Look};
use crate::journal::Place;
use protocol::capability::CapabilitySet;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

fn waits(agent: &str, pools: &[&str], wait: Duration) -> (Command, oneshot::Receiver<Offer>) {
    asks(agent, pools, wait, false)
}

fn asks(agent: &str, pools: &[&str], wait: Duration, claim: bool) -> (Command, oneshot::Receiver<Offer>) {
    let (reply, answer) = oneshot::channel();
    let pools = pools.iter().map(|p| p.to_string()).collect();
    (
        Command::Await {
            agent: agent.into(),
            pools,
            deadline: Instant::now() + wait,
            claim,
            after: None,
            reply,
        },
        answer,
    )
}

/// `agent` asks for a claim with its report on `claim` (a completion) in the same request.
fn reports_and_asks(agent: &str, claim: &str, n: &str) -> (Command, oneshot::Receiver<Offer>) {
    let (reply, answer) = oneshot::channel();
    let msg =
        protocol::Message::Complete { agent: agent.into(), claim: claim.into(), result: json!({"ok": 1}) };
    let after = Some(Report { name: format!("msg-{n}.x.json"), msg, file_waits: Some(false) });
    let deadline = Instant::now() + Duration::from_secs(30);
    (
        Command::Await {
            agent: agent.into(),
            pools: vec!["work".into()],
            deadline,
            claim: true,
            after,
            reply,
        },
        answer,
    )
}

fn offered(answer: &mut oneshot::Receiver<Offer>) -> Option<String> {
    match answer.try_recv() {
        Ok(Offer::Offered { maildir, name }) => Some(format!("{maildir}/{name}")),
        Ok(Offer::Claimed { maildir, name }) => Some(format!("claimed {maildir}/{name}")),
        Ok(Offer::Nothing) => Some("nothing".into()),
        Ok(Offer::Refused { field, .. }) => Some(format!("refused {field}")),
        Err(_) => None,
    }
}

/// Agents `Gpu` (declaring `gpu`) and `Plain`, and task `G` queued in pool `render`, requiring
/// `GPU`: its file's name.
fn gated_task(r: &Root, e: &mut Engine) -> String {
    let gpu =
        agent_sdk::Agent::register_with(Arc::new(runtime_layout::RealFs), r.layout.root(), "Gpu").unwrap();
    gpu.set_capabilities(&["gpu"]).unwrap();
    r.agent("Plain");
    r.send(json!({"task_id": "G", "task_type": "render", "required_capabilities": ["GPU"]}));
    e.step().unwrap();
    r.list(&r.layout.queue("render").new_dir()).pop().unwrap()
}

/// The agent holding task `id`, if one does.
fn holder(e: &Engine, id: &str) -> Option<String> {
    match e.live(id).map(|l| &l.place) {
        Some(Place::Held { agent, .. }) => Some(agent.clone()),
        _ => None,
    }
}

#[test]
fn agents_that_ask_for_a_claim_hold_the_best_files_and_the_claims_are_journaled() {
    let r = Root::new();
    for a in ["A", "B", "C", "L"] {
        r.agent(a);
    }
    let mut e = r.engine();
    for (id, prio) in [("low", "LOW"), ("urgent", "CRITICAL"), ("mid", "MEDIUM")] {
        r.send(json!({"task_id": id, "task_type": "work", "priority": prio}));
    }
    e.step().unwrap();
    let pool = r.layout.queue("work").new_dir();
    let files = r.list(&pool);
    assert_eq!(files.len(), 3);
    // The best file, claimed by an agent listing the pool since the broker last looked: the
    // broker's rename finds it gone, and moves on.
    std::fs::rename(pool.join(&files[0]), r.layout.mailbox("L").cur().join(&files[0])).unwrap();

    let long = Duration::from_secs(30);
    let (a, mut to_a) = asks("A", &["work"], long, true);
    let (b, mut to_b) = asks("B", &["work"], long, true);
    let (c, mut to_c) = asks("C", &["work"], long, true);
    e.take([a, b, c]);
    assert_eq!(offered(&mut to_a), None, "answered after a pass's commit, not when asked");
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_a), Some(format!("claimed queues/work/{}", files[1])));
    assert_eq!(offered(&mut to_b), Some(format!("claimed queues/work/{}", files[2])));
    assert_eq!(offered(&mut to_c), None, "nothing left: C waits");
    // Each file moved by the broker into its agent's `cur/`, and held there.
    for (agent, name) in [("A", &files[1]), ("B", &files[2])] {
        assert!(r.layout.mailbox(agent).cur().join(name).is_file(), "{name} in {agent}'s cur/");
        assert!(!pool.join(name).exists());
    }
    assert_eq!((holder(&e, "mid").as_deref(), holder(&e, "low").as_deref()), (Some("A"), Some("B")));
    // Journaled: a broker started anew from the journal knows who holds what.
    e.step_looking(Look::QUIET).unwrap();
    drop(e);
    let mut e = r.engine();
    assert_eq!((holder(&e, "mid").as_deref(), holder(&e, "low").as_deref()), (Some("A"), Some("B")));
    assert_eq!(holder(&e, "urgent").as_deref(), Some("L"), "the listing agent's claim, observed");

    // An agent that hung up before its answer: nothing is claimed for it.
    r.send(json!({"task_id": "late", "task_type": "work"}));
    e.step().unwrap();
    let late = r.list(&pool).pop().expect("late queued");
    let (c, to_c) = asks("C", &["work"], long, true);
    e.take([c]);
    drop(to_c);
    e.step_looking(Look::QUIET).unwrap();
    assert!(pool.join(&late).is_file(), "still queued");
    assert_eq!(holder(&e, "late"), None);
}

#[test]
fn a_claim_is_made_only_for_an_agent_that_may_hold_it() {
    let r = Root::new();
    let mut e = r.engine();
    let gated = gated_task(&r, &mut e);

    let (plain, mut to_plain) = asks("Plain", &["render"], Duration::from_secs(30), true);
    e.take([plain]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_plain), None, "waits: the only file is not one it may claim");
    assert_eq!(holder(&e, "G"), None);
    let (able, mut to_able) = asks("Gpu", &["render"], Duration::from_secs(30), true);
    e.take([able]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_able), Some(format!("claimed queues/render/{gated}")));
    assert_eq!(holder(&e, "G").as_deref(), Some("Gpu"));
}

#[test]
fn a_claim_is_made_only_into_a_cur_that_takes_it_and_only_of_the_dispatched_file() {
    let r = Root::new();
    let mut e = r.engine();
    r.agent("Plain");
    r.send(json!({"task_id": "P", "task_type": "plain"}));
    e.step().unwrap();
    let pool = r.layout.queue("plain").new_dir();
    let plain_file = r.list(&pool).pop().unwrap();
    // An agent whose `cur/` is gone: answered at once that nothing came, and the file stays.
    std::fs::remove_dir(r.layout.mailbox("Plain").cur()).unwrap();
    let (plain, mut to_plain) = asks("Plain", &["plain"], Duration::from_secs(30), true);
    e.take([plain]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_plain), Some("nothing".into()), "no cur/ to take it");
    assert!(pool.join(&plain_file).is_file());
    assert_eq!(holder(&e, "P"), None);
    // A queued file rewritten in place is never claimed under the broker's name: set aside, the
    // task queued again under a new name, and that one claimed.
    std::fs::create_dir(r.layout.mailbox("Plain").cur()).unwrap();
    std::fs::write(pool.join(&plain_file), br#"{"task_id":"P","evil":1}"#).unwrap();
    let (plain, mut to_plain) = asks("Plain", &["plain"], Duration::from_secs(30), true);
    e.take([plain]);
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(offered(&mut to_plain), None, "the rewritten file is not handed out");
    assert_eq!(holder(&e, "P"), None);
    e.step_looking(Look::QUIET).unwrap();
    assert!(!r.layout.mailbox("Plain").cur().join(&plain_file).exists(), "set aside");
    let quarantined = r.list(&r.layout.quarantine_dir());
    assert!(quarantined.iter().any(|q| q.contains(&plain_file)), "{quarantined:?}");
    // The next pass writes the new file and claims it for the agent still waiting.
    let answer = offered(&mut to_plain).expect("answered by the pass that wrote the new file");
    let again = answer.strip_prefix("claimed queues/plain/").expect(&answer).to_string();
    assert_ne!(again, plain_file, "under a new name");
    assert_eq!(holder(&e, "P").as_deref(), Some("Plain"));
    let held = std::fs::read(r.layout.mailbox("Plain").cur().join(&again)).unwrap();
    assert!(!String::from_utf8_lossy(&held).contains("evil"), "the broker's own bytes");
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
    let gated = gated_task(&r, &mut e);
    let tag = CapabilitySet::of(&["gpu".into()]).unwrap().tag;
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

#[test]
fn a_report_sent_with_an_await_is_journaled_before_the_wait_begins_and_a_refused_one_is_the_answer() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    for id in ["one", "two"] {
        r.send(json!({"task_id": id, "task_type": "work"}));
    }
    e.step().unwrap();
    let (ask, mut to_a) = asks("A", &["work"], Duration::from_secs(30), true);
    e.take([ask]);
    e.step_looking(Look::QUIET).unwrap();
    let first = offered(&mut to_a).expect("a claim").rsplit('/').next().unwrap().to_string();
    assert_eq!(holder(&e, "one").as_deref(), Some("A"));

    // The completion of `one` and the ask for the next claim, in one request.
    let (ask, mut to_a) = reports_and_asks("A", &first, "1");
    e.take([ask]);
    assert_eq!(offered(&mut to_a), None, "answered once the report is journaled, not before");
    e.step_looking(Look::QUIET).unwrap();
    let second = offered(&mut to_a).expect("answered in the pass that journaled the report");
    assert!(second.starts_with("claimed queues/work/"), "{second}");
    assert!(e.live("one").is_none(), "one finished");
    assert_eq!(holder(&e, "two").as_deref(), Some("A"));
    e.step_looking(Look::QUIET).unwrap();
    drop(e);
    let mut e = r.engine();
    assert!(e.live("one").is_none(), "the report is in the journal");
    assert_eq!(holder(&e, "two").as_deref(), Some("A"), "and so is the claim made after it");

    // A report the broker refuses (`one` is not held any more): the refusal is the answer, and
    // nothing is claimed for the agent though a task waits.
    r.send(json!({"task_id": "three", "task_type": "work"}));
    e.step().unwrap();
    let (ask, mut to_a) = reports_and_asks("A", &first, "2");
    e.take([ask]);
    e.step_looking(Look::QUIET).unwrap();
    let answer = offered(&mut to_a).expect("answered");
    assert!(answer.starts_with("refused "), "{answer}");
    assert_eq!(holder(&e, "three"), None, "nothing awaited after a refused report");
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(holder(&e, "three"), None);
}

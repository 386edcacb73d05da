//! What a pass reads: the claims it looks for where events said they arrived, and the inbox's
//! backlog, listed once and taken a batch per pass in the order its clients wrote it.

use super::Root;
use crate::config::Config;
use crate::engine::Engine;
use crate::journal::Place;
use protocol::{Status, Timestamp};
use runtime_layout::{Clock, Durability, NameSource, RealFs, deliver};
use serde_json::{Value, json};
use std::sync::Arc;

#[test]
fn a_pass_woken_by_a_claim_lists_the_claimant_s_cur_alone() {
    use crate::engine::{Claims, Look};
    let r = Root::new();
    for a in ["A", "B"] {
        r.agent(a);
    }
    let mut e = r.engine();
    r.send(json!({"task_id": "T", "task_type": "tools"}));
    e.step().unwrap();
    let claim = r.claim(&r.layout.queue("tools").new_dir(), "A");
    let held =
        |e: &Engine| matches!(e.live("T").map(|l| &l.place), Some(Place::Held { agent, .. }) if agent == "A");
    let look = |names: &[&str]| Look {
        claims: Claims::Of(names.iter().map(|n| n.to_string()).collect()),
        ..Look::INBOX
    };
    // Told to look at B's cur/ only (and at the inbox): A's claim is not seen...
    e.step_looking(look(&["B"])).unwrap();
    assert!(!held(&e));
    // ...nor by a pass woken by a message alone...
    e.step_looking(Look::INBOX).unwrap();
    assert!(!held(&e));
    // ...and at A's: it is.
    e.step_looking(look(&["A"])).unwrap();
    assert!(held(&e), "{claim} claimed by A");
    // A directory whose name is not an agent's is looked at like any mailbox, and nothing found
    // there is adopted: the task is queued again under a new name.
    r.send(json!({"task_id": "T2", "task_type": "tools"}));
    e.step().unwrap();
    let stray = r.layout.mailboxes_dir().join("no such agent").join("cur");
    std::fs::create_dir_all(&stray).unwrap();
    let name = r.list(&r.layout.queue("tools").new_dir()).pop().expect("T2 queued");
    std::fs::rename(r.layout.queue("tools").new_dir().join(&name), stray.join(&name)).unwrap();
    e.step_looking(look(&["no such agent"])).unwrap();
    match e.live("T2").map(|l| &l.place) {
        Some(Place::Queued { name: again, .. }) => assert_ne!(*again, name, "queued again, renamed"),
        other => panic!("T2 is {other:?}"),
    }
    assert!(held(&e));
}

#[test]
fn a_backlog_is_listed_once_and_taken_a_batch_per_pass_in_name_order() {
    use crate::engine::Look;
    use runtime_layout::{Fs, RootFs};
    let r = Root::new();
    let fs: Arc<dyn Fs> = Arc::new(RootFs::open(r.layout.root()).unwrap());
    let mut cfg = Config::default();
    cfg.broker.batch_size = 4;
    let mut e = Engine::open(fs.clone(), r.layout.clone(), cfg).unwrap();
    e.reconcile().unwrap();
    e.step().unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("B-{i:02}")).collect();
    for id in &ids {
        r.send(json!({"task_id": id}));
    }
    let lists = || fs.counts().expect("a RootFs counts").lists;
    let before = lists();
    let mut passes = 0;
    loop {
        passes += 1;
        let report = e.step_looking(Look::INBOX).unwrap();
        if passes == 3 {
            // One arriving while the backlog drains is taken after it, by a pass that lists.
            r.send(json!({"task_id": "LATE"}));
        }
        if !report.more {
            break;
        }
        assert!(passes < 40, "the backlog never drained");
    }
    // Ten passes of four (the tenth, taken from the backlog, asks for more), then one that lists
    // again and takes the late one.
    assert_eq!(passes, 11);
    // Before: every pass listed the whole inbox (11 listings here, each of up to 41 names).
    assert!(lists() - before <= 3, "{} listings for {passes} passes", lists() - before);
    let mut submits = Vec::new();
    let mut notes = crate::journal::Notes::default();
    for seg in crate::journal::all_segments(fs.as_ref(), &r.layout.journal_dir()).unwrap() {
        let submitted = |rec: crate::journal::Record, _: usize, _: &mut crate::journal::Notes| {
            if let crate::journal::Entry::Submit(a) = rec.entry {
                submits.push(a.task_id);
            }
        };
        crate::journal::read_segment(fs.as_ref(), &seg, submitted, &mut notes).unwrap();
    }
    let mut expected = ids.clone();
    expected.push("LATE".into());
    assert_eq!(submits, expected, "journaled in the order the messages were named");
}

#[test]
fn a_message_listed_ahead_of_one_its_client_wrote_first_is_not_kept_for_later_passes() {
    // A listing of a large inbox can miss a message renamed in while it runs and catch a later
    // one: here the cancel (named second) is listed with the backlog and the submit it follows
    // (named first) arrives only after the listing. Both were named after the listing began.
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.broker.batch_size = 2;
    let mut e = r.engine_with(cfg);
    for i in 0..4 {
        r.send(json!({"task_id": format!("OLD-{i}")}));
    }
    let later = NameSource::with_clock(Clock::from_fn(|| {
        Timestamp::from_micros(runtime_layout::now().as_micros() + 5_000_000)
    }));
    let (submit, cancel) = (later.next("msg"), later.next("msg"));
    let inbox = r.layout.broker_inbox();
    let put = |name: &str, v: Value| {
        deliver(&RealFs, &inbox, name, v.to_string().as_bytes(), Durability::Never).unwrap();
    };
    put(&cancel, json!({"kind": "cancel", "task_id": "X"}));
    assert!(e.step().unwrap().more);
    put(&submit, json!({"kind": "submit", "task": {"task_id": "X"}}));
    while e.step().unwrap().more {}
    // Taken in the order they were named: the submit, then the cancel (kept for a later pass,
    // the cancel came first and was refused: "no task `X`").
    let t = crate::trace::trace(&RealFs, &r.layout, "X").unwrap().expect("X was submitted");
    assert_eq!(t.status, Some(Status::Cancelled), "{}", t.render());
}

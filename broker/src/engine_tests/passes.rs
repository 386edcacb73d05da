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
fn claims_the_events_named_are_looked_at_without_listing_any_cur() {
    use crate::engine::{Claims, Look};
    use runtime_layout::{Fs, RootFs};
    let r = Root::new();
    for a in ["A", "B"] {
        r.agent(a);
    }
    let fs: Arc<dyn Fs> = Arc::new(RootFs::open(r.layout.root()).unwrap());
    let mut e = Engine::open(fs.clone(), r.layout.clone(), Config::default()).unwrap();
    e.reconcile().unwrap();
    for id in ["T1", "T2"] {
        r.send(json!({"task_id": id, "task_type": "tools"}));
    }
    e.step().unwrap();
    let pool = r.layout.queue("tools").new_dir();
    let first = r.claim(&pool, "A");
    let named = |f: &[(&str, &str)]| Look {
        claims: Claims::Files(f.iter().map(|(a, n)| (a.to_string(), n.to_string())).collect()),
        ..Look::QUIET
    };
    let lists = || fs.counts().expect("a RootFs counts").lists;
    let holder = |e: &Engine, id: &str| match e.live(id).map(|l| &l.place) {
        Some(Place::Held { agent, .. }) => Some(agent.clone()),
        _ => None,
    };
    // Named under the wrong agent, then a name no task has: nothing adopted, nothing listed.
    let before = lists();
    e.step_looking(named(&[("B", first.as_str()), ("A", "no-such-task.json")])).unwrap();
    assert_eq!(holder(&e, "T1").or(holder(&e, "T2")), None);
    // Named where it is: adopted, and still no listing.
    e.step_looking(named(&[("A", first.as_str())])).unwrap();
    let id = if holder(&e, "T1").is_some() { "T1" } else { "T2" };
    assert_eq!(holder(&e, id).as_deref(), Some("A"), "{first} claimed by A");
    assert_eq!(lists(), before, "no cur/ listed");
    // Named again once adopted (the event read twice): no change.
    e.step_looking(named(&[("A", first.as_str())])).unwrap();
    assert_eq!(holder(&e, id).as_deref(), Some("A"));
    // A `cur/` made a link to a directory outside the root: a claim named there is not looked at.
    let outside = tempfile::tempdir().unwrap();
    let second = r.list(&pool).pop().expect("the other task queued");
    std::fs::rename(r.layout.mailbox("B").cur(), r.layout.mailbox("B").root.join("cur.moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.layout.mailbox("B").cur()).unwrap();
    std::fs::rename(pool.join(&second), outside.path().join(&second)).unwrap();
    e.step_looking(named(&[("B", second.as_str())])).unwrap();
    let other = if id == "T1" { "T2" } else { "T1" };
    assert_eq!(holder(&e, other), None, "a claim beyond a link is no claim");
    assert!(outside.path().join(&second).exists(), "and nothing outside the root is touched");
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

#[test]
fn messages_the_events_named_are_read_without_listing_once_the_inbox_caught_up() {
    use crate::engine::{Arrivals, Look};
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.broker.batch_size = 3;
    let mut e = r.engine_with(cfg);
    let named = |names: &[&String]| Look {
        inbox: Arrivals::Named(names.iter().map(|n| n.to_string()).collect()),
        ..Look::QUIET
    };
    let queued = |e: &Engine, id: &str| e.live(id).is_some();

    // Right after the start the inbox is listed, whatever the events say.
    let early = r.send(json!({"task_id": "EARLY"}));
    e.step_looking(named(&[])).unwrap();
    assert!(queued(&e, "EARLY"), "{early} taken by the first pass's listing");

    // Caught up: a pass reads what the events name, in name order, and does not list the inbox:
    // a message they do not name waits (for a listing), and a name whose file is gone costs
    // nothing.
    let a = r.send(json!({"task_id": "A"}));
    let unnamed = r.send(json!({"task_id": "UNNAMED"}));
    let b = r.send(json!({"task_id": "B"}));
    let gone = "msg-gone.json".to_string();
    e.step_looking(named(&[&b, &gone, &a])).unwrap();
    assert!(queued(&e, "A") && queued(&e, "B"));
    assert!(!queued(&e, "UNNAMED"), "{unnamed} is not read: nothing named it");
    e.step_looking(Look::INBOX).unwrap();
    assert!(queued(&e, "UNNAMED"), "a listing finds it");
    // Named in any order, they are handled in name order, as a listing's: the cancel its client
    // wrote after the submit is handled after it.
    let submit = r.send(json!({"task_id": "ORD"}));
    let cancel = r.send(json!({"kind": "cancel", "task_id": "ORD"}));
    e.step_looking(named(&[&cancel, &submit])).unwrap();
    assert!(!queued(&e, "ORD"), "submitted, then cancelled");
    assert_eq!(r.list(&r.layout.quarantine_dir()), Vec::<String>::new(), "nothing refused");

    // More names than a batch: listed (and taken a batch at a time). While a backlog lasts, and
    // in the pass after it, the inbox is listed again whatever the events say.
    let four: Vec<String> =
        ["C1", "C2", "C3", "C4"].iter().map(|id| r.send(json!({"task_id": id}))).collect();
    let late = r.send(json!({"task_id": "LATE"}));
    let report = e.step_looking(named(&four.iter().collect::<Vec<_>>())).unwrap();
    assert!(report.more && ["C1", "C2", "C3"].iter().all(|id| queued(&e, id)), "listed: three taken");
    assert!(!queued(&e, "C4") && !queued(&e, "LATE"), "{late} and one more left");
    let report = e.step_looking(named(&[])).unwrap();
    assert!(report.more && queued(&e, "C4") && queued(&e, "LATE"), "the backlog taken");
    let last = r.send(json!({"task_id": "LAST"}));
    e.step_looking(named(&[])).unwrap();
    assert!(queued(&e, "LAST"), "{last} found by the listing that follows a backlog");
}

#[test]
fn a_batch_of_submits_looks_at_its_pool_once_and_a_pool_made_a_link_is_refused_after_it() {
    use runtime_layout::{Fs, RootFs};
    let r = Root::new();
    let fs: Arc<dyn Fs> = Arc::new(RootFs::open(r.layout.root()).unwrap());
    let mut e = Engine::open(fs.clone(), r.layout.clone(), Config::default()).unwrap();
    e.reconcile().unwrap();
    e.step().unwrap();
    let stats = || fs.counts().expect("a RootFs counts").stats;
    // The stats a batch of `n` submits to one pool costs.
    let mut batch = |tag: &str, n: usize| {
        for i in 0..n {
            r.send(json!({"task_id": format!("{tag}-{i}"), "task_type": "tools"}));
        }
        let before = stats();
        e.step().unwrap();
        assert!((0..n).all(|i| e.live(&format!("{tag}-{i}")).is_some()), "{tag}: all queued");
        stats() - before
    };
    let one = batch("ONE", 1);
    let sixty = batch("SIXTY", 60);
    // Three lookups per submit before (the pool's tmp/, new/ and cur/): 177 more for 59 more.
    // Now under one per submit, with room for a pass's own looks (a board rewrite's, say).
    assert!(sixty < one + 59, "{one} stats for one submit, {sixty} for sixty");

    // Remembered until the commit only: the next pass finds the pool made a link, and refuses.
    let outside = tempfile::tempdir().unwrap();
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir(outside.path().join(d)).unwrap();
    }
    let pool = r.layout.queue("tools").root;
    std::fs::rename(&pool, r.layout.queues_dir().join("tools-was")).unwrap();
    std::os::unix::fs::symlink(outside.path(), &pool).unwrap();
    let msg = r.send(json!({"task_id": "AFTER", "task_type": "tools"}));
    e.step().unwrap();
    assert!(e.live("AFTER").is_none(), "refused");
    assert!(
        r.list(&r.layout.quarantine_dir()).iter().any(|q| q.ends_with(&format!("{msg}.error.json"))),
        "{msg} quarantined with its reason"
    );
    for d in ["tmp", "new", "cur"] {
        assert!(r.list(&outside.path().join(d)).is_empty(), "nothing written outside the root");
    }
}

#[test]
fn a_socket_where_a_message_or_a_board_belongs_is_refused_not_fatal() {
    use crate::engine::{Arrivals, Look};
    use runtime_layout::Board;
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.ingest.absorb_board_edits = true;
    cfg.broker.settle_ms = 0;
    let mut e = r.engine_with(cfg);
    e.step().unwrap();
    // Caught up, a pass reads what the events name without listing: a socket there cannot even
    // be opened (ENXIO), and it stopped the broker.
    let inbox_new = r.layout.broker_inbox().new_dir();
    let _in_inbox = std::os::unix::net::UnixListener::bind(inbox_new.join("socket.json")).unwrap();
    let named = Look { inbox: Arrivals::Named(vec!["socket.json".into()]), ..Look::QUIET };
    e.step_looking(named).expect("a socket in the inbox is input to refuse, not a failure");
    let q = r.list(&r.layout.quarantine_dir());
    let reason = q.iter().find(|n| n.ends_with("socket.json.error.json")).expect("quarantined");
    let why: Value =
        serde_json::from_slice(&std::fs::read(r.layout.quarantine_dir().join(reason)).unwrap()).unwrap();
    assert!(why["reason"].as_str().unwrap().contains("socket"), "{why}");
    // A board made a socket: an edit to look at, and nothing to absorb from it.
    let board = r.layout.board(Board::Working);
    std::fs::remove_file(&board).unwrap();
    let _at_board = std::os::unix::net::UnixListener::bind(&board).unwrap();
    for _ in 0..3 {
        e.step_looking(Look::EVERYWHERE).expect("a socket where a board was is not a failure");
    }
    r.send(json!({"task_id": "AFTER"}));
    e.step().unwrap();
    assert!(e.live("AFTER").is_some(), "still serving");
}

/// A pool's maildir is made (and looked at) once a tick, not at every pass: a pool removed in
/// between is made again by the delivery that finds it gone, which delivers once more. On both
/// filesystems the broker may run on (resolved beneath the root, or by path), whose errors for a
/// missing directory differ.
#[test]
fn a_pool_removed_between_two_looks_is_made_again_by_the_next_delivery() {
    use crate::engine::Look;
    use runtime_layout::{Fs, RootFs};
    for beneath in [false, true] {
        let r = Root::new();
        let mut e = if beneath {
            let fs: Arc<dyn Fs> = Arc::new(RootFs::open(r.layout.root()).unwrap());
            let mut e = Engine::open(fs, r.layout.clone(), Config::default()).unwrap();
            e.reconcile().unwrap();
            e
        } else {
            r.engine()
        };
        r.send(json!({"task_id": "P-1", "task_type": "tools"}));
        e.step().unwrap();
        let pool = r.layout.queue("tools");
        assert_eq!(r.list(&pool.new_dir()).len(), 1);
        std::fs::remove_dir_all(pool.root.as_path()).unwrap();
        // A pass woken by the inbox alone: the maildir is taken as made (a tick has not passed).
        r.send(json!({"task_id": "P-2", "task_type": "tools"}));
        e.step_looking(Look::INBOX).unwrap();
        assert_eq!(
            r.list(&pool.new_dir()).len(),
            1,
            "beneath: {beneath}: P-2 delivered into the maildir made again"
        );
        assert!(matches!(e.live("P-2").map(|l| &l.place), Some(Place::Queued { .. })));
    }
}

/// A client's mailbox is looked at again at every commit, not once a tick like a pool: a link an
/// agent puts in place of its `tmp/` is refused at the next submit to it, before any delivery
/// meets it, and nothing is written where the link points.
#[test]
fn a_mailbox_turned_into_a_link_is_refused_at_the_next_submit() {
    use crate::engine::Look;
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    r.send(json!({"task_id": "M-1", "assigned_to": "A"}));
    e.step().unwrap();
    assert_eq!(r.list(&r.layout.mailbox("A").new_dir()).len(), 1);
    let tmp = r.layout.mailbox("A").tmp();
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
    std::os::unix::fs::symlink(outside.path(), &tmp).unwrap();
    r.send(json!({"task_id": "M-2", "assigned_to": "A"}));
    e.step_looking(Look::INBOX).unwrap();
    assert!(e.live("M-2").is_none(), "refused");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the link");
}

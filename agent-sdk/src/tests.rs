//! SDK tests on a real temporary root, with task files placed the way the broker dispatches them.

use super::*;
use protocol::Message;
use protocol::Priority;
use protocol::names::DispatchName;
use runtime_layout::sim::{Crash, SimFs};
use runtime_layout::{Durability, Fs, Layout, Maildir, NameSource, RealFs, deliver};
use serde_json::Value;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use std::time::Instant;

pub(crate) fn root() -> (tempfile::TempDir, Layout) {
    let d = tempfile::tempdir().unwrap();
    let l = Layout::new(d.path());
    l.create(&RealFs).unwrap();
    (d, l)
}

/// Places a task file in a pool (or mailbox) `new/` as the broker would.
fn dispatch(dir: &Maildir, id: &str, prio: Priority, seq: u64) -> String {
    dir.create(&RealFs, false).unwrap();
    let created = runtime_layout::now();
    let name = DispatchName::new(prio, created, seq, id).file_name();
    let task = json!({"task_id": id, "priority": prio.as_str(), "status": "PENDING"});
    // Through tmp/, as the broker delivers: a watcher woken by the create must not find it empty.
    std::fs::write(dir.tmp().join(&name), serde_json::to_vec(&task).unwrap()).unwrap();
    std::fs::rename(dir.tmp().join(&name), dir.new_dir().join(&name)).unwrap();
    name
}

#[test]
fn open_refuses_an_uninitialised_root_and_bad_names() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(Client::open(d.path()), Err(Error::NotInitialised { .. })));
    let (d, _) = root();
    assert!(matches!(Agent::register(d.path(), "../evil"), Err(Error::InvalidName(_))));
    assert!(
        matches!(Agent::open(d.path(), "Nobody-1"), Err(Error::UnknownAgent { .. })),
        "open never creates an agent"
    );
    assert!(!Agent::exists(d.path(), "Nobody-1"));
    assert!(matches!(Agent::register(d.path(), ""), Err(Error::InvalidName(_))));
    let a = Agent::register(d.path(), "Agent-5").unwrap().with_ack(Ack::None);
    assert!(a.mailbox.cur().is_dir(), "the maildir exists once the agent is opened");
}

#[test]
fn submit_validates_then_delivers_through_tmp() {
    let (d, l) = root();
    let c = Client::open(d.path()).unwrap().with_ack(Ack::None);
    let err = c.submit(&json!({"task_id": "x", "priority": "URGENT-ish"})).unwrap_err();
    assert!(matches!(err, Error::InvalidTask { ref reason } if reason.field == "priority"), "{err}");
    let name = c.submit(&json!({"task_id": "T-1", "name": "n"})).unwrap();
    let inbox = l.broker_inbox();
    let bytes = std::fs::read(inbox.new_dir().join(&name)).unwrap();
    let m = Message::parse(&bytes).unwrap();
    assert!(matches!(m, Message::Submit { ref task } if task["task_id"] == "T-1"));
    assert_eq!(std::fs::read_dir(inbox.tmp()).unwrap().count(), 0);
}

#[test]
fn claim_takes_the_highest_priority_oldest_task_first_across_sources() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    dispatch(&l.queue("p"), "low", Priority::Low, 1);
    dispatch(&l.queue("p"), "high", Priority::High, 2);
    dispatch(&l.mailbox("A"), "mine", Priority::Medium, 3);
    // Mail in new/ is never claimed as a task.
    std::fs::write(l.mailbox("A").new_dir().join("mail-x.json"), b"{\"kind\":\"mail\"}").unwrap();
    let order: Vec<String> = std::iter::from_fn(|| a.claim(&[]).unwrap()).map(|c| c.task.task_id).collect();
    assert_eq!(order, ["high", "mine", "low"]);
    assert_eq!(a.held().unwrap().len(), 3);
    assert!(a.claim(&["p".into()]).unwrap().is_none());
}

#[test]
fn a_claimed_file_that_holds_another_task_than_its_name_says_is_refused() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let pool = l.queue("p");
    let name = dispatch(&pool, "T-2", Priority::Medium, 2);
    // What a power loss can leave in a reused file: the task it held before.
    let before = json!({"task_id": "T-1", "priority": "MEDIUM", "status": "PENDING"});
    std::fs::write(pool.new_dir().join(&name), serde_json::to_vec(&before).unwrap()).unwrap();
    let err = a.claim(&["p".into()]).unwrap_err();
    assert!(matches!(err, Error::CorruptTask { ref reason, .. } if reason.field == "task_id"), "{err}");
    dispatch(&pool, "T-3", Priority::Medium, 3);
    assert_eq!(a.claim(&["p".into()]).unwrap().unwrap().task.task_id, "T-3", "its own file is claimed");
}

#[test]
fn of_many_racing_agents_exactly_one_wins_each_task() {
    let (d, l) = root();
    let n_tasks = 200;
    for i in 0..n_tasks {
        dispatch(&l.queue("race"), &format!("t{i}"), Priority::Medium, i);
    }
    let agents = 8;
    let barrier = Arc::new(Barrier::new(agents));
    let handles: Vec<_> = (0..agents)
        .map(|i| {
            let root = d.path().to_path_buf();
            let b = barrier.clone();
            std::thread::spawn(move || {
                let a = Agent::register(&root, &format!("A{i}")).unwrap().with_ack(Ack::None);
                b.wait();
                let mut got = Vec::new();
                while let Some(c) = a.claim(&["race".into()]).unwrap() {
                    got.push(c.task.task_id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, n_tasks as usize, "no task claimed twice");
    assert_eq!(all.len(), n_tasks as usize, "no task left behind");
}

#[test]
fn reports_are_fenced_on_the_claim_still_being_held() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let b = Agent::register(d.path(), "B").unwrap().with_ack(Ack::None);
    dispatch(&l.queue("p"), "t", Priority::Medium, 1);
    let c = a.claim(&[]).unwrap().unwrap();
    assert!(matches!(b.complete(&c.name, json!(1)), Err(Error::ClaimLost { .. })));
    assert!(matches!(a.heartbeat("nonsense"), Err(Error::ClaimLost { .. })));
    a.heartbeat(&c.name).unwrap();
    let msg = a.complete(&c.name, json!({"ok": true})).unwrap();
    let bytes = std::fs::read(l.broker_inbox().new_dir().join(msg)).unwrap();
    assert_eq!(
        Message::parse(&bytes).unwrap(),
        Message::Complete { agent: "A".into(), claim: c.name.clone(), result: json!({"ok": true}) }
    );
    // The broker takes the claim back: every report is refused locally from then on.
    std::fs::remove_file(&c.path).unwrap();
    assert!(matches!(a.heartbeat(&c.name), Err(Error::ClaimLost { .. })));
    assert!(matches!(a.fail(&c.name, "e", true), Err(Error::ClaimLost { .. })));
    assert!(matches!(a.release(&c.name), Err(Error::ClaimLost { .. })));
}

#[test]
fn read_mail_returns_mail_and_notices_once() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let new = l.mailbox("A").new_dir();
    std::fs::write(
        new.join("mail-20260101T000000000001.json"),
        br#"{"kind":"mail","from":"B","to":"A","body":"hi","sent_at":"2026-01-01T00:00:00.000001Z"}"#,
    )
    .unwrap();
    std::fs::write(
        new.join("notice-20260101T000000000002.json"),
        br#"{"kind":"notice","notice":"stale","timestamp":"2026-01-01T00:00:00.000002Z","reason":"r"}"#,
    )
    .unwrap();
    std::fs::write(new.join("junk-3.json"), b"not json").unwrap();
    let got = a.read_mail().unwrap();
    assert_eq!(got.len(), 3);
    assert!(matches!(&got[0], Inbound::Mail(m) if m.body == json!("hi")));
    assert!(matches!(&got[1], Inbound::Notice(n) if n.reason == "r"));
    assert!(matches!(&got[2], Inbound::Other { value: Value::Null, .. }));
    assert!(a.read_mail().unwrap().is_empty(), "mail is read once");
}

#[test]
fn claim_wait_wakes_when_a_task_arrives_and_times_out_otherwise() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    l.queue("w").create(&RealFs, false).unwrap();
    let t0 = Instant::now();
    assert!(a.claim_wait(&["w".into()], Duration::from_millis(300)).unwrap().is_none());
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let q = l.queue("w");
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        dispatch(&q, "late", Priority::Medium, 9);
    });
    let c = a.claim_wait(&["w".into()], Duration::from_secs(20)).unwrap().expect("woken by the arrival");
    assert_eq!(c.task.task_id, "late");
    h.join().unwrap();
}

#[test]
fn default_root_prefers_explicit_then_env_then_runtime() {
    assert_eq!(default_root(Some(Path::new("/x"))), PathBuf::from("/x"));
    // The environment variable is read at call time; only the fallback is checked here, to keep
    // this test independent of the process environment.
    if std::env::var_os("MAILROOM_ROOT").is_none() {
        assert_eq!(default_root(None), PathBuf::from("runtime"));
    }
}

// ------------------------------------------------------------------ over a simulated filesystem

/// A root initialised on a fresh `SimFs` at `root` (which need not exist on the real disk).
fn sim_root(root: &Path) -> (SimFs, Arc<dyn Fs>, Layout) {
    let sim = SimFs::new();
    let l = Layout::new(root);
    l.create(&sim).unwrap();
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    (sim, fs, l)
}

/// Dispatches a task into `dir` on `fs` as the broker does (durably, through `tmp/`).
fn sim_dispatch(fs: &dyn Fs, dir: &Maildir, id: &str, seq: u64) -> String {
    dir.create(fs, false).unwrap();
    let name = DispatchName::new(Priority::Medium, runtime_layout::now(), seq, id).file_name();
    let task = json!({"task_id": id, "priority": "MEDIUM", "status": "PENDING"});
    deliver(fs, dir, &name, &serde_json::to_vec(&task).unwrap(), Durability::Always).unwrap();
    name
}

#[test]
fn every_operation_goes_through_the_fs_the_handles_were_opened_with() {
    // The root is a real, empty directory: the SDK must never touch it on the real disk.
    let d = tempfile::tempdir().unwrap();
    let (sim, fs, l) = sim_root(d.path());
    assert!(matches!(Client::open(d.path()), Err(Error::NotInitialised { .. })), "not on the real disk");
    let client = Client::open_with(fs.clone(), d.path()).unwrap().with_ack(Ack::None);
    let submitted = client.submit(&json!({"task_id": "T-1"})).unwrap();
    let a = Agent::register_with(fs.clone(), d.path(), "A").unwrap().with_ack(Ack::None);
    sim_dispatch(fs.as_ref(), &l.queue("p"), "T-1", 1);
    let c = a.claim(&[]).unwrap().expect("the dispatched task");
    assert_eq!(c.task.task_id, "T-1");
    assert_eq!(a.held().unwrap(), std::slice::from_ref(&c.name));
    a.heartbeat(&c.name).unwrap();
    let reported = a.complete(&c.name, json!({"ok": true})).unwrap();
    deliver(
        fs.as_ref(),
        &l.mailbox("A"),
        "mail-1.json",
        br#"{"kind":"mail","from":"B","to":"A","body":"hi","sent_at":"2026-01-01T00:00:00Z"}"#,
        Durability::Always,
    )
    .unwrap();
    assert!(matches!(&a.read_mail().unwrap()[..], [Inbound::Mail(m)] if m.body == json!("hi")));
    let files = sim.files();
    for path in [
        l.broker_inbox().new_dir().join(&submitted),
        l.broker_inbox().new_dir().join(&reported),
        l.mailbox("A").cur().join(&c.name),
        l.mailbox("A").cur().join("mail-1.json"),
    ] {
        assert!(files.contains_key(&path), "{} is not in the simulated tree", path.display());
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the real root was touched");
}

#[test]
fn a_durable_report_first_makes_the_claim_durable() {
    let (sim, fs, l) = sim_root(Path::new("/sim/root"));
    let a = Agent::register_with(fs.clone(), "/sim/root", "A").unwrap().with_ack(Ack::None);
    sim_dispatch(fs.as_ref(), &l.queue("p"), "T-1", 1);
    let c = a.claim(&[]).unwrap().unwrap();
    sim.set_logging(true);
    let msg = a.complete(&c.name, json!(null)).unwrap();
    let log = sim.take_log();
    let ops: Vec<&str> = log.iter().map(|line| line.split_once(' ').map_or("", |x| x.1)).collect();
    let cur = l.mailbox("A").cur();
    let inbox = l.broker_inbox();
    assert_eq!(
        ops,
        [
            format!("fsync directory {}", cur.display()),
            format!("create {}", inbox.tmp().join(&msg).display()),
            format!("rename {}", inbox.tmp().join(&msg).display()),
            format!("fsync directory {}", inbox.new_dir().display()),
        ]
    );
    sim.restart(Crash::PowerLoss);
    assert!(sim.stat(&cur.join(&c.name)).unwrap().is_some(), "the claim survives with its report");
    assert!(sim.stat(&inbox.new_dir().join(&msg)).unwrap().is_some(), "and so does the report");

    // Relaxed durability promises neither: the claim's rename is lost with the power.
    let (sim, fs, l) = sim_root(Path::new("/sim/root"));
    let a = Agent::register_with(fs.clone(), "/sim/root", "A")
        .unwrap()
        .with_ack(Ack::None)
        .with_durability(Durability::Batch);
    sim_dispatch(fs.as_ref(), &l.queue("p"), "T-1", 1);
    let c = a.claim(&[]).unwrap().unwrap();
    a.complete(&c.name, json!(null)).unwrap();
    sim.restart(Crash::PowerLoss);
    assert!(sim.stat(&l.mailbox("A").cur().join(&c.name)).unwrap().is_none());
}

#[test]
fn claim_wait_works_on_a_filesystem_it_cannot_watch() {
    // Nothing under /sim exists on the real disk: no directory can be watched, and the periodic
    // rescan through the Fs must still find the task.
    let (_sim, fs, l) = sim_root(Path::new("/sim/root"));
    let a = Agent::register_with(fs.clone(), "/sim/root", "A").unwrap().with_ack(Ack::None);
    assert!(a.claim_wait(&[], Duration::from_millis(100)).unwrap().is_none());
    let q = l.queue("w");
    let bg = fs.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        sim_dispatch(bg.as_ref(), &q, "late", 9);
    });
    let c = a.claim_wait(&["w".into()], Duration::from_secs(20)).unwrap().expect("found by the rescan");
    assert_eq!(c.task.task_id, "late");
    h.join().unwrap();
}

#[test]
fn handles_sharing_a_name_source_name_messages_in_a_fixed_order() {
    let (_sim, fs, _l) = sim_root(Path::new("/sim/root"));
    let clock = runtime_layout::ManualClock::new(protocol::Timestamp::from_micros(1_790_000_000_000_000));
    let names = Arc::new(NameSource::with_clock(clock.clock()));
    let client =
        Client::open_with(fs.clone(), "/sim/root").unwrap().with_ack(Ack::None).with_names(names.clone());
    let a = Agent::register_with(fs.clone(), "/sim/root", "A")
        .unwrap()
        .with_ack(Ack::None)
        .with_names(names.clone());
    let first = client.submit(&json!({"task_id": "T-1"})).unwrap();
    let second = a.send("B", None, json!(1)).unwrap();
    let third = client.cancel("T-1").unwrap();
    // One microsecond for all three: the shared counter orders them, not the random bits.
    assert!(first < second && second < third, "{first} {second} {third}");
    assert!(first.starts_with("msg-20260921T"), "stamped by the clock given: {first}");
}

/// The answer to a message, given by a stand-in for the broker that moves it out of the inbox
/// the way the broker does: accepted into `inbox/cur/`, refused into quarantine beside its
/// reason (written first). With no one to answer, the call says so, and the message stays.
#[test]
fn a_message_waits_for_the_answer_the_broker_gives_by_moving_it() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    layout.create(&RealFs).unwrap();
    let client = Client::open(d.path()).unwrap().with_ack(Ack::Wait(Duration::from_secs(10)));
    let inbox = layout.broker_inbox();
    let quarantine = layout.quarantine_dir();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let broker = {
        let (inbox, quarantine, stop) = (inbox.clone(), quarantine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for e in std::fs::read_dir(inbox.new_dir()).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let body = std::fs::read_to_string(e.path()).unwrap();
                    if body.contains("REFUSE") {
                        let why = json!({"field": "task.priority", "rule": "no", "reason": "field `task.priority`: no"});
                        std::fs::write(
                            quarantine.join(format!("000000000007-{name}.error.json")),
                            why.to_string(),
                        )
                        .unwrap();
                        std::fs::rename(e.path(), quarantine.join(format!("000000000007-{name}"))).unwrap();
                    } else {
                        std::fs::rename(e.path(), inbox.cur().join(&name)).unwrap();
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let ok = client.submit(&json!({"task_id": "A-1"})).unwrap();
    assert!(inbox.cur().join(&ok).exists());
    match client.submit(&json!({"task_id": "REFUSE"})) {
        Err(Error::Refused { field, reason, .. }) => {
            assert_eq!(field, "task.priority");
            assert!(reason.contains("no"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    broker.join().unwrap();
    let quick = client.clone().with_ack(Ack::Wait(Duration::from_millis(50)));
    match quick.submit(&json!({"task_id": "A-2"})) {
        Err(Error::Unanswered { message, .. }) => assert!(inbox.new_dir().join(message).exists(), "it waits"),
        other => panic!("expected no answer, got {other:?}"),
    }
}

#[test]
fn a_waiting_agent_tries_what_arrived_and_lists_nothing() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    l.queue("w").create(&RealFs, false).unwrap();
    let listed = || a.fs_counts().expect("a root's Fs counts").lists;
    let q = l.queue("w");
    let before = listed();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        dispatch(&q, "late", Priority::Medium, 9)
    });
    let c = a.claim_wait(&["w".into()], Duration::from_secs(20)).unwrap().expect("woken by the arrival");
    let name = h.join().unwrap();
    assert_eq!((c.task.task_id.as_str(), c.name.as_str()), ("late", name.as_str()));
    // The first look lists the mailbox and the pool; the arrival is claimed by its name. (A wait
    // lists again 500 ms after its last listing: the task arrives well before that.)
    assert_eq!(listed() - before, 2, "listings during the wait");
}

#[test]
fn arrivals_are_tried_in_dispatch_order_and_only_where_the_agent_claims_from() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let (w, other) = (l.queue("w"), l.queue("other"));
    let low = dispatch(&w, "low", Priority::Low, 1);
    let high = dispatch(&w, "high", Priority::High, 2);
    let elsewhere = dispatch(&other, "elsewhere", Priority::Critical, 3);
    std::fs::write(w.new_dir().join("notes.txt"), b"not a task").unwrap();
    let files = vec![
        (w.new_dir(), low.clone()),
        (other.new_dir(), elsewhere.clone()),
        (w.new_dir(), "notes.txt".to_string()),
        (w.new_dir(), high.clone()),
        (w.new_dir(), high.clone()),
    ];
    let pools = ["w".to_string()];
    let first = a.claim_arrived(&pools, files.clone()).unwrap().expect("a task arrived");
    assert_eq!(first.name, high, "the higher priority first, whatever the order of the events");
    assert_eq!(a.claim_arrived(&pools, files.clone()).unwrap().map(|c| c.name), Some(low));
    assert!(
        a.claim_arrived(&pools, files.clone()).unwrap().is_none(),
        "both taken; `other` is not asked for"
    );
    // With no pools named, every pool's `new/` is one it claims from.
    assert_eq!(a.claim_arrived(&[], files).unwrap().map(|c| c.name), Some(elsewhere));
}

#[test]
fn a_pool_that_appears_with_tasks_in_it_is_listed_not_waited_out() {
    // A pool made elsewhere and moved into `queues/` brings its files without an event for any
    // of them: only a listing finds them, before the periodic rescan would.
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let outside = Maildir::new(d.path().join("staging"));
    dispatch(&outside, "moved-in", Priority::Medium, 1);
    let to = l.queue("fresh").root;
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::rename(&outside.root, &to).unwrap();
    });
    let t0 = Instant::now();
    let c = a.claim_wait(&[], Duration::from_secs(20)).unwrap();
    let took = t0.elapsed();
    h.join().unwrap();
    assert_eq!(c.map(|c| c.task.task_id), Some("moved-in".to_string()));
    // Listed when the pool appeared (100 ms in), not found by the listing a wait makes 500 ms
    // after its last one, as it would be had the directory's event been taken for arrivals.
    assert!(took < Duration::from_millis(400), "claimed after {took:?}");
}

#[test]
fn an_arrival_that_is_not_a_regular_file_is_skipped_as_a_listing_skips_it() {
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let w = l.queue("w");
    w.create(&RealFs, false).unwrap();
    let name = DispatchName::new(Priority::High, runtime_layout::now(), 1, "link").file_name();
    std::os::unix::fs::symlink(d.path().join("elsewhere"), w.new_dir().join(&name)).unwrap();
    let real = dispatch(&w, "real", Priority::Low, 2);
    let files = vec![(w.new_dir(), name.clone()), (w.new_dir(), real.clone())];
    let c = a.claim_arrived(&["w".into()], files).unwrap().expect("the regular file");
    assert_eq!(c.name, real);
    assert!(w.new_dir().join(&name).symlink_metadata().is_ok(), "the link is left where it is");
}

#[test]
fn only_file_arrivals_in_directories_watched_all_along_spare_the_listing() {
    use crate::agent::{Watched, only_arrivals};
    use runtime_layout::Drained;
    let watched = Watched { complete: true, added: false };
    let file = (PathBuf::from("/r/queues/w/new"), "n".to_string());
    let files = Drained {
        events: 1,
        tags: 1,
        wide: 0,
        dirs: vec![(0, file.0.clone())],
        files: vec![file.clone()],
        unnamed: 0,
    };
    assert_eq!(only_arrivals(watched, watched, files.clone()), Some(vec![file.clone()]));
    // Each of these makes the next look a listing.
    let dir_made = Drained { events: 2, ..files.clone() };
    let lost = Drained { wide: u64::MAX, ..files.clone() };
    assert_eq!(only_arrivals(watched, watched, dir_made), None, "an event that names no file");
    assert_eq!(only_arrivals(watched, watched, lost), None, "events were lost");
    assert_eq!(only_arrivals(watched, watched, Drained::default()), None, "the periodic rescan");
    let partial = Watched { complete: false, added: false };
    let added = Watched { complete: true, added: true };
    assert_eq!(only_arrivals(partial, watched, files.clone()), None, "unwatched at the last look");
    assert_eq!(only_arrivals(watched, partial, files.clone()), None, "unwatched now");
    assert_eq!(only_arrivals(watched, added, files), None, "a directory watched only now");
}

#[test]
fn a_wait_lists_again_within_half_a_second_while_events_keep_coming() {
    // No event announces that a gated task became claimable (the agent's capabilities grew),
    // and mail arriving every 50 ms keeps waking the wait with nothing but file arrivals.
    let (d, l) = root();
    let a = Agent::register(d.path(), "A").unwrap().with_ack(Ack::None);
    let set = protocol::capability::CapabilitySet::of(&["gpu".to_string()]).unwrap();
    runtime_layout::write_capability_set(&RealFs, &l, &set, &NameSource::new(), Durability::Never).unwrap();
    let w = l.queue("w");
    w.create(&RealFs, false).unwrap();
    let name = DispatchName::new(Priority::High, runtime_layout::now(), 1, "gated")
        .with_caps(Some(set.tag.clone()))
        .file_name();
    std::fs::write(w.tmp().join(&name), serde_json::to_vec(&json!({"task_id": "gated"})).unwrap()).unwrap();
    std::fs::rename(w.tmp().join(&name), w.new_dir().join(&name)).unwrap();
    assert!(a.claim(&["w".into()]).unwrap().is_none(), "not this agent's yet");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (root_path, mailbox, halt) = (d.path().to_path_buf(), l.mailbox("A"), stop.clone());
    let mail = std::thread::spawn(move || {
        let twin = Agent::open(&root_path, "A").unwrap();
        for i in 0..200 {
            if halt.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if i == 4 {
                twin.set_capabilities(&["gpu"]).unwrap();
            }
            deliver(&RealFs, &mailbox, &format!("mail-{i:04}.json"), b"{}", Durability::Never).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let t0 = Instant::now();
    let c = a.claim_wait(&["w".into()], Duration::from_secs(30)).unwrap();
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    mail.join().unwrap();
    assert_eq!(c.map(|c| c.name), Some(name));
    // Capabilities grow at about 200 ms; the mail goes on for 10 s.
    assert!(took < Duration::from_secs(5), "claimed after {took:?}");
}

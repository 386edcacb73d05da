//! Engine tests of the operations surface on temporary roots: requeue from quarantine (refusals,
//! a good input going through, a bad one coming back, a move a crash cut short) and the outbox's
//! journaled positions replaying to the same state, with and without a snapshot.

use crate::config::Config;
use crate::engine::Engine;
use crate::engine::commands::{Command, Verdict};
use runtime_layout::{Durability, Layout, NameSource, RealFs, deliver};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;

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

    fn engine_with(&self, cfg: Config) -> Engine {
        let mut e = Engine::open(Arc::new(RealFs), self.layout.clone(), cfg).unwrap();
        e.reconcile().unwrap();
        e
    }

    fn engine(&self) -> Engine {
        self.engine_with(Config::default())
    }

    fn send_raw(&self, bytes: &[u8]) {
        let name = self.names.next("msg");
        deliver(&RealFs, &self.layout.broker_inbox(), &name, bytes, Durability::Never).unwrap();
    }

    fn ls(&self, dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Quarantine entries (not their reasons, not the `requeued/` history).
    fn entries(&self) -> Vec<String> {
        let q = self.layout.quarantine_dir();
        self.ls(&q).into_iter().filter(|n| !n.ends_with(".error.json") && q.join(n).is_file()).collect()
    }

    fn reason(&self, entry: &str) -> Value {
        let p = self.layout.quarantine_dir().join(format!("{entry}.error.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }
}

/// Sends one command and returns its verdict (sent once its records are committed).
fn ask(e: &mut Engine, make: impl FnOnce(oneshot::Sender<Verdict>) -> Command) -> Verdict {
    let (reply, mut answer) = oneshot::channel();
    e.serve([make(reply)]).unwrap();
    answer.try_recv().expect("a verdict once served")
}

fn requeue(e: &mut Engine, name: &str) -> Verdict {
    ask(e, |reply| Command::Requeue { name: name.to_string(), reply })
}

fn refused_on(v: &Verdict) -> Option<(&str, &str)> {
    match v {
        Verdict::Refused { field, rule, .. } => Some((field.as_str(), rule.as_str())),
        Verdict::Accepted { .. } => None,
    }
}

#[test]
fn requeue_refuses_what_is_not_an_entry() {
    let r = Root::new();
    let mut e = r.engine();
    r.send_raw(b"{not json");
    e.step().unwrap();
    let [entry] = r.entries().try_into().expect("one entry");
    let reason = format!("{entry}.error.json");
    for (name, rule) in [
        ("../journal", "no `/`"),
        ("../../mailroom.toml", "no `/`"),
        ("..", "must not start with `.`"),
        (reason.as_str(), "reason of an entry"),
        ("nope.json", "no quarantine entry `nope.json`"),
        ("", "is empty"),
    ] {
        let v = requeue(&mut e, name);
        let (field, got) = refused_on(&v).unwrap_or_else(|| panic!("{name:?} accepted"));
        assert_eq!(field, "name", "{name:?}");
        assert!(got.contains(rule), "{name:?}: {got}");
    }
    std::fs::create_dir(r.layout.quarantine_dir().join("adir")).unwrap();
    assert!(refused_on(&requeue(&mut e, "adir")).unwrap().1.contains("directory"));
    assert_eq!(r.entries(), [entry], "nothing moved");
}

#[test]
fn a_fixed_input_goes_through_and_a_bad_one_comes_back_with_its_reason() {
    let r = Root::new();
    let mut e = r.engine();
    // Refused for a reason an operator can fix: the agent does not exist yet.
    r.send_raw(json!({"task_id": "RQ-1", "assigned_to": "Agent-9"}).to_string().as_bytes());
    r.send_raw(b"{not json");
    e.step().unwrap();
    let entries = r.entries();
    assert_eq!(entries.len(), 2);
    let (agent_refused, garbled): (Vec<String>, Vec<String>) =
        entries.into_iter().partition(|n| r.reason(n)["task_id"] == "RQ-1");
    let (good, bad) = (&agent_refused[0], &garbled[0]);
    r.layout.mailbox("Agent-9").create(&RealFs, true).unwrap();

    let v = requeue(&mut e, good);
    assert!(matches!(v, Verdict::Accepted { .. }), "{v:?}");
    assert!(refused_on(&requeue(&mut e, good)).unwrap().1.contains("requeued already"));
    let history = r.layout.quarantine_dir().join("requeued");
    assert_eq!(r.ls(&history), [format!("{good}.error.json")], "its reason is kept as history");
    e.step().unwrap();
    assert!(e.live("RQ-1").is_some(), "accepted once requeued");
    assert_eq!(r.ls(&r.layout.mailbox("Agent-9").new_dir()).len(), 1, "dispatched to the agent");

    assert!(matches!(requeue(&mut e, bad), Verdict::Accepted { .. }));
    e.step().unwrap();
    let back = r.entries();
    assert_eq!(back.len(), 1, "{back:?}");
    assert_ne!(&back[0], bad, "back in quarantine under a new name");
    assert!(back[0].contains("requeued-"), "{back:?}");
    assert!(r.reason(&back[0])["reason"].as_str().unwrap().contains("JSON"));
    assert_eq!(std::fs::read(r.layout.quarantine_dir().join(&back[0])).unwrap(), b"{not json", "intact");

    // The journal replays to the same place: nothing requeued twice, nothing lost.
    drop(e);
    let mut e = r.engine();
    e.step().unwrap();
    assert_eq!(r.entries(), back);
    assert!(e.live("RQ-1").is_some());
    let trace = crate::trace::trace(&RealFs, &r.layout, "RQ-1").unwrap().unwrap();
    assert!(trace.steps.iter().any(|s| s.op == "requeue"), "trace shows the requeue");
}

#[test]
fn a_requeue_cut_short_by_a_crash_is_finished_at_restart() {
    let r = Root::new();
    let mut e = r.engine();
    r.send_raw(json!({"task_id": "RQ-2", "assigned_to": "Agent-8"}).to_string().as_bytes());
    e.step().unwrap();
    let [entry] = r.entries().try_into().expect("one entry");
    assert!(matches!(requeue(&mut e, &entry), Verdict::Accepted { .. }));
    drop(e);
    // Undo the moves, as if the broker had died between the journal's commit and them.
    let inbox = r.layout.broker_inbox().new_dir();
    let [fresh] = r.ls(&inbox).try_into().expect("the requeued message");
    let q = r.layout.quarantine_dir();
    std::fs::rename(inbox.join(&fresh), q.join(&entry)).unwrap();
    let reason = format!("{entry}.error.json");
    std::fs::rename(q.join("requeued").join(&reason), q.join(&reason)).unwrap();

    r.layout.mailbox("Agent-8").create(&RealFs, true).unwrap();
    let mut e = r.engine();
    assert_eq!(r.ls(&inbox), [fresh], "moved again, under the same name");
    assert!(r.entries().is_empty());
    assert_eq!(r.ls(&q.join("requeued")), [reason]);
    e.step().unwrap();
    assert!(e.live("RQ-2").is_some());
}

#[test]
fn positions_are_journaled_forward_only_and_replay_to_the_same_state() {
    let r = Root::new();
    let mut e = r.engine();
    for i in 0..3 {
        let v = ask(&mut e, |reply| Command::Submit { task: json!({"task_id": format!("P-{i}")}), reply });
        assert!(matches!(v, Verdict::Accepted { .. }), "{v:?}");
    }
    let delivered = |e: &mut Engine, sink: &str, through: u64| {
        ask(e, |reply| Command::Delivered { sink: sink.to_string(), through, reply })
    };
    assert!(matches!(delivered(&mut e, "webhook:a", 4), Verdict::Accepted { .. }));
    assert!(matches!(delivered(&mut e, "hook:b", 2), Verdict::Accepted { .. }));
    let back = delivered(&mut e, "webhook:a", 3);
    let (field, rule) = refused_on(&back).expect("backwards");
    assert_eq!(field, "through");
    assert!(rule.contains("only move forward"), "{rule}");
    assert!(refused_on(&delivered(&mut e, "webhook:a", 10_000)).unwrap().1.contains("beyond the journal"));
    assert!(refused_on(&delivered(&mut e, "", 1)).is_some());
    let before = [e.state().delivered("webhook:a"), e.state().delivered("hook:b"), e.state().delivered("x")];
    assert_eq!(before, [Some(4), Some(2), None]);
    let (reply, mut answer) = oneshot::channel();
    e.serve([Command::Position { sink: "webhook:a".into(), reply }]).unwrap();
    assert_eq!(answer.try_recv().unwrap(), Some(4));

    let positions = |e: &Engine| {
        [e.state().delivered("webhook:a"), e.state().delivered("hook:b"), e.state().delivered("x")]
    };
    drop(e);
    assert_eq!(positions(&r.engine()), before, "replayed from the journal");

    // After a snapshot the older records are no longer replayed: the snapshot carries them.
    let mut cfg = Config::default();
    cfg.broker.compact_after_records = 1;
    let mut e = r.engine_with(cfg.clone());
    assert!(matches!(delivered(&mut e, "hook:b", 3), Verdict::Accepted { .. }));
    e.step().unwrap();
    assert!(
        std::fs::read_dir(r.layout.journal_dir())
            .unwrap()
            .any(|d| { d.unwrap().file_name().to_string_lossy().starts_with("snapshot-") })
    );
    drop(e);
    let e = r.engine_with(cfg);
    assert_eq!(positions(&e), [Some(4), Some(3), None]);
}

/// The live journal is compacted once it holds `compact_min_bytes` and twice the newest
/// snapshot's bytes: where little is live the journal stays small, and a growing snapshot is
/// rewritten less and less often (never for a journal smaller than half of it).
#[test]
fn compaction_keeps_the_live_journal_in_proportion_to_the_snapshot() {
    let r = Root::new();
    let mut cfg = Config::default();
    cfg.broker.compact_min_bytes = 4_000;
    let mut e = r.engine_with(cfg);
    let journal = r.layout.journal_dir();
    let sizes = |prefix: &str| -> Vec<(String, u64)> {
        std::fs::read_dir(&journal)
            .unwrap()
            .map(|d| d.unwrap())
            .filter(|d| d.file_name().to_string_lossy().starts_with(prefix))
            // A segment's records, without the reserve of zeros after them.
            .map(|d| {
                let len = crate::journal::segment_bytes(&runtime_layout::RealFs, &d.path()).unwrap().len();
                (d.file_name().to_string_lossy().into_owned(), len as u64)
            })
            .collect()
    };
    let pad = "x".repeat(400);
    let (mut compactions, mut last) = (0, None);
    for i in 0..200 {
        let task =
            json!({"task_id": format!("P-{i}"), "name": "n", "task_type": "t", "params": {"pad": pad}});
        r.send_raw(task.to_string().as_bytes());
        e.step().unwrap();
        let snapshot = sizes("snapshot-").into_iter().max();
        if snapshot.as_ref().map(|s| &s.0) != last.as_ref() {
            compactions += 1;
            last = snapshot.as_ref().map(|s| s.0.clone());
        }
        let live: u64 = sizes("segment-").iter().map(|s| s.1).sum();
        let limit = 4_000u64.max(2 * snapshot.map_or(0, |s| s.1));
        // One pass's records (a submission and its dispatch) may go past the limit.
        assert!(live <= limit + 4_000, "task {i}: live journal {live} B, limit {limit} B");
    }
    assert!((3..=15).contains(&compactions), "{compactions} compactions for 200 queued tasks");
}

/// While the broker runs, its segment ends in a reserve of zeros; a clean stop cuts it off, so a
/// segment at rest is its records alone (what `jq` and `tail` expect of a JSON Lines file).
#[test]
fn a_clean_stop_leaves_the_journal_s_segment_without_its_reserve() {
    let r = Root::new();
    let mut e = r.engine_with(Config::default());
    r.send_raw(json!({"task_id": "Z-1", "name": "n", "task_type": "t"}).to_string().as_bytes());
    e.step().unwrap();
    let seg = std::fs::read_dir(r.layout.journal_dir())
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("segment-"))
        .expect("a segment");
    let running = std::fs::read(&seg).unwrap();
    assert!(running.ends_with(&[0; 1024]), "a reserve while running");
    e.flush().unwrap();
    let stopped = std::fs::read(&seg).unwrap();
    assert!(!stopped.is_empty() && !stopped.contains(&0), "no zeros after a clean stop");
    assert_eq!(stopped, crate::journal::segment_bytes(&runtime_layout::RealFs, &seg).unwrap());
}

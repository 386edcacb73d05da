//! Retention over `SimFs`: kept messages bounded by count, bytes and age (oldest first, whatever
//! their names), the archive compressed and pruned, `trace` saying when history is gone, the low
//! space warning, `gc` on a stopped root, and a power loss or process crash at every filesystem
//! operation of a run that compacts, compresses and prunes: recovery loses no task and leaves a
//! readable archive with nothing half-done in it.

use agent_sdk::{Ack, Agent, Client};
use mailroom::config::{Config, KeepFor};
use mailroom::engine::Engine;
use mailroom::journal::{self, archive};
use protocol::{Status, Timestamp};
use runtime_layout::sim::{Crash, SimFs};
use runtime_layout::{Fs, Layout, ManualClock, NameSource, Space};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

const T0: i64 = 1_790_000_000_000_000;
const ROOT: &str = "/sim/runtime";

struct World {
    fs: SimFs,
    clock: ManualClock,
    layout: Layout,
    cfg: Config,
    engine: Option<Engine>,
    producer: Client,
    agent: Agent,
    submitted: BTreeSet<String>,
}

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

impl World {
    fn new(cfg: Config) -> Self {
        let clock = ManualClock::new(Timestamp::from_micros(T0));
        let fs = SimFs::with_clock(clock.clock());
        let layout = Layout::new(ROOT);
        layout.create(&fs).unwrap();
        let shared: Arc<dyn Fs> = Arc::new(fs.clone());
        let names = Arc::new(NameSource::with_clock(clock.clock()));
        // The SDK without waiting inside the call: the test is one thread and steps the broker itself.
        let producer =
            Client::open_with(shared.clone(), ROOT).unwrap().with_ack(Ack::None).with_names(names.clone());
        let agent = Agent::register_with(shared, ROOT, "A1").unwrap().with_ack(Ack::None).with_names(names);
        Self { fs, clock, layout, cfg, engine: None, producer, agent, submitted: BTreeSet::new() }
    }

    fn start(&mut self) -> R {
        let mut e = Engine::open(Arc::new(self.fs.clone()), self.layout.clone(), self.cfg.clone())?;
        e.set_clock(self.clock.clock());
        e.reconcile()?;
        self.engine = Some(e);
        Ok(())
    }

    fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("started")
    }

    fn step(&mut self) -> R {
        while self.engine().step()?.more {}
        Ok(())
    }

    /// Submits, dispatches, claims and completes task `id` (one tick of the clock each).
    fn task(&mut self, id: &str) -> R {
        self.submitted.insert(id.to_string());
        self.producer.submit(
            &json!({"task_id": id, "name": format!("task {id}"), "params": {"pad": "p".repeat(300)}}),
        )?;
        self.clock.advance_secs(1);
        self.step()?;
        let c = self.agent.claim(&[])?.expect("dispatched");
        self.agent.complete(&c.name, json!({"ok": true}))?;
        self.clock.advance_secs(1);
        self.step()
    }

    fn kept_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .fs
            .list(&self.layout.broker_inbox().cur())
            .unwrap()
            .into_iter()
            .map(|e| e.name_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    fn archive(&self) -> archive::ArchiveListing {
        archive::list(&self.fs, &self.layout.journal_dir().join("archive")).unwrap()
    }
}

fn cfg() -> Config {
    let mut c = Config::default();
    c.broker.settle_ms = 0;
    c
}

#[test]
fn kept_messages_are_bounded_by_count_and_bytes_newest_kept() {
    let mut c = cfg();
    c.broker.inbox_keep_count = 5;
    let mut w = World::new(c);
    w.start().unwrap();
    for i in 0..12 {
        w.task(&format!("K{i:02}")).unwrap();
    }
    let kept = w.kept_names();
    assert_eq!(kept.len(), 5, "{kept:?}");
    // The newest five messages: the last tasks' completes and submits (names sort by time here).
    let consumed: Vec<String> = {
        let mut all = Vec::new();
        for s in journal::all_segments(&w.fs, &w.layout.journal_dir()).unwrap() {
            journal::read_segment(
                &w.fs,
                &s,
                |r, _, _| {
                    if let journal::Entry::Consume { msg, .. } = r.entry {
                        all.push(msg);
                    }
                },
                &mut journal::Notes::default(),
            )
            .unwrap();
        }
        all
    };
    let mut newest: Vec<String> = consumed[consumed.len() - 5..].to_vec();
    newest.sort();
    assert_eq!(kept, newest);
    assert_eq!(w.engine().kept().inbox_files, 5);

    // Bytes: about two messages' worth.
    let mut c = cfg();
    let one = w.fs.stat(&w.layout.broker_inbox().cur().join(&kept[0])).unwrap().unwrap().len;
    c.broker.inbox_keep_bytes = one * 2 + one / 2;
    let mut w = World::new(c);
    w.start().unwrap();
    for i in 0..6 {
        w.task(&format!("B{i}")).unwrap();
    }
    let k = w.engine().kept();
    assert!(k.inbox_files <= 3 && k.inbox_bytes <= one * 3, "{k:?}");
    assert!(!w.kept_names().is_empty());
}

#[test]
fn files_found_at_start_go_oldest_first_by_time_not_by_name_and_old_ones_at_once() {
    let mut c = cfg();
    c.broker.inbox_keep_count = 3;
    c.broker.inbox_retention_secs = 3600;
    let w0 = World::new(c);
    let cur = w0.layout.broker_inbox().cur();
    // Names that sort the other way round from their times (a writer whose names are not times).
    for i in 0..8i64 {
        let p = cur.join(format!("m-{}", 9 - i));
        w0.fs.create_new(&p, b"{}", false).unwrap();
        w0.fs.set_mtime(&p, Timestamp::from_micros(T0 - (100 - i) * 1_000_000)).unwrap();
    }
    let ancient = cur.join("z-ancient");
    w0.fs.create_new(&ancient, b"{}", false).unwrap();
    w0.fs.set_mtime(&ancient, Timestamp::from_micros(T0 - 7200 * 1_000_000)).unwrap();
    let mut w = w0;
    w.start().unwrap();
    w.step().unwrap();
    // The three newest by mtime are m-2, m-3, m-4 (i = 7, 6, 5).
    assert_eq!(w.kept_names(), vec!["m-2", "m-3", "m-4"]);
    assert_eq!(w.engine().kept().inbox_files, 3);
    // Time alone: an hour later, everything goes.
    w.clock.advance_secs(3700);
    w.step().unwrap();
    assert!(w.kept_names().is_empty());
}

#[test]
fn the_archive_is_compressed_and_pruned_and_trace_says_what_is_gone() {
    let mut c = cfg();
    c.broker.compact_after_records = 8;
    c.journal.archive_keep_bytes = 3000;
    let mut w = World::new(c);
    // What trace reads to say which limits removed the history (the engine got `c` directly).
    w.fs.create_new(&w.layout.config_file(), b"[journal]\narchive_keep_bytes = 3000\n", true).unwrap();
    w.start().unwrap();
    for i in 0..30 {
        w.task(&format!("A{i:02}")).unwrap();
    }
    w.step().unwrap();
    let l = w.archive();
    assert!(l.temporaries.is_empty());
    assert!(l.segments.iter().all(|s| s.compressed), "{l:?}");
    let bytes: u64 = l.segments.iter().map(|s| s.bytes).sum();
    assert!(bytes <= 3000 && !l.segments.is_empty(), "{bytes}: {l:?}");
    assert!(l.segments[0].first > 1, "the oldest segments were removed");
    // The newest task's history is whole; the oldest one's is gone, and trace says so.
    let t = mailroom::trace::trace(&w.fs, &w.layout, "A29").unwrap().unwrap();
    assert!(t.history.is_none() && t.steps.first().unwrap().op == "submit", "{t:?}");
    let t = mailroom::trace::trace(&w.fs, &w.layout, "A00").unwrap().expect("known from the snapshot");
    assert_eq!(t.status, Some(Status::Completed));
    let h = t.history.clone().expect("says the history is gone");
    assert!(h.contains("older than the retention") && h.contains("archive_keep_bytes = 3000"), "{h}");
    assert!(t.render().contains("early history not kept"));
    // Time: a week and a day later every archived segment is past `archive_keep`.
    w.clock.advance_secs(8 * 86_400);
    w.step().unwrap();
    w.clock.advance_secs(61);
    w.step().unwrap();
    assert!(w.archive().segments.is_empty());
}

/// The live journal is bounded in bytes as well as in records: large records bring the
/// snapshot sooner.
#[test]
fn a_snapshot_comes_after_enough_bytes_of_records_too() {
    let archived = |bytes: u64| {
        let mut c = cfg();
        c.broker.compact_after_records = 1_000_000;
        c.broker.compact_after_bytes = bytes;
        c.journal.compress_archive = false;
        let mut w = World::new(c);
        w.start().unwrap();
        for i in 0..10 {
            w.task(&format!("B{i}")).unwrap();
        }
        w.step().unwrap();
        w.archive().segments.len()
    };
    assert_eq!(archived(u64::MAX), 0, "no snapshot by records alone");
    assert!(archived(2000) >= 2, "a snapshot about every 2000 bytes of records");
}

#[test]
fn low_space_or_inodes_are_noticed() {
    let mut w = World::new(cfg());
    w.fs.set_space(Some(Space {
        free_bytes: 5,
        total_bytes: 100,
        free_inodes: 500_000,
        total_inodes: 1_000_000,
    }));
    w.start().unwrap();
    w.step().unwrap();
    let k = w.engine().kept();
    assert!(k.low_space && !k.low_inodes, "{k:?}");
    // Plenty of space, but fewer free inodes than the kept messages may still take.
    w.fs.set_space(Some(Space {
        free_bytes: 1 << 40,
        total_bytes: 1 << 41,
        free_inodes: 5_000,
        total_inodes: 10_000,
    }));
    w.clock.advance_secs(61);
    w.step().unwrap();
    let k = w.engine().kept();
    assert!(!k.low_space && k.low_inodes, "{k:?}");
}

#[test]
fn gc_applies_the_rules_to_a_stopped_root_and_a_dry_run_changes_nothing() {
    let mut c = cfg();
    c.broker.compact_after_records = 8;
    c.journal.compress_archive = false;
    let mut w = World::new(c);
    w.start().unwrap();
    for i in 0..10 {
        w.task(&format!("G{i}")).unwrap();
    }
    w.engine().flush().unwrap();
    w.engine = None;
    assert!(w.archive().segments.iter().all(|s| !s.compressed));
    let mut rules = cfg();
    rules.broker.inbox_keep_count = 4;
    rules.journal.archive_keep_bytes = 2000;
    let now = w.clock.now();
    let files = w.fs.files();
    let dry = mailroom::gc::gc(&w.fs, &w.layout, &rules, now, true).unwrap();
    assert_eq!(w.fs.files(), files, "a dry run changes nothing");
    assert_eq!(dry.inbox_removed.files, 20 - 4);
    assert!(!dry.compressed.is_empty() && dry.after.is_none());
    let done = mailroom::gc::gc(&w.fs, &w.layout, &rules, now, false).unwrap();
    assert_eq!(w.kept_names().len(), 4);
    let l = w.archive();
    assert!(l.segments.iter().all(|s| s.compressed));
    assert!(l.segments.iter().map(|s| s.bytes).sum::<u64>() <= 2000);
    assert!(!done.archive_removed.is_empty());
    let after = done.after.unwrap();
    assert!(after.total().bytes < done.before.total().bytes, "{}", done.render());
    // The root still works: the state replays, every task finished.
    w.start().unwrap();
    for i in 0..10 {
        assert!(w.engine().live(&format!("G{i}")).is_none());
        assert_eq!(w.engine().state().status_of(&format!("G{i}")), Some(Status::Completed));
    }
}

/// One run: four tasks through a broker that compacts every 6 records, compresses, keeps two
/// messages and about one compressed segment.
fn retention_cfg() -> Config {
    let mut c = cfg();
    c.broker.compact_after_records = 6;
    c.broker.inbox_keep_count = 2;
    c.journal.archive_keep_bytes = 900;
    c.journal.archive_keep = KeepFor::Secs(86_400);
    c
}

fn script(w: &mut World) -> R {
    w.start()?;
    for i in 0..4 {
        w.task(&format!("P{i}"))?;
    }
    w.step()?;
    w.step()
}

#[test]
fn a_crash_at_any_operation_of_compaction_compression_and_pruning_loses_nothing() {
    let clean = {
        let mut w = World::new(retention_cfg());
        let base = w.fs.ops();
        script(&mut w).unwrap();
        assert!(w.archive().segments.iter().any(|s| s.compressed), "the run compresses");
        w.fs.ops() - base
    };
    let mut points = 0;
    for k in 0..clean {
        for mode in [Crash::PowerLoss, Crash::Process] {
            let ctx = format!("crash after {k} of {clean} ops ({mode:?})");
            let mut w = World::new(retention_cfg());
            w.fs.crash_after(k);
            let r = script(&mut w);
            assert!(r.is_ok() || w.fs.crashed(), "{ctx}: failed without a crash: {r:?}");
            w.engine = None;
            w.fs.restart(mode);
            points += 1;
            // Nothing half-done can be read: every archived copy a reader picks is whole.
            for s in journal::all_segments(&w.fs, &w.layout.journal_dir()).unwrap() {
                journal::read_segment(&w.fs, &s, |_, _, _| {}, &mut journal::Notes::default())
                    .unwrap_or_else(|e| panic!("{ctx}: {} unreadable: {e}", s.display()));
            }
            w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            // Producers resubmit what they were not told about; the agent finishes what it holds.
            let ids: Vec<String> = (0..4).map(|i| format!("P{i}")).collect();
            for id in &ids {
                if w.engine().state().status_of(id).is_none() {
                    w.producer.submit(&json!({"task_id": id, "name": format!("task {id}"), "params": {"pad": "p".repeat(300)}})).unwrap();
                }
            }
            for _ in 0..5 {
                w.step().unwrap();
                for c in w.agent.held().unwrap() {
                    let _ = w.agent.complete(&c, json!({"ok": true}));
                }
                while let Some(c) = w.agent.claim(&[]).unwrap() {
                    w.agent.complete(&c.name, json!({"ok": true})).unwrap();
                }
                w.clock.advance_secs(1);
            }
            w.step().unwrap();
            for id in &ids {
                assert_eq!(w.engine().state().status_of(id), Some(Status::Completed), "{ctx}: {id}");
            }
            let l = w.archive();
            assert!(l.temporaries.is_empty(), "{ctx}: {l:?}");
            let firsts: Vec<u64> = l.segments.iter().map(|s| s.first).collect();
            let mut unique = firsts.clone();
            unique.dedup();
            assert_eq!(firsts, unique, "{ctx}: a segment in two forms after a pass");
            assert!(l.segments.iter().all(|s| s.compressed), "{ctx}: {l:?}");
            assert!(w.kept_names().len() <= 2, "{ctx}");
            // A restart on what is left rebuilds the same state.
            w.engine().flush().unwrap();
            w.engine = None;
            w.start().unwrap();
            for id in &ids {
                assert_eq!(w.engine().state().status_of(id), Some(Status::Completed), "{ctx}: replay {id}");
            }
        }
    }
    println!("retention: {points} crash points over compaction, compression and pruning, lost 0");
}

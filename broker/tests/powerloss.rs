//! Power loss at every step: each scenario drives the broker `Engine` and in-test agents over
//! `SimFs`, counts the mutating filesystem operations of a clean run, then replays it crashing
//! after every one of them (power loss, which drops everything not fsynced, and process crash,
//! which keeps it), recovers, lets the workload finish, and checks the invariants: nothing
//! acknowledged is lost, nothing is duplicated, every task is in one place, the boards match the
//! journal, and quarantine holds only genuinely bad input. `MAILROOM_CRASH_LONG=1` adds scrambled
//! power losses (a random subset of unsynced changes reaches the disk) and more seeds.

use mailroom::config::Config;
use mailroom::engine::{Engine, EngineError};
use mailroom::journal::{self, Entry, Place, Record};
use mailroom::state::State;
use protocol::Timestamp;
use protocol::names::DispatchName;
use protocol::{Status, Task};
use runtime_layout::sim::{Crash, Fault, FaultOn, SimFs};
use runtime_layout::{Board, Clock, Durability, FileKind, Fs, FsError, Layout, deliver};
use serde_json::{Value, json};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// 2026-09-21T...: any fixed start works; the clock only moves when a scenario says so.
const T0: i64 = 1_790_000_000_000_000;
const AGENTS: [&str; 2] = ["A1", "A2"];

thread_local! {
    static NOW: Cell<i64> = const { Cell::new(T0) };
    /// Second power losses that struck during a recovery (on this thread).
    static SECOND_CRASHES: Cell<u64> = const { Cell::new(0) };
}

fn clock() -> Timestamp {
    Timestamp::from_micros(NOW.with(Cell::get))
}

fn advance(secs: i64) {
    NOW.with(|n| n.set(n.get() + secs * 1_000_000));
}

/// Why a scripted run stopped early: the simulated machine died under it.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug when a run fails
enum Halt {
    Fs(FsError),
    Engine(EngineError),
}

impl From<FsError> for Halt {
    fn from(e: FsError) -> Self {
        Self::Fs(e)
    }
}

impl From<EngineError> for Halt {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

type R<T = ()> = Result<T, Halt>;

/// A complete, fail or release whose delivery returned (the agent was told it was sent).
#[derive(Debug, Clone)]
struct Report {
    msg: String,
    task: String,
    claim: String,
}

/// The machine under test plus what the producers and agents know, which survives crashes.
struct World {
    fs: SimFs,
    layout: Layout,
    cfg: Config,
    engine: Option<Engine>,
    seq: u64,
    /// Every task a producer means to submit, as first submitted.
    intended: BTreeMap<String, Value>,
    acked_submits: BTreeSet<String>,
    acked_reports: Vec<Report>,
    acked_cancels: BTreeSet<String>,
    /// Messages sent knowing they must be refused (a conflicting duplicate).
    expected_bad: BTreeSet<String>,
}

impl World {
    fn new(cfg: Config) -> Self {
        NOW.with(|n| n.set(T0));
        let fs = SimFs::with_clock(Clock::from_fn(clock));
        let layout = Layout::new("/sim/runtime");
        layout.create(&fs).unwrap();
        for a in AGENTS {
            layout.mailbox(a).create(&fs, true).unwrap();
        }
        Self {
            fs,
            layout,
            cfg,
            engine: None,
            seq: 0,
            intended: BTreeMap::new(),
            acked_submits: BTreeSet::new(),
            acked_reports: Vec::new(),
            acked_cancels: BTreeSet::new(),
            expected_bad: BTreeSet::new(),
        }
    }

    fn start(&mut self) -> R {
        let mut e = Engine::open(Arc::new(self.fs.clone()), self.layout.clone(), self.cfg.clone())?;
        e.set_clock(Clock::from_fn(clock));
        e.reconcile()?;
        self.engine = Some(e);
        Ok(())
    }

    fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the broker is running")
    }

    fn step(&mut self) -> R {
        while self.engine().step()?.more {}
        Ok(())
    }

    fn boards(&mut self) -> R {
        Ok(self.engine().write_boards(true)?)
    }

    /// Delivers a message the way the SDK does (Durability::Always). Returns its name.
    fn send(&mut self, v: Value) -> R<String> {
        self.seq += 1;
        let name = format!("msg-{:08}.json", self.seq);
        deliver(&self.fs, &self.layout.broker_inbox(), &name, v.to_string().as_bytes(), Durability::Always)?;
        Ok(name)
    }

    fn submit(&mut self, task: Value) -> R {
        let id = task["task_id"].as_str().unwrap().to_string();
        self.intended.entry(id.clone()).or_insert_with(|| task.clone());
        self.send(json!({"kind": "submit", "task": task}))?;
        self.acked_submits.insert(id);
        Ok(())
    }

    fn submit_bad(&mut self, task: Value) -> R {
        self.seq += 1;
        self.expected_bad.insert(format!("msg-{:08}.json", self.seq));
        self.seq -= 1;
        self.send(json!({"kind": "submit", "task": task}))?;
        Ok(())
    }

    fn cancel(&mut self, id: &str) -> R {
        self.send(json!({"kind": "cancel", "task_id": id}))?;
        self.acked_cancels.insert(id.to_string());
        Ok(())
    }

    /// Claims like the SDK: merge the agent's new/ and every pool's new/, sort, and rename the
    /// first name that is still there into cur/, then touch it.
    fn claim(&mut self, agent: &str) -> R<Option<String>> {
        let fs = self.fs.clone();
        let mut dirs = vec![self.layout.mailbox(agent).new_dir()];
        for e in fs.list(&self.layout.queues_dir())? {
            if e.kind == FileKind::Dir {
                dirs.push(self.layout.queues_dir().join(&e.name).join("new"));
            }
        }
        let mut candidates = Vec::new();
        for d in dirs {
            let entries = match fs.list(&d) {
                Ok(e) => e,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for e in entries {
                if let Some(n) = e.name_str().filter(|n| DispatchName::parse(n).is_some()) {
                    candidates.push((n.to_string(), d.clone()));
                }
            }
        }
        candidates.sort();
        let cur = self.layout.mailbox(agent).cur();
        for (name, dir) in candidates {
            match fs.rename_noreplace(&dir.join(&name), &cur.join(&name)) {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
            fs.touch(&cur.join(&name))?;
            fs.read(&cur.join(&name), 1 << 20)?;
            return Ok(Some(name));
        }
        Ok(None)
    }

    /// Reports on a claim like the SDK: only while the file is in cur/, then a durable message.
    fn report(&mut self, agent: &str, claim: &str, body: Value) -> R<bool> {
        let cur = self.layout.mailbox(agent).cur();
        if !matches!(self.fs.stat(&cur.join(claim))?, Some(m) if m.kind == FileKind::File) {
            return Ok(false);
        }
        // Like the SDK: make the claim's rename durable before a durable report about it.
        self.fs.sync_dir(&cur)?;
        let mut msg = body;
        msg["agent"] = json!(agent);
        msg["claim"] = json!(claim);
        let name = self.send(msg)?;
        let task = DispatchName::parse(claim).unwrap().id_fragment;
        self.acked_reports.push(Report { msg: name, task, claim: claim.to_string() });
        Ok(true)
    }

    fn complete(&mut self, agent: &str, claim: &str) -> R<bool> {
        self.report(agent, claim, json!({"kind": "complete", "result": {"by": agent}}))
    }

    fn held(&self, agent: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .fs
            .list(&self.layout.mailbox(agent).cur())
            .unwrap()
            .into_iter()
            .filter_map(|e| e.name_str().map(str::to_string))
            .filter(|n| DispatchName::parse(n).is_some())
            .collect();
        v.sort();
        v
    }

    /// After a crash: producers resubmit what they were not told was delivered, agents finish
    /// what they hold and claim the rest, until every task is finished.
    fn finish(&mut self, ctx: &str) {
        let unacked: Vec<Value> = self
            .intended
            .iter()
            .filter(|(id, _)| !self.acked_submits.contains(*id))
            .map(|(_, t)| t.clone())
            .collect();
        for t in unacked {
            self.submit(t).unwrap();
        }
        for round in 0..100 {
            self.step().unwrap_or_else(|e| panic!("{ctx}: step after recovery: {e:?}"));
            if round == 0 {
                check_places(self, ctx);
            }
            for a in AGENTS {
                for c in self.held(a) {
                    self.complete(a, &c).unwrap();
                }
                while let Some(c) = self.claim(a).unwrap() {
                    self.complete(a, &c).unwrap();
                }
            }
            self.step().unwrap();
            let e = self.engine.as_ref().unwrap();
            if self.intended.keys().all(|id| e.live(id).is_none()) {
                break;
            }
            advance(10);
        }
        self.engine().flush().unwrap();
    }
}

/// Every record of every segment, archived ones included, each sequence number once (a crash
/// during compaction may leave a segment both archived and not).
fn all_records(fs: &dyn Fs, layout: &Layout) -> Vec<Record> {
    let mut by_seq = BTreeMap::new();
    for p in journal::all_segments(fs, &layout.journal_dir()).unwrap() {
        let mut torn = Vec::new();
        journal::read_segment(
            fs,
            &p,
            |r| {
                by_seq.insert(r.seq, r);
            },
            &mut torn,
        )
        .unwrap();
    }
    by_seq.into_values().collect()
}

fn rebuilt_state(fs: &dyn Fs, layout: &Layout) -> State {
    let loaded = journal::load(fs, &layout.journal_dir()).unwrap();
    let mut s = match loaded.snapshot {
        Some(snap) => State::from_snapshot(snap, 1000),
        None => State::new(1000),
    };
    for r in &loaded.records {
        s.apply(r);
    }
    s
}

/// Every task file (a dispatch name) anywhere in pools and mailboxes: path → task id fragment.
fn task_files(w: &World) -> BTreeMap<PathBuf, String> {
    w.fs.files()
        .into_keys()
        .filter(|p| {
            let s = p.to_string_lossy();
            (s.contains("/queues/") || s.contains("/mailboxes/"))
                && (s.contains("/new/") || s.contains("/cur/"))
        })
        .filter_map(|p| {
            let id = DispatchName::parse(p.file_name()?.to_str()?)?.id_fragment;
            Some((p, id))
        })
        .collect()
}

/// Each live task's file is where the journal says, intact, and it has no other file.
fn check_places(w: &World, ctx: &str) {
    let state = rebuilt_state(&w.fs, &w.layout);
    let files = task_files(w);
    let comms = w.layout.comms();
    let mut expected = BTreeSet::new();
    for l in state.lives() {
        let path = match &l.place {
            Place::Queued { dir, name } => comms.join(dir).join("new").join(name),
            Place::Held { agent, name, .. } => w.layout.mailbox(agent).cur().join(name),
            _ => continue,
        };
        let bytes =
            w.fs.read(&path, 1 << 20)
                .unwrap_or_else(|e| panic!("{ctx}: {} has no file: {e}", l.task.task_id));
        if matches!(l.place, Place::Queued { .. }) {
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{ctx}: queued file {} torn: {e}", path.display()));
            assert_eq!(v["task_id"], json!(l.task.task_id), "{ctx}");
        }
        expected.insert(path);
    }
    for (p, id) in &files {
        assert!(
            expected.contains(p),
            "{ctx}: task file {} of {id} is not where the journal puts it",
            p.display()
        );
    }
}

/// The final invariants, from the journal and the files alone.
fn check_final(w: &World, ctx: &str) {
    let records = all_records(&w.fs, &w.layout);
    let state = rebuilt_state(&w.fs, &w.layout);
    let mut submits: BTreeMap<&str, usize> = BTreeMap::new();
    let mut completes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        let id = r.entry.task_id().unwrap_or("");
        match r.entry {
            Entry::Submit(_) => *submits.entry(id).or_default() += 1,
            Entry::Complete(_) => *completes.entry(id).or_default() += 1,
            Entry::Stray { .. } => panic!("{ctx}: the broker found a task file it did not know: {r:?}"),
            _ => {}
        }
    }
    for id in w.intended.keys() {
        assert_eq!(submits.get(id.as_str()), Some(&1), "{ctx}: task {id} must exist exactly once");
        let status = state.status_of(id);
        assert!(status.is_some_and(Status::is_terminal), "{ctx}: {id} did not finish: {status:?}");
        assert!(completes.get(id.as_str()).copied().unwrap_or(0) <= 1, "{ctx}: {id} completed twice");
        if w.acked_cancels.contains(id) {
            assert_eq!(status, Some(Status::Cancelled), "{ctx}: acknowledged cancel of {id} lost");
        }
    }
    assert_eq!(submits.len(), w.intended.len(), "{ctx}: unexpected tasks {submits:?}");
    // Acknowledged reports: accepted, or refused only because the claim was legitimately taken
    // back (lease expiry, cancel) before the report was read.
    let taken_back = |r: &Report| {
        records.iter().any(|x| {
            matches!(&x.entry, Entry::Expire(t) if t.claim.ends_with(&r.claim))
                || matches!(&x.entry, Entry::Cancel { task_id, .. } if *task_id == r.task)
        })
    };
    let mut legit_stale = BTreeSet::new();
    for r in &w.acked_reports {
        let accepted = records.iter().any(
            |x| matches!(&x.entry, Entry::Complete(y) | Entry::Fail(y) | Entry::Release(y) if y.msg == r.msg),
        );
        if accepted {
            continue;
        }
        assert!(
            taken_back(r),
            "{ctx}: acknowledged report {} on {} ({}) was lost: {:?}",
            r.msg,
            r.claim,
            r.task,
            records.iter().filter(|x| x.entry.msg() == Some(r.msg.as_str())).collect::<Vec<_>>()
        );
        legit_stale.insert(r.msg.clone());
    }
    // Refused input is kept: every refusal's file is in quarantine.
    for r in records.iter().filter_map(|r| match &r.entry {
        Entry::Reject(x) => Some(x),
        _ => None,
    }) {
        let path = w.layout.comms().join(&r.path);
        assert!(w.fs.stat(&path).unwrap().is_some(), "{ctx}: refused {:?} is not in quarantine", r.msg);
        let reason = w.fs.read(&PathBuf::from(format!("{}.error.json", path.display())), 1 << 20);
        let reason: Option<Value> = reason.ok().and_then(|b| serde_json::from_slice(&b).ok());
        assert!(
            reason.is_some_and(|v| v["reason"].is_string()),
            "{ctx}: refused {:?} has no readable reason beside it",
            r.msg
        );
    }
    // Quarantine holds only input that is bad on its own terms.
    for f in w.fs.list(&w.layout.quarantine_dir()).unwrap() {
        let name = f.name_str().unwrap();
        if name.ends_with(".error.json") || name.starts_with('.') {
            continue;
        }
        let original = name.split_once('-').map(|x| x.1).unwrap_or(name);
        assert!(
            w.expected_bad.contains(original) || legit_stale.contains(original),
            "{ctx}: {name} quarantined though it was good input: {:?}",
            records.iter().filter(|x| x.entry.msg() == Some(original)).collect::<Vec<_>>()
        );
    }
    // No task file is left anywhere: every task finished.
    assert!(task_files(w).is_empty(), "{ctx}: files left behind: {:?}", task_files(w));
    // The boards equal the state rebuilt from the journal.
    let by_id = |v: Vec<Value>| -> BTreeMap<String, Value> {
        v.into_iter().map(|t| (t["task_id"].as_str().unwrap().to_string(), t)).collect()
    };
    let mut want: std::collections::HashMap<Board, Vec<Value>> =
        Board::ALL.iter().map(|b| (*b, Vec::new())).collect();
    for l in state.lives() {
        let b = match l.place {
            Place::Backlog | Place::Done => Board::Backlog,
            Place::Queued { .. } => Board::Ready,
            Place::Held { .. } => Board::Working,
        };
        want.get_mut(&b).unwrap().push(serde_json::to_value(&l.task).unwrap());
    }
    want.insert(
        Board::Completed,
        state.recent_done().map(|t: &Task| serde_json::to_value(t).unwrap()).collect(),
    );
    for b in Board::ALL {
        let bytes = w.fs.read(&w.layout.board(b), 1 << 24).unwrap();
        let got: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(by_id(got), by_id(want[&b].clone()), "{ctx}: board {b:?} differs from the journal");
    }
}

// ------------------------------------------------------------------------------- scenarios

fn cfg() -> Config {
    let mut c = Config::default();
    c.broker.lease_secs = 30;
    c.broker.settle_ms = 0;
    c.broker.backoff_base_secs = 5;
    c
}

fn task(id: &str) -> Value {
    json!({"task_id": id, "name": format!("task {id}"), "max_attempts": 5})
}

struct Scenario {
    name: &'static str,
    cfg: fn() -> Config,
    script: fn(&mut World) -> R,
}

fn sc_submit(w: &mut World) -> R {
    w.start()?;
    w.submit(task("S1"))?;
    w.submit(task("S2"))?;
    w.step()
}

fn sc_dispatch(w: &mut World) -> R {
    w.start()?;
    w.submit(json!({"task_id": "D1", "priority": "HIGH"}))?;
    w.submit(json!({"task_id": "D2", "assigned_to": "A2"}))?;
    w.step()?;
    w.step()
}

fn sc_claim(w: &mut World) -> R {
    w.start()?;
    w.submit(task("C1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()
}

fn sc_complete(w: &mut World) -> R {
    w.start()?;
    w.submit(task("K1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()
}

fn sc_fail_retry(w: &mut World) -> R {
    w.start()?;
    w.submit(task("F1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.report("A1", &c, json!({"kind": "fail", "error": "flaky", "retryable": true}))?;
    w.step()?;
    advance(6);
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn sc_lease_expiry(w: &mut World) -> R {
    w.start()?;
    w.submit(task("L1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()?;
    advance(31);
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn sc_cancel_held(w: &mut World) -> R {
    w.start()?;
    w.submit(task("X1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()?;
    w.cancel("X1")?;
    w.step()
}

fn sc_release(w: &mut World) -> R {
    w.start()?;
    w.submit(task("R1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.report("A1", &c, json!({"kind": "release"}))?;
    w.step()?;
    w.claim("A2")?;
    w.step()
}

fn sc_boards(w: &mut World) -> R {
    w.start()?;
    w.submit(task("B1"))?;
    w.step()?;
    w.boards()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.boards()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.boards()
}

fn sc_compaction(w: &mut World) -> R {
    w.start()?;
    for id in ["P1", "P2"] {
        w.submit(task(id))?;
    }
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.claim("A2")?;
    w.step()
}

fn sc_duplicate(w: &mut World) -> R {
    w.start()?;
    w.submit(task("U1"))?;
    w.step()?;
    w.submit(task("U1"))?;
    w.submit_bad(json!({"task_id": "U1", "name": "different"}))?;
    w.step()
}

fn sc_dependencies(w: &mut World) -> R {
    w.start()?;
    w.submit(task("Q1"))?;
    w.submit(json!({"task_id": "Q2", "depends_on": ["Q1"]}))?;
    w.step()?;
    let c = w.claim("A1")?.expect("the parent is ready");
    w.complete("A1", &c)?;
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn mixed_cfg() -> Config {
    let mut c = cfg();
    c.broker.compact_after_records = 7;
    c
}

/// Long mode only: several tasks at once, two agents, a failure, a cancel, an expiry, a duplicate
/// and compactions, so that crashes land between unrelated operations of one batch.
fn sc_mixed(w: &mut World) -> R {
    w.start()?;
    w.submit(json!({"task_id": "M1", "priority": "HIGH", "max_attempts": 5}))?;
    w.submit(task("M2"))?;
    w.submit(json!({"task_id": "M3", "depends_on": ["M1"], "max_attempts": 5}))?;
    w.submit(json!({"task_id": "M4", "assigned_to": "A2", "max_attempts": 5}))?;
    w.step()?;
    let a = w.claim("A1")?.expect("M1 is ready");
    let b = w.claim("A2")?.expect("M4 or M2 is ready");
    w.step()?;
    w.submit(task("M2"))?;
    w.complete("A1", &a)?;
    w.report("A2", &b, json!({"kind": "fail", "error": "flaky", "retryable": true}))?;
    w.cancel("M2")?;
    w.step()?;
    if let Some(c) = w.claim("A1")? {
        w.step()?;
        advance(31);
        w.step()?;
        let _ = c;
    }
    advance(10);
    w.step()?;
    while let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "submit", cfg, script: sc_submit },
        Scenario { name: "dispatch", cfg, script: sc_dispatch },
        Scenario { name: "claim observed", cfg, script: sc_claim },
        Scenario { name: "complete", cfg, script: sc_complete },
        Scenario { name: "fail, retry after backoff", cfg, script: sc_fail_retry },
        Scenario { name: "lease expiry", cfg, script: sc_lease_expiry },
        Scenario { name: "cancel of a held task", cfg, script: sc_cancel_held },
        Scenario { name: "release", cfg, script: sc_release },
        Scenario { name: "board rewrite", cfg, script: sc_boards },
        Scenario {
            name: "journal compaction",
            cfg: || {
                let mut c = cfg();
                c.broker.compact_after_records = 3;
                c
            },
            script: sc_compaction,
        },
        Scenario { name: "duplicate submit", cfg, script: sc_duplicate },
        Scenario { name: "dependencies", cfg, script: sc_dependencies },
    ]
}

/// Runs a scenario, crashing after `k` mutating operations (none: run to the end), restarts as
/// `mode` says, recovers, finishes the workload and checks. Returns the operations the script did.
fn run_one(sc: &Scenario, durability: Durability, crash: Option<u64>, mode: Crash) -> u64 {
    run_twice(sc, durability, crash, mode, None)
}

/// Like [`run_one`], and when `again` is set, loses power a second time after that many operations
/// of the recovery (opening, reconciling, the first pass): recovery must survive its own crash.
fn run_twice(
    sc: &Scenario,
    durability: Durability,
    crash: Option<u64>,
    mode: Crash,
    again: Option<u64>,
) -> u64 {
    let ctx =
        format!("{} ({durability:?}) crashed after {crash:?} ops ({mode:?}), again after {again:?}", sc.name);
    let mut cfg = (sc.cfg)();
    cfg.broker.durability = durability;
    let mut w = World::new(cfg);
    let base = w.fs.ops();
    if let Some(k) = crash {
        w.fs.crash_after(k);
    }
    let result = (sc.script)(&mut w);
    let ops = w.fs.ops() - base;
    match (&result, w.fs.crashed()) {
        (Ok(()), _) | (Err(_), true) => {}
        (Err(e), false) => panic!("{ctx}: failed without a crash: {e:?}"),
    }
    w.engine = None;
    w.fs.restart(mode);
    if let Some(j) = again {
        w.fs.crash_after(j);
        let recovered = w.start().and_then(|()| w.step());
        if w.fs.crashed() {
            SECOND_CRASHES.with(|c| c.set(c.get() + 1));
            w.engine = None;
            w.fs.restart(Crash::PowerLoss);
        } else {
            recovered.unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            w.fs.disarm();
        }
    }
    if w.engine.is_none() {
        w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
    }
    w.finish(&ctx);
    check_final(&w, &ctx);
    ops
}

fn long_mode() -> bool {
    std::env::var_os("MAILROOM_CRASH_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Scrambled seeds per crash point: none in CI; `MAILROOM_CRASH_LONG=1` gives 32, and a larger
/// number gives that many.
fn scrambled_seeds() -> u64 {
    match std::env::var("MAILROOM_CRASH_LONG").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) if n > 1 => n,
        _ if long_mode() => 32,
        _ => 0,
    }
}

#[test]
fn power_loss_at_every_crash_point() {
    let mut scenarios = scenarios();
    if long_mode() {
        scenarios.push(Scenario { name: "mixed workload", cfg: mixed_cfg, script: sc_mixed });
    }
    let seeds = scrambled_seeds();
    let lossy: Vec<Crash> = [Crash::PowerLoss, Crash::Process]
        .into_iter()
        .chain((0..seeds).map(|seed| Crash::Scrambled { seed }))
        .collect();
    // `never` gives up power-loss durability by design: only process crashes are checked there.
    let mut work: Vec<(&Scenario, Durability, &[Crash])> = Vec::new();
    for sc in &scenarios {
        work.push((sc, Durability::Batch, &lossy));
        work.push((sc, Durability::Always, &lossy));
        work.push((sc, Durability::Never, &[Crash::Process]));
    }
    let mut seconds = 0;
    let results: Vec<(String, Durability, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let mine: Vec<_> = work.iter().skip(i).step_by(2).cloned().collect();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (sc, durability, modes) in mine {
                        let total = run_one(sc, durability, None, Crash::Process);
                        let mut points = 0;
                        for k in 0..=total {
                            for mode in modes {
                                let mode = match *mode {
                                    Crash::Scrambled { seed } => {
                                        Crash::Scrambled { seed: seed * 1_000_003 + k }
                                    }
                                    m => m,
                                };
                                run_one(sc, durability, Some(k), mode);
                                points += 1;
                            }
                            if durability != Durability::Never {
                                // A second power loss during the recovery from this one.
                                run_twice(sc, durability, Some(k), Crash::PowerLoss, Some(k * 7 % 40));
                                points += 1;
                            }
                        }
                        out.push((sc.name.to_string(), durability, total, points));
                    }
                    (out, SECOND_CRASHES.with(Cell::get))
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let (out, second) = h.join().unwrap();
            all.extend(out);
            seconds += second;
        }
        all
    });
    let order = |name: &str| scenarios.iter().position(|s| s.name == name);
    let mut results = results;
    results.sort_by_key(|r| (order(&r.0), format!("{:?}", r.1)));
    let points: u64 = results.iter().map(|r| r.3).sum();
    for (name, durability, ops, pts) in &results {
        println!(
            "powerloss: {name:<28} {durability:<7?} {ops:>4} mutating operations, {pts:>5} crash points"
        );
    }
    println!(
        "powerloss: {} scenarios x 3 durability modes, {points} simulated crash points \
         (power loss, process crash, power loss during recovery{}; {seconds} of them struck a recovery \
         a second time), lost 0, duplicated 0",
        scenarios.len(),
        if seeds > 0 { format!(", {seeds} scrambled seeds") } else { String::new() }
    );
}

#[test]
fn a_failed_journal_fsync_stops_the_broker_and_loses_nothing_acknowledged() {
    for (what, fault) in [
        ("fsync EIO", Fault::eio(FaultOn::Sync, 1).on_path("journal/segment")),
        ("append EIO", Fault::eio(FaultOn::Write, 1).on_path("journal/segment")),
        ("append ENOSPC", Fault::enospc(FaultOn::Write, 1).on_path("journal/segment")),
    ] {
        let mut w = World::new(cfg());
        w.start().unwrap();
        w.submit(task("J1")).unwrap();
        w.fs.inject(fault);
        let err = w.step();
        assert!(err.is_err(), "{what}: the engine must stop");
        let inbox_new = w.layout.broker_inbox().new_dir();
        assert_eq!(w.fs.list(&inbox_new).unwrap().len(), 1, "{what}: the message was not consumed");
        // Whatever the loop does next (it flushes on the way out), nothing moves.
        assert!(w.engine().flush().is_err(), "{what}: a broken journal stays broken");
        assert!(w.engine().step().is_err(), "{what}: no further pass");
        assert_eq!(w.fs.list(&inbox_new).unwrap().len(), 1, "{what}: still not consumed");
        assert!(task_files(&w).is_empty(), "{what}: nothing dispatched past a failed journal write");
        w.fs.clear_faults();
        w.engine = None;
        w.fs.restart(Crash::PowerLoss);
        w.start().unwrap();
        w.finish(what);
        check_final(&w, what);
    }
}

#[test]
fn faults_anywhere_stop_the_broker_cleanly_and_recovery_loses_nothing() {
    // The n-th mutating operation of the complete scenario fails (EIO, then ENOSPC): the run
    // stops with an error (never a panic), and after a power loss recovery is whole.
    let sc = Scenario { name: "complete with a fault", cfg, script: sc_complete };
    let total = run_one(&sc, Durability::Batch, None, Crash::Process);
    println!("powerloss: {} single-operation faults (EIO and ENOSPC at each of {total})", 2 * total);
    for n in 1..=total {
        for fault in [Fault::eio(FaultOn::Any, n), Fault::enospc(FaultOn::Any, n)] {
            let ctx = format!("fault {fault:?}");
            let mut w = World::new(cfg());
            w.fs.inject(fault);
            let _ = sc_complete(&mut w);
            w.fs.clear_faults();
            w.engine = None;
            w.fs.restart(Crash::PowerLoss);
            w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            w.finish(&ctx);
            check_final(&w, &ctx);
        }
    }
}

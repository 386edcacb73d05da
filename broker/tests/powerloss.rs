//! Power loss at every step: each scenario drives the broker `Engine` and the real SDK (a
//! producer `Client` and two `Agent`s, claiming and reporting with the very code agents run) over
//! `SimFs`, counts the mutating filesystem operations of a clean run, then replays it crashing
//! after every one of them (power loss, which drops everything not fsynced, and process crash,
//! which keeps it), recovers, lets the workload finish, and checks the invariants: nothing
//! acknowledged is lost, nothing is duplicated, every task is in one place, the boards match the
//! journal, and quarantine holds only genuinely bad input. `MAILROOM_CRASH_LONG=1` adds scrambled
//! power losses (a random subset of unsynced changes reaches the disk) and more seeds.
//!
//! Time is a `ManualClock` owned by each `World`, shared by the engine, the filesystem's mtimes
//! and the names of the messages the SDK sends (one name source for the producer and the agents),
//! and it moves only when a scenario says so: every run of a scenario sends the same messages, and
//! the broker reads them in the same order, whatever the wall clock does. What the suite reads from
//! the journal is all in `journal_view/mod.rs`.

mod journal_view;

use agent_sdk::{Ack, Agent, Client};
use journal_view::JournalView;
use mailroom::config::Config;
use mailroom::engine::Engine;
use protocol::Timestamp;
use protocol::names::DispatchName;
use runtime_layout::sim::{Crash, Fault, FaultOn, SimFs};
use runtime_layout::{Board, Durability, Fs, Layout, ManualClock, NameSource, deliver};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// 2026-09-21T...: any fixed start works; the clock only moves when a scenario says so.
const T0: i64 = 1_790_000_000_000_000;
const ROOT: &str = "/sim/runtime";
const AGENTS: [&str; 2] = ["A1", "A2"];

/// Why a scripted run stopped early: the simulated machine died under it (the engine's, the
/// SDK's or the filesystem's error, shown with `{:?}` when a run fails).
type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A complete, fail or release whose delivery returned (the agent was told it was sent).
#[derive(Debug, Clone)]
struct Report {
    msg: String,
    task: String,
    claim: String,
}

/// What an agent reports on a claim.
enum Outcome {
    Complete,
    /// A retryable failure.
    Fail,
    Release,
}

/// The machine under test plus what the producers and agents know, which survives crashes.
struct World {
    fs: SimFs,
    clock: ManualClock,
    layout: Layout,
    cfg: Config,
    engine: Option<Engine>,
    /// Shared by the producer and the agents, on the manual clock: the broker reads their messages
    /// in the same order in every run.
    names: Arc<NameSource>,
    producer: Client,
    agents: Vec<Agent>,
    /// Every task a producer means to submit, as first submitted.
    intended: BTreeMap<String, Value>,
    acked_submits: BTreeSet<String>,
    acked_reports: Vec<Report>,
    acked_cancels: BTreeSet<String>,
    /// Messages sent knowing they must be refused (a conflicting duplicate).
    expected_bad: BTreeSet<String>,
    clients: Clients,
    /// Messages sent under `Clients::Ack` whose answer the client has not seen yet.
    pending: Vec<(String, Pending)>,
    /// Every message sent under `Clients::Ack` that was never answered: after a power loss one can
    /// arrive torn (its client never fsynced it) and be refused; its client sent it again.
    unanswered: BTreeSet<String>,
}

/// How the producers and agents make sure the broker has their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// Each message is fsynced (file and inbox) before the call returns: acknowledged at once.
    Fsync,
    /// Messages are written without fsync and acknowledged when the broker moves them out of
    /// `inbox/new/` (the answer of PROTOCOL.md: it does so only once they are journaled).
    Ack,
}

/// What an unanswered message was, to count it once answered.
#[derive(Debug, Clone)]
enum Pending {
    Submit(String),
    Cancel(String),
    Report(Report),
}

impl World {
    fn new(cfg: Config, clients: Clients) -> Self {
        let clock = ManualClock::new(Timestamp::from_micros(T0));
        let fs = SimFs::with_clock(clock.clock());
        let layout = Layout::new(ROOT);
        layout.create(&fs).unwrap();
        let shared: Arc<dyn Fs> = Arc::new(fs.clone());
        let names = Arc::new(NameSource::with_clock(clock.clock()));
        // The SDK as agents run it, without waiting inside the call (the suite is one thread: it
        // steps the broker itself, and sees the answer after the step).
        let durability = match clients {
            Clients::Fsync => Durability::Always,
            Clients::Ack => Durability::Never,
        };
        let producer = Client::open_with(shared.clone(), ROOT)
            .unwrap()
            .with_ack(Ack::None)
            .with_durability(durability)
            .with_names(names.clone());
        let agents = AGENTS
            .iter()
            .map(|a| {
                Agent::register_with(shared.clone(), ROOT, a)
                    .unwrap()
                    .with_ack(Ack::None)
                    .with_durability(durability)
                    .with_names(names.clone())
            })
            .collect();
        Self {
            fs,
            clock,
            layout,
            cfg,
            engine: None,
            names,
            producer,
            agents,
            intended: BTreeMap::new(),
            acked_submits: BTreeSet::new(),
            acked_reports: Vec::new(),
            acked_cancels: BTreeSet::new(),
            expected_bad: BTreeSet::new(),
            clients,
            pending: Vec::new(),
            unanswered: BTreeSet::new(),
        }
    }

    /// Restarts the machine as `mode` says. A power loss stops the clients too: the answers they
    /// were waiting for are never seen (they send those messages again when they come back).
    fn restart(&mut self, mode: Crash) {
        self.fs.restart(mode);
        if mode != Crash::Process {
            self.pending.clear();
        }
    }

    /// Counts what the client now knows was taken: at once when it fsyncs, when the broker has
    /// moved the message out of the inbox under `Clients::Ack`.
    fn sent(&mut self, msg: String, what: Pending) {
        match self.clients {
            Clients::Fsync => self.acknowledge(what),
            Clients::Ack => {
                self.unanswered.insert(msg.clone());
                self.pending.push((msg, what));
            }
        }
    }

    fn acknowledge(&mut self, what: Pending) {
        match what {
            Pending::Submit(id) => {
                self.acked_submits.insert(id);
            }
            Pending::Cancel(id) => {
                self.acked_cancels.insert(id);
            }
            Pending::Report(r) => self.acked_reports.push(r),
        }
    }

    /// The answers the client can see now: messages no longer in `inbox/new/`.
    fn collect_answers(&mut self) {
        let new = self.layout.broker_inbox().new_dir();
        let pending = std::mem::take(&mut self.pending);
        for (msg, what) in pending {
            if matches!(self.fs.stat(&new.join(&msg)), Ok(None)) {
                self.unanswered.remove(&msg);
                self.acknowledge(what);
            } else {
                self.pending.push((msg, what));
            }
        }
    }

    fn start(&mut self) -> R {
        let mut e = Engine::open(Arc::new(self.fs.clone()), self.layout.clone(), self.cfg.clone())?;
        e.set_clock(self.clock.clock());
        e.reconcile()?;
        self.engine = Some(e);
        Ok(())
    }

    fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the broker is running")
    }

    fn step(&mut self) -> R {
        while self.engine().step()?.more {}
        self.collect_answers();
        Ok(())
    }

    fn boards(&mut self) -> R {
        Ok(self.engine().write_boards(true)?)
    }

    fn advance(&self, secs: i64) {
        self.clock.advance_secs(secs);
    }

    fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|a| a.name() == name).expect("one of AGENTS")
    }

    fn submit(&mut self, task: Value) -> R {
        let id = task["task_id"].as_str().unwrap().to_string();
        self.intended.entry(id.clone()).or_insert_with(|| task.clone());
        let msg = self.producer.submit(&task)?;
        self.sent(msg, Pending::Submit(id));
        Ok(())
    }

    /// A conflicting duplicate, written by hand under a name taken first: the test must know the
    /// name even when a crash cuts the send short and the file arrives anyway.
    fn submit_bad(&mut self, task: Value) -> R {
        let name = self.names.next("msg");
        self.expected_bad.insert(name.clone());
        let bytes = json!({"kind": "submit", "task": task}).to_string();
        deliver(&self.fs, &self.layout.broker_inbox(), &name, bytes.as_bytes(), Durability::Always)?;
        Ok(())
    }

    fn cancel(&mut self, id: &str) -> R {
        let msg = self.producer.cancel(id)?;
        self.sent(msg, Pending::Cancel(id.to_string()));
        Ok(())
    }

    /// The SDK's claim over every pool and the agent's own `new/`: the claim's name, if any.
    fn claim(&mut self, agent: &str) -> R<Option<String>> {
        Ok(self.agent(agent).claim(&[])?.map(|c| c.name))
    }

    /// The SDK's report on a claim: `false` when it refuses because the claim is no longer held.
    fn report(&mut self, agent: &str, claim: &str, outcome: Outcome) -> R<bool> {
        let a = self.agent(agent);
        let sent = match outcome {
            Outcome::Complete => a.complete(claim, json!({"by": agent})),
            Outcome::Fail => a.fail(claim, "flaky", true),
            Outcome::Release => a.release(claim),
        };
        let msg = match sent {
            Ok(msg) => msg,
            Err(agent_sdk::Error::ClaimLost { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let task = DispatchName::parse(claim).unwrap().id_fragment;
        self.sent(msg.clone(), Pending::Report(Report { msg, task, claim: claim.to_string() }));
        Ok(true)
    }

    fn complete(&mut self, agent: &str, claim: &str) -> R<bool> {
        self.report(agent, claim, Outcome::Complete)
    }

    fn held(&self, agent: &str) -> Vec<String> {
        self.agent(agent).held().unwrap()
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
            self.advance(10);
        }
        self.engine().flush().unwrap();
    }
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
    let journal = JournalView::state_only(&w.fs, &w.layout);
    let mut expected = BTreeSet::new();
    for f in journal.expected_files() {
        let bytes =
            w.fs.read(&f.path, 1 << 20).unwrap_or_else(|e| panic!("{ctx}: {} has no file: {e}", f.task_id));
        if f.queued {
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{ctx}: queued file {} torn: {e}", f.path.display()));
            assert_eq!(v["task_id"], json!(f.task_id), "{ctx}");
        }
        expected.insert(f.path);
    }
    for (p, id) in &task_files(w) {
        assert!(
            expected.contains(p),
            "{ctx}: task file {} of {id} is not where the journal puts it",
            p.display()
        );
    }
}

/// The final invariants, from the journal and the files alone.
fn check_final(w: &World, ctx: &str) {
    let journal = JournalView::read(&w.fs, &w.layout);
    if let Some(r) = journal.stray() {
        panic!("{ctx}: the broker found a task file it did not know: {r}");
    }
    let (submits, completes) = (journal.submits(), journal.completes());
    for id in w.intended.keys() {
        assert_eq!(submits.get(id), Some(&1), "{ctx}: task {id} must exist exactly once");
        let status = journal.status_of(id);
        assert!(status.is_some_and(protocol::Status::is_terminal), "{ctx}: {id} did not finish: {status:?}");
        assert!(completes.get(id).copied().unwrap_or(0) <= 1, "{ctx}: {id} completed twice");
        if w.acked_cancels.contains(id) {
            assert_eq!(status, Some(protocol::Status::Cancelled), "{ctx}: acknowledged cancel of {id} lost");
        }
    }
    assert_eq!(submits.len(), w.intended.len(), "{ctx}: unexpected tasks {submits:?}");
    // Acknowledged reports: accepted, or refused only because the claim was legitimately taken
    // back (lease expiry, cancel) before the report was read.
    let mut legit_stale = BTreeSet::new();
    for r in &w.acked_reports {
        if journal.accepted(&r.msg) {
            continue;
        }
        assert!(
            journal.taken_back(&r.claim, &r.task),
            "{ctx}: acknowledged report {} on {} ({}) was lost: {:?}",
            r.msg,
            r.claim,
            r.task,
            journal.about(&r.msg)
        );
        legit_stale.insert(r.msg.clone());
    }
    // Refused input is kept: every refusal's file is in quarantine.
    for (msg, path) in journal.refusals() {
        assert!(w.fs.stat(&path).unwrap().is_some(), "{ctx}: refused {msg:?} is not in quarantine");
        let reason = w.fs.read(&PathBuf::from(format!("{}.error.json", path.display())), 1 << 20);
        let reason: Option<Value> = reason.ok().and_then(|b| serde_json::from_slice(&b).ok());
        assert!(
            reason.is_some_and(|v| v["reason"].is_string()),
            "{ctx}: refused {msg:?} has no readable reason beside it"
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
            w.expected_bad.contains(original)
                || legit_stale.contains(original)
                || w.unanswered.contains(original),
            "{ctx}: {name} quarantined though it was good input: {:?}",
            journal.about(original)
        );
    }
    // No task file is left anywhere: every task finished.
    assert!(task_files(w).is_empty(), "{ctx}: files left behind: {:?}", task_files(w));
    // The boards equal the state rebuilt from the journal.
    let want = journal.boards();
    for b in Board::ALL {
        let bytes = w.fs.read(&w.layout.board(b), 1 << 24).unwrap();
        let got: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        let got: BTreeMap<String, Value> =
            got.into_iter().map(|t| (t["task_id"].as_str().unwrap().to_string(), t)).collect();
        assert_eq!(got, want[&b], "{ctx}: board {b:?} differs from the journal");
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

/// A completion, then a task whose file the broker writes into the finished claim's file (kept
/// in `broker/spare/`): the rename out of `cur/`, the rewrite in place and the rename into `new/`.
fn sc_complete(w: &mut World) -> R {
    w.start()?;
    w.submit(task("K1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.submit(task("K2"))?;
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.step()?;
        w.complete("A2", &c)?;
        w.step()?;
    }
    Ok(())
}

fn sc_fail_retry(w: &mut World) -> R {
    w.start()?;
    w.submit(task("F1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.report("A1", &c, Outcome::Fail)?;
    w.step()?;
    w.advance(6);
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
    w.advance(31);
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
    w.report("A1", &c, Outcome::Release)?;
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
    w.step()?;
    // P1 is finished and, compacted, remembered in a tomb file: the same submit again is a
    // duplicate, never a second task, whichever operation of the compaction the crash cut.
    w.submit(task("P1"))?;
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

/// A ready window of two: the third LOW task waits without a file, the CRITICAL one takes the
/// place of the last LOW file (withdrawn), and claims make room for the waiting ones.
fn sc_window(w: &mut World) -> R {
    w.start()?;
    for id in ["W1", "W2", "W3"] {
        w.submit(json!({"task_id": id, "priority": "LOW", "max_attempts": 5}))?;
    }
    w.step()?;
    w.submit(json!({"task_id": "W4", "priority": "CRITICAL", "max_attempts": 5}))?;
    w.step()?;
    let c = w.claim("A1")?.expect("a task is ready");
    w.step()?;
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
    w.report("A2", &b, Outcome::Fail)?;
    w.cancel("M2")?;
    w.step()?;
    if let Some(c) = w.claim("A1")? {
        w.step()?;
        w.advance(31);
        w.step()?;
        let _ = c;
    }
    w.advance(10);
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
        Scenario { name: "complete, then a task file in the claim's file", cfg, script: sc_complete },
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
        Scenario {
            name: "ready window",
            cfg: || {
                let mut c = cfg();
                c.dispatch.ready_window = 2;
                c.broker.compact_after_records = 9;
                c
            },
            script: sc_window,
        },
    ]
}

/// Runs a scenario, crashing after `k` mutating operations (none: run to the end), restarts as
/// `mode` says, recovers, finishes the workload and checks. Returns the operations the script did.
fn run_one(sc: &Scenario, setup: Setup, crash: Option<u64>, mode: Crash) -> u64 {
    run_twice(sc, setup, crash, mode, None).0
}

/// The broker's durability and how clients make sure of their messages.
type Setup = (Durability, Clients);

/// Like [`run_one`], and when `again` is set, loses power a second time after that many operations
/// of the recovery (opening, reconciling, the first pass): recovery must survive its own crash.
/// Also returns whether that second power loss struck (the recovery may finish first).
fn run_twice(
    sc: &Scenario,
    setup: Setup,
    crash: Option<u64>,
    mode: Crash,
    again: Option<u64>,
) -> (u64, bool) {
    let (durability, clients) = setup;
    let ctx = format!(
        "{} ({durability:?}, {clients:?}) crashed after {crash:?} ops ({mode:?}), again after {again:?}",
        sc.name
    );
    let mut cfg = (sc.cfg)();
    cfg.broker.durability = durability;
    let mut w = World::new(cfg, clients);
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
    w.restart(mode);
    let mut struck_twice = false;
    if let Some(j) = again {
        w.fs.crash_after(j);
        let recovered = w.start().and_then(|()| w.step());
        if w.fs.crashed() {
            struck_twice = true;
            w.engine = None;
            w.restart(Crash::PowerLoss);
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
    (ops, struck_twice)
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
    // Clients that wait for the broker's answer instead of fsyncing: under the default `batch`.
    let mut work: Vec<(&Scenario, Setup, &[Crash])> = Vec::new();
    for sc in &scenarios {
        work.push((sc, (Durability::Batch, Clients::Fsync), &lossy));
        work.push((sc, (Durability::Batch, Clients::Ack), &lossy));
        work.push((sc, (Durability::Always, Clients::Fsync), &lossy));
        work.push((sc, (Durability::Never, Clients::Fsync), &[Crash::Process]));
    }
    let mut seconds = 0;
    let results: Vec<(String, Setup, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let mine: Vec<_> = work.iter().skip(i).step_by(2).cloned().collect();
                s.spawn(move || {
                    let (mut out, mut second) = (Vec::new(), 0);
                    for (sc, setup, modes) in mine {
                        let durability = setup.0;
                        let total = run_one(sc, setup, None, Crash::Process);
                        let mut points = 0;
                        for k in 0..=total {
                            for mode in modes {
                                let mode = match *mode {
                                    Crash::Scrambled { seed } => {
                                        Crash::Scrambled { seed: seed * 1_000_003 + k }
                                    }
                                    m => m,
                                };
                                run_one(sc, setup, Some(k), mode);
                                points += 1;
                            }
                            if durability != Durability::Never {
                                // A second power loss during the recovery from this one.
                                let again = Some(k * 7 % 40);
                                second += u64::from(run_twice(sc, setup, Some(k), Crash::PowerLoss, again).1);
                                points += 1;
                            }
                        }
                        out.push((sc.name.to_string(), setup, total, points));
                    }
                    (out, second)
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
    for (name, (durability, clients), ops, pts) in &results {
        println!(
            "powerloss: {name:<28} {durability:<7?} {clients:<6?} {ops:>4} mutating operations, {pts:>5} crash points"
        );
    }
    println!(
        "powerloss: {} scenarios x 4 setups (batch with fsyncing or answered clients, always, never), {points} simulated crash points \
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
        let mut w = World::new(cfg(), Clients::Fsync);
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
        w.restart(Crash::PowerLoss);
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
    let total = run_one(&sc, (Durability::Batch, Clients::Fsync), None, Crash::Process);
    println!("powerloss: {} single-operation faults (EIO and ENOSPC at each of {total})", 2 * total);
    for n in 1..=total {
        for fault in [Fault::eio(FaultOn::Any, n), Fault::enospc(FaultOn::Any, n)] {
            let ctx = format!("fault {fault:?}");
            let mut w = World::new(cfg(), Clients::Fsync);
            w.fs.inject(fault);
            let _ = sc_complete(&mut w);
            w.fs.clear_faults();
            w.engine = None;
            w.restart(Crash::PowerLoss);
            w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            w.finish(&ctx);
            check_final(&w, &ctx);
        }
    }
}

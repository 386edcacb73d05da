//! The simulated machine of the power-loss suite: a `World` (the broker's `Engine`, the SDK's
//! producer and agents over one `SimFs` on a manual clock) with what its clients were told, and
//! the checks every run ends with (each task in one place, intact; boards equal to the journal).

mod handoff;

use crate::journal_view::JournalView;
use agent_sdk::{Ack, Agent, Client};
use mailroom::config::Config;
use mailroom::engine::commands::{Command, Offer, Verdict};
use mailroom::engine::{Engine, Look};
use protocol::names::DispatchName;
use protocol::{Message, Timestamp};
use runtime_layout::sim::{Crash, SimFs};
use runtime_layout::{Board, Durability, Fs, Layout, ManualClock, NameSource, deliver};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot::{self, error::TryRecvError};

/// 2026-09-21T...: any fixed start works; the clock only moves when a scenario says so.
pub(crate) const T0: i64 = 1_790_000_000_000_000;
pub(crate) const ROOT: &str = "/sim/runtime";
pub(crate) const AGENTS: [&str; 2] = ["A1", "A2"];

/// Why a scripted run stopped early: the simulated machine died under it (the engine's, the
/// SDK's or the filesystem's error, shown with `{:?}` when a run fails).
pub(crate) type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A complete, fail or release whose delivery returned (the agent was told it was sent).
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) msg: String,
    pub(crate) task: String,
    pub(crate) claim: String,
}

/// What an agent reports on a claim.
pub(crate) enum Outcome {
    Complete,
    /// A retryable failure.
    Fail,
    Release,
}

/// The machine under test plus what the producers and agents know, which survives crashes.
pub(crate) struct World {
    pub(crate) fs: SimFs,
    pub(crate) clock: ManualClock,
    pub(crate) layout: Layout,
    pub(crate) cfg: Config,
    pub(crate) engine: Option<Engine>,
    /// Shared by the producer and the agents, on the manual clock: the broker reads their messages
    /// in the same order in every run.
    pub(crate) names: Arc<NameSource>,
    pub(crate) producer: Client,
    pub(crate) agents: Vec<Agent>,
    /// Every task a producer means to submit, as first submitted.
    pub(crate) intended: BTreeMap<String, Value>,
    pub(crate) acked_submits: BTreeSet<String>,
    pub(crate) acked_reports: Vec<Report>,
    pub(crate) acked_cancels: BTreeSet<String>,
    /// Messages sent knowing they must be refused (a conflicting duplicate).
    pub(crate) expected_bad: BTreeSet<String>,
    pub(crate) clients: Clients,
    /// Messages sent under `Clients::Ack` whose answer the client has not seen yet.
    pub(crate) pending: Vec<(String, Pending)>,
    /// Every message sent under `Clients::Ack` or `Clients::Socket` that was never answered:
    /// after a power loss one can arrive torn (its client never fsynced it) and be refused; its
    /// client sent it again.
    pub(crate) unanswered: BTreeSet<String>,
    /// Messages sent on the broker's socket under `Clients::Socket`, waiting for their answer.
    pub(crate) on_socket: Vec<(String, Message, Pending, Asked)>,
    /// Claims the broker made for agents whose await carried a report, as the answers came.
    pub(crate) granted: Vec<(String, String)>,
    /// Socket messages that arrive while the next pass reads and handles (about half of them:
    /// those sent while an odd number wait for their answer): the broker takes them just before
    /// that pass commits (`Engine::step_taking`), as the loop does.
    late: Vec<Command>,
}

/// What a request on the socket waits for: a message's verdict, or the answer to an await that
/// carried the message as its report (`after`), given only once the report is journaled.
pub(crate) enum Asked {
    Message(oneshot::Receiver<Verdict>),
    /// The agent, and the await's answer.
    Await(String, oneshot::Receiver<Offer>),
}

/// How the producers and agents make sure the broker has their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clients {
    /// Each message is fsynced (file and inbox) before the call returns: acknowledged at once.
    Fsync,
    /// Messages are written without fsync and acknowledged when the broker moves them out of
    /// `inbox/new/` (the answer of PROTOCOL.md: it does so only once they are journaled).
    Ack,
    /// Messages go on the broker's socket (as its front end hands them to the engine) and are
    /// acknowledged by its answer, sent only after their commit. With no broker, or when the
    /// answer never comes (the broker crashed), the same message goes as a file under the same
    /// name, unfsynced, acknowledged as under `Ack`: the SDK's fallback.
    Socket,
}

/// What an unanswered message was, to count it once answered.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Submit(String),
    Cancel(String),
    Report(Report),
}

impl World {
    pub(crate) fn new(cfg: Config, clients: Clients) -> Self {
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
            Clients::Ack | Clients::Socket => Durability::Never,
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
            on_socket: Vec::new(),
            granted: Vec::new(),
            late: Vec::new(),
        }
    }

    /// Restarts the machine as `mode` says. A power loss stops the clients too: the answers they
    /// were waiting for are never seen (they send those messages again when they come back).
    pub(crate) fn restart(&mut self, mode: Crash) {
        // Requests the stopped broker had not taken yet went with its connections.
        self.late.clear();
        if mode != Crash::Process {
            // An answer the broker sent before the power went was seen by its client.
            self.socket_answers();
            self.on_socket.clear();
            self.fs.restart(mode);
            self.pending.clear();
            return;
        }
        // A killed broker may have committed an answer and died before writing it to the
        // connection: its client saw nothing and sends the message again as a file (which the
        // next broker must know as taken, even across the snapshot of a compaction).
        self.fs.restart(mode);
        for (name, msg, what, _) in std::mem::take(&mut self.on_socket) {
            let _ = self.as_file(name, &msg, what);
        }
    }

    /// Counts the answers that came on the socket; the rest wait (or, when the broker dropped
    /// a request, go as files).
    fn socket_answers(&mut self) {
        for (name, msg, what, mut answer) in std::mem::take(&mut self.on_socket) {
            let answered = match &mut answer {
                Asked::Message(verdict) => verdict.try_recv().map(drop),
                Asked::Await(agent, offer) => offer.try_recv().map(|o| {
                    if let Offer::Claimed { name, .. } = o {
                        self.granted.push((agent.clone(), name));
                    }
                }),
            };
            match answered {
                Ok(()) => {
                    self.unanswered.remove(&name);
                    self.acknowledge(what);
                }
                Err(TryRecvError::Empty) => self.on_socket.push((name, msg, what, answer)),
                // The broker dropped the request (it stopped on an error): sent as a file.
                Err(TryRecvError::Closed) if self.engine.is_some() => {
                    let _ = self.as_file(name, &msg, what);
                }
                // Stopped: `restart` decides.
                Err(TryRecvError::Closed) => self.on_socket.push((name, msg, what, answer)),
            }
        }
    }

    /// Sends `msg` as `Clients::Socket` clients do: on the socket while a broker serves, else as
    /// a file.
    fn on_socket(&mut self, msg: Message, what: Pending) -> R {
        let name = self.names.next("msg");
        self.on_socket_as(name, msg, what)
    }

    fn on_socket_as(&mut self, name: String, msg: Message, what: Pending) -> R {
        self.unanswered.insert(name.clone());
        match self.engine.as_mut() {
            Some(e) => {
                let (reply, answer) = oneshot::channel();
                let cmd = Command::Message { name: name.clone(), msg: msg.clone(), reply, file_waits: None };
                if self.on_socket.len() % 2 == 1 {
                    self.late.push(cmd);
                } else {
                    e.take([cmd]);
                }
                self.on_socket.push((name, msg, what, Asked::Message(answer)));
                // An answer given at once (a refusal) is seen at once.
                self.socket_answers();
                Ok(())
            }
            None => self.as_file(name, &msg, what),
        }
    }

    /// The fallback: the message as a file under its name, unfsynced, answered as under `Ack`.
    fn as_file(&mut self, name: String, msg: &Message, what: Pending) -> R {
        let bytes = serde_json::to_vec(&msg.to_value())?;
        deliver(&self.fs, &self.layout.broker_inbox(), &name, &bytes, Durability::Never)?;
        self.pending.push((name, what));
        Ok(())
    }

    /// Counts what the client now knows was taken: at once when it fsyncs, when the broker has
    /// moved the message out of the inbox under `Clients::Ack`.
    pub(crate) fn sent(&mut self, msg: String, what: Pending) {
        match self.clients {
            Clients::Fsync => self.acknowledge(what),
            Clients::Ack | Clients::Socket => {
                self.unanswered.insert(msg.clone());
                self.pending.push((msg, what));
            }
        }
    }

    pub(crate) fn acknowledge(&mut self, what: Pending) {
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
    pub(crate) fn collect_answers(&mut self) {
        self.socket_answers();
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

    pub(crate) fn start(&mut self) -> R {
        let mut e = Engine::open(Arc::new(self.fs.clone()), self.layout.clone(), self.cfg.clone())?;
        e.set_clock(self.clock.clock());
        e.reconcile()?;
        self.engine = Some(e);
        Ok(())
    }

    pub(crate) fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the broker is running")
    }

    pub(crate) fn step(&mut self) -> R {
        let late = std::mem::take(&mut self.late);
        let mut more = self.engine().step_taking(Look::EVERYWHERE, move || late)?.more;
        while more {
            more = self.engine().step()?.more;
        }
        self.collect_answers();
        Ok(())
    }

    pub(crate) fn boards(&mut self) -> R {
        Ok(self.engine().write_boards(true)?)
    }

    pub(crate) fn advance(&self, secs: i64) {
        self.clock.advance_secs(secs);
    }

    pub(crate) fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|a| a.name() == name).expect("one of AGENTS")
    }

    pub(crate) fn submit(&mut self, task: Value) -> R {
        let id = task["task_id"].as_str().unwrap().to_string();
        self.intended.entry(id.clone()).or_insert_with(|| task.clone());
        if self.clients == Clients::Socket {
            return self.on_socket(Message::Submit { task }, Pending::Submit(id));
        }
        let msg = self.producer.submit(&task)?;
        self.sent(msg, Pending::Submit(id));
        Ok(())
    }

    /// A submit the broker must refuse (a conflicting duplicate, a file that cannot be read),
    /// written by hand under a name taken first: the test must know the name even when a crash
    /// cuts the send short and the file arrives anyway. Returns the name.
    pub(crate) fn submit_bad(&mut self, task: Value) -> R<String> {
        let name = self.names.next("msg");
        self.expected_bad.insert(name.clone());
        let bytes = json!({"kind": "submit", "task": task}).to_string();
        deliver(&self.fs, &self.layout.broker_inbox(), &name, bytes.as_bytes(), Durability::Always)?;
        Ok(name)
    }

    pub(crate) fn cancel(&mut self, id: &str) -> R {
        if self.clients == Clients::Socket {
            return self
                .on_socket(Message::Cancel { task_id: id.to_string() }, Pending::Cancel(id.to_string()));
        }
        let msg = self.producer.cancel(id)?;
        self.sent(msg, Pending::Cancel(id.to_string()));
        Ok(())
    }

    /// The SDK's claim over every pool and the agent's own `new/`: the claim's name, if any.
    pub(crate) fn claim(&mut self, agent: &str) -> R<Option<String>> {
        Ok(self.agent(agent).claim(&[])?.map(|c| c.name))
    }

    /// A claim the broker makes for `agent` waiting on its socket (an await with `claim`): its
    /// rename into the agent's `cur/` comes before the claim's record, which the pass after it
    /// journals. The claim's name once a pass answered, if a task was there for it; with no
    /// broker running, the agent's own claim.
    pub(crate) fn await_claim(&mut self, agent: &str) -> R<Option<String>> {
        let Some(e) = self.engine.as_mut() else { return self.claim(agent) };
        let (reply, mut answer) = oneshot::channel();
        // Due at once: a pass with nothing for it answers that nothing came.
        let deadline = std::time::Instant::now();
        e.take([Command::Await {
            agent: agent.into(),
            pools: Vec::new(),
            deadline,
            claim: true,
            after: None,
            reply,
        }]);
        self.step()?;
        match answer.try_recv() {
            Ok(Offer::Claimed { name, .. }) => Ok(Some(name)),
            // The machine died under the broker's rename (which it reports as its own, and serves
            // on): the script stops here, as at any other failed operation.
            _ if self.fs.crashed() => Err("the machine crashed during the claim".into()),
            _ => Ok(None),
        }
    }

    /// The SDK's report on a claim: `false` when it refuses because the claim is no longer held.
    pub(crate) fn report(&mut self, agent: &str, claim: &str, outcome: Outcome) -> R<bool> {
        if self.clients == Clients::Socket {
            // The SDK reports only on a claim it still holds.
            if !self.agent(agent).held()?.iter().any(|c| c == claim) {
                return Ok(false);
            }
            let (agent_name, claim_name) = (agent.to_string(), claim.to_string());
            let msg = match outcome {
                Outcome::Complete => {
                    Message::Complete { agent: agent_name, claim: claim_name, result: json!({"by": agent}) }
                }
                Outcome::Fail => Message::Fail {
                    agent: agent_name,
                    claim: claim_name,
                    error: "flaky".into(),
                    retryable: true,
                },
                Outcome::Release => Message::Release { agent: agent_name, claim: claim_name },
            };
            let task = DispatchName::parse(claim).unwrap().id_fragment;
            let name = self.names.next("msg");
            let report = Report { msg: name.clone(), task, claim: claim.to_string() };
            self.on_socket_as(name, msg, Pending::Report(report))?;
            return Ok(true);
        }
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

    pub(crate) fn complete(&mut self, agent: &str, claim: &str) -> R<bool> {
        self.report(agent, claim, Outcome::Complete)
    }

    pub(crate) fn held(&self, agent: &str) -> Vec<String> {
        self.agent(agent).held().unwrap()
    }

    /// After a crash: producers resubmit what they were not told was delivered, agents finish
    /// what they hold and claim the rest, until every task is finished.
    pub(crate) fn finish(&mut self, ctx: &str) {
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
pub(crate) fn task_files(w: &World) -> BTreeMap<PathBuf, String> {
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
pub(crate) fn check_places(w: &World, ctx: &str) {
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
pub(crate) fn check_final(w: &World, ctx: &str) {
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

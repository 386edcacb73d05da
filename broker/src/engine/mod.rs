//! The broker's core, synchronous and single-threaded: it reads messages and the tree, decides
//! transitions with the protocol's state machine, journals them, and only then moves files.
//!
//! The engine is a few parts that own their state — the [`Ledger`](ledger) (journal and the
//! state it derives), the [effects mover](effects), the [board writer](boards) and the
//! [drop watcher](drops) — and handlers that work through a [`Tx`](tx) (read the state, journal
//! records, queue effects) and own nothing: [inbox] routing, [admission], [claims] and leases,
//! [dispatch] and dependencies, [operator] verbs, [mail], the [legacy] front door,
//! [board-edit absorption](board_edits), [recovery], [quarantine] (and requeue) and the outbox's
//! [positions]. One pass,
//! [`Engine::step`], is a short list of calls on them. A crash anywhere leaves the journal ahead
//! of the tree; [`Engine::open`] replays the journal and [`Engine::reconcile`] redoes or cleans
//! up whatever effects did not happen.
//!
//! Front ends in the same process talk to the engine only through the [command
//! channel](commands), answered between passes by [`Engine::serve`].

pub(crate) mod admission;
pub(crate) mod aging;
pub(crate) mod audit;
pub(crate) mod board_edits;
mod board_rows;
pub(crate) mod boards;
pub(crate) mod claims;
pub mod cluster;
pub mod commands;
pub(crate) mod dependencies;
pub(crate) mod dispatch;
pub(crate) mod drops;
pub(crate) mod effects;
pub(crate) mod env;
pub(crate) mod inbox;
pub(crate) mod leases;
pub(crate) mod ledger;
pub(crate) mod legacy;
mod look;
pub(crate) mod mail;
pub(crate) mod offers;
pub(crate) mod operator;
pub(crate) mod pieces;
pub(crate) mod placing;
pub(crate) mod positions;
pub(crate) mod presence;
pub(crate) mod quarantine;
mod reads;
pub(crate) mod recovery;
pub mod retention;
pub(crate) mod spares;
pub(crate) mod stats;
pub(crate) mod tx;
pub(crate) mod window;

use crate::config::Config;
use crate::import::{ImportFile, ImportOptions, ImportReport};
use crate::journal::JournalError;
use crate::state::{Live, State};
use boards::BoardWriter;
use commands::{BulkVerdict, Command, Refused, RetryScope, Subscription, Verdict};
use drops::DropWatcher;
use effects::{Answer, Effect, Effects};
use env::Env;
use ledger::Ledger;
use presence::PresenceBoard;
use quarantine::Refusal;
use retention::{KeptNow, Retention};
use runtime_layout::{Clock, Fs, FsError, Layout};
use stats::{Histogram, Stats};
use std::sync::Arc;
use tx::{Core, Tx};

/// A pass at least this slow is logged as a warning (the broker answers nothing during one).
const SLOW_PASS: std::time::Duration = std::time::Duration::from_secs(2);

pub use effects::task_bytes;
pub use legacy::{DROP_PREFIX, MAIL_DROP_PREFIX};
pub use look::{Arrivals, Claims, Look};

/// The actor name the broker uses in task history.
pub const BROKER: &str = "mailroom";

/// An error that stops the broker: it cannot promise the state it would continue from.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Fs(#[from] FsError),
}

impl EngineError {
    /// Out of space or quota: the broker stops taking new work and waits for space, instead of
    /// stopping (see `run`).
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::Fs(e) | Self::Journal(JournalError::Fs(e)) => e.is_no_space(),
            Self::Journal(_) => false,
        }
    }
}

/// What a pass did (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub messages: usize,
    pub records: usize,
    pub more: bool,
    /// Retention has work left (an archived segment to compress), or a large board is being
    /// written a piece per pass: come back soon, not a tick later.
    pub housekeeping: bool,
}

pub struct Engine {
    core: Core,
    boards: BoardWriter,
    presence: PresenceBoard,
    drops: DropWatcher,
    leases: leases::LeaseWatch,
    aging: aging::Aging,
    audit: audit::QueueAudit,
    inbox: inbox::Inbox,
    /// How long passes take, and what the inbox held (counted for metrics, nothing more).
    passes: Histogram,
    messages: u64,
    inbox_waiting: u64,
    retention: Retention,
    /// Subscriptions taken ([`Engine::take`]) and answered after the next commit.
    subscribers: Vec<(tokio::sync::oneshot::Sender<Subscription>, commands::Records)>,
    /// Reads taken while records waited for a commit, answered after it ([`Engine::take`]).
    held_reads: Vec<Command>,
    /// Agents waiting on the socket to be named a task file, answered after each commit.
    offers: offers::Offers,
}

impl Engine {
    /// Loads the journal, replays it and opens a new segment. Does not touch the rest of the tree.
    pub fn open(fs: Arc<dyn Fs>, layout: Layout, cfg: Config) -> Result<Self, EngineError> {
        Self::open_with(fs, layout, cfg, false)
    }

    /// Rebuilds the state like [`Engine::open`] but writes nothing: no directory, no segment.
    /// Any attempt to commit a record fails. For `mailroom import --dry-run`.
    pub fn open_read_only(fs: Arc<dyn Fs>, layout: Layout, cfg: Config) -> Result<Self, EngineError> {
        Self::open_with(fs, layout, cfg, true)
    }

    fn open_with(fs: Arc<dyn Fs>, layout: Layout, cfg: Config, read_only: bool) -> Result<Self, EngineError> {
        if !read_only {
            layout.create(fs.as_ref())?;
        }
        let env = Env::new(fs, layout, cfg);
        let ledger = Ledger::open(&env, read_only)?;
        let core = Core { env, ledger, effects: Effects::default() };
        let mut boards = BoardWriter::new();
        if !read_only {
            boards.load_marks(&core.env, core.ledger.next_seq() - 1)?;
        }
        Ok(Self {
            core,
            boards,
            presence: PresenceBoard::default(),
            drops: DropWatcher::default(),
            leases: Default::default(),
            aging: Default::default(),
            audit: Default::default(),
            inbox: inbox::Inbox::new(),
            passes: Histogram::default(),
            messages: 0,
            inbox_waiting: 0,
            retention: Retention::new(),
            subscribers: Vec::new(),
            held_reads: Vec::new(),
            offers: offers::Offers::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.core.env.layout
    }

    pub fn config(&self) -> &Config {
        &self.core.env.cfg
    }

    /// The sequence number the next journal record will get.
    pub fn next_seq(&self) -> u64 {
        self.core.ledger.next_seq()
    }

    /// The state, read-only (tests, views).
    pub fn state(&self) -> &State {
        self.core.ledger.state()
    }

    /// Every registered agent: capabilities, claims, last seen and state.
    pub fn agents(&self) -> Result<Vec<crate::agents::AgentStatus>, EngineError> {
        presence::statuses(&self.core.env, self.state())
    }

    /// A task's current record, for tests and `trace`.
    pub fn live(&self, id: &str) -> Option<&Live> {
        self.state().live(id)
    }

    /// Replaces the clock (tests and simulations): leases, backoffs, timestamps and the names of
    /// the files the broker writes all follow it.
    pub fn set_clock(&mut self, clock: Clock) {
        self.core.env.names = runtime_layout::NameSource::with_clock(clock.clone());
        self.core.env.clock = clock;
    }

    /// Brings the tree in line with the replayed state: claims made while the broker was down,
    /// dispatch files a crash lost, files left under former names, messages already consumed.
    pub fn reconcile(&mut self) -> Result<(), EngineError> {
        recovery::reconcile(&mut self.core.tx())?;
        self.write_boards(true)
    }

    /// One pass of the loop, looking everywhere. Returns whether more work is waiting (call
    /// again without sleeping).
    pub fn step(&mut self) -> Result<StepReport, EngineError> {
        self.step_looking(Look::EVERYWHERE)
    }

    /// One pass that looks at the inbox and where `look` says.
    pub fn step_looking(&mut self, look: Look) -> Result<StepReport, EngineError> {
        self.step_taking(look, Vec::new)
    }

    /// [`Engine::step_looking`], taking the commands `late` gives just before the pass commits
    /// ([`Engine::take`]): those that arrived while it read and handled share its fsync instead
    /// of waiting for the next pass's (the loop gives what its channels hold by then).
    pub fn step_taking(
        &mut self,
        look: Look,
        late: impl FnOnce() -> Vec<Command>,
    ) -> Result<StepReport, EngineError> {
        let started = std::time::Instant::now();
        if look.claims == Claims::Everywhere {
            // Destinations looked at and made are looked at again (see `Effects::contain_maildir`).
            self.core.effects.forget_dirs();
        }
        let start = self.core.ledger.records();
        let journal_before = self.core.ledger.journal_written();
        if look.drops || self.drops.settling() {
            self.drops.take(&mut self.core.tx())?;
        }
        if self.core.env.cfg.ingest.absorb_board_edits && (look.edits || self.boards.edit_settling()) {
            for (board, mark) in self.boards.settled_edits(&self.core.env)? {
                board_edits::absorb(&mut self.core.tx(), board, &mark)?;
            }
        }
        let look_everywhere = look.claims == Claims::Everywhere;
        let batch = self.inbox.consume(&mut self.core.tx(), look.inbox)?;
        if look.claims.any() {
            claims::observe(&mut self.core.tx(), &look.claims)?;
        }
        // Leases are judged only once the inbox is drained: a report waiting there was sent
        // while its claim was held. Judged with a backlog, an overloaded broker took back claims
        // whose completions were already waiting, handed the work out again, and the redone work
        // and stale reports overloaded it further (congestion collapse, found by the race suite).
        // And only by a pass that looks everywhere (the loop makes one at least once a tick):
        // judging costs a stat per held claim, and a lease is counted in seconds.
        if !batch.more && look_everywhere {
            leases::take_back_expired(&mut self.core.tx(), &mut self.leases)?;
        }
        if !batch.more {
            self.audit.run_if_due(&mut self.core.tx())?;
        }
        dispatch::ready(&mut self.core.tx());
        self.aging.run_if_due(&mut self.core.tx())?;
        let late = late();
        if !late.is_empty() {
            self.take(late);
            // Room a late cancel or report freed in a ready window drained to its refill mark
            // is handed on in this pass.
            window::refill(&mut self.core.tx());
        }
        self.core.tx().commit()?;
        self.answer_after_commit();
        if self.core.ledger.compaction_due(&self.core.env) {
            // The snapshot forgets what recovery needs to redo the moves it covers: make them
            // durable first.
            self.core.effects.sync_touched(&self.core.env)?;
            self.core.ledger.compact(&self.core.env)?;
            self.retention.archive_changed();
        }
        self.write_boards(false)?;
        // Kept messages and archived history within their limits, a bounded amount per pass.
        let arrived = self.core.effects.take_kept();
        let grew = self.core.ledger.journal_written() - journal_before;
        self.retention.work(&self.core.env, arrived, grew);
        let took = started.elapsed();
        self.passes.observe(took);
        if took >= SLOW_PASS {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                messages = batch.messages,
                records = self.core.ledger.records() - start,
                "a pass was slow: nothing else was answered meanwhile"
            );
        }
        self.messages += batch.messages as u64;
        self.inbox_waiting = batch.waiting as u64;
        Ok(StepReport {
            messages: batch.messages,
            records: self.core.ledger.records() - start,
            // Claims made for waiting agents after the commit are journaled by the next pass.
            more: batch.more || self.core.ledger.has_uncommitted(),
            housekeeping: self.retention.pending(&self.core.env) || self.boards.in_flight(),
        })
    }

    /// Answers commands from in-process front ends: reads at once, changes through the same
    /// handlers as inbox messages, all committed together (one fsync), each verdict sent once
    /// its records are durable.
    pub fn serve(&mut self, commands: impl IntoIterator<Item = Command>) -> Result<(), EngineError> {
        self.take(commands);
        self.core.tx().commit()?;
        self.answer_after_commit();
        self.write_boards(false)
    }

    /// Takes commands into the pass that follows ([`Engine::step_looking`]): reads are answered
    /// at once from committed state (held until the next commit while records wait for it: a
    /// view never shows what a failed commit would take back, such as a task the cluster's link
    /// would publish); changes are journaled and answered with the pass's own commit, so the
    /// commands between two passes and the pass's messages share one fsync.
    pub fn take(&mut self, commands: impl IntoIterator<Item = Command>) {
        for cmd in commands {
            if cmd.reads_state() && self.core.ledger.has_uncommitted() {
                self.held_reads.push(cmd);
                continue;
            }
            match cmd {
                Command::Snapshot(reply) => {
                    let _ = reply.send(self.view());
                }
                Command::Census(reply) => {
                    let _ = reply.send(self.census());
                }
                Command::Stats(reply) => {
                    let _ = reply.send(self.stats());
                }
                Command::Subscribe(reply) => {
                    // Subscribed now, so that records the next commit makes reach it too (a
                    // reader skips those before `from_seq`), answered after that commit.
                    self.subscribers.push((reply, self.core.ledger.subscribe()));
                }
                Command::RetryWhere { scope, reply } => self.retry_where(&scope, reply),
                Command::Submit { task, reply } => {
                    let id =
                        task.get("task_id").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
                    self.request(reply, id, |tx, name| admission::submit(tx, &task, name));
                }
                Command::Cancel { task_id, reply } => {
                    self.request(reply, Some(task_id.clone()), |tx, name| {
                        operator::cancel(tx, &task_id, name)
                    });
                }
                Command::Retry { task_id, reply } => {
                    self.request(reply, Some(task_id.clone()), |tx, name| {
                        operator::retry(tx, &task_id, name)
                    });
                }
                Command::Requeue { name, reply } => {
                    self.request(reply, None, |tx, msg| quarantine::requeue(tx, &name, msg));
                }
                Command::Message { name, msg, reply, file_waits } => {
                    inbox::from_socket(&mut self.core.tx(), name, &msg, reply, file_waits)
                }
                Command::Await { agent, pools, deadline, claim, after, reply } => {
                    // The report is handled as the same message alone; its verdict, sent once
                    // it is journaled, lets the wait begin (`Offers::answer`).
                    let after = after.map(|r| {
                        let (verdict, settled) = tokio::sync::oneshot::channel();
                        inbox::from_socket(&mut self.core.tx(), r.name, &r.msg, verdict, r.file_waits);
                        settled
                    });
                    self.offers.wait(agent, pools, deadline, claim, after, reply)
                }
                Command::Position { sink, reply } => {
                    let _ = reply.send(self.state().delivered(&sink));
                }
                Command::Delivered { sink, through, reply } => {
                    self.request(reply, None, |tx, _| positions::delivered(tx, &sink, through));
                }
                Command::ClusterView(reply) => {
                    let _ = reply.send(cluster::view(&self.core.tx()));
                }
                Command::Cluster { op, reply } => {
                    self.request(reply, None, |tx, _| cluster::apply(tx, op).map(drop));
                }
                Command::Deliveries(reply) => {
                    // `run::serve` owns the outbox and answers this itself; an engine driven
                    // without it has no webhooks or hooks running.
                    let _ = reply.send(crate::outbox::Deliveries::default());
                }
            }
        }
    }

    /// Answers what waited for the commit just made: the reads held for it, and the
    /// subscriptions taken since the last one (every record pushed so far is durable, so the
    /// journal holds all before `from_seq`).
    fn answer_after_commit(&mut self) {
        let held = std::mem::take(&mut self.held_reads);
        self.take(held);
        let from_seq = self.core.ledger.next_seq();
        for (reply, records) in self.subscribers.drain(..) {
            let _ = reply.send(Subscription { from_seq, records });
        }
        // Claims made for waiting agents are journaled by the next commit (the loop runs its
        // pass at once: `StepReport::more`).
        self.offers.answer(&mut self.core.tx(), std::time::Instant::now());
    }

    /// When the loop must run a pass though nothing arrives: an agent waiting on the socket is
    /// due its answer (`None`: nobody waits).
    pub fn wake_at(&self) -> Option<std::time::Instant> {
        self.offers.wake_at()
    }

    /// The loop's own figures.
    fn stats(&self) -> Stats {
        Stats {
            commits: self.core.ledger.commit_latency().clone(),
            passes: self.passes.clone(),
            records: self.core.ledger.records() as u64,
            messages: self.messages,
            inbox_waiting: self.inbox_waiting,
            fs: self.core.env.fs.counts(),
        }
    }

    /// A scoped bulk retry: each selected task through [`operator::retry`], one verdict for all.
    fn retry_where(&mut self, scope: &RetryScope, reply: tokio::sync::oneshot::Sender<BulkVerdict>) {
        let ids: Vec<String> = self
            .view_tasks()
            .into_iter()
            .filter(|t| {
                scope.statuses.contains(&t.task.status)
                    && scope.pool.as_ref().is_none_or(|p| t.pool.as_ref() == Some(p))
                    && scope.task_type.as_ref().is_none_or(|ty| t.task.task_type.as_ref() == Some(ty))
            })
            .map(|t| t.task.task_id)
            .collect();
        let name = self.core.env.names.next("api");
        let mut tx = self.core.tx();
        let mut verdict =
            BulkVerdict { matched: ids.len(), retried: Vec::new(), refused: Vec::new(), seq: 0 };
        for id in ids.into_iter().take(scope.limit) {
            match operator::retry(&mut tx, &id, &name) {
                Ok(()) => verdict.retried.push(id),
                Err(r) => verdict.refused.push(Refused { task_id: id, reason: r.to_string() }),
            }
        }
        verdict.seq = if verdict.retried.is_empty() { 0 } else { tx.ledger.next_seq() - 1 };
        tracing::info!(request = %name, matched = verdict.matched, retried = verdict.retried.len(), "bulk retry");
        tx.effect(Effect::Reply(Answer::Bulk(reply, verdict)));
    }

    /// Runs one changing request as if it were an inbox message of its own.
    fn request(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Verdict>,
        task_id: Option<String>,
        handle: impl FnOnce(&mut Tx, &str) -> Result<(), Refusal>,
    ) {
        let name = self.core.env.names.next("api");
        let mut tx = self.core.tx();
        match handle(&mut tx, &name) {
            Ok(()) => {
                let verdict =
                    Verdict::Accepted { task_id: task_id.unwrap_or_default(), seq: tx.ledger.next_seq() - 1 };
                tx.effect(Effect::Reply(Answer::Verdict(reply, verdict)));
            }
            Err(r) => {
                tracing::info!(request = %name, reason = %r, "request refused");
                let _ = reply.send(Verdict::refused(r));
            }
        }
    }

    /// Migrates legacy files into this root (`mailroom import`). With `dry_run`, nothing is
    /// written: the report says what would happen.
    pub fn import(
        &mut self,
        files: Vec<ImportFile>,
        opts: ImportOptions,
    ) -> Result<ImportReport, EngineError> {
        let report = crate::import::run(&mut self.core.tx(), files, opts)?;
        if !opts.dry_run {
            self.core.tx().commit()?;
            self.write_boards(true)?;
        }
        Ok(report)
    }

    /// Rewrites the boards from state when they changed (at most every 200 ms unless `force`),
    /// and the presence board when it changed (looked at once a second unless `force`).
    pub fn write_boards(&mut self, force: bool) -> Result<(), EngineError> {
        let durable = self.core.env.durability == runtime_layout::Durability::Always;
        self.write_boards_as(force, durable)
    }

    fn write_boards_as(&mut self, force: bool, durable: bool) -> Result<(), EngineError> {
        let changed = self.core.ledger.take_changed();
        if !changed.is_empty() {
            self.boards.mark_dirty();
        }
        self.boards.write(&self.core.env, self.core.ledger.state(), changed, force, durable)?;
        self.presence.write(&self.core.env, self.core.ledger.state(), force, durable)
    }

    /// What the broker keeps for operators, as far as its retention knows (kept messages and
    /// archived segments); [`crate::footprint::measure`] counts every area from the disk.
    pub fn kept(&self) -> KeptNow {
        self.retention.kept_now()
    }

    /// Flushes everything (on shutdown), and leaves the marks of the boards as written so that
    /// edits made while the broker is stopped are absorbed at the next start. A compression in
    /// progress is given up (its plain segment stays, and is compressed after the next start).
    pub fn flush(&mut self) -> Result<(), EngineError> {
        self.retention.stop(self.core.env.fs());
        self.core.tx().commit()?;
        self.core.effects.sync_touched(&self.core.env)?;
        self.write_boards_as(true, true)?;
        if self.core.env.cfg.ingest.absorb_board_edits {
            self.boards.save_marks(&self.core.env, self.core.ledger.next_seq() - 1)?;
        }
        self.core.ledger.trim();
        Ok(())
    }
}

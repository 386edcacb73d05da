//! The broker's core, synchronous and single-threaded: it reads messages and the tree, decides
//! transitions with the protocol's state machine, journals them, and only then moves files.
//!
//! One pass ([`Engine::step`]) does, in order: take complete files from `drop/` into the inbox,
//! consume a batch of inbox messages, observe claims in agents' `cur/`, take back expired or
//! vanished claims, dispatch what is ready, commit the journal (one fsync for the whole batch),
//! carry out the file effects, fsync the directories they touched, and rewrite stale boards.
//! A crash anywhere leaves the journal ahead of the tree; [`Engine::open`] replays the journal
//! and [`Engine::reconcile`] redoes or cleans up whatever effects did not happen.

use crate::config::{Config, Route};
use crate::journal::{self, Journal, JournalError, Op, Place, Record};
use crate::state::{Live, State, fnv64};
use protocol::machine::{Event, transition};
use protocol::message::{Message, Notice, NoticeKind};
use protocol::names::{self, DispatchName};
use protocol::{Mail, Status, Task, Timestamp, ValidationError};
use runtime_layout::{
    Board, Clock, Durability, FileKind, Fs, FsError, Layout, Maildir, NameSource, deliver, replace_file,
    write_atomic,
};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "ingest.rs"]
pub mod ingest;

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

/// A file effect, carried out after the journal entry that describes it is durable.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Write a task file into `<maildir>/new/<name>`.
    Deliver { maildir: Maildir, name: String, bytes: Vec<u8> },
    /// Remove a file the journal says is finished with (a completed or taken-back claim).
    Remove { path: PathBuf },
    /// Remove a queued file; if an agent claimed it first, revoke the claim from its `cur/`.
    Revoke { queued: PathBuf, name: String, task_id: String },
    /// Move a consumed inbox message to `inbox/cur/`.
    Consumed { from: PathBuf, to: PathBuf },
    /// Move a file into quarantine and write the reason beside it.
    Quarantine { from: PathBuf, to: PathBuf, reason: Value },
    /// Write a copy of refused input (part of a file, or a file that must stay where it is)
    /// into quarantine, with the reason beside it. Never overwrites.
    QuarantineCopy { to: PathBuf, bytes: Vec<u8>, reason: Value },
    /// Deliver a notice or mail into an agent's `new/`.
    Post { agent: String, kind: &'static str, body: Value },
}

/// Why a message was refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    notice: NoticeKind,
    field: String,
    rule: String,
    task_id: Option<String>,
}

impl Refusal {
    pub(crate) fn new(notice: NoticeKind, field: &str, rule: impl Into<String>) -> Self {
        Self { notice, field: field.into(), rule: rule.into(), task_id: None }
    }
    fn task(mut self, id: &str) -> Self {
        self.task_id = Some(id.to_string());
        self
    }
}

impl From<ValidationError> for Refusal {
    fn from(e: ValidationError) -> Self {
        Self::new(NoticeKind::Rejected, &e.field, e.rule)
    }
}

/// How a new task enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A submission: the task starts PENDING whatever status it claims.
    Submit,
    /// A migration (`mailroom import`): the task keeps its state; with `create_agents`, the
    /// mailbox of an assignee that does not exist yet is created.
    Import { create_agents: bool },
}

/// A task as last written to a board: the version it had (update time, history length,
/// status), its compact JSON and that JSON's hash.
struct CachedTask {
    version: (Option<i64>, usize, Status),
    json: Vec<u8>,
    hash: u64,
}

/// A directory that existing scripts write into.
#[derive(Debug, Clone)]
struct DropSource {
    dir: PathBuf,
    /// For a legacy mailbox inbox: the agent it belongs to.
    mail_for: Option<String>,
}

/// A file in `drop/` that is being watched until it is complete.
#[derive(Debug, Clone, Copy)]
struct DropWatch {
    len: u64,
    mtime: Timestamp,
    first_seen: Timestamp,
}

/// What a pass did (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub messages: usize,
    pub records: usize,
    pub more: bool,
}

pub struct Engine {
    fs: Arc<dyn Fs>,
    layout: Layout,
    cfg: Config,
    names: NameSource,
    journal: Journal,
    pub(crate) state: State,
    durability: Durability,
    effects: Vec<Effect>,
    touched: BTreeSet<PathBuf>,
    /// Directories a file was moved out of: fsynced after every other touched directory, so a
    /// power loss between the two leaves a moved file in both places, never in neither.
    moved_from: BTreeSet<PathBuf>,
    boards_dirty: bool,
    boards_written: Option<Timestamp>,
    drops: HashMap<PathBuf, DropWatch>,
    /// Per board: what the broker last wrote (size and mtime) and the hash of each task on it.
    pub(crate) board_marks: HashMap<Board, ingest::BoardMark>,
    boards_force: bool,
    /// Each task's JSON as last written to a board, and each board's signature.
    board_cache: HashMap<String, CachedTask>,
    board_sigs: HashMap<Board, u64>,
    /// Hashes of migrated messages already delivered (loaded by `import`).
    imported_mail: std::collections::HashSet<u64>,
    clock: Clock,
    records: usize,
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
        // Records are applied as they are read: a restart never holds them all in memory.
        let limit = cfg.broker.completed_board_limit;
        let rebuilt = std::cell::RefCell::new((State::new(limit), 1u64));
        let loaded = journal::replay(
            fs.as_ref(),
            &layout.journal_dir(),
            |snap| {
                if let Some(s) = snap {
                    let next = s.seq + 1;
                    *rebuilt.borrow_mut() = (State::from_snapshot(s, limit), next);
                }
            },
            |rec| {
                let mut r = rebuilt.borrow_mut();
                r.0.apply(&rec);
                r.1 = rec.seq + 1;
            },
        )?;
        let (state, next_seq) = rebuilt.into_inner();
        for t in &loaded.torn {
            tracing::warn!(torn = %t, "ignored an incomplete journal entry left by a crash");
        }
        let durability = cfg.broker.durability.into();
        let journal = if read_only {
            Journal::read_only(&layout.journal_dir(), next_seq)
        } else {
            Journal::open(fs.as_ref(), &layout.journal_dir(), next_seq, durability)?
        };
        tracing::info!(
            live = state.live.len(),
            finished = state.tombs.len(),
            replayed = loaded.records,
            "state rebuilt from the journal"
        );
        Ok(Self {
            fs,
            layout,
            cfg,
            names: NameSource::new(),
            journal,
            state,
            durability,
            effects: Vec::new(),
            touched: BTreeSet::new(),
            moved_from: BTreeSet::new(),
            boards_dirty: true,
            boards_written: None,
            drops: HashMap::new(),
            board_marks: HashMap::new(),
            boards_force: false,
            board_cache: HashMap::new(),
            board_sigs: HashMap::new(),
            imported_mail: Default::default(),
            clock: Clock::system(),
            records: 0,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(self.layout.comms()).unwrap_or(p).to_string_lossy().into_owned()
    }

    fn push(&mut self, rec: Record) {
        let rec = self.journal.push(rec);
        self.state.apply(&rec);
        self.records += 1;
        if rec.task.is_some() {
            self.boards_dirty = true;
        }
    }

    // ---------------------------------------------------------------- the pass

    /// Brings the tree in line with the replayed state: claims made while the broker was down,
    /// dispatch files a crash lost, files left under former names, messages already consumed.
    pub fn reconcile(&mut self) -> Result<(), EngineError> {
        self.observe_claims()?;
        // A claim whose rename was only partly durable at a power loss (cur/ synced, new/ not)
        // leaves its file in both places: the copy in new/ must not be claimed again.
        let held: Vec<PathBuf> = self
            .state
            .live
            .values()
            .filter_map(|l| match &l.place {
                Place::Held { name, from, .. } if !from.is_empty() => {
                    Some(self.layout.comms().join(from).join("new").join(name))
                }
                _ => None,
            })
            .collect();
        for path in held {
            if self.fs.stat(&path)?.is_some() {
                self.effects.push(Effect::Remove { path });
            }
        }
        let queued: Vec<(String, String, String)> = self
            .state
            .live
            .values()
            .filter_map(|l| match &l.place {
                Place::Queued { dir, name } => Some((l.task.task_id.clone(), dir.clone(), name.clone())),
                _ => None,
            })
            .collect();
        for (id, dir, name) in queued {
            let md = Maildir::new(self.layout.comms().join(&dir));
            let path = md.new_dir().join(&name);
            let intact = match self.fs.read(&path, self.cfg.broker.max_message_bytes) {
                Ok(bytes) => serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v["task_id"] == json!(id)),
                Err(e) if e.is_not_found() => false,
                Err(FsError::NotRegular { .. } | FsError::TooLarge { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !intact {
                // Lost or torn by a power loss (task files are not fsynced one by one).
                if self.fs.stat(&path)?.is_some() {
                    match self.fs.remove_file(&path) {
                        Err(e) if !e.is_not_found() => return Err(e.into()),
                        _ => {}
                    }
                }
                // Or claimed after `observe_claims` listed the agents' cur/ and before the look
                // above. Agents keep claiming while the broker starts: look again now, after the
                // look in new/, so that a file renamed in between is found in some cur/ rather
                // than delivered a second time under the same name to a second agent.
                if let Some(agent) = self.holder_of(&name)? {
                    self.record_claim(&id, &agent, &name);
                    continue;
                }
                let bytes = task_bytes(&self.state.live[&id].task);
                md.create(self.fs.as_ref(), false)?;
                self.effects.push(Effect::Deliver { maildir: md, name, bytes });
            }
        }
        // Files under names that are not current, in every new/ and cur/.
        for md in self.all_maildirs()? {
            for sub in [md.new_dir(), md.cur()] {
                if self.fs.stat(&sub)?.is_none() {
                    continue;
                }
                for e in self.fs.list(&sub)? {
                    let Some(name) = e.name_str().map(str::to_string) else { continue };
                    if DispatchName::parse(&name).is_none() || self.state.by_name.contains_key(&name) {
                        continue;
                    }
                    let path = sub.join(&name);
                    if self.state.retired.contains_key(&name) {
                        self.effects.push(Effect::Remove { path });
                    } else {
                        self.stray(
                            path,
                            &name,
                            "a task file under a name the broker never dispatched or no longer knows",
                        );
                    }
                }
            }
        }
        self.commit()?;
        self.write_boards(true)?;
        Ok(())
    }

    /// One pass of the loop. Returns whether more work is waiting (call again without sleeping).
    pub fn step(&mut self) -> Result<StepReport, EngineError> {
        let start_records = self.records;
        self.take_drops()?;
        if self.cfg.ingest.absorb_board_edits {
            self.absorb_boards()?;
        }
        let (messages, more) = self.consume_inbox()?;
        self.observe_claims()?;
        // Leases are judged only once the inbox is drained: a report waiting there was sent
        // while its claim was held. Judged with a backlog, an overloaded broker took back claims
        // whose completions were already waiting, handed the work out again, and the redone work
        // and stale reports overloaded it further (congestion collapse, found by the race suite).
        if !more {
            self.check_held()?;
        }
        self.dispatch_ready()?;
        self.commit()?;
        if self.journal.records_since_snapshot() >= self.cfg.broker.compact_after_records {
            self.compact()?;
        }
        self.write_boards(false)?;
        Ok(StepReport { messages, records: self.records - start_records, more })
    }

    /// Makes the journal durable, then carries out the effects and fsyncs what they touched.
    fn commit(&mut self) -> Result<(), EngineError> {
        self.journal.commit()?;
        let effects = std::mem::take(&mut self.effects);
        for e in effects {
            self.run_effect(e)?;
        }
        let (arrived, left) = (std::mem::take(&mut self.touched), std::mem::take(&mut self.moved_from));
        if self.durability.sync_files() {
            // Destinations first, then sources (a directory that is both is fsynced twice).
            for d in arrived.iter().chain(&left) {
                self.fs.sync_dir(d)?;
            }
        }
        Ok(())
    }

    fn touch_dir(&mut self, p: &Path) {
        if let Some(d) = p.parent() {
            self.touched.insert(d.to_path_buf());
        }
    }

    /// Notes the directory a file was moved out of (see `moved_from`).
    fn touch_src(&mut self, p: &Path) {
        if let Some(d) = p.parent() {
            self.moved_from.insert(d.to_path_buf());
        }
    }

    fn run_effect(&mut self, e: Effect) -> Result<(), EngineError> {
        let fs = self.fs.clone();
        match e {
            Effect::Deliver { maildir, name, bytes } => {
                // A task file is derived state: the journal already holds the task, and
                // `reconcile` rewrites a queued file that a power loss lost or tore. Only
                // `always` pays an fsync per task file; the directory is fsynced per batch.
                let file_sync =
                    if self.durability == Durability::Always { Durability::Batch } else { Durability::Never };
                if !self.layout.maildir_contained(fs.as_ref(), &maildir) {
                    tracing::error!(dir = %self.rel(&maildir.root), file = %name,
                        "not delivered: a symbolic link or a file replaced a directory of the tree");
                    return Ok(());
                }
                match deliver(fs.as_ref(), &maildir, &name, &bytes, file_sync) {
                    Ok(p) => self.touch_dir(&p),
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Effect::Remove { path } if !self.layout.is_contained(fs.as_ref(), &path) => {
                tracing::error!(file = %self.rel(&path), "not removed: a directory on its path is a symbolic link");
            }
            Effect::Remove { path } => match fs.remove_file(&path) {
                Ok(()) => self.touch_dir(&path),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            },
            Effect::Revoke { queued, name, task_id } => match fs.remove_file(&queued) {
                Ok(()) => self.touch_dir(&queued),
                Err(e) if e.is_not_found() => {
                    // An agent claimed it first: find the claim and revoke it.
                    for agent in self.agents()? {
                        let p = self.layout.mailbox(&agent).cur().join(&name);
                        if fs.stat(&p)?.is_some() {
                            fs.remove_file(&p)?;
                            self.touch_dir(&p);
                            let mut n =
                                Notice::new(NoticeKind::Cancelled, self.now(), "the task was cancelled");
                            n.task_id = Some(task_id.clone());
                            n.claim = Some(name.clone());
                            self.post_now(&agent, "notice", serde_json::to_value(n).unwrap_or_default())?;
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            },
            Effect::Consumed { from, to } => match fs.rename(&from, &to) {
                Ok(()) => {
                    self.touch_src(&from);
                    self.touch_dir(&to);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            },
            Effect::Quarantine { from, to, reason } => {
                // The reason first, durably: a crash between the two then leaves the message in
                // the inbox to be moved again, never a quarantined file without its reason (the
                // move is not redone once the file has left the inbox).
                self.write_reason(&to, &reason)?;
                match fs.rename_noreplace(&from, &to) {
                    Ok(()) => {
                        self.touch_src(&from);
                        self.touch_dir(&to);
                    }
                    Err(e) if e.is_not_found() => {}
                    // Moved before a crash that kept the source too (only the quarantine's fsync
                    // happened): the quarantined copy is this very file (its name holds the
                    // record's seq), so finish the move. Failing here would stop every restart.
                    Err(e) if e.is_already_exists() => match fs.remove_file(&from) {
                        Ok(()) => self.touch_src(&from),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
            Effect::QuarantineCopy { to, bytes, reason } => {
                // The reason first, as for a moved file: a copy is never left without its why.
                self.write_reason(&to, &reason)?;
                if fs.stat(&to)?.is_none() {
                    write_atomic(fs.as_ref(), &to, &bytes, &self.names, self.durability)?;
                }
            }
            Effect::Post { agent, kind, body } => self.post_now(&agent, kind, body)?,
        }
        Ok(())
    }

    /// Writes `<quarantined>.error.json`, durably, unless it exists: a reason written before a
    /// crash is the precise one, so it is kept.
    fn write_reason(&self, quarantined: &Path, reason: &Value) -> Result<(), EngineError> {
        let mut err_path = quarantined.as_os_str().to_owned();
        err_path.push(".error.json");
        let err_path = PathBuf::from(err_path);
        if self.fs.stat(&err_path)?.is_none() {
            let body = serde_json::to_vec_pretty(reason).unwrap_or_default();
            write_atomic(self.fs.as_ref(), &err_path, &body, &self.names, self.durability)?;
        }
        Ok(())
    }

    fn post_now(&mut self, agent: &str, kind: &'static str, body: Value) -> Result<(), EngineError> {
        let md = self.layout.mailbox(agent);
        if !md.exists(self.fs.as_ref()) || !self.layout.maildir_contained(self.fs.as_ref(), &md) {
            return Ok(());
        }
        let name = self.names.next(kind);
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        let p = deliver(self.fs.as_ref(), &md, &name, &bytes, Durability::Never)?;
        self.touch_dir(&p);
        Ok(())
    }

    // ---------------------------------------------------------------- inbox

    fn consume_inbox(&mut self) -> Result<(usize, bool), EngineError> {
        let inbox = self.layout.broker_inbox();
        let mut entries = self.fs.list(&inbox.new_dir())?;
        entries.retain(|e| !e.name_str().is_some_and(names::is_hidden));
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let batch = self.cfg.broker.batch_size;
        let more = entries.len() > batch;
        let mut n = 0;
        for e in entries.into_iter().take(batch) {
            n += 1;
            let from = inbox.new_dir().join(&e.name);
            let Some(name) = e.name_str().map(str::to_string) else {
                let shown = e.name.to_string_lossy().into_owned();
                self.reject_file(
                    &from,
                    &shown,
                    None,
                    Refusal::new(NoticeKind::Rejected, "", "file name is not UTF-8"),
                );
                continue;
            };
            if let Some(dest) = self.state.consumed.get(&name).cloned() {
                // Consumed before a crash; finish moving it where the journal says it goes.
                let to = self.layout.comms().join(&dest);
                if to.starts_with(self.layout.broker_inbox().cur()) {
                    self.effects.push(Effect::Consumed { from, to });
                } else {
                    let why = self.state.refusals.get(&name).cloned().unwrap_or_else(|| {
                        "rejected before a restart; `mailroom trace` or the journal has the reason".into()
                    });
                    let reason = json!({"file": self.rel(&from), "reason": why});
                    self.effects.push(Effect::Quarantine { from, to, reason });
                }
                continue;
            }
            if self.durability == Durability::Always && n > 1 {
                self.commit()?;
            }
            if e.kind != FileKind::File {
                let r =
                    Refusal::new(NoticeKind::Rejected, "", format!("is a {}, not a regular file", e.kind));
                self.reject_file(&from, &name, None, r);
                continue;
            }
            let bytes = match self.fs.read(&from, self.cfg.broker.max_message_bytes) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
                    let r = Refusal::new(NoticeKind::Rejected, "", strip_path(&e.to_string(), &from));
                    self.reject_file(&from, &name, None, r);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if ingest::is_legacy_name(&name) {
                match self.consume_legacy(&name, &bytes) {
                    Ok(()) => self.consumed(from, &name),
                    Err((r, msg)) => self.reject_file(&from, &name, msg.as_deref(), r),
                }
                continue;
            }
            let msg = match Message::parse(&bytes) {
                Ok(m) => m,
                Err(v) => {
                    self.reject_file(&from, &name, None, v.into());
                    continue;
                }
            };
            match self.handle(&msg, &name) {
                Ok(()) => self.consumed(from, &name),
                Err(r) => self.reject_file(&from, &name, Some(&msg), r),
            }
        }
        Ok((n, more))
    }

    /// Journals that an inbox message was taken and moves it to `inbox/cur/`.
    fn consumed(&mut self, from: PathBuf, name: &str) {
        let to = self.layout.broker_inbox().cur().join(name);
        let mut c = Record::new(Op::Consume, self.now());
        c.msg = Some(name.to_string());
        c.path = Some(self.rel(&to));
        self.push(c);
        self.effects.push(Effect::Consumed { from, to });
    }

    /// Journals a refusal, quarantines the file with its reason and tells the sender.
    fn reject_file(&mut self, from: &Path, name: &str, msg: Option<&Message>, r: Refusal) {
        let now = self.now();
        let seq = self.journal.next_seq();
        let qname = format!("{seq:012}-{}", printable(name));
        let to = self.layout.quarantine_dir().join(&qname);
        let reason_text =
            if r.field.is_empty() { r.rule.clone() } else { format!("field `{}`: {}", r.field, r.rule) };
        let reason = json!({
            "file": self.rel(from),
            "quarantined_at": now,
            "field": r.field,
            "rule": r.rule,
            "reason": reason_text,
            "kind": msg.map(Message::kind),
            "task_id": r.task_id,
        });
        let mut rec = Record::new(Op::Reject, now);
        rec.msg = Some(name.to_string());
        rec.task_id = r.task_id.clone();
        rec.actor = msg.and_then(Message::sender).map(str::to_string);
        rec.reason = Some(reason_text.clone());
        rec.path = Some(self.rel(&to));
        rec.detail = Some(json!({"notice": r.notice, "field": r.field, "rule": r.rule}));
        self.push(rec);
        let mut c = Record::new(Op::Consume, now);
        c.msg = Some(name.to_string());
        c.path = Some(self.rel(&to));
        self.push(c);
        tracing::warn!(file = %self.rel(from), reason = %reason_text, "quarantined");
        self.effects.push(Effect::Quarantine { from: from.to_path_buf(), to, reason });
        if let Some(agent) = msg.and_then(Message::sender) {
            let mut n = Notice::new(r.notice, now, reason_text);
            n.task_id = r.task_id;
            n.claim = match msg {
                Some(
                    Message::Complete { claim, .. }
                    | Message::Fail { claim, .. }
                    | Message::Release { claim, .. },
                ) => Some(claim.clone()),
                _ => None,
            };
            n.message = msg.map(Message::to_value);
            self.effects.push(Effect::Post {
                agent: agent.to_string(),
                kind: "notice",
                body: serde_json::to_value(n).unwrap_or_default(),
            });
        }
    }

    fn handle(&mut self, msg: &Message, name: &str) -> Result<(), Refusal> {
        match msg {
            Message::Submit { task } => self.submit(task, name),
            Message::Complete { agent, claim, result } => {
                self.finish(agent, claim, name, Event::Complete { result: result.clone() })
            }
            Message::Fail { agent, claim, error, retryable } => {
                self.finish(agent, claim, name, Event::Fail { error: error.clone(), retryable: *retryable })
            }
            Message::Release { agent, claim } => self.finish(agent, claim, name, Event::Release),
            Message::Cancel { task_id } => self.cancel(task_id, name),
            Message::Retry { task_id } => self.retry(task_id, name),
            Message::Send { from, to, subject, body } => {
                if !self.layout.mailbox(to).exists(self.fs.as_ref()) {
                    return Err(Refusal::new(
                        NoticeKind::Rejected,
                        "to",
                        format!("no agent `{to}` (its mailbox does not exist)"),
                    ));
                }
                let mail = Mail {
                    kind: "mail".into(),
                    from: from.clone(),
                    to: to.clone(),
                    subject: subject.clone(),
                    body: body.clone(),
                    sent_at: self.now(),
                };
                let mut rec = Record::new(Op::Mail, self.now());
                rec.msg = Some(name.to_string());
                rec.actor = Some(from.clone());
                rec.detail = Some(json!({"to": to}));
                self.push(rec);
                self.effects.push(Effect::Post {
                    agent: to.clone(),
                    kind: "mail",
                    body: serde_json::to_value(mail).unwrap_or_default(),
                });
                Ok(())
            }
        }
    }

    fn submit(&mut self, raw: &Value, msg: &str) -> Result<(), Refusal> {
        let task = Task::from_value(raw.clone()).map_err(|e| Refusal::from(e.within("task")))?;
        let hash = fnv64(&serde_json::to_vec(raw).unwrap_or_default());
        self.admit(task, hash, msg, Admission::Submit)
    }

    /// Accepts a new task (or recognises an identical resubmission). `Submit` starts every task
    /// PENDING; `Import` keeps the state a migrated task had (IN_PROGRESS, which no claim backs
    /// here, becomes PENDING so the work is offered again).
    fn admit(&mut self, mut task: Task, hash: u64, msg: &str, how: Admission) -> Result<(), Refusal> {
        let id = task.task_id.clone();
        if let Some(existing) = self.state.hash_of(&id) {
            if existing == hash {
                let mut rec = Record::new(Op::Duplicate, self.now());
                rec.task_id = Some(id);
                rec.msg = Some(msg.to_string());
                rec.reason = Some("identical resubmission: nothing to do".into());
                self.push(rec);
                return Ok(());
            }
            let status = self.state.status_of(&id).map(|s| s.as_str()).unwrap_or("?");
            return Err(Refusal::new(
                NoticeKind::Rejected,
                "task.task_id",
                format!("duplicate: task `{id}` already exists ({status}) with different content"),
            )
            .task(&id));
        }
        if task.depends_on.iter().any(|d| d == &id) {
            return Err(Refusal::new(
                NoticeKind::Rejected,
                "task.depends_on",
                "a task cannot depend on itself",
            )
            .task(&id));
        }
        let now = self.now();
        let given = task.status;
        let keep = matches!(how, Admission::Import { .. }) && given != Status::InProgress;
        if !(keep && given.is_terminal()) {
            self.check_destination(&task, matches!(how, Admission::Import { create_agents: true }))
                .map_err(|r| r.task(&id))?;
        }
        if task.created_at.is_none() {
            task.created_at = Some(now);
        }
        let actor = task.created_by.clone().unwrap_or_else(|| "producer".to_string());
        let (op, place) = if keep {
            let mut details = json!({"status": given});
            if let Admission::Import { .. } = how {
                details["source"] = json!(msg);
            }
            task.history.push(protocol::HistoryEntry {
                timestamp: now,
                actor: BROKER.to_string(),
                action: "import".into(),
                from: None,
                to: Some(given),
                details: Some(details),
            });
            task.updated_at = Some(now);
            (Op::Import, if given.is_terminal() { Place::Done } else { Place::Backlog })
        } else {
            task.status = Status::Pending;
            task.attempts = 0;
            let tr = transition(None, &Event::Submit, now, self.cfg.backoff())
                .map_err(|e| Refusal::new(NoticeKind::Rejected, "task", e.to_string()))?;
            let details = (given != Status::Pending).then(|| json!({"ignored_status": given}));
            tr.apply(&mut task, &Event::Submit, &actor, now, details);
            (if matches!(how, Admission::Import { .. }) { Op::Import } else { Op::Submit }, Place::Backlog)
        };
        let mut rec = Record::new(op, now);
        rec.task_id = Some(id.clone());
        rec.place = Some(place.clone());
        rec.task = Some(task);
        rec.msg = Some(msg.to_string());
        rec.hash = Some(hash);
        rec.path = Some(match how {
            Admission::Import { .. } => msg.to_string(),
            Admission::Submit => self.rel(&self.layout.broker_inbox().new_dir().join(msg)),
        });
        self.push(rec);
        if place == Place::Done {
            self.settle_dependents(&id);
        } else {
            self.try_dispatch(&id);
        }
        Ok(())
    }

    /// Checks that the task's destination exists (or may be created).
    fn check_destination(&mut self, task: &Task, create: bool) -> Result<(), Refusal> {
        let agent = match (&task.assigned_to, self.route_of(task)) {
            (Some(a), _) => Some(("task.assigned_to", a.clone())),
            (None, Route::Agent(a)) => Some(("task.task_type", a)),
            (None, Route::Pool(_)) => None,
        };
        if let Some((field, agent)) = agent {
            names::validate_agent(&agent).map_err(|e| Refusal::new(NoticeKind::Rejected, field, e.rule))?;
            let md = self.layout.mailbox(&agent);
            if !md.exists(self.fs.as_ref()) {
                if !self.cfg.broker.allow_unknown_agents && !create {
                    return Err(Refusal::new(
                        NoticeKind::Rejected,
                        field,
                        format!(
                            "no agent `{agent}` (its mailbox does not exist; `mailroom agent add {agent}` creates it)"
                        ),
                    ));
                }
                md.create(self.fs.as_ref(), true)
                    .map_err(|e| Refusal::new(NoticeKind::Rejected, field, e.to_string()))?;
            }
        }
        let (field, md) = match (&task.assigned_to, self.route_of(task)) {
            (Some(a), _) => ("task.assigned_to", self.layout.mailbox(a)),
            (None, Route::Agent(a)) => ("task.task_type", self.layout.mailbox(&a)),
            (None, Route::Pool(p)) => ("task.task_type", self.layout.queue(&p)),
        };
        if !self.layout.maildir_contained(self.fs.as_ref(), &md) {
            return Err(Refusal::new(
                NoticeKind::Rejected,
                field,
                format!(
                    "destination `{}` is a symbolic link or not a directory: the broker writes only inside its root",
                    self.rel(&md.root)
                ),
            ));
        }
        Ok(())
    }

    fn route_of(&self, task: &Task) -> Route {
        if let Some(r) = task.task_type.as_ref().and_then(|t| self.cfg.routes.get(t)) {
            return r.clone();
        }
        Route::Pool(names::pool_for_task_type(task.task_type.as_deref()))
    }

    /// Resolves `claim` for a complete/fail/release from `agent`, enforcing the fence: the claim
    /// must be current and its file must be in `mailboxes/<agent>/cur/`.
    fn holder(&mut self, agent: &str, claim: &str) -> Result<String, Refusal> {
        let stale = |rule: String| Refusal::new(NoticeKind::Stale, "claim", rule);
        let Some(id) = self.state.by_name.get(claim).cloned() else {
            let why = match self.state.retired.get(claim) {
                Some(id) => format!(
                    "`{claim}` is no longer a claim on task `{id}` (it was taken back, released or finished)"
                ),
                None => format!("`{claim}` is not a claim the broker knows"),
            };
            return Err(stale(why));
        };
        let path = self.layout.mailbox(agent).cur().join(claim);
        let here = matches!(self.fs.stat(&path), Ok(Some(m)) if m.kind == FileKind::File);
        let place = self.state.live.get(&id).map(|l| l.place.clone());
        match place {
            Some(Place::Held { agent: holder, .. }) if holder != agent => {
                Err(stale(format!("`{claim}` is held by `{holder}`, not `{agent}`")).task(&id))
            }
            _ if !here => Err(stale(format!("`{claim}` is not in mailboxes/{agent}/cur/")).task(&id)),
            Some(Place::Queued { .. }) => {
                self.record_claim(&id, agent, claim);
                Ok(id)
            }
            _ => Ok(id),
        }
    }

    fn finish(&mut self, agent: &str, claim: &str, msg: &str, ev: Event) -> Result<(), Refusal> {
        let id = self.holder(agent, claim)?;
        let now = self.now();
        let live = &self.state.live[&id];
        let tr = transition(Some(&live.task), &ev, now, self.cfg.backoff())
            .map_err(|e| Refusal::new(NoticeKind::Rejected, "kind", e.to_string()).task(&id))?;
        let mut task = live.task.clone();
        let op = match ev {
            Event::Complete { .. } => Op::Complete,
            Event::Fail { .. } => Op::Fail,
            _ => Op::Release,
        };
        tr.apply(&mut task, &ev, agent, now, Some(json!({"claim": claim})));
        if tr.to == Status::Pending {
            unassign_if_pooled(&mut task, &self.state.live[&id].place);
        }
        let place = if tr.to.is_terminal() { Place::Done } else { Place::Backlog };
        let mut rec = Record::new(op, now);
        rec.task_id = Some(id.clone());
        rec.task = Some(task);
        rec.place = Some(place);
        rec.msg = Some(msg.to_string());
        rec.actor = Some(agent.to_string());
        rec.path = Some(format!("mailboxes/{agent}/cur/{claim}"));
        self.push(rec);
        self.effects.push(Effect::Remove { path: self.layout.mailbox(agent).cur().join(claim) });
        if tr.to.is_terminal() {
            self.settle_dependents(&id);
        } else {
            self.try_dispatch(&id);
        }
        Ok(())
    }

    fn cancel(&mut self, id: &str, msg: &str) -> Result<(), Refusal> {
        let Some(live) = self.state.live.get(id) else {
            return Err(match self.state.status_of(id) {
                Some(s) => {
                    Refusal::new(NoticeKind::Rejected, "task_id", format!("cannot cancel a task that is {s}"))
                }
                None => Refusal::new(NoticeKind::Rejected, "task_id", format!("no task `{id}`")),
            }
            .task(id));
        };
        let now = self.now();
        let tr = transition(Some(&live.task), &Event::Cancel, now, self.cfg.backoff())
            .map_err(|e| Refusal::new(NoticeKind::Rejected, "task_id", e.to_string()).task(id))?;
        let (mut task, place) = (live.task.clone(), live.place.clone());
        tr.apply(&mut task, &Event::Cancel, "operator", now, None);
        let mut rec = Record::new(Op::Cancel, now);
        rec.task_id = Some(id.to_string());
        rec.task = Some(task);
        rec.place = Some(Place::Done);
        rec.msg = Some(msg.to_string());
        self.push(rec);
        match place {
            Place::Queued { dir, name } => {
                let queued = self.layout.comms().join(dir).join("new").join(&name);
                self.effects.push(Effect::Revoke { queued, name, task_id: id.to_string() });
            }
            Place::Held { agent, name, .. } => {
                self.effects.push(Effect::Remove { path: self.layout.mailbox(&agent).cur().join(&name) });
                let mut n =
                    Notice::new(NoticeKind::Cancelled, now, "the task was cancelled; the claim is revoked");
                n.task_id = Some(id.to_string());
                n.claim = Some(name);
                self.effects.push(Effect::Post {
                    agent,
                    kind: "notice",
                    body: serde_json::to_value(n).unwrap_or_default(),
                });
            }
            _ => {}
        }
        self.settle_dependents(id);
        Ok(())
    }

    fn retry(&mut self, id: &str, msg: &str) -> Result<(), Refusal> {
        let task = match self.state.live.get(id) {
            Some(l) => l.task.clone(),
            None => match self.state.tombs.get(id) {
                Some(_) => self.find_finished(id).ok_or_else(|| {
                    Refusal::new(
                        NoticeKind::Rejected,
                        "task_id",
                        format!("task `{id}` not found in the journal"),
                    )
                    .task(id)
                })?,
                None => {
                    return Err(
                        Refusal::new(NoticeKind::Rejected, "task_id", format!("no task `{id}`")).task(id)
                    );
                }
            },
        };
        let now = self.now();
        let tr = transition(Some(&task), &Event::Retry, now, self.cfg.backoff())
            .map_err(|e| Refusal::new(NoticeKind::Rejected, "task_id", e.to_string()).task(id))?;
        let mut task = task;
        tr.apply(&mut task, &Event::Retry, "operator", now, None);
        task.not_before = None;
        // A task that was claimed from a pool goes back to its pool, not to its last holder.
        let last_dispatch = task.history.iter().rev().find(|h| h.action == "dispatch");
        if last_dispatch
            .and_then(|h| h.details.as_ref())
            .and_then(|d| d["to"].as_str())
            .is_some_and(|to| to.starts_with("queues/"))
        {
            task.assigned_to = None;
        }
        let mut rec = Record::new(Op::Retry, now);
        rec.task_id = Some(id.to_string());
        rec.task = Some(task);
        rec.place = Some(Place::Backlog);
        rec.msg = Some(msg.to_string());
        self.push(rec);
        self.try_dispatch(id);
        Ok(())
    }

    /// The last journaled form of a finished task (for a redrive of one that left memory).
    fn find_finished(&self, id: &str) -> Option<Task> {
        if let Some(t) = self.state.recent_done.iter().rev().find(|t| t.task_id == id) {
            return Some(t.clone());
        }
        let mut found = None;
        let segs = journal::all_segments(self.fs.as_ref(), &self.layout.journal_dir()).ok()?;
        let mut torn = Vec::new();
        for p in segs {
            let _ = journal::read_segment(
                self.fs.as_ref(),
                &p,
                |r| {
                    if r.task_id.as_deref() == Some(id) && r.task.is_some() {
                        found = r.task;
                    }
                },
                &mut torn,
            );
        }
        found
    }

    // ---------------------------------------------------------------- dispatch and dependencies

    /// Dispatches a backlog task if its dependencies and `not_before` allow; blocks it if a
    /// dependency failed.
    fn try_dispatch(&mut self, id: &str) {
        let Some(live) = self.state.live.get(id) else { return };
        if live.place != Place::Backlog || live.task.status != Status::Pending {
            return;
        }
        let now = self.now();
        if live.task.not_before.is_some_and(|t| t > now) {
            return;
        }
        for dep in &live.task.depends_on {
            match self.state.status_of(dep) {
                Some(Status::Completed) => {}
                Some(Status::Failed | Status::Cancelled) => {
                    let dep = dep.clone();
                    self.block(id, &dep);
                    return;
                }
                _ => return,
            }
        }
        let task = live.task.clone();
        let (maildir, dir) = match self.route_of(&task) {
            _ if task.assigned_to.is_some() => {
                let a = task.assigned_to.clone().unwrap_or_default();
                (self.layout.mailbox(&a), format!("mailboxes/{a}"))
            }
            Route::Agent(a) => (self.layout.mailbox(&a), format!("mailboxes/{a}")),
            Route::Pool(p) => (self.layout.queue(&p), format!("queues/{p}")),
        };
        let created = task.created_at.unwrap_or(now);
        let name = DispatchName::new(task.priority, created, self.journal.next_seq(), id).file_name();
        let mut t = task;
        let tr = match transition(Some(&t), &Event::Dispatch, now, self.cfg.backoff()) {
            Ok(tr) => tr,
            Err(_) => return,
        };
        tr.apply(&mut t, &Event::Dispatch, BROKER, now, Some(json!({"to": format!("{dir}/new/{name}")})));
        let mut rec = Record::new(Op::Dispatch, now);
        rec.task_id = Some(id.to_string());
        rec.place = Some(Place::Queued { dir, name: name.clone() });
        rec.path = Some(format!(
            "{}/new/{name}",
            rec.place
                .as_ref()
                .and_then(|p| match p {
                    Place::Queued { dir, .. } => Some(dir.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        ));
        let bytes = task_bytes(&t);
        rec.task = Some(t);
        self.push(rec);
        if let Err(e) = maildir.create(self.fs.as_ref(), false) {
            tracing::error!(error = %e, "cannot create the destination maildir");
        }
        self.effects.push(Effect::Deliver { maildir, name, bytes });
    }

    fn block(&mut self, id: &str, dep: &str) {
        let now = self.now();
        let Some(live) = self.state.live.get(id) else { return };
        let ev = Event::DependencyFailed { dependency: dep.to_string() };
        let Ok(tr) = transition(Some(&live.task), &ev, now, self.cfg.backoff()) else { return };
        let mut t = live.task.clone();
        tr.apply(&mut t, &ev, BROKER, now, None);
        let mut rec = Record::new(Op::Block, now);
        rec.task_id = Some(id.to_string());
        rec.task = Some(t);
        rec.place = Some(Place::Backlog);
        rec.reason = Some(format!("dependency `{dep}` failed or was cancelled"));
        self.push(rec);
        self.settle_dependents(id);
    }

    /// Re-examines the tasks that depend on `id` after it changed state.
    fn settle_dependents(&mut self, id: &str) {
        let waiting: Vec<String> = self
            .state
            .backlog
            .iter()
            .filter(|w| self.state.live.get(*w).is_some_and(|l| l.task.depends_on.iter().any(|d| d == id)))
            .cloned()
            .collect();
        for w in waiting {
            self.try_dispatch(&w);
        }
    }

    fn dispatch_ready(&mut self) -> Result<(), EngineError> {
        let ids: Vec<String> = self.state.backlog.iter().cloned().collect();
        for id in ids {
            self.try_dispatch(&id);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- claims and leases

    fn agents(&self) -> Result<Vec<String>, EngineError> {
        let dir = self.layout.mailboxes_dir();
        let mut out = Vec::new();
        for e in self.fs.list(&dir)? {
            if e.kind == FileKind::Dir
                && let Some(n) = e.name_str()
                && names::validate_agent(n).is_ok()
            {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn all_maildirs(&self) -> Result<Vec<Maildir>, EngineError> {
        let mut out: Vec<Maildir> = self.agents()?.iter().map(|a| self.layout.mailbox(a)).collect();
        for e in self.fs.list(&self.layout.queues_dir())? {
            if e.kind == FileKind::Dir
                && let Some(n) = e.name_str()
                && names::validate_pool(n).is_ok()
            {
                out.push(self.layout.queue(n));
            }
        }
        Ok(out)
    }

    /// The agent whose `cur/` holds a task file named `name`, if any.
    fn holder_of(&self, name: &str) -> Result<Option<String>, EngineError> {
        for agent in self.agents()? {
            let p = self.layout.mailbox(&agent).cur().join(name);
            if matches!(self.fs.stat(&p)?, Some(m) if m.kind == FileKind::File) {
                return Ok(Some(agent));
            }
        }
        Ok(None)
    }

    fn record_claim(&mut self, id: &str, agent: &str, name: &str) {
        let now = self.now();
        let Some(live) = self.state.live.get(id) else { return };
        let from = match &live.place {
            Place::Queued { dir, .. } => dir.clone(),
            _ => String::new(),
        };
        let ev = Event::Claim { agent: agent.to_string() };
        let Ok(tr) = transition(Some(&live.task), &ev, now, self.cfg.backoff()) else { return };
        let mut t = live.task.clone();
        tr.apply(&mut t, &ev, agent, now, Some(json!({"claim": name})));
        let mut rec = Record::new(Op::Claim, now);
        rec.task_id = Some(id.to_string());
        rec.task = Some(t);
        rec.place = Some(Place::Held {
            agent: agent.to_string(),
            name: name.to_string(),
            seen_at: now,
            from: from.clone(),
        });
        rec.actor = Some(agent.to_string());
        rec.path = Some(format!("mailboxes/{agent}/cur/{name}"));
        self.push(rec);
        // The agent's rename is not fsynced: make it durable with this batch, so that a power
        // loss cannot put back in new/ a task the journal says is held.
        self.touched.insert(self.layout.mailbox(agent).cur());
        if !from.is_empty() {
            self.moved_from.insert(self.layout.comms().join(&from).join("new"));
        }
    }

    /// Finds task files that agents renamed into their `cur/` since the last look.
    fn observe_claims(&mut self) -> Result<(), EngineError> {
        let queued = self.state.by_name.len()
            - self.state.live.values().filter(|l| matches!(l.place, Place::Held { .. })).count();
        if queued == 0 {
            return Ok(());
        }
        for agent in self.agents()? {
            let cur = self.layout.mailbox(&agent).cur();
            if !self.layout.is_contained(self.fs.as_ref(), &cur.join("_")) {
                continue; // a cur/ that is a symbolic link is never listed (claims there do not count)
            }
            let entries = match self.fs.list(&cur) {
                Ok(e) => e,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for e in entries {
                let Some(name) = e.name_str() else { continue };
                let Some(id) = self.state.by_name.get(name).cloned() else { continue };
                if matches!(self.state.live.get(&id).map(|l| &l.place), Some(Place::Queued { .. }))
                    && e.kind == FileKind::File
                {
                    self.record_claim(&id, &agent, name);
                }
            }
        }
        Ok(())
    }

    /// Takes back claims whose lease ran out or whose file left the holder's `cur/`.
    fn check_held(&mut self) -> Result<(), EngineError> {
        let now = self.now();
        let held: Vec<(String, String, String, Timestamp, u64, String)> = self
            .state
            .live
            .values()
            .filter_map(|l| match &l.place {
                Place::Held { agent, name, seen_at, from } => Some((
                    l.task.task_id.clone(),
                    agent.clone(),
                    name.clone(),
                    *seen_at,
                    l.task.lease(self.cfg.broker.lease_secs),
                    from.clone(),
                )),
                _ => None,
            })
            .collect();
        for (id, agent, name, seen_at, lease, from) in held {
            let path = self.layout.mailbox(&agent).cur().join(&name);
            let (op, reason) = match self.fs.stat(&path)? {
                Some(m) if m.kind == FileKind::File => {
                    let deadline = m.mtime.max(seen_at).plus_secs(lease);
                    if now <= deadline {
                        continue;
                    }
                    (Op::Expire, format!("lease of {lease} s ran out"))
                }
                _ => (Op::Vanish, format!("the claimed file left mailboxes/{agent}/cur/")),
            };
            let live = &self.state.live[&id];
            let Ok(tr) = transition(Some(&live.task), &Event::LeaseExpired, now, self.cfg.backoff()) else {
                continue;
            };
            let mut t = live.task.clone();
            tr.apply(
                &mut t,
                &Event::LeaseExpired,
                BROKER,
                now,
                Some(json!({"claim": name, "reason": reason})),
            );
            if tr.to == Status::Pending {
                unassign_if_pooled(&mut t, &live.place);
            }
            let terminal = tr.to.is_terminal();
            let mut rec = Record::new(op, now);
            rec.task_id = Some(id.clone());
            rec.task = Some(t);
            rec.place = Some(if terminal { Place::Done } else { Place::Backlog });
            rec.actor = Some(agent.clone());
            rec.reason = Some(reason.clone());
            rec.path = Some(format!("mailboxes/{agent}/cur/{name}"));
            self.push(rec);
            tracing::info!(task = %id, agent = %agent, %reason, "claim taken back");
            if op == Op::Vanish && !from.is_empty() {
                // A power loss before the claim was made durable puts the file back where it was
                // claimed from, under a name that is now retired: take it away.
                let back = self.layout.comms().join(&from).join("new").join(&name);
                self.effects.push(Effect::Remove { path: back });
            }
            if op == Op::Expire {
                self.effects.push(Effect::Remove { path });
                let mut n = Notice::new(NoticeKind::LeaseExpired, now, reason);
                n.task_id = Some(id.clone());
                n.claim = Some(name);
                self.effects.push(Effect::Post {
                    agent,
                    kind: "notice",
                    body: serde_json::to_value(n).unwrap_or_default(),
                });
            }
            if terminal {
                self.settle_dependents(&id);
            } else {
                self.try_dispatch(&id);
            }
        }
        Ok(())
    }

    fn stray(&mut self, path: PathBuf, name: &str, why: &str) {
        let now = self.now();
        let qname = format!("{:012}-{}", self.journal.next_seq(), printable(name));
        let to = self.layout.quarantine_dir().join(qname);
        let mut rec = Record::new(Op::Stray, now);
        rec.reason = Some(why.to_string());
        rec.path = Some(self.rel(&to));
        rec.detail = Some(json!({"from": self.rel(&path)}));
        self.push(rec);
        let reason = json!({"file": self.rel(&path), "quarantined_at": now, "reason": why});
        self.effects.push(Effect::Quarantine { from: path, to, reason });
    }

    // ---------------------------------------------------------------- drop/

    /// Moves files from `drop/` and the configured drop directories into the inbox once they
    /// are complete: they parse (leniently) and have not changed for `settle_ms`. One that never
    /// parses is quarantined after `settle_timeout_secs`, bytes intact.
    fn take_drops(&mut self) -> Result<(), EngineError> {
        let mut seen = std::collections::HashSet::new();
        for source in self.drop_sources()? {
            self.take_drops_from(&source, &mut seen)?;
        }
        self.drops.retain(|k, _| seen.contains(k));
        Ok(())
    }

    fn take_drops_from(
        &mut self,
        source: &DropSource,
        seen: &mut std::collections::HashSet<PathBuf>,
    ) -> Result<(), EngineError> {
        let dir = source.dir.clone();
        let entries = match self.fs.list(&dir) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        for e in entries {
            let shown = e.name.to_string_lossy().into_owned();
            if names::is_hidden(&shown) {
                continue;
            }
            let path = dir.join(&e.name);
            if e.kind != FileKind::File || e.name_str().is_none() {
                let rule = if e.kind != FileKind::File {
                    format!("is a {}, not a regular file", e.kind)
                } else {
                    "file name is not UTF-8".into()
                };
                self.reject_file(&path, &shown, None, Refusal::new(NoticeKind::Rejected, "", rule));
                continue;
            }
            seen.insert(path.clone());
            let Some(meta) = self.fs.stat(&path)? else { continue };
            let prev = self.drops.get(&path).copied();
            let watch = DropWatch {
                len: meta.len,
                mtime: meta.mtime,
                first_seen: prev.map(|p| p.first_seen).unwrap_or(now),
            };
            self.drops.insert(path.clone(), watch);
            let unchanged = prev.is_some_and(|p| p.len == meta.len && p.mtime == meta.mtime);
            let quiet = meta.mtime.as_micros() + (self.cfg.broker.settle_ms as i64) * 1000 <= now.as_micros();
            if !unchanged || !quiet {
                continue;
            }
            let parsed = match self.fs.read(&path, self.cfg.broker.max_message_bytes) {
                Ok(bytes) => ingest::parses(&bytes),
                Err(e) if e.is_not_found() => continue,
                Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
                    let r = Refusal::new(NoticeKind::Rejected, "", strip_path(&e.to_string(), &path));
                    self.reject_file(&path, &shown, None, r);
                    self.drops.remove(&path);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match parsed {
                Ok(()) => {
                    let unique = self.names.next("d");
                    let unique = unique.trim_start_matches("d-").trim_end_matches(".json");
                    let name = match &source.mail_for {
                        None => format!("{}{unique}-{}", ingest::DROP_PREFIX, printable(&shown)),
                        Some(agent) => {
                            format!("{}{agent}+{unique}-{}", ingest::MAIL_DROP_PREFIX, printable(&shown))
                        }
                    };
                    let to = self.layout.broker_inbox().new_dir().join(&name);
                    self.fs.rename_noreplace(&path, &to)?;
                    self.moved_from.insert(dir.clone());
                    self.touched.insert(self.layout.broker_inbox().new_dir());
                    self.drops.remove(&path);
                    tracing::debug!(file = %self.rel(&path), as_message = %name, "took a dropped file");
                }
                Err(v)
                    if now.as_micros() - watch.first_seen.as_micros()
                        >= self.cfg.broker.settle_timeout_secs as i64 * 1_000_000 =>
                {
                    self.reject_file(&path, &shown, None, v.into());
                    self.drops.remove(&path);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// `drop/`, the configured task directories, and every `<mail_dir>/<agent>/inbox/`.
    fn drop_sources(&self) -> Result<Vec<DropSource>, EngineError> {
        let mut out = vec![DropSource { dir: self.layout.drop_dir(), mail_for: None }];
        let root = self.layout.root().to_path_buf();
        for d in &self.cfg.ingest.task_dirs {
            out.push(DropSource { dir: root.join(d), mail_for: None });
        }
        for d in &self.cfg.ingest.mail_dirs {
            let base = root.join(d);
            let entries = match self.fs.list(&base) {
                Ok(e) => e,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for e in entries {
                if e.kind == FileKind::Dir
                    && let Some(n) = e.name_str()
                    && !names::is_hidden(n)
                {
                    // The directory's name says whose inbox it is; a name that is not a valid
                    // agent name is kept for the normaliser to map (`Agent 2` -> `Agent-2`).
                    let agent: String =
                        n.chars().map(|c| if c == '+' || c == '/' { '_' } else { c }).collect();
                    out.push(DropSource { dir: base.join(n).join("inbox"), mail_for: Some(agent) });
                }
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- boards and compaction

    /// Rewrites the boards from state when they changed (at most every 200 ms unless `force`).
    pub fn write_boards(&mut self, force: bool) -> Result<(), EngineError> {
        let force = force || std::mem::take(&mut self.boards_force);
        if !self.boards_dirty && !force {
            return Ok(());
        }
        // The engine's clock, not `Instant`: with an injected clock a pass is deterministic.
        let now = self.now();
        if !force
            && self.boards_written.is_some_and(|t| now >= t && now.as_micros() - t.as_micros() < 200_000)
        {
            return Ok(());
        }
        let mut boards: HashMap<Board, Vec<(String, &Task)>> = HashMap::new();
        for l in self.state.live.values() {
            let (board, key) = match &l.place {
                Place::Backlog | Place::Done => (
                    Board::Backlog,
                    l.task.created_at.map(|t| t.compact()).unwrap_or_default() + &l.task.task_id,
                ),
                Place::Queued { name, .. } => (Board::Ready, name.clone()),
                Place::Held { name, .. } => (Board::Working, name.clone()),
            };
            boards.entry(board).or_default().push((key, &l.task));
        }
        let mut marks = Vec::new();
        // Each board: temporary, fsync, rename; then one fsync of the directory for all four.
        let sync = self.durability.sync_files();
        let mut deferred = false;
        let absorb = self.cfg.ingest.absorb_board_edits;
        for board in Board::ALL {
            let path = self.layout.board(board);
            let on_disk = self.fs.stat(&path)?.map(|m| (m.len, m.mtime));
            // A board someone else changed is absorbed first, never overwritten unread.
            if absorb
                && let Some(mark) = self.board_marks.get(&board)
                && mark.edited(on_disk)
            {
                deferred = true;
                continue;
            }
            let tasks: Vec<&Task> = if board == Board::Completed {
                self.state.recent_done.iter().collect()
            } else {
                let mut list = boards.remove(&board).unwrap_or_default();
                list.sort_by(|a, b| a.0.cmp(&b.0));
                list.into_iter().map(|(_, t)| t).collect()
            };
            // A task is serialised again only when it changed since the last rewrite (its
            // version: update time, history length, status). Its bytes also give the hash that
            // tells an edited entry from an untouched one, and the board's signature: a board
            // whose entries are all unchanged is not rewritten at all.
            let mut sig = fnv64(board.file_name().as_bytes());
            for t in &tasks {
                let version = (t.updated_at.map(|u| u.as_micros()), t.history.len(), t.status);
                let hash = match self.board_cache.get(&t.task_id) {
                    Some(c) if c.version == version => c.hash,
                    _ => {
                        let json = serde_json::to_vec(t).expect("a task always serialises");
                        let hash = fnv64(&json);
                        self.board_cache.insert(t.task_id.clone(), CachedTask { version, json, hash });
                        hash
                    }
                };
                sig = sig.rotate_left(5) ^ hash;
            }
            let unchanged = !force
                && self.board_sigs.get(&board) == Some(&sig)
                && (!absorb || self.board_marks.contains_key(&board))
                && on_disk.is_some();
            if unchanged {
                continue;
            }
            // One task per line.
            let mut hashes = HashMap::with_capacity(if absorb { tasks.len() } else { 0 });
            let mut bytes = Vec::with_capacity(tasks.len() * 1024 + 4);
            bytes.push(b'[');
            for (i, t) in tasks.iter().enumerate() {
                bytes.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
                let cached = &self.board_cache[&t.task_id];
                bytes.extend_from_slice(&cached.json);
                if absorb {
                    hashes.insert(t.task_id.clone(), cached.hash);
                }
            }
            bytes.extend_from_slice(b"\n]\n");
            replace_file(self.fs.as_ref(), &path, &bytes, &self.names, sync)?;
            self.board_sigs.insert(board, sig);
            if absorb {
                let stamp = self.fs.stat(&path)?.map(|m| (m.len, m.mtime));
                marks.push((board, ingest::BoardMark::new(stamp, hashes)));
            }
        }
        // Forget tasks that left every board.
        if self.board_cache.len() > self.state.live.len() + self.state.recent_done.len() + 1024 {
            let keep: std::collections::HashSet<&str> = self
                .state
                .live
                .keys()
                .map(String::as_str)
                .chain(self.state.recent_done.iter().map(|t| t.task_id.as_str()))
                .collect();
            self.board_cache.retain(|k, _| keep.contains(k.as_str()));
        }
        if sync {
            self.fs.sync_dir(&self.layout.boards_dir())?;
        }
        for (b, m) in marks {
            self.board_marks.insert(b, m);
        }
        self.boards_dirty = deferred;
        self.boards_written = Some(now);
        Ok(())
    }

    fn compact(&mut self) -> Result<(), EngineError> {
        let snap = self.state.snapshot(self.journal.next_seq() - 1);
        self.journal.compact(self.fs.as_ref(), &snap, &self.names)?;
        self.state.consumed.clear();
        self.state.refusals.clear();
        tracing::info!(seq = snap.seq, live = snap.live.len(), "journal compacted");
        Ok(())
    }

    /// Removes processed messages older than the retention from `broker/inbox/cur/`.
    pub fn prune_inbox(&mut self) -> Result<(), EngineError> {
        let cur = self.layout.broker_inbox().cur();
        let keep = self.cfg.broker.inbox_retention_secs;
        let now = self.now();
        for e in self.fs.list(&cur)? {
            let p = cur.join(&e.name);
            if let Some(m) = self.fs.stat(&p)?
                && m.mtime.plus_secs(keep) < now
            {
                self.fs.remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// Flushes everything (on shutdown).
    pub fn flush(&mut self) -> Result<(), EngineError> {
        self.commit()?;
        self.write_boards(true)
    }
}

/// A task claimed from a pool goes back to the pool when taken back; one addressed to an agent
/// stays addressed to it.
fn unassign_if_pooled(task: &mut Task, place: &Place) {
    if let Place::Held { from, .. } = place
        && from.starts_with("queues/")
    {
        task.assigned_to = None;
    }
}

/// The bytes of a task file in `new/` (what an agent reads when it claims).
pub fn task_bytes(task: &Task) -> Vec<u8> {
    serde_json::to_vec_pretty(task).unwrap_or_default()
}

/// A file name made safe to show and to reuse as part of a quarantine name.
pub(crate) fn printable(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_control() || c == '/' { '_' } else { c }).collect::<String>();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    let mut cut = s.len().min(150);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn strip_path(msg: &str, path: &Path) -> String {
    msg.replace(&format!("{}: ", path.display()), "")
}

impl Engine {
    /// Replaces the clock (tests and simulations; leases, backoffs and timestamps all read it).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// A task's current record, for tests and `trace`.
    pub fn live(&self, id: &str) -> Option<&Live> {
        self.state.live.get(id)
    }
}

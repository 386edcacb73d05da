//! The Rust client for mailroom agents and producers: submit tasks, claim them with one atomic
//! rename, heartbeat, complete, fail, release, and exchange mail, all over the file protocol of
//! `docs/PROTOCOL.md`. Synchronous: no runtime, no threads except the watcher of [`Agent::claim_wait`].
//!
//! Every read, rename, touch, listing and delivery goes through a [`runtime_layout::Fs`]:
//! [`Client::open`] and [`Agent::open`] use a [`RootFs`] on the root (every path resolved beneath
//! it, never through a link: a pool or mailbox replaced by a symlink cannot make an agent write,
//! rename or read outside the root), and [`Client::open_with`] and [`Agent::open_with`] take any
//! other (the power-loss suite runs this very code on
//! `runtime_layout::sim::SimFs`). The one exception is the wake-up of [`Agent::claim_wait`],
//! which watches the real directories with inotify: wake-ups are only hints, and the periodic
//! rescan through the `Fs` finds the tasks whatever the filesystem.
//!
//! ```no_run
//! use mailroom_agent_sdk::{Agent, Client};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), mailroom_agent_sdk::Error> {
//! let root = mailroom_agent_sdk::default_root(None);
//! Client::open(&root)?.submit(&serde_json::json!({"task_id": "T-1", "task_type": "build"}))?;
//!
//! let agent = Agent::open(&root, "Agent-1")?;
//! if let Some(claim) = agent.claim_wait(&["build".to_string()], Duration::from_secs(10))? {
//!     agent.heartbeat(&claim.name)?; // keep the lease while working
//!     agent.complete(&claim.name, serde_json::json!({"ok": true}))?;
//! }
//! # Ok(())
//! # }
//! ```

use protocol::names::{DispatchName, is_hidden, validate_agent, validate_pool};
use protocol::{Mail, Message, Notice, Task, ValidationError};
use runtime_layout::{Durability, FileKind, Fs, FsError, Layout, Maildir, NameSource, RootFs, deliver};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Largest task file an agent reads when claiming.
const MAX_TASK_BYTES: u64 = 16 << 20;
/// How often `claim_wait` rescans even without a filesystem event (events are only a hint).
const SAFETY_RESCAN: Duration = Duration::from_millis(500);

/// What can go wrong for an agent or a producer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} is not a mailroom root (run `mailroom init` or start the broker)", root.display())]
    NotInitialised { root: PathBuf },
    #[error("invalid name: {0}")]
    InvalidName(ValidationError),
    #[error("invalid task: {reason}")]
    InvalidTask { reason: ValidationError },
    #[error("agent `{agent}` does not hold claim `{claim}` (taken back, finished, or never held)")]
    ClaimLost { agent: String, claim: String },
    #[error("{path}: claimed file is not a valid task: {reason}", path = path.display())]
    CorruptTask { path: PathBuf, reason: ValidationError },
    #[error(transparent)]
    Io(#[from] FsError),
    #[error("file watcher: {0}")]
    Watch(#[from] notify::Error),
}

/// Is a watcher event worth a rescan? Opening, reading or listing a watched directory is not (a
/// scan's own listing causes such events, and waking on them is a busy loop); a file closed
/// after writing is, and so is every creation, rename, removal, error and overflow.
pub fn is_change(ev: &notify::Result<notify::Event>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match ev {
        Ok(e) => match e.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(_) => true,
    }
}

/// The root to use: an explicit one, else `MAILROOM_ROOT`, else `./runtime`.
pub fn default_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("MAILROOM_ROOT") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("runtime"),
    }
}

/// The root's filesystem, contained beneath it; a root that is not a directory is not a root.
fn root_fs(root: &Path) -> Result<Arc<dyn Fs>, Error> {
    match RootFs::open(root) {
        Ok(fs) => Ok(Arc::new(fs)),
        Err(e) if e.is_not_found() || std::fs::metadata(root).is_ok_and(|m| !m.is_dir()) => {
            Err(Error::NotInitialised { root: root.to_path_buf() })
        }
        Err(e) => Err(e.into()),
    }
}

/// A producer or operator: drops messages into the broker's inbox. Cheap to clone: clones share
/// the filesystem and the name source.
#[derive(Clone)]
pub struct Client {
    layout: Layout,
    fs: Arc<dyn Fs>,
    names: Arc<NameSource>,
    durability: Durability,
}

impl Client {
    /// Opens an initialised root (one made by `mailroom init` or a broker's first start).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(root_fs(root.as_ref())?, root)
    }

    /// Like [`Client::open`], on the filesystem `fs` (every operation of the client goes through it).
    pub fn open_with(fs: Arc<dyn Fs>, root: impl AsRef<Path>) -> Result<Self, Error> {
        let layout = Layout::new(root.as_ref());
        if !layout.is_initialised(fs.as_ref()) {
            return Err(Error::NotInitialised { root: root.as_ref().to_path_buf() });
        }
        Ok(Self { layout, fs, names: Arc::new(NameSource::new()), durability: Durability::Always })
    }

    /// Names messages from `names` instead of a source of the client's own. The broker reads
    /// messages in name order; names from different sources made in the same microsecond are
    /// ordered by their random bits, names from one source by its counter. So a test that gives
    /// all its handles one source built on its manual clock sees the broker read their messages
    /// in the same order in every run (see [`NameSource`]).
    pub fn with_names(mut self, names: Arc<NameSource>) -> Self {
        self.names = names;
        self
    }

    /// How durable a message is when a call returns. The default, [`Durability::Always`], fsyncs
    /// the message file and the inbox directory: once the call returns, a power loss cannot lose it.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Submits a task (validated here first, so a bad task fails at the caller rather than in
    /// quarantine). Returns the name of the message in the broker's inbox.
    pub fn submit(&self, task: &Value) -> Result<String, Error> {
        Task::from_value(task.clone()).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Submit { task: task.clone() })
    }

    /// Asks the broker to cancel a task (a held claim is revoked).
    pub fn cancel(&self, task_id: &str) -> Result<String, Error> {
        protocol::task::validate_task_id(task_id).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Cancel { task_id: task_id.to_string() })
    }

    /// Asks the broker to dispatch a FAILED, BLOCKED or CANCELLED task again.
    pub fn retry(&self, task_id: &str) -> Result<String, Error> {
        protocol::task::validate_task_id(task_id).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Retry { task_id: task_id.to_string() })
    }

    /// Delivers any message into `broker/inbox/new/` through `tmp/`.
    pub fn send_message(&self, msg: &Message) -> Result<String, Error> {
        let bytes = serde_json::to_vec(&msg.to_value()).expect("a JSON value always serialises");
        let name = self.names.next("msg");
        deliver(self.fs.as_ref(), &self.layout.broker_inbox(), &name, &bytes, self.durability)?;
        Ok(name)
    }
}

/// A task this agent holds: its claim name, the task as dispatched, and where its file is.
#[derive(Debug, Clone)]
pub struct Claim {
    pub name: String,
    pub task: Task,
    pub path: PathBuf,
}

/// Something delivered to the agent's mailbox other than a task.
#[derive(Debug, Clone)]
pub enum Inbound {
    Mail(Mail),
    Notice(Notice),
    /// A file that is neither: kept as raw JSON (or `null` when it is not JSON) with its name.
    Other {
        name: String,
        value: Value,
    },
}

/// An agent: owns `mailboxes/<name>/`, claims tasks into its `cur/` and reports on them.
pub struct Agent {
    client: Client,
    name: String,
    mailbox: Maildir,
}

impl Agent {
    /// Opens (creating on first use) the agent's maildir in an initialised root.
    pub fn open(root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        Self::open_with(root_fs(root.as_ref())?, root, name)
    }

    /// Like [`Agent::open`], on the filesystem `fs` (every operation of the agent goes through it;
    /// see [`Agent::claim_wait`] for its wake-ups).
    pub fn open_with(fs: Arc<dyn Fs>, root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        validate_agent(name).map_err(|e| Error::InvalidName(e.within("agent")))?;
        let client = Client::open_with(fs, root)?;
        let mailbox = client.layout.mailbox(name);
        mailbox.create(client.fs.as_ref(), true)?;
        Ok(Self { client, name: name.to_string(), mailbox })
    }

    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.client.durability = durability;
        self
    }

    /// See [`Client::with_names`].
    pub fn with_names(mut self, names: Arc<NameSource>) -> Self {
        self.client.names = names;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Claims the first available task, in dispatch order (higher priority, then older, first),
    /// from the agent's own mailbox and the given pools (every pool when `pools` is empty).
    /// `None` when nothing is available. Never blocks.
    pub fn claim(&self, pools: &[String]) -> Result<Option<Claim>, Error> {
        for p in pools {
            validate_pool(p).map_err(|e| Error::InvalidName(e.within("pool")))?;
        }
        // A lost race means another agent renamed the file first: move on to the next name.
        // When every candidate was lost, list again once: more may have arrived meanwhile.
        for _ in 0..2 {
            let candidates = self.candidates(pools)?;
            if candidates.is_empty() {
                return Ok(None);
            }
            for (name, dir) in candidates {
                if let Some(c) = self.try_claim(&name, &dir)? {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// Like [`Agent::claim`], but waits up to `timeout` for a task, woken by filesystem events
    /// (inotify) rather than polling, with a periodic rescan in case an event was missed.
    ///
    /// The events come from watching the real directories at the agent's paths, whatever `Fs` the
    /// agent was opened with: they only say "look again", and every look (the claim itself) goes
    /// through the `Fs`. A directory that cannot be watched (a pool not created yet, or a path
    /// that exists only in a simulated filesystem) costs at most one rescan period of latency.
    pub fn claim_wait(&self, pools: &[String], timeout: Duration) -> Result<Option<Claim>, Error> {
        let deadline = Instant::now() + timeout;
        // Watch before the first scan, so nothing can arrive unseen between the scan and the wait.
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if is_change(&ev) {
                let _ = tx.send(());
            }
        })?;
        use notify::{RecursiveMode, Watcher};
        let queues = self.client.layout.queues_dir();
        let watch_pools: Vec<String> = if pools.is_empty() { self.all_pools()? } else { pools.to_vec() };
        let mut dirs = vec![self.mailbox.new_dir()];
        dirs.extend(watch_pools.iter().map(|p| self.client.layout.queue(p).new_dir()));
        if pools.is_empty() {
            dirs.push(queues);
        }
        for dir in dirs {
            // Not watchable (not created yet, or not on the real filesystem): the rescan finds it.
            let _ = watcher.watch(&dir, RecursiveMode::NonRecursive);
        }
        loop {
            while rx.try_recv().is_ok() {}
            if let Some(c) = self.claim(pools)? {
                return Ok(Some(c));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).min(SAFETY_RESCAN);
            let _ = rx.recv_timeout(wait);
        }
    }

    /// Renews the lease on a claim (sets the file's mtime to now).
    pub fn heartbeat(&self, claim: &str) -> Result<(), Error> {
        let path = self.held_path(claim)?;
        self.client.fs.touch(&path).map_err(|e| self.lost_or(e, claim))
    }

    /// Reports success. The broker accepts it only while the claim is still held.
    pub fn complete(&self, claim: &str, result: Value) -> Result<String, Error> {
        self.before_report(claim)?;
        self.client.send_message(&Message::Complete {
            agent: self.name.clone(),
            claim: claim.to_string(),
            result,
        })
    }

    /// Reports failure. A retryable failure is dispatched again after a backoff while attempts
    /// remain; otherwise (or when they run out) the task ends FAILED.
    pub fn fail(&self, claim: &str, error: &str, retryable: bool) -> Result<String, Error> {
        self.before_report(claim)?;
        self.client.send_message(&Message::Fail {
            agent: self.name.clone(),
            claim: claim.to_string(),
            error: error.to_string(),
            retryable,
        })
    }

    /// Hands a claim back without counting it as an attempt.
    pub fn release(&self, claim: &str) -> Result<String, Error> {
        self.before_report(claim)?;
        self.client.send_message(&Message::Release { agent: self.name.clone(), claim: claim.to_string() })
    }

    /// Sends mail to another agent through the broker.
    pub fn send(&self, to: &str, subject: Option<&str>, body: Value) -> Result<String, Error> {
        validate_agent(to).map_err(|e| Error::InvalidName(e.within("to")))?;
        self.client.send_message(&Message::Send {
            from: self.name.clone(),
            to: to.to_string(),
            subject: subject.map(str::to_string),
            body,
        })
    }

    /// The claims this agent holds (file names in its `cur/` that are tasks).
    pub fn held(&self) -> Result<Vec<String>, Error> {
        let mut v: Vec<String> = self
            .client
            .fs
            .list(&self.mailbox.cur())?
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .filter_map(|e| e.name_str().map(str::to_string))
            .filter(|n| DispatchName::parse(n).is_some())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Takes the mail and notices waiting in `new/` (oldest first), moving each into `cur/` so it
    /// is read once. Tasks in `new/` are left for [`Agent::claim`].
    pub fn read_mail(&self) -> Result<Vec<Inbound>, Error> {
        let fs = self.client.fs.as_ref();
        let mut names: Vec<String> = fs
            .list(&self.mailbox.new_dir())?
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .filter_map(|e| e.name_str().map(str::to_string))
            .filter(|n| !is_hidden(n) && DispatchName::parse(n).is_none())
            .collect();
        names.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let from = self.mailbox.new_dir().join(&name);
            let to = self.mailbox.cur().join(&name);
            match fs.rename_noreplace(&from, &to) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
            let bytes = fs.read(&to, MAX_TASK_BYTES)?;
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
            let item = match kind {
                "mail" => serde_json::from_value(value.clone()).map(Inbound::Mail).ok(),
                "notice" => serde_json::from_value(value.clone()).map(Inbound::Notice).ok(),
                _ => None,
            };
            out.push(item.unwrap_or(Inbound::Other { name, value }));
        }
        Ok(out)
    }

    fn all_pools(&self) -> Result<Vec<String>, Error> {
        match self.client.fs.list(&self.client.layout.queues_dir()) {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter(|e| e.kind == FileKind::Dir)
                .filter_map(|e| e.name_str().map(str::to_string))
                .filter(|n| validate_pool(n).is_ok())
                .collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every task file the agent could claim now, merged and sorted in dispatch order.
    fn candidates(&self, pools: &[String]) -> Result<Vec<(String, PathBuf)>, Error> {
        let mut dirs = vec![self.mailbox.new_dir()];
        let pools = if pools.is_empty() { self.all_pools()? } else { pools.to_vec() };
        dirs.extend(pools.iter().map(|p| self.client.layout.queue(p).new_dir()));
        let mut out = Vec::new();
        for dir in dirs {
            let entries = match self.client.fs.list(&dir) {
                Ok(e) => e,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for e in entries {
                if e.kind != FileKind::File {
                    continue;
                }
                if let Some(n) = e.name_str()
                    && DispatchName::parse(n).is_some()
                {
                    out.push((n.to_string(), dir.clone()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// One claim attempt: the rename is the claim; losing the race is `None`.
    fn try_claim(&self, name: &str, dir: &Path) -> Result<Option<Claim>, Error> {
        let fs = self.client.fs.as_ref();
        let from = dir.join(name);
        let to = self.mailbox.cur().join(name);
        match fs.rename_noreplace(&from, &to) {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_already_exists() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // The lease counts from the claim, not from when the broker dispatched the file.
        fs.touch(&to)?;
        let bytes = fs.read(&to, MAX_TASK_BYTES)?;
        let task = serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| ValidationError::new("", format!("not JSON: {e}")))
            .and_then(Task::from_value)
            .map_err(|reason| Error::CorruptTask { path: to.clone(), reason })?;
        Ok(Some(Claim { name: name.to_string(), task, path: to }))
    }

    /// Checks the claim is still held and, unless durability is relaxed, makes the claim's rename
    /// into `cur/` durable first: a report delivered durably about a claim that a power loss can
    /// still undo would be refused as stale after the loss, and the work done again.
    fn before_report(&self, claim: &str) -> Result<(), Error> {
        self.held_path(claim)?;
        if self.client.durability.sync_dirs_now() {
            self.client.fs.sync_dir(&self.mailbox.cur())?;
        }
        Ok(())
    }

    fn held_path(&self, claim: &str) -> Result<PathBuf, Error> {
        if DispatchName::parse(claim).is_none() {
            return Err(Error::ClaimLost { agent: self.name.clone(), claim: claim.to_string() });
        }
        let path = self.mailbox.cur().join(claim);
        match self.client.fs.stat(&path)? {
            Some(m) if m.kind == FileKind::File => Ok(path),
            _ => Err(Error::ClaimLost { agent: self.name.clone(), claim: claim.to_string() }),
        }
    }

    fn lost_or(&self, e: FsError, claim: &str) -> Error {
        if e.is_not_found() {
            Error::ClaimLost { agent: self.name.clone(), claim: claim.to_string() }
        } else {
            e.into()
        }
    }
}

/// Mail and notice names start with their kind, then a sortable time: order by the time.
fn sort_key(name: &str) -> &str {
    name.split_once('-').map_or(name, |(_, rest)| rest)
}

#[cfg(test)]
mod tests;

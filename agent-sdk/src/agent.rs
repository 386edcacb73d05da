//! An agent: claims tasks from its mailbox and pools with one atomic rename, heartbeats,
//! reports, and reads its mail and notices.

use crate::{Client, Error, MAX_TASK_BYTES, SAFETY_RESCAN};
use protocol::machine::{Backoff, Event, transition};
use protocol::names::{DispatchName, Recipient, is_hidden, validate_agent, validate_pool};
use protocol::{Mail, Message, Notice, Task, ValidationError};
use runtime_layout::{
    DirWatch, Drained, Durability, FileKind, Fs, FsError, Interest, Layout, Maildir, NameSource,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A task this agent holds: its claim name, the task as it stands now that it is claimed
/// (IN_PROGRESS, assigned to this agent, this attempt counted: what the broker records when it
/// sees the claim), and where its file is.
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
    pub(crate) client: Client,
    pub(crate) name: String,
    pub(crate) mailbox: Maildir,
    /// The capability sets of tags read so far (a tag's set never changes; see `capabilities.rs`).
    pub(crate) sets: Mutex<HashMap<String, Vec<String>>>,
    /// [`Agent::claim_wait`]'s watch, made at its first call and kept (tried again at the next
    /// call while inotify refuses one: meanwhile the wait rescans alone). One instance for the
    /// agent's life, not one per wait: closing an instance waits for the kernel to release its
    /// marks.
    pub(crate) watch: Mutex<Option<Arc<DirWatch>>>,
    /// Until when [`Agent::claim_wait`] watches instead of asking the broker (`offers.rs`): after
    /// an await got no answer, or a broker refused one.
    pub(crate) offers_resume: Mutex<Option<Instant>>,
}

impl Agent {
    /// Opens an agent that exists (its mailbox was made by `mailroom agent add` or
    /// [`Agent::register`]). A name nobody registered is an error, so a typo never makes an agent.
    pub fn open(root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        Self::open_with(crate::root_fs(root.as_ref())?, root, name)
    }

    /// Like [`Agent::open`], on the filesystem `fs` (every operation of the agent goes through it;
    /// see [`Agent::claim_wait`] for its wake-ups).
    pub fn open_with(fs: Arc<dyn Fs>, root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        Self::open_inner(fs, root.as_ref(), name, false)
    }

    /// Opens the agent, registering it first if it is new (creating its mailbox): the explicit
    /// first use, for an agent program that brings its own name.
    pub fn register(root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        Self::register_with(crate::root_fs(root.as_ref())?, root, name)
    }

    /// Like [`Agent::register`], on the filesystem `fs`.
    pub fn register_with(fs: Arc<dyn Fs>, root: impl AsRef<Path>, name: &str) -> Result<Self, Error> {
        Self::open_inner(fs, root.as_ref(), name, true)
    }

    fn open_inner(fs: Arc<dyn Fs>, root: &Path, name: &str, create: bool) -> Result<Self, Error> {
        validate_agent(name).map_err(Error::InvalidName)?;
        let client = Client::open_with(fs, root)?;
        let mailbox = client.layout.mailbox(name);
        if create {
            mailbox.create(client.fs.as_ref(), true)?;
        } else if !mailbox.exists(client.fs.as_ref()) {
            return Err(Error::UnknownAgent { agent: name.to_string(), root: root.to_path_buf() });
        }
        Ok(Self {
            client,
            name: name.to_string(),
            mailbox,
            sets: Mutex::new(HashMap::new()),
            watch: Mutex::new(None),
            offers_resume: Mutex::new(None),
        })
    }

    /// Is `name` a registered agent of the root?
    pub fn exists(root: impl AsRef<Path>, name: &str) -> bool {
        let root = root.as_ref();
        validate_agent(name).is_ok()
            && crate::root_fs(root).is_ok_and(|fs| Layout::new(root).mailbox(name).exists(fs.as_ref()))
    }

    /// See [`Client::with_durability`].
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.client = self.client.with_durability(durability);
        self
    }

    /// See [`Client::with_ack`].
    pub fn with_ack(mut self, ack: crate::Ack) -> Self {
        self.client = self.client.with_ack(ack);
        self
    }

    /// See [`Client::with_socket`].
    pub fn with_socket(mut self, use_it: bool) -> Self {
        self.client = self.client.with_socket(use_it);
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

    /// See [`Client::fs_counts`].
    pub fn fs_counts(&self) -> Option<runtime_layout::FsCounts> {
        self.client.fs_counts()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Claims the first available task, in dispatch order (higher priority, then older, first),
    /// from the agent's own mailbox and the given pools (every pool when `pools` is empty),
    /// skipping pool tasks that require a capability this agent does not declare. `None` when
    /// nothing is available. Never blocks.
    pub fn claim(&self, pools: &[String]) -> Result<Option<Claim>, Error> {
        for p in pools {
            validate_pool(p).map_err(Error::InvalidName)?;
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

    /// Like [`Agent::claim`], but waits up to `timeout` for a task. On the broker's socket it
    /// asks the broker to name it the next task file it may claim (`offers.rs`: one agent woken
    /// per file, not every waiting one). Without the socket it is woken by filesystem events
    /// (inotify) rather than polling, listing again at least every half second in case an event
    /// was missed.
    ///
    /// The events come from watching the real directories at the agent's paths, whatever `Fs` the
    /// agent was opened with: they only say where to look, and every look (the claim itself) goes
    /// through the `Fs`. A directory that cannot be watched (a pool not created yet, or a path
    /// that exists only in a simulated filesystem) costs at most one rescan period of latency.
    ///
    /// Once a look has found nothing to claim, a task file can only appear by arriving, and each
    /// arrival in a watched directory is an event naming the file. So while every directory is
    /// watched and the events name nothing but files that arrived, the wait tries those files
    /// (in dispatch order) and lists nothing: an arrival in a shared pool wakes every agent
    /// waiting on it, and each would otherwise list the pool. Anything else (lost events, a
    /// directory made, moved or not watched) makes the next look a listing, and so does half a
    /// second since the last: what no event announces (a gated task this agent may claim once
    /// its capabilities grow, a directory whose watch follows an inode moved away, events another
    /// thread's wait on the same `Agent` read) is found within that.
    pub fn claim_wait(&self, pools: &[String], timeout: Duration) -> Result<Option<Claim>, Error> {
        for p in pools {
            validate_pool(p).map_err(Error::InvalidName)?;
        }
        let deadline = Instant::now() + timeout;
        if let Some(offered) = self.claim_offered(pools, deadline)? {
            return Ok(offered);
        }
        let fs = self.client.fs.as_ref();
        let watch = {
            let mut held = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            if held.is_none() {
                *held = DirWatch::new().ok().map(|w| Arc::new(w.naming()));
            }
            held.clone()
        };
        let watch = watch.as_deref();
        // Watch before the first look, so nothing can arrive unseen between the look and the
        // wait; what arrived before this call is found by the look, so its events are dropped.
        let mut watched = Watched::default();
        if let Some(w) = watch {
            watched = self.watch_dirs(w, pools);
            let _ = w.drain(fs);
        }
        // `None`: list every directory. `Some(files)`: only these can be new since the last look.
        let mut arrived: Option<Vec<(PathBuf, String)>> = None;
        let mut listed = Instant::now();
        loop {
            let claimed = match arrived.take() {
                Some(files) => self.claim_arrived(pools, files)?,
                None => {
                    listed = Instant::now();
                    self.claim(pools)?
                }
            };
            if claimed.is_some() {
                return Ok(claimed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).min(SAFETY_RESCAN);
            match watch {
                // Not watchable (not on the real filesystem, say): the rescan finds it.
                Some(w) => {
                    let drained = w.wait_drained(fs, wait);
                    if drained.is_err() {
                        std::thread::sleep(wait);
                    }
                    // A pool made meanwhile is watched before the next look, which lists it.
                    let before = watched;
                    watched = self.watch_dirs(w, pools);
                    let fresh = listed.elapsed() < SAFETY_RESCAN;
                    arrived = drained.ok().and_then(|d| only_arrivals(before, watched, d)).filter(|_| fresh);
                }
                None => std::thread::sleep(wait),
            }
        }
    }

    /// Watches where this agent's tasks arrive: its `new/` and the pools' `new/` (every pool's,
    /// and `queues/` for pools made later, when `pools` is empty). A pool not made yet is waited
    /// for by watching `queues/` and the pool's own directory, so its first task wakes the wait.
    /// A directory that cannot be watched costs at most one rescan period of latency.
    fn watch_dirs(&self, w: &DirWatch, pools: &[String]) -> Watched {
        let layout = &self.client.layout;
        let fs = self.client.fs.as_ref();
        let mut watched = Watched { complete: true, added: false };
        let mut want = vec![self.mailbox.new_dir()];
        if pools.is_empty() {
            let queues = layout.queues_dir();
            // A plain watch there (a wait for a pool not made yet) does not watch the pools.
            if !w.watches_tree(&queues) {
                // A pool's tmp/ and cur/ are not where tasks arrive.
                let skip = |d: &Path| runtime_layout::maildir_subdir(d, "queues", &["tmp", "cur"]);
                watched.added = true;
                watched.complete = w.add_tree(fs, &queues, Interest::Arrivals, 0, skip).unwrap_or(false);
            }
        } else {
            want.extend(pools.iter().map(|p| layout.queue(p).new_dir()));
        }
        for dir in want {
            if w.watches(&dir) {
                continue;
            }
            watched.added = true;
            if w.add(&dir, Interest::Arrivals, 0).unwrap_or(false) {
                continue;
            }
            watched.complete = false;
            // Not made yet: its parents' arrivals say when to look again.
            for up in dir.ancestors().skip(1).take(2) {
                let _ = w.add(up, Interest::Arrivals, 0);
            }
        }
        watched
    }

    /// Claims the first, in dispatch order, of `files` (directory and name: what arrived since
    /// a look found nothing) that is a task file this agent may claim from where it is.
    pub(crate) fn claim_arrived(
        &self,
        pools: &[String],
        files: Vec<(PathBuf, String)>,
    ) -> Result<Option<Claim>, Error> {
        let from = self.claims_from(pools);
        let mut held = None;
        let mut out = Vec::new();
        for (dir, name) in files {
            if from.has(&dir) && self.claimable(&name, &mut held)? {
                out.push((name, dir));
            }
        }
        out.sort();
        out.dedup();
        let fs = self.client.fs.as_ref();
        for (name, dir) in out {
            // What a listing would skip: anything but a regular file (a link, a FIFO).
            match fs.stat(&dir.join(&name))? {
                Some(m) if m.kind == FileKind::File => {}
                _ => continue,
            }
            if let Some(c) = self.try_claim(&name, &dir)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The directories this agent claims from: its mailbox's `new/`, and the `new/` of `pools`
    /// (of any pool when `pools` is empty).
    pub(crate) fn claims_from(&self, pools: &[String]) -> ClaimsFrom {
        let layout = &self.client.layout;
        let mut dirs = vec![self.mailbox.new_dir()];
        dirs.extend(pools.iter().map(|p| layout.queue(p).new_dir()));
        ClaimsFrom { dirs, any_pool: pools.is_empty().then(|| layout.queues_dir()) }
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

    /// Sends mail through the broker: to another agent, to every agent but this one (`to` is
    /// `ALL`), or to a group (`@name`, defined in the broker's `mailroom.toml`).
    pub fn send(&self, to: &str, subject: Option<&str>, body: Value) -> Result<String, Error> {
        Recipient::parse(to).map_err(Error::InvalidName)?;
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

    /// Every task file the agent could claim now, merged and sorted in dispatch order; a gated
    /// file whose capabilities it does not hold is left out (see `capabilities.rs`).
    fn candidates(&self, pools: &[String]) -> Result<Vec<(String, PathBuf)>, Error> {
        let mut dirs = vec![self.mailbox.new_dir()];
        let pools = if pools.is_empty() { self.all_pools()? } else { pools.to_vec() };
        dirs.extend(pools.iter().map(|p| self.client.layout.queue(p).new_dir()));
        let mut out = Vec::new();
        let mut held = None;
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
                let Some(n) = e.name_str() else { continue };
                if self.claimable(n, &mut held)? {
                    out.push((n.to_string(), dir.clone()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether a file named `name` is a task this agent may claim: a dispatch name, and the
    /// capabilities its tag stands for, if any, are among the agent's.
    pub(crate) fn claimable(&self, name: &str, held: &mut Option<Vec<String>>) -> Result<bool, Error> {
        let Some(d) = DispatchName::parse(name) else { return Ok(false) };
        match &d.caps {
            Some(tag) => self.may_claim(tag, held),
            None => Ok(true),
        }
    }

    /// One claim attempt: the rename is the claim; losing the race is `None`.
    pub(crate) fn try_claim(&self, name: &str, dir: &Path) -> Result<Option<Claim>, Error> {
        let fs = self.client.fs.as_ref();
        let from = dir.join(name);
        let to = self.mailbox.cur().join(name);
        match fs.rename_noreplace(&from, &to) {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_already_exists() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.held_claim(name).map(Some)
    }

    /// The claim `name`, whose file is in this agent's `cur/` (its own rename, or the broker's
    /// for it), read as the claim makes it.
    pub(crate) fn held_claim(&self, name: &str) -> Result<Claim, Error> {
        let fs = self.client.fs.as_ref();
        let to = self.mailbox.cur().join(name);
        // The lease counts from the claim, not from when the broker dispatched the file.
        let bytes = fs.touch_read(&to, MAX_TASK_BYTES)?;
        let mut task = serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| ValidationError::new("", format!("not JSON: {e}")))
            .and_then(Task::from_value)
            .and_then(|t| named_by(t, name))
            .map_err(|reason| Error::CorruptTask { path: to.clone(), reason })?;
        // The file holds the task as dispatched (PENDING): show it as the claim makes it, with
        // the same pure state machine the broker applies when it sees the claim.
        let ev = Event::Claim { agent: self.name.clone() };
        let now = runtime_layout::now();
        if let Ok(tr) = transition(Some(&task), &ev, now, Backoff::default()) {
            tr.apply(&mut task, &ev, &self.name, now, Some(serde_json::json!({"claim": name})));
        }
        Ok(Claim { name: name.to_string(), task, path: to })
    }

    /// Checks the claim is still held and, unless durability is relaxed, makes the claim's rename
    /// into `cur/` durable first: a report delivered durably about a claim that a power loss can
    /// still undo would be refused as stale after the loss, and the work done again.
    pub(crate) fn before_report(&self, claim: &str) -> Result<(), Error> {
        self.held_path(claim)?;
        if self.client.durability().sync_dirs_now() {
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

/// What [`Agent::watch_dirs`] found: whether every directory tasks arrive in is watched, and
/// whether it had to add a watch (a directory watched now may hold files that raised no event).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Watched {
    pub(crate) complete: bool,
    pub(crate) added: bool,
}

/// The files a wait's events name, when they are all that can have become claimable since the
/// last look: every directory was watched before that look (`before`) and still is, with no
/// watch added since (`now`), and the events were nothing but files arriving. `None`: list.
pub(crate) fn only_arrivals(
    before: Watched,
    now: Watched,
    drained: Drained,
) -> Option<Vec<(PathBuf, String)>> {
    let exact = before.complete && now.complete && !now.added;
    (exact && drained.any() && drained.only_files()).then_some(drained.files)
}

/// Where an agent claims from (see [`Agent::claims_from`]).
pub(crate) struct ClaimsFrom {
    dirs: Vec<PathBuf>,
    /// `queues/`, when every pool's `new/` is one.
    any_pool: Option<PathBuf>,
}

impl ClaimsFrom {
    pub(crate) fn has(&self, dir: &Path) -> bool {
        self.dirs.iter().any(|d| d == dir)
            || self.any_pool.as_deref().is_some_and(|queues| {
                let pool = dir.parent().filter(|_| dir.file_name() == Some("new".as_ref()));
                pool.is_some_and(|p| {
                    p.parent() == Some(queues)
                        && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| validate_pool(n).is_ok())
                })
            })
    }
}

/// Mail and notice names start with their kind, then a sortable time: order by the time.
fn sort_key(name: &str) -> &str {
    name.split_once('-').map_or(name, |(_, rest)| rest)
}

/// The task, if it is the one its dispatch name carries. A file a power loss left with what its
/// inode held before (the broker writes task files into finished claims' files) is another
/// task's: working on it would do that task again under this claim.
fn named_by(task: Task, name: &str) -> Result<Task, ValidationError> {
    match DispatchName::parse(name) {
        Some(d) if d.id_fragment != protocol::names::id_fragment(&task.task_id) => Err(ValidationError::new(
            "task_id",
            format!("the file holds task {:?}, not the task its name {name} carries", task.task_id),
        )),
        _ => Ok(task),
    }
}

//! The effects mover: file moves the journal has decided, carried out only once the records that
//! describe them are durable. Replies to in-process requests wait here too: a verdict is sent
//! only once what it promises is in the journal.
//!
//! Directories the moves touched are fsynced — destinations first, then the directories files
//! left, so a power loss in between leaves a moved file in both places, never in neither — but
//! not with every batch: under `batch` durability the journal is the one fsync a batch pays.
//! A move a power loss undoes is one the journal still describes, and recovery redoes it (a
//! message back in `inbox/new/` is known consumed, a queued file lost is written again, a claim
//! undone is taken back). What recovery needs to redo a move is forgotten at each snapshot, so
//! the touched directories are fsynced before a snapshot is written ([`Effects::sync_touched`]),
//! and at a clean stop. Under `always` they are fsynced with every batch, as before.

use super::EngineError;
use super::commands::{BulkVerdict, Verdict};
use super::env::Env;
use super::ledger::Ledger;
use super::spares::Spares;
use protocol::capability::CapabilitySet;
use protocol::message::{Notice, NoticeKind};
use protocol::{Mail, Task};
use runtime_layout::{Durability, FsError, Maildir, deliver, deliver_read, write_capability_set};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

/// Something delivered into an agent's `new/` that is not a task.
#[derive(Debug)]
pub(crate) enum Post {
    Notice(Notice),
    /// Mail; `read` puts it into `cur/` (legacy mail that was marked delivered or read).
    Mail {
        mail: Mail,
        read: bool,
    },
}

/// A file effect, carried out after the journal entry that describes it is durable.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Write the set of capabilities a tag stands for (once: a tag's set never changes), before
    /// the first task file that carries the tag.
    WriteCapabilities(CapabilitySet),
    /// Write a task file into `<maildir>/new/<name>`.
    Deliver { maildir: Maildir, name: String, bytes: Vec<u8> },
    /// Remove a file the journal says is finished with (a taken-back claim, a withdrawn file).
    Remove { path: PathBuf },
    /// A claim the journal says is finished (completed, failed or released): kept as a spare
    /// task file (`spares.rs`) or removed.
    Retire { path: PathBuf },
    /// Remove a queued file; if an agent claimed it first, revoke the claim from its `cur/`.
    Revoke { queued: PathBuf, name: String, task_id: String },
    /// Move a consumed inbox message to `inbox/cur/`.
    Consumed { from: PathBuf, to: PathBuf, len: Option<u64> },
    /// Move a file into quarantine and write the reason beside it.
    Quarantine { from: PathBuf, to: PathBuf, reason: Value },
    /// Write a copy of refused input (part of a file, or a file that must stay where it is)
    /// into quarantine, with the reason beside it. Never overwrites.
    QuarantineCopy { to: PathBuf, bytes: Vec<u8>, reason: Value },
    /// Put a refused claim back where it was claimed from, under the same name: rename
    /// `claim` (in the agent's `cur/`) into `maildir/new/`; if the agent removed it meanwhile,
    /// write `bytes` there instead.
    Return { claim: PathBuf, maildir: Maildir, name: String, bytes: Vec<u8> },
    /// Move a quarantine entry back into the inbox under a fresh name, and its reason (if any)
    /// into `quarantine/requeued/`. Finished by `reconcile` if a crash interrupts it.
    Requeue { from: PathBuf, to: PathBuf, reason_from: PathBuf, reason_to: PathBuf },
    /// Deliver a notice or mail into an agent's `new/`.
    Post { agent: String, post: Post },
    /// Answer an in-process request, once the commit's moves are done.
    Reply(Answer),
    /// Answer an in-process request as soon as the commit is durable, before its moves: for an
    /// answer whose requester is shown no move by it (an accepted submit: the task file it
    /// causes is for agents). Its promise is the journal's, as every answer's is.
    Acknowledge(Answer),
}

/// A reply to an in-process request, sent once what it promises is durable.
#[derive(Debug)]
pub(crate) enum Answer {
    Verdict(oneshot::Sender<Verdict>, Verdict),
    Bulk(oneshot::Sender<BulkVerdict>, BulkVerdict),
}

impl Answer {
    /// Sends it. The requester may have given up waiting: the outcome is in the journal anyway.
    fn send(self) {
        match self {
            Self::Verdict(to, verdict) => {
                let _ = to.send(verdict);
            }
            Self::Bulk(to, verdict) => {
                let _ = to.send(verdict);
            }
        }
    }
}

/// Effects waiting for the next commit, and the directories touched since the last one.
#[derive(Default)]
pub(crate) struct Effects {
    pending: Vec<Effect>,
    touched: BTreeSet<PathBuf>,
    /// Directories a file was moved out of: fsynced after every other touched directory.
    moved_from: BTreeSet<PathBuf>,
    /// Messages moved into `inbox/cur/` this pass, with their length when it was read, in
    /// order, for retention to keep count of.
    kept: Vec<(PathBuf, Option<u64>)>,
    /// Finished claims' files kept to be written again as task files.
    spares: Spares,
    /// Destinations found inside the root since the last pass that looked everywhere
    /// ([`Effects::contain_maildir`]).
    contained: HashSet<PathBuf>,
    /// Maildirs made (or found made) since the last pass that looked everywhere
    /// ([`Effects::make_maildir`]).
    made: HashSet<PathBuf>,
}

/// The bytes of a task file in `new/` (what an agent reads when it claims).
pub fn task_bytes(task: &Task) -> Vec<u8> {
    json_pretty(task)
}

/// A value made of strings, numbers and JSON values, pretty-printed. serde_json fails only on
/// maps with non-string keys, which none of the broker's types have.
pub(crate) fn json_pretty(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("the broker's own types always serialise")
}

impl Effect {
    /// The path this effect writes or removes in, for telling whose territory it is.
    fn path(&self) -> Option<&Path> {
        match self {
            Self::Deliver { maildir, .. } => Some(&maildir.root),
            Self::Remove { path } | Self::Retire { path } => Some(path),
            Self::Revoke { queued, .. } => Some(queued),
            Self::Consumed { from, .. } | Self::Quarantine { from, .. } | Self::Requeue { from, .. } => {
                Some(from)
            }
            Self::QuarantineCopy { to, .. } => Some(to),
            // A claim put back is taken out of an agent's cur/, its territory.
            Self::Return { claim, .. } => Some(claim),
            Self::WriteCapabilities(_) | Self::Post { .. } | Self::Reply(_) | Self::Acknowledge(_) => None,
        }
    }
}

impl Effects {
    pub fn push(&mut self, e: Effect) {
        self.pending.push(e);
    }

    /// The messages moved into `inbox/cur/` since the last call, in order.
    pub fn take_kept(&mut self) -> Vec<(PathBuf, Option<u64>)> {
        std::mem::take(&mut self.kept)
    }

    /// A file arrived in (or left) `dir` outside an effect (an agent's rename the broker adopts,
    /// a file taken from `drop/`): fsync `dir` with this batch.
    pub fn arrived_in(&mut self, dir: PathBuf) {
        self.touched.insert(dir);
    }

    /// A file was moved out of `dir`: fsync it after the destinations.
    pub fn left(&mut self, dir: PathBuf) {
        self.moved_from.insert(dir);
    }

    pub(super) fn touch_dir(&mut self, p: &Path) {
        if let Some(d) = p.parent() {
            self.touched.insert(d.to_path_buf());
        }
    }

    pub(super) fn touch_src(&mut self, p: &Path) {
        if let Some(d) = p.parent() {
            self.moved_from.insert(d.to_path_buf());
        }
    }

    /// [`Layout::contain_maildir`](runtime_layout::Layout::contain_maildir) of a destination
    /// (its `tmp/`, `new/` and `cur/` real directories beneath the root), remembered: a pool
    /// (the broker's own territory) until the next pass that looks everywhere (the loop makes
    /// one at least once a tick, [`Effects::forget_dirs`]), a client's mailbox until the next
    /// commit. The submits to one pool look once a tick, not three lookups per task or per pass.
    /// Only the early, friendly refusal is spared: every move is still resolved beneath the root
    /// when it happens, and a link put in the way meanwhile is refused then (`crate::repair`).
    pub fn contain_maildir(&mut self, env: &Env, md: &Maildir) -> Result<(), FsError> {
        if self.contained.contains(&md.root) {
            return Ok(());
        }
        env.layout.contain_maildir(env.fs(), md)?;
        self.contained.insert(md.root.clone());
        Ok(())
    }

    /// Makes sure the `tmp/` and `new/` of a maildir a task file is about to be delivered into
    /// exist, remembered as [`Effects::contain_maildir`] remembers: the submits to one pool make
    /// it once a tick, not two lookups per task or per pass. A delivery that finds its maildir
    /// removed since makes it again and delivers once more.
    pub fn make_maildir(&mut self, env: &Env, md: &Maildir) {
        if self.made.contains(&md.root) {
            return;
        }
        match md.create(env.fs(), false) {
            Ok(()) => {
                self.made.insert(md.root.clone());
            }
            Err(e) => tracing::error!(error = %e, "cannot create the destination maildir"),
        }
    }

    /// Forgets the destinations looked at and made ([`Effects::contain_maildir`],
    /// [`Effects::make_maildir`]): called by each pass that looks everywhere.
    pub fn forget_dirs(&mut self) {
        self.contained.clear();
        self.made.clear();
    }

    /// Makes the journal durable, then carries out the effects and fsyncs what they touched.
    pub fn commit(&mut self, env: &Env, ledger: &mut Ledger) -> Result<(), EngineError> {
        // A client's territory is looked at again at every commit: a link it puts in place of
        // its mailbox is refused early, not met by a delivery (which repairs the tree).
        self.contained.retain(|d| !env.client_owned(d));
        self.made.retain(|d| !env.client_owned(d));
        ledger.commit()?;
        // Answers go out together: each wakes the thread that writes it to its connection, and
        // one wake-up costs less than one between every two moves. Acknowledgements first, before
        // the moves (a producer waits for nothing the moves do); the others once they are done.
        let (mut early, mut replies, mut moves) = (Vec::new(), Vec::new(), Vec::new());
        for e in std::mem::take(&mut self.pending) {
            match e {
                Effect::Acknowledge(answer) => early.push(answer),
                Effect::Reply(answer) => replies.push(answer),
                e => moves.push(e),
            }
        }
        for answer in early {
            answer.send();
        }
        for e in moves {
            // A permission a client took away from the broker in its own territory (a mailbox,
            // a drop directory), or a directory it put where a file of the broker's was (a
            // finished claim swapped after its report was checked), fails that one effect, never
            // the broker.
            let client = e.path().filter(|p| env.client_owned(p)).map(Path::to_path_buf);
            match self.run(env, e) {
                Err(EngineError::Fs(err)) if err.is_permission_denied() && client.is_some() => {
                    let path = client.unwrap_or_default();
                    env.warn_once(&path, "a client's permissions stopped a file move", &err);
                }
                Err(EngineError::Fs(err)) if err.is_directory() && client.is_some() => {
                    let path = client.unwrap_or_default();
                    env.warn_once(
                        &path,
                        "a directory stands where a file was to be removed: left to its owner",
                        &err,
                    );
                }
                other => other?,
            }
        }
        for answer in replies {
            answer.send();
        }
        if env.durability == Durability::Always {
            self.sync_touched(env)?;
        }
        Ok(())
    }

    /// Fsyncs every directory moved into or out of since the last call: destinations first,
    /// then sources (a directory that is both is fsynced twice).
    pub fn sync_touched(&mut self, env: &Env) -> Result<(), EngineError> {
        let (arrived, left) = (std::mem::take(&mut self.touched), std::mem::take(&mut self.moved_from));
        if env.durability.sync_files() {
            for d in arrived.iter().chain(&left) {
                match env.fs().sync_dir(d) {
                    Ok(()) => {}
                    // Removed since (an agent's mailbox, a pool): nothing in it to keep.
                    Err(e) if e.is_not_found() => {}
                    // An agent that took the broker's access to its own directory away (between
                    // the pass that saw its claim and this fsync, say) loses that fsync, and the
                    // broker does not stop: like any effect in a client's territory.
                    Err(e) if e.is_permission_denied() && env.client_owned(d) => {
                        env.warn_once(d, "cannot fsync a client's directory", &e);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, env: &Env, e: Effect) -> Result<(), EngineError> {
        let fs = env.fs();
        match e {
            Effect::Deliver { maildir, name, bytes } => {
                // A task file is derived state: the journal already holds the task, and
                // `reconcile` rewrites a queued file that a power loss lost or tore. Only
                // `always` pays an fsync per task file; the directory is fsynced per batch.
                let file_sync =
                    if env.durability == Durability::Always { Durability::Batch } else { Durability::Never };
                // A link or a file where a directory belongs fails the pass (never followed), and
                // the broker moves it aside and redelivers from the journal (`crate::repair`).
                env.layout.guard_maildir(fs, &maildir)?;
                let delivered =
                    match self.spares.deliver(env, &maildir, &name, &bytes, file_sync.sync_files()) {
                        Some(done) => done,
                        None => deliver(fs, &maildir, &name, &bytes, file_sync),
                    };
                let delivered = match delivered {
                    // Removed since it was made (`make_maildir` looks once a tick): made again,
                    // once; a failure to make it is the error (a client's permissions, say).
                    Err(e) if e.is_not_found() => maildir.create(fs, false).and_then(|()| {
                        self.made.insert(maildir.root.clone());
                        deliver(fs, &maildir, &name, &bytes, file_sync)
                    }),
                    other => other,
                };
                match delivered {
                    Ok(p) => self.touch_dir(&p),
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Effect::WriteCapabilities(set) => {
                write_capability_set(fs, &env.layout, &set, &env.names, env.durability)?;
            }
            Effect::Remove { path } => self.remove(env, &path)?,
            Effect::Retire { path } => {
                if env.layout.guard(fs, &path).is_ok() && self.spares.keep(env, &path) {
                    self.touch_dir(&path);
                } else {
                    self.remove(env, &path)?;
                }
            }
            Effect::Revoke { queued, name, task_id } => match fs.remove_file(&queued) {
                Ok(()) => self.touch_dir(&queued),
                Err(e) if e.is_not_found() => {
                    // An agent claimed it first: find the claim and revoke it.
                    for agent in env.agents()? {
                        let p = env.layout.mailbox(&agent).cur().join(&name);
                        if fs.stat(&p).is_ok_and(|m| m.is_some()) {
                            if let Err(e) = fs.remove_file(&p) {
                                if !e.is_permission_denied() {
                                    return Err(e.into());
                                }
                                env.warn_once(&p, "cannot revoke a claim", &e);
                                continue;
                            }
                            self.touch_dir(&p);
                            let mut n =
                                Notice::new(NoticeKind::Cancelled, env.now(), "the task was cancelled");
                            n.task_id = Some(task_id.clone());
                            n.claim = Some(name.clone());
                            self.post(env, &agent, Post::Notice(n))?;
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            },
            // Never over what is there (see `move_in`); a message moved in now is counted for
            // retention.
            Effect::Consumed { from, to, len } => {
                if self.move_in(env, &from, &to)? {
                    self.kept.push((to, len));
                }
            }
            Effect::Quarantine { from, to, reason } => {
                // The reason first, durably: a crash between the two then leaves the message in
                // the inbox to be moved again, never a quarantined file without its reason (the
                // move is not redone once the file has left the inbox).
                self.write_reason(env, &to, &reason)?;
                self.move_in(env, &from, &to)?;
            }
            Effect::QuarantineCopy { to, bytes, reason } => {
                // The reason first, as for a moved file: a copy is never left without its why.
                self.write_reason(env, &to, &reason)?;
                self.write_exact(env, &to, &bytes)?;
            }
            Effect::Return { claim, maildir, name, bytes } => {
                self.put_back(env, &claim, &maildir, &name, &bytes)?
            }
            Effect::Requeue { from, to, reason_from, reason_to } => {
                if !env.layout.is_contained(fs, &from) || !env.layout.is_contained(fs, &reason_to) {
                    tracing::error!(entry = %env.rel(&from),
                        "not requeued: a directory on its path is a symbolic link");
                    return Ok(());
                }
                self.move_in(env, &from, &to)?;
                if fs.stat(&reason_from)?.is_some() {
                    if let Some(d) = reason_to.parent() {
                        fs.create_dir_all(d)?;
                    }
                    self.move_in(env, &reason_from, &reason_to)?;
                }
            }
            Effect::Post { agent, post } => self.post(env, &agent, post)?,
            Effect::Reply(answer) | Effect::Acknowledge(answer) => answer.send(),
        }
        Ok(())
    }

    /// Removes a file (nothing to do when it is gone already).
    fn remove(&mut self, env: &Env, path: &Path) -> Result<(), EngineError> {
        match env.layout.guard(env.fs(), path).and_then(|()| env.fs().remove_file(path)) {
            Ok(()) => self.touch_dir(path),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn post(&mut self, env: &Env, agent: &str, post: Post) -> Result<(), EngineError> {
        let md = env.layout.mailbox(agent);
        if !md.exists(env.fs()) || !env.layout.maildir_contained(env.fs(), &md) {
            return Ok(());
        }
        let (kind, bytes, read) = match &post {
            Post::Notice(n) => ("notice", json_pretty(n), false),
            Post::Mail { mail, read } => ("mail", json_pretty(mail), *read),
        };
        let name = env.names.next(kind);
        let posted = if read {
            md.create(env.fs(), true)
                .and_then(|()| deliver_read(env.fs(), &md, &name, &bytes, Durability::Never))
        } else {
            deliver(env.fs(), &md, &name, &bytes, Durability::Never)
        };
        match posted {
            Ok(p) => self.touch_dir(&p),
            // The mailbox is the agent's: one it made unwritable misses the post, nothing else.
            Err(e) if e.is_permission_denied() => env.warn_once(&md.root, "cannot post into a mailbox", &e),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

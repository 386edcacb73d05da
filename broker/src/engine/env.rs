//! What every part of the engine reads and none changes during a pass: the filesystem, the
//! tree's paths, the configuration, the clock and the source of unique names, plus the few
//! questions about the tree that several parts ask (which agents exist, who holds a file).

use crate::config::{Config, Route};
use protocol::names;
use protocol::{Task, Timestamp};
use runtime_layout::{Clock, Durability, FileKind, Fs, FsError, Layout, Maildir, NameSource};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub(crate) struct Env {
    pub fs: Arc<dyn Fs>,
    pub layout: Layout,
    pub cfg: Config,
    pub clock: Clock,
    pub names: NameSource,
    pub durability: Durability,
    /// Problems already logged (a directory the broker may not read is met at every pass).
    warned: Mutex<HashSet<String>>,
}

/// How many distinct problems are remembered as logged before the memory is cleared.
const WARNED_MAX: usize = 10_000;

impl Env {
    pub fn new(fs: Arc<dyn Fs>, layout: Layout, cfg: Config) -> Self {
        let durability = cfg.broker.durability;
        Self {
            fs,
            layout,
            cfg,
            clock: Clock::system(),
            names: NameSource::new(),
            durability,
            warned: Mutex::new(HashSet::new()),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn fs(&self) -> &dyn Fs {
        self.fs.as_ref()
    }

    /// Logs a problem with `path` once (until many others have been logged).
    pub fn warn_once(&self, path: &Path, what: &str, error: &dyn std::fmt::Display) {
        let key = format!("{what}\0{}", path.display());
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() >= WARNED_MAX {
            warned.clear();
        }
        if warned.insert(key) {
            tracing::warn!(path = %self.rel(path), %error, "{what}");
        }
    }

    /// Is `path` in a place clients write and own (a mailbox, a drop directory), where a
    /// permission problem is the client's doing and never a failure of the broker's own tree?
    pub fn client_owned(&self, path: &Path) -> bool {
        let root = self.layout.root();
        path.starts_with(self.layout.mailboxes_dir())
            || path.starts_with(self.layout.drop_dir())
            || self
                .cfg
                .ingest
                .task_dirs
                .iter()
                .chain(&self.cfg.ingest.mail_dirs)
                .any(|d| path.starts_with(root.join(d)))
    }

    /// A path as operators see it: relative to `agent_comms/`.
    pub fn rel(&self, p: &Path) -> String {
        self.layout.rel(p)
    }

    /// The maildir `dir` names (`queues/<pool>` or `mailboxes/<agent>`, as a [`Place`] holds it).
    ///
    /// [`Place`]: crate::journal::Place
    pub fn maildir(&self, dir: &str) -> Maildir {
        Maildir::new(self.layout.comms().join(dir))
    }

    /// Where a task goes when it has no `assigned_to`: its `task_type`'s route, else the pool
    /// named after its type.
    pub fn route_of(&self, task: &Task) -> Route {
        self.cfg.route_of(task)
    }

    /// Every agent with a mailbox, sorted.
    pub fn agents(&self) -> Result<Vec<String>, FsError> {
        crate::agents::registered(self.fs(), &self.layout)
    }

    /// Every directory under `mailboxes/`, with its name shown safely and whether that name is
    /// a valid agent name (a client can make a directory of any name there).
    pub fn mailbox_dirs(&self) -> Result<Vec<(String, std::path::PathBuf, bool)>, FsError> {
        let dir = self.layout.mailboxes_dir();
        let mut out = Vec::new();
        for e in self.fs.list(&dir)? {
            if e.kind != FileKind::Dir {
                continue;
            }
            let shown = e.name.to_string_lossy().into_owned();
            let valid = e.name_str().is_some_and(|n| names::validate_agent(n).is_ok());
            out.push((shown, dir.join(&e.name), valid));
        }
        out.sort();
        Ok(out)
    }

    /// Every agent's mailbox and every pool.
    pub fn all_maildirs(&self) -> Result<Vec<Maildir>, FsError> {
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
    pub fn holder_of(&self, name: &str) -> Result<Option<String>, FsError> {
        for agent in self.agents()? {
            let p = self.layout.mailbox(&agent).cur().join(name);
            if matches!(self.fs.stat(&p)?, Some(m) if m.kind == FileKind::File) {
                return Ok(Some(agent));
            }
        }
        Ok(None)
    }
}

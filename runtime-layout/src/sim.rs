//! [`SimFs`]: an in-memory [`Fs`] that models what survives a power loss, counts and logs every
//! mutating operation, and injects faults (EIO, ENOSPC, a failed fsync) at chosen operations.
//!
//! # The durability model
//!
//! Every file (an inode) has *volatile* content and mtime, what a reader sees now, and *durable*
//! content and mtime, what a power loss leaves. Every directory has a *volatile* entry list and a
//! *durable* one. The rules, deliberately at least as pessimistic as POSIX promises:
//!
//! | operation | volatile effect | made durable by |
//! |---|---|---|
//! | `create_new(p, bytes, sync=true)` | entry `p` and content | content: at once (the file's fsync); entry: `sync_dir(parent)` |
//! | `create_new(p, bytes, sync=false)` | entry and content | entry: `sync_dir(parent)`; content: never (a power loss leaves it empty, as ext4 `data=writeback` can) |
//! | `create_dir_all(p)` | each missing directory | at once: the contract of [`Fs::create_dir_all`] is that the new entries are durable when it returns |
//! | `rename(a, b)` / `rename_noreplace` | entry moves | removal from `a`'s directory: `sync_dir(dir a)`; arrival in `b`'s: `sync_dir(dir b)`, **independently**: with only the source synced a power loss loses the file, with only the destination synced it is in both places |
//! | `remove_file(p)` | entry removed | `sync_dir(parent)` |
//! | `AppendFile::append` | bytes appended (over the reserve's zeros, if any) | `AppendFile::sync` |
//! | `AppendFile::reserve` / `trim` | zeros added after what was appended / cut off | `AppendFile::sync` |
//! | `touch(p)` / `set_mtime(p, t)` | mtime | an fsync of the file (a heartbeat never is: it is volatile) |
//! | `create_append(p)` (`p` must not exist) | entry, empty | `sync_dir(parent)` |
//!
//! `sync_dir(d)` copies `d`'s whole volatile entry list to its durable one (every creation, rename
//! and removal in `d` so far). A directory whose own entry in its parent is not durable is lost
//! with everything in it, synced or not.
//!
//! # Crashes
//!
//! [`SimFs::crash_after`] arms a crash after `k` more mutating operations: the operation that
//! would be the `k+1`-th, and every operation after it, fails with `EIO` ("simulated crash"), so
//! the code under test unwinds as a dead process would stop. [`SimFs::restart`] then brings the
//! filesystem back as a [`Crash`] mode says:
//!
//! - [`Crash::Process`]: a process kill; the page cache survives, so everything is kept.
//! - [`Crash::PowerLoss`]: every volatile change is dropped; only durable state remains.
//! - [`Crash::Scrambled`]: a harsher power loss: each directory independently keeps its volatile
//!   or its durable entry list (except that the two directories of an unsynced rename keep the
//!   same choice: journaling filesystems commit a rename whole), each file independently keeps its volatile or durable content,
//!   and a file whose durable content is a prefix of its volatile content (an append log) may keep
//!   any prefix in between (a torn append); a file with a reserve (appends over zeros written
//!   ahead) keeps each 4 KiB page old or new independently, and its old or new size (a torn
//!   append into a reserve, or a renewal of it). Seeded, so reproducible.
//!
//! Handles from [`Fs::create_append`] opened before a restart fail afterwards, like the file
//! descriptors of a dead process; an append also fails ([`FsError::Replaced`]) once the handle's
//! path no longer names its file. Directory locks ([`Fs::lock_dir`]) behave like `flock`: a lock
//! held by a live guard refuses every other, dropping the guard releases it, and a restart (of
//! any mode) releases them all, since the process that held them is gone; a guard from before
//! the restart releases nothing when it is dropped later.
//!
//! Mutating operations, each counted once: `create_dir_all`, `create_new`, `rename`,
//! `rename_noreplace`, `remove_file`, `sync_dir`, `touch`, `set_mtime`, `create_append`, `append`, `sync`,
//! `reserve` and `trim` (each when it changes something) and `lock_dir`.
//! `create_new` is atomic in this model (create, write and fsync are one step); crashing between
//! them is equivalent to crashing before it, because the entry is not durable either way.
//! Only regular files and directories exist; directories are never renamed or removed (mailroom
//! does neither).

use crate::clock::Clock;
use crate::fs::{AppendFile, Entry, FileKind, Fs, FsError, LockGuard, Meta, Space};
use protocol::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crash::Crash;
pub use fault::{Fault, FaultOn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

type Dir = BTreeMap<OsString, Node>;

#[derive(Debug, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    mtime: Timestamp,
    durable_mtime: Timestamp,
    /// Written ahead with zeros that appends then overwrite ([`AppendFile::reserve`]).
    reserved: bool,
}

#[derive(Debug, Default)]
struct Inner {
    inodes: HashMap<u64, Inode>,
    live: BTreeMap<PathBuf, Dir>,
    durable: BTreeMap<PathBuf, Dir>,
    next_ino: u64,
    generation: u64,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    faults: Vec<(Fault, u64)>,
    log: Vec<String>,
    logging: bool,
    /// Directory pairs of renames since the last restart (a scrambled crash keeps both halves
    /// of a rename or neither, as journaling filesystems commit a rename in one transaction).
    renames: Vec<(PathBuf, PathBuf)>,
    /// Directories locked by a live guard.
    locks: BTreeSet<PathBuf>,
    /// What [`Fs::space`] reports (set by a test; `None`: unknown).
    space: Option<Space>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Meta,
    Write,
    Sync,
    WriteSync,
    /// A read of content: only [`FaultOn::Read`] faults count it, never the crash points.
    Read,
    /// Opening a file to read it: only [`FaultOn::Open`] faults count it.
    Open,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Splits an absolute path into its parent and final name.
fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    Some((path.parent()?.to_path_buf(), path.file_name()?.to_os_string()))
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl Inner {
    fn new() -> Self {
        let mut s = Self { next_ino: 1, ..Default::default() };
        s.live.insert(PathBuf::from("/"), Dir::new());
        s.durable.insert(PathBuf::from("/"), Dir::new());
        s
    }

    /// Counts a mutating operation; fails it when a crash or a fault says so.
    fn begin(&mut self, op: &'static str, path: &Path, kind: Kind) -> Result<(), FsError> {
        if self.crashed {
            return Err(FsError::io(op, path, io::Error::other("simulated crash")));
        }
        if self.crash_at.is_some_and(|k| self.ops >= k) {
            self.crashed = true;
            return Err(FsError::io(op, path, io::Error::other("simulated crash")));
        }
        self.ops += 1;
        if self.logging {
            self.log.push(format!("{} {op} {}", self.ops, path.display()));
        }
        self.fault(kind, op, path)
    }

    fn read_only(&self, op: &'static str, path: &Path) -> Result<(), FsError> {
        if self.crashed {
            return Err(FsError::io(op, path, io::Error::other("simulated crash")));
        }
        Ok(())
    }

    /// Counts an operation of `kind` on `path` towards the injected faults, and fails it with the
    /// errno of the one it strikes. Mutating operations come through [`Self::begin`]; opening
    /// (`Kind::Open`) or reading (`Kind::Read`) a file that exists comes here directly, never
    /// counted as a crash point.
    fn fault(&mut self, kind: Kind, op: &'static str, path: &Path) -> Result<(), FsError> {
        for (f, seen) in &mut self.faults {
            if !f.matches(kind, path) {
                continue;
            }
            *seen += 1;
            if *seen == f.nth || (f.sticky && *seen > f.nth) {
                if self.logging {
                    self.log.push(format!("  ^ injected errno {}", f.errno));
                }
                return Err(FsError::io(op, path, io::Error::from_raw_os_error(f.errno)));
            }
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> Option<Node> {
        let path = normalise(path);
        if path == Path::new("/") {
            return Some(Node::Dir);
        }
        let (dir, name) = split(&path)?;
        self.live.get(&dir)?.get(&name).copied()
    }

    fn dir_mut(&mut self, op: &'static str, dir: &Path) -> Result<&mut Dir, FsError> {
        self.live.get_mut(dir).ok_or_else(|| FsError::io(op, dir, errno(rustix::io::Errno::NOENT)))
    }

    fn new_inode(&mut self, data: Vec<u8>, durable: bool, now: Timestamp) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let durable_data = if durable { data.clone() } else { Vec::new() };
        self.inodes.insert(
            ino,
            Inode { data, durable: durable_data, mtime: now, durable_mtime: now, reserved: false },
        );
        ino
    }
}

/// The simulated filesystem. Cheap to clone: clones share one tree.
#[derive(Clone)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
    clock: Clock,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("SimFs").field("ops", &g.ops).field("crashed", &g.crashed).finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty filesystem (only `/`), stamping mtimes with the wall clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// An empty filesystem whose mtimes come from `clock` (share it with the code under test).
    pub fn with_clock(clock: Clock) -> Self {
        Self { inner: Arc::new(Mutex::new(Inner::new())), clock }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent tree: every change is one statement.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutating operations performed so far (since creation; restarts do not reset it).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Arms a crash: `k` more mutating operations succeed, then everything fails until
    /// [`SimFs::restart`].
    pub fn crash_after(&self, k: u64) {
        let mut g = self.lock();
        g.crash_at = Some(g.ops + k);
    }

    /// Cancels an armed crash that has not happened yet.
    pub fn disarm(&self) {
        self.lock().crash_at = None;
    }

    /// Has the armed crash happened?
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Crashes now (if not already) and comes back as `mode` says.
    pub fn restart(&self, mode: Crash) {
        self.lock().restart(mode);
    }

    /// Adds a fault; it counts matching operations from now on.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push((fault, 0));
    }

    /// Removes every fault (the disk was repaired, or space freed).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Records every mutating operation from now on (see [`SimFs::take_log`]).
    pub fn set_logging(&self, on: bool) {
        self.lock().logging = on;
    }

    /// The operations logged so far, numbered, and clears the log.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().log)
    }

    /// Every regular file reachable now, with its current content (for invariant checks).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let g = self.lock();
        let mut out = BTreeMap::new();
        for (d, entries) in &g.live {
            for (name, node) in entries {
                if let Node::File(i) = node {
                    out.insert(d.join(name), g.inodes[i].data.clone());
                }
            }
        }
        out
    }

    /// Sets what [`Fs::space`] reports from now on (`None`: unknown, the default).
    pub fn set_space(&self, space: Option<Space>) {
        self.lock().space = space;
    }

    /// Is nothing volatile (every change made so far would survive a power loss)?
    pub fn all_durable(&self) -> bool {
        let g = self.lock();
        g.live == g.durable && g.inodes.values().all(|i| i.data == i.durable)
    }
}

mod crash;
mod fault;
mod handles;
mod ops;

#[cfg(test)]
mod tests;

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
//! | `AppendFile::append` | bytes appended | `AppendFile::sync` |
//! | `touch(p)` / `set_mtime(p, t)` | mtime | an fsync of the file (a heartbeat never is: it is volatile) |
//! | `open_append(p)` on a new file | entry, empty | `sync_dir(parent)` |
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
//!   any prefix in between (a torn append). Seeded, so reproducible.
//!
//! Handles from [`Fs::open_append`] opened before a restart fail afterwards, like the file
//! descriptors of a dead process. Locks ([`Fs::lock_exclusive`]) behave like `flock`: a lock
//! held by a live guard refuses every other, dropping the guard releases it, and a restart (of
//! any mode) releases them all, since the process that held them is gone; a guard from before
//! the restart releases nothing when it is dropped later.
//!
//! Mutating operations, each counted once: `create_dir_all`, `create_new`, `rename`,
//! `rename_noreplace`, `remove_file`, `sync_dir`, `touch`, `set_mtime`, `open_append`, `append`, `sync`,
//! `lock_exclusive` (it may create the file) and `LockGuard::set_contents`.
//! `create_new` is atomic in this model (create, write and fsync are one step); crashing between
//! them is equivalent to crashing before it, because the entry is not durable either way.
//! Only regular files and directories exist; directories are never renamed or removed (mailroom
//! does neither).

use crate::clock::Clock;
use crate::fs::{AppendFile, Entry, FileKind, Fs, FsError, LockGuard, Meta, Space};
use handles::{SimAppend, SimLock};
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
    /// Inodes locked by a live guard (`flock` locks the open file, hence the inode).
    locks: BTreeSet<u64>,
    /// What [`Fs::space`] reports (set by a test; `None`: unknown).
    space: Option<Space>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Meta,
    Write,
    Sync,
    WriteSync,
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

    fn read_only(&self, op: &'static str, path: &Path) -> Result<(), FsError> {
        if self.crashed {
            return Err(FsError::io(op, path, io::Error::other("simulated crash")));
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
        self.inodes.insert(ino, Inode { data, durable: durable_data, mtime: now, durable_mtime: now });
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

impl Fs for SimFs {
    fn create_dir_all(&self, path: &Path) -> Result<(), FsError> {
        let path = normalise(path);
        let mut g = self.lock();
        g.begin("create directory", &path, Kind::Meta)?;
        let mut cur = PathBuf::from("/");
        for c in path.components().skip(1) {
            let name = c.as_os_str().to_os_string();
            let next = cur.join(&name);
            match g.live.get(&cur).and_then(|d| d.get(&name)) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => {
                    return Err(FsError::io("create directory", &next, errno(rustix::io::Errno::NOTDIR)));
                }
                None => {
                    // Durable at once: the parent is fsynced after the mkdir (see Fs::create_dir_all).
                    g.live.get_mut(&cur).expect("walked").insert(name.clone(), Node::Dir);
                    g.durable.entry(cur.clone()).or_default().insert(name, Node::Dir);
                    g.live.insert(next.clone(), Dir::new());
                    g.durable.insert(next.clone(), Dir::new());
                }
            }
            cur = next;
        }
        Ok(())
    }

    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        let path = normalise(path);
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("create", &path, if sync { Kind::WriteSync } else { Kind::Write })?;
        let (dir, name) =
            split(&path).ok_or_else(|| FsError::io("create", &path, errno(rustix::io::Errno::INVAL)))?;
        if g.dir_mut("create", &dir)?.contains_key(&name) {
            return Err(FsError::io("create", &path, errno(rustix::io::Errno::EXIST)));
        }
        let ino = g.new_inode(bytes.to_vec(), sync, now);
        g.dir_mut("create", &dir)?.insert(name, Node::File(ino));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        self.rename_impl(from, to, true)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        self.rename_impl(from, to, false)
    }

    fn remove_file(&self, path: &Path) -> Result<(), FsError> {
        let path = normalise(path);
        let mut g = self.lock();
        g.begin("remove", &path, Kind::Meta)?;
        let (dir, name) =
            split(&path).ok_or_else(|| FsError::io("remove", &path, errno(rustix::io::Errno::INVAL)))?;
        let d = g.dir_mut("remove", &dir)?;
        match d.get(&name) {
            Some(Node::File(_)) => {
                d.remove(&name);
                Ok(())
            }
            Some(Node::Dir) => Err(FsError::io("remove", &path, errno(rustix::io::Errno::ISDIR))),
            None => Err(FsError::io("remove", &path, errno(rustix::io::Errno::NOENT))),
        }
    }

    fn sync_dir(&self, path: &Path) -> Result<(), FsError> {
        let path = normalise(path);
        let mut g = self.lock();
        g.begin("fsync directory", &path, Kind::Sync)?;
        let entries = g
            .live
            .get(&path)
            .cloned()
            .ok_or_else(|| FsError::io("open directory", &path, errno(rustix::io::Errno::NOENT)))?;
        g.durable.insert(path, entries);
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<Entry>, FsError> {
        let dir = normalise(dir);
        let g = self.lock();
        g.read_only("list", &dir)?;
        let entries = match g.live.get(&dir) {
            Some(e) => e,
            None if g.lookup(&dir).is_some() => {
                return Err(FsError::io("list", &dir, errno(rustix::io::Errno::NOTDIR)));
            }
            None => return Err(FsError::io("list", &dir, errno(rustix::io::Errno::NOENT))),
        };
        Ok(entries
            .iter()
            .map(|(name, node)| Entry {
                name: name.clone(),
                kind: if *node == Node::Dir { FileKind::Dir } else { FileKind::File },
            })
            .collect())
    }

    fn stat(&self, path: &Path) -> Result<Option<Meta>, FsError> {
        let g = self.lock();
        g.read_only("stat", path)?;
        Ok(g.lookup(path).map(|n| match n {
            Node::Dir => Meta { kind: FileKind::Dir, len: 0, mtime: Timestamp::from_micros(0), ino: 0 },
            Node::File(i) => {
                let ino = &g.inodes[&i];
                Meta { kind: FileKind::File, len: ino.data.len() as u64, mtime: ino.mtime, ino: i }
            }
        }))
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let g = self.lock();
        g.read_only("open", path)?;
        match g.lookup(path) {
            None => Err(FsError::io("open", path, errno(rustix::io::Errno::NOENT))),
            Some(Node::Dir) => Err(FsError::NotRegular { path: path.to_path_buf(), kind: FileKind::Dir }),
            Some(Node::File(i)) => {
                let data = &g.inodes[&i].data;
                if data.len() as u64 > limit {
                    return Err(FsError::TooLarge {
                        path: path.to_path_buf(),
                        size: data.len() as u64,
                        limit,
                    });
                }
                Ok(data.clone())
            }
        }
    }

    fn touch(&self, path: &Path) -> Result<(), FsError> {
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("touch", path, Kind::Meta)?;
        match g.lookup(path) {
            Some(Node::File(i)) => {
                g.inodes.get_mut(&i).expect("named inode").mtime = now;
                Ok(())
            }
            Some(Node::Dir) => Ok(()),
            None => Err(FsError::io("touch", path, errno(rustix::io::Errno::NOENT))),
        }
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError> {
        let path = normalise(path);
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("open for append", &path, Kind::Meta)?;
        let (dir, name) = split(&path)
            .ok_or_else(|| FsError::io("open for append", &path, errno(rustix::io::Errno::INVAL)))?;
        let ino = match g.dir_mut("open for append", &dir)?.get(&name).copied() {
            Some(Node::File(i)) => i,
            Some(Node::Dir) => {
                return Err(FsError::io("open for append", &path, errno(rustix::io::Errno::ISDIR)));
            }
            None => {
                let i = g.new_inode(Vec::new(), true, now);
                g.dir_mut("open for append", &dir)?.insert(name, Node::File(i));
                i
            }
        };
        Ok(Box::new(SimAppend { fs: self.clone(), ino, generation: g.generation, path }))
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let g = self.lock();
        g.read_only("open", path)?;
        match g.lookup(path) {
            None => Err(FsError::io("open", path, errno(rustix::io::Errno::NOENT))),
            Some(Node::Dir) => Err(FsError::NotRegular { path: path.to_path_buf(), kind: FileKind::Dir }),
            Some(Node::File(i)) => {
                let data = &g.inodes[&i].data;
                let from = (offset as usize).min(data.len());
                let to = from.saturating_add(len as usize).min(data.len());
                Ok(data[from..to].to_vec())
            }
        }
    }

    fn set_mtime(&self, path: &Path, mtime: Timestamp) -> Result<(), FsError> {
        let mut g = self.lock();
        g.begin("set mtime", path, Kind::Meta)?;
        match g.lookup(path) {
            Some(Node::File(i)) => {
                g.inodes.get_mut(&i).expect("named inode").mtime = mtime;
                Ok(())
            }
            Some(Node::Dir) => Ok(()),
            None => Err(FsError::io("set mtime", path, errno(rustix::io::Errno::NOENT))),
        }
    }

    fn space(&self, path: &Path) -> Result<Option<Space>, FsError> {
        let g = self.lock();
        g.read_only("statvfs", path)?;
        Ok(g.space)
    }

    fn lock_exclusive(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
        let path = normalise(path);
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("lock", &path, Kind::Meta)?;
        let (dir, name) =
            split(&path).ok_or_else(|| FsError::io("lock", &path, errno(rustix::io::Errno::INVAL)))?;
        let ino = match g.dir_mut("lock", &dir)?.get(&name).copied() {
            Some(Node::File(i)) => i,
            Some(Node::Dir) => return Err(FsError::NotRegular { path, kind: FileKind::Dir }),
            None => {
                let i = g.new_inode(Vec::new(), true, now);
                g.dir_mut("lock", &dir)?.insert(name, Node::File(i));
                i
            }
        };
        if !g.locks.insert(ino) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock { fs: self.clone(), ino, generation: g.generation, path })))
    }
}

impl SimFs {
    fn rename_impl(&self, from: &Path, to: &Path, replace: bool) -> Result<(), FsError> {
        let (from, to) = (normalise(from), normalise(to));
        let mut g = self.lock();
        g.begin("rename", &from, Kind::Meta)?;
        let bad = |p: &Path| FsError::io("rename", p, errno(rustix::io::Errno::INVAL));
        let (fdir, fname) = split(&from).ok_or_else(|| bad(&from))?;
        let (tdir, tname) = split(&to).ok_or_else(|| bad(&to))?;
        let node = g.dir_mut("rename", &fdir)?.get(&fname).copied();
        let node = match node {
            Some(n @ Node::File(_)) => n,
            Some(Node::Dir) => {
                return Err(FsError::io(
                    "rename",
                    &from,
                    io::Error::other("SimFs does not rename directories"),
                ));
            }
            None => return Err(FsError::io("rename", &from, errno(rustix::io::Errno::NOENT))),
        };
        match g.dir_mut("rename", &tdir)?.get(&tname) {
            Some(Node::Dir) => return Err(FsError::io("rename", &from, errno(rustix::io::Errno::ISDIR))),
            Some(Node::File(_)) if !replace => {
                return Err(FsError::io("rename", &from, errno(rustix::io::Errno::EXIST)));
            }
            _ => {}
        }
        if from == to {
            return Ok(());
        }
        g.dir_mut("rename", &fdir)?.remove(&fname);
        g.dir_mut("rename", &tdir)?.insert(tname, node);
        if fdir != tdir {
            g.renames.push((fdir, tdir));
        }
        Ok(())
    }
}

mod crash;
mod fault;
mod handles;

#[cfg(test)]
mod tests;

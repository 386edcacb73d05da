//! Waking on arrivals: one inotify instance watching a few directories for the events the
//! watcher acts on, and for nothing else.
//!
//! A wake-up is only a hint to look again. Every look goes through the caller's [`Fs`], and a
//! missed event costs the caller its own rescan period, never a task. So the mask is chosen for
//! cost, not completeness: a broker that watched every event under `mailboxes/` was woken by its
//! own deliveries and removals, by every heartbeat (`IN_ATTRIB`) and by every listing
//! (`IN_OPEN`), on a thread of its own that the kernel had to switch to each time. A
//! [`DirWatch`] is one file descriptor the caller polls (or registers with its event loop);
//! [`DirWatch::drain`] reads every pending event at once.
//!
//! A *tree* watch also watches the directories below, and those created later, as their
//! creation is read. Directories are found by listing through the [`Fs`] (beneath the root,
//! never through a link) and watched without following a final symbolic link. A watch reads,
//! writes and removes nothing: it only names a directory.

use crate::Fs;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a watched directory wakes its watcher for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A file renamed or linked in (`IN_MOVED_TO`, `IN_CREATE`): a maildir's `new/` or `cur/`,
    /// where writers rename whole files in.
    Arrivals,
    /// Arrivals, and a file written and closed in place (`IN_CLOSE_WRITE`): directories that
    /// scripts write into directly.
    Writes,
}

impl Interest {
    fn mask(self) -> WatchFlags {
        // The directory itself moved or removed: its watch no longer covers its path.
        let base = WatchFlags::MOVED_TO
            | WatchFlags::CREATE
            | WatchFlags::MOVE_SELF
            | WatchFlags::DELETE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::DONT_FOLLOW;
        match self {
            Interest::Arrivals => base,
            Interest::Writes => base | WatchFlags::CLOSE_WRITE,
        }
    }
}

/// Which directories below a tree watch are left out, given each one's path.
pub type Skip = fn(&Path) -> bool;

/// Whether `dir` is `<top>/<maildir>/<name>` for one of `names`: a maildir subdirectory (say a
/// pool's `tmp/` under `queues/`) that a [`Skip`] leaves out of a tree.
pub fn maildir_subdir(dir: &Path, top: &str, names: &[&str]) -> bool {
    dir.parent().and_then(Path::parent).and_then(Path::file_name) == Some(top.as_ref())
        && dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| names.contains(&n))
}

/// One watched directory.
#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    interest: Interest,
    /// The caller's tag, reported by [`DirWatch::drain`] (a tree's directories share it).
    tag: u8,
    /// Subdirectories are watched too (those `skip` does not refuse).
    tree: Option<Skip>,
}

/// An inotify instance and its watches. Shareable: [`DirWatch::wait`] and [`DirWatch::drain`]
/// take `&self`.
#[derive(Debug)]
pub struct DirWatch {
    fd: OwnedFd,
    watched: Mutex<HashMap<i32, Watched>>,
    /// Tags of areas where a directory is no longer watched (it moved or went away, or one made
    /// in a tree could not be watched): reported by every drain until [`DirWatch::forget_missed`],
    /// so the caller looks there every time until it watches them again.
    missed: AtomicU64,
    /// Whether [`Drained::files`] names the files that arrived ([`DirWatch::naming`]).
    names: bool,
}

/// What one [`DirWatch::drain`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Events read.
    pub events: usize,
    /// Bit `t` is set when a directory added with tag `t` had an event. An overflow (events
    /// were lost) sets every bit: look everywhere.
    pub tags: u64,
    /// Bit `t` is set when what happened under tag `t` cannot be pinned to the directories in
    /// [`Drained::dirs`]: events were lost (an overflow sets every bit), or a directory of the
    /// area is no longer watched. The caller looks at the whole area.
    pub wide: u64,
    /// Each watched directory that had an event, once, with its tag, in the order first seen.
    pub dirs: Vec<(u8, PathBuf)>,
    /// With [`DirWatch::naming`]: each file (not a directory) renamed or created into a watched
    /// directory, as its directory and name, in the order the events came. Empty otherwise.
    pub files: Vec<(PathBuf, String)>,
    /// Bit `t` is set when a directory with tag `t` had an event [`Drained::files`] does not
    /// name (a file written in place, a directory, a name that is not UTF-8, the directory
    /// itself moved; every bit on an overflow). Clear with naming on: every event under `t`
    /// was a file's arrival, named.
    pub unnamed: u64,
}

impl Drained {
    pub fn any(&self) -> bool {
        self.events > 0
    }

    /// Whether a directory with tag `tag` had an event.
    pub fn has(&self, tag: u8) -> bool {
        self.tags & (1 << tag) != 0
    }

    /// Whether every event read was a file's arrival named in [`Drained::files`]: nothing was
    /// lost, no directory was made, moved or removed. Then what arrived is exactly those files.
    pub fn only_files(&self) -> bool {
        self.wide == 0 && self.events == self.files.len()
    }

    /// The directories with tag `tag` that had an event, or `None` when the whole area must be
    /// looked at ([`Drained::wide`]).
    pub fn dirs_of(&self, tag: u8) -> Option<impl Iterator<Item = &Path>> {
        (self.wide & (1 << tag) == 0)
            .then(|| self.dirs.iter().filter(move |(t, _)| *t == tag).map(|(_, d)| d.as_path()))
    }
}

impl DirWatch {
    /// A new instance with no watches (non-blocking, closed on exec).
    pub fn new() -> std::io::Result<Self> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        Ok(DirWatch { fd, watched: Mutex::new(HashMap::new()), missed: AtomicU64::new(0), names: false })
    }

    /// Names each file that arrives in [`Drained::files`] (a name costs an allocation per event,
    /// so a watcher that only needs to know where to look does without).
    pub fn naming(mut self) -> Self {
        self.names = true;
        self
    }

    /// Watches `dir`, its events reported under `tag` (below 64); `Ok(false)` when there is no
    /// such directory (yet).
    pub fn add(&self, dir: &Path, interest: Interest, tag: u8) -> std::io::Result<bool> {
        Ok(self.add_watch(dir, interest, tag, None)?.is_some())
    }

    /// Watches `dir` and every directory below it that `skip` (given its path) does not refuse,
    /// now and as they are created, all under `tag`. Subdirectories are found by listing through
    /// `fs`; one that cannot be listed is left unwatched (its events are found by the caller's
    /// rescan).
    pub fn add_tree(
        &self,
        fs: &dyn Fs,
        dir: &Path,
        interest: Interest,
        tag: u8,
        skip: Skip,
    ) -> std::io::Result<bool> {
        if self.add_watch(dir, interest, tag, Some(skip))?.is_none() {
            return Ok(false);
        }
        let Ok(entries) = fs.list(dir) else { return Ok(true) };
        for e in entries {
            let Some(name) = e.name_str() else { continue };
            let sub = dir.join(name);
            if e.kind == crate::FileKind::Dir && !skip(&sub) {
                self.add_tree(fs, &sub, interest, tag, skip)?;
            }
        }
        Ok(true)
    }

    /// Watches `dir`: `Some(true)` when the watch is new, `Some(false)` when the directory at
    /// that path was watched already, `None` when there is nothing to watch there.
    fn add_watch(
        &self,
        dir: &Path,
        interest: Interest,
        tag: u8,
        tree: Option<Skip>,
    ) -> std::io::Result<Option<bool>> {
        debug_assert!(tag < 64, "tag {tag} out of range");
        match inotify::add_watch(&self.fd, dir, interest.mask()) {
            Ok(wd) => {
                let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                let had = watched.get(&wd).is_some_and(|w| w.dir == dir);
                // Another watch under this path follows a directory moved away with its parent
                // (no event says so): dropped.
                let stale: Vec<i32> =
                    watched.iter().filter(|(w, x)| **w != wd && x.dir == dir).map(|(w, _)| *w).collect();
                for w in stale {
                    watched.remove(&w);
                    let _ = inotify::remove_watch(&self.fd, w);
                }
                // The same directory watched again (the kernel gives its watch back): a tree
                // stays a tree, so its directories made later are still watched.
                let tree = tree.or_else(|| watched.get(&wd).and_then(|w| w.tree));
                watched.insert(wd, Watched { dir: dir.to_path_buf(), interest, tag, tree });
                Ok(Some(!had))
            }
            // Not there, not a directory, or a link: nothing to watch (the rescan covers it).
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// [`DirWatch::add`], saying whether the watch is new: `Some(true)` when `dir` was not
    /// watched as the directory now at that path (never, or only through a watch that followed
    /// a directory moved away with its parent, which is dropped), `Some(false)` when it was, and
    /// `None` when there is nothing to watch there. What arrived in a newly watched directory
    /// before its watch began has no event.
    pub fn renew(&self, dir: &Path, interest: Interest, tag: u8) -> std::io::Result<Option<bool>> {
        self.add_watch(dir, interest, tag, None)
    }

    /// Clears what [`Drained::tags`] reports for directories no longer watched (call it before
    /// watching them again).
    pub fn forget_missed(&self) {
        self.missed.store(0, Ordering::Relaxed);
    }

    /// Whether `dir` is watched.
    pub fn watches(&self, dir: &Path) -> bool {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).values().any(|w| w.dir == dir)
    }

    /// Whether `dir` is watched as a tree ([`DirWatch::add_tree`]).
    pub fn watches_tree(&self, dir: &Path) -> bool {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|w| w.dir == dir && w.tree.is_some())
    }

    /// Reads every pending event without blocking, and watches the directories created in a
    /// tree. `fs` lists a new directory's own subdirectories.
    pub fn drain(&self, fs: &dyn Fs) -> std::io::Result<Drained> {
        let mut drained = Drained::default();
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut created = Vec::new();
        // The reader reads again each time its buffer is used up, until nothing is pending.
        let mut events = inotify::Reader::new(self.fd.as_fd(), &mut buf);
        loop {
            match events.next() {
                Ok(e) => {
                    drained.events += 1;
                    // Something renamed or created in: a file, or a directory (watched in a tree).
                    let arrived = e.events().intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
                    let is_dir = e.events().contains(ReadFlags::ISDIR);
                    let name = e.file_name().and_then(|n| n.to_str().ok());
                    if e.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                        drained.tags = u64::MAX;
                        drained.wide = u64::MAX;
                        drained.unnamed = u64::MAX;
                    } else if let Some(w) =
                        self.watched.lock().unwrap_or_else(|p| p.into_inner()).get(&e.wd())
                    {
                        drained.tags |= 1 << w.tag;
                        if !drained.dirs.iter().any(|(t, d)| *t == w.tag && *d == w.dir) {
                            drained.dirs.push((w.tag, w.dir.clone()));
                        }
                        if self.names
                            && arrived
                            && !is_dir
                            && let Some(name) = name
                        {
                            drained.files.push((w.dir.clone(), name.to_string()));
                        } else {
                            drained.unnamed |= 1 << w.tag;
                        }
                    }
                    if arrived
                        && is_dir
                        && let Some(name) = name
                    {
                        created.push((e.wd(), name.to_string()));
                    }
                    // Moved: its path is no longer what it watches (a directory made again
                    // there is watched anew). Removed, or its watch dropped: nothing to watch.
                    if e.events().contains(ReadFlags::MOVE_SELF) {
                        let _ = inotify::remove_watch(&self.fd, e.wd());
                    }
                    if e.events().intersects(ReadFlags::MOVE_SELF | ReadFlags::IGNORED)
                        && let Some(w) =
                            self.watched.lock().unwrap_or_else(|p| p.into_inner()).remove(&e.wd())
                    {
                        self.missed.fetch_or(1 << w.tag, Ordering::Relaxed);
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        for (wd, name) in created {
            let parent = {
                let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                watched.get(&wd).and_then(|w| w.tree.map(|skip| (w.dir.clone(), w.interest, w.tag, skip)))
            };
            if let Some((dir, interest, tag, skip)) = parent {
                let sub = dir.join(&name);
                // One that cannot be watched (no permission, the watch limit): looked at in
                // every pass instead, and what was read is kept either way.
                if !skip(&sub) && self.add_tree(fs, &sub, interest, tag, skip).is_err() {
                    self.missed.fetch_or(1 << tag, Ordering::Relaxed);
                }
            }
        }
        let missed = self.missed.load(Ordering::Relaxed);
        drained.tags |= missed;
        drained.wide |= missed;
        Ok(drained)
    }

    /// Waits up to `timeout` for an event, then drains what is pending. `Ok(false)` when the
    /// time ran out (or a signal came) with nothing read.
    pub fn wait(&self, fs: &dyn Fs, timeout: Duration) -> std::io::Result<bool> {
        Ok(self.wait_drained(fs, timeout)?.any())
    }

    /// Like [`DirWatch::wait`], returning what was drained (nothing when the time ran out).
    pub fn wait_drained(&self, fs: &dyn Fs, timeout: Duration) -> std::io::Result<Drained> {
        let drained = self.drain(fs)?;
        if drained.any() {
            return Ok(drained);
        }
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => Ok(Drained::default()),
            Ok(_) => self.drain(fs),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for DirWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;

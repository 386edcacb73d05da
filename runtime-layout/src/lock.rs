//! The broker lock: an exclusive `flock` on the runtime root's directory itself, held for the
//! broker's lifetime, so that a second broker (or a `mailroom import`) on the same root refuses to
//! start. It is taken through the [`Fs`] seam ([`Fs::lock_dir`]): on the real filesystem the
//! kernel drops it when the process dies, however it dies, so a crashed broker never leaves a
//! stale lock behind; on [`crate::sim::SimFs`] a simulated crash does the same.
//!
//! Why the directory and not a file: a lock on a file is only as good as the file. Removing
//! `broker.lock`, or replacing it with another file, a hard link or a symlink, made the next
//! broker lock a different inode and start beside the running one, both handing out the same
//! tasks. The root directory cannot be swapped under a broker that way: it is the directory a
//! [`crate::RootFs`] holds and resolves every path beneath, so two brokers share a tree exactly
//! when they lock the same directory.
//!
//! `broker/broker.lock` remains, as a note (`pid=<pid> host=<host>`) saying who holds the lock,
//! for whoever is refused it. It is replaced atomically (a new file, renamed over the old name),
//! never opened for writing: whatever sits at that name, a symlink or a hard link to someone
//! else's file, is never written through or truncated.

use crate::fs::{Fs, FsError, LockGuard};
use crate::layout::Layout;
use crate::ops::{NameSource, hostname, replace_file};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest holder note read back for a refusal message.
const MAX_HOLDER_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another broker holds {} ({holder})", root.display())]
    Held { root: PathBuf, holder: String },
    #[error("cannot take the broker lock: {0}")]
    Io(#[from] FsError),
}

/// Held while the broker runs; released on drop.
pub struct BrokerLock {
    _guard: Box<dyn LockGuard>,
    root: PathBuf,
    note: PathBuf,
}

impl fmt::Debug for BrokerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerLock").field("root", &self.root).finish()
    }
}

impl BrokerLock {
    /// Takes the lock on the root directory without waiting. Writes nothing: call
    /// [`BrokerLock::record_holder`] once `broker/` is known to be a real directory.
    pub fn acquire(fs: &dyn Fs, layout: &Layout) -> Result<Self, LockError> {
        let root = layout.root().to_path_buf();
        let note = layout.lock_file();
        let Some(guard) = fs.lock_dir(&root)? else {
            let holder = match fs.read(&note, MAX_HOLDER_BYTES) {
                Ok(bytes) => match String::from_utf8_lossy(&bytes).trim() {
                    "" => "holder unknown".to_string(),
                    note => note.to_string(),
                },
                Err(e) => format!("holder unknown: {e}"),
            };
            return Err(LockError::Held { root, holder });
        };
        Ok(Self { _guard: guard, root, note })
    }

    /// Replaces `broker/broker.lock` with `pid=<pid> host=<host>`: a new file renamed over the
    /// name. Not fsynced: the note is a courtesy, the lock is the kernel's.
    pub fn record_holder(&self, fs: &dyn Fs) -> Result<(), FsError> {
        let note = format!("pid={} host={}\n", std::process::id(), hostname());
        replace_file(fs, &self.note, note.as_bytes(), &NameSource::new(), false)
    }

    /// The directory locked.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{RealFs, RootFs};
    use crate::sim::{Crash, SimFs};
    use std::os::unix::fs::{MetadataExt, symlink};

    fn expect_held(r: Result<BrokerLock, LockError>) -> String {
        match r {
            Err(LockError::Held { holder, .. }) => holder,
            other => panic!("expected Held, got {other:?}"),
        }
    }

    fn root() -> (tempfile::TempDir, Layout, RootFs) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        std::fs::create_dir(layout.root()).unwrap();
        let fs = RootFs::open(layout.root()).unwrap();
        layout.create(&fs).unwrap();
        (d, layout, fs)
    }

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let (_d, layout, fs) = root();
        let first = BrokerLock::acquire(&fs, &layout).unwrap();
        first.record_holder(&fs).unwrap();
        let holder = expect_held(BrokerLock::acquire(&fs, &layout));
        assert_eq!(holder, format!("pid={} host={}", std::process::id(), hostname()));
        // Another handle on the same root (a second broker process would open its own) too.
        expect_held(BrokerLock::acquire(&RootFs::open(layout.root()).unwrap(), &layout));
        drop(first);
        BrokerLock::acquire(&fs, &layout).unwrap();
    }

    /// The lock file removed, or replaced by a symlink or a hard link to a file outside the root,
    /// while a broker holds the lock: a second broker is still refused, and recording its holder
    /// again never writes through the link or truncates its target.
    #[test]
    fn tampering_with_the_lock_file_lets_no_second_broker_in_and_damages_nothing() {
        let (d, layout, fs) = root();
        let bait = d.path().join("bait");
        std::fs::write(&bait, b"someone else's file").unwrap();
        let first = BrokerLock::acquire(&fs, &layout).unwrap();
        first.record_holder(&fs).unwrap();
        let note = layout.lock_file();
        type Tamper = fn(&Path, &Path);
        let tampering: [(&str, Tamper); 3] = [
            ("removed", |note, _| assert!(!note.exists())),
            ("a symlink", |note, bait| symlink(bait, note).unwrap()),
            ("a hard link", |note, bait| std::fs::hard_link(bait, note).unwrap()),
        ];
        for (what, tamper) in tampering {
            let _ = std::fs::remove_file(&note);
            tamper(&note, &bait);
            let before = (std::fs::read(&bait).unwrap(), std::fs::metadata(&bait).unwrap().mtime());
            match BrokerLock::acquire(&RootFs::open(layout.root()).unwrap(), &layout) {
                Err(LockError::Held { .. }) => {}
                other => panic!("lock file {what}: a second broker got {other:?}"),
            }
            // What the first broker does with its note must not harm the target either.
            first.record_holder(&fs).unwrap();
            assert!(
                std::fs::symlink_metadata(&note).unwrap().is_file(),
                "{what}: the note is a file of its own"
            );
            assert_eq!(
                (std::fs::read(&bait).unwrap(), std::fs::metadata(&bait).unwrap().mtime()),
                before,
                "{what}"
            );
        }
        drop(first);
        BrokerLock::acquire(&fs, &layout).unwrap();
    }

    #[test]
    fn a_plain_realfs_locks_the_same_directory() {
        let (_d, layout, fs) = root();
        let first = BrokerLock::acquire(&RealFs, &layout).unwrap();
        expect_held(BrokerLock::acquire(&fs, &layout));
        drop(first);
    }

    #[test]
    fn on_simfs_a_crash_releases_the_lock_of_the_dead_broker() {
        let fs = SimFs::new();
        let layout = Layout::new("/r");
        layout.create(&fs).unwrap();
        let dead = BrokerLock::acquire(&fs, &layout).unwrap();
        dead.record_holder(&fs).unwrap();
        let holder = expect_held(BrokerLock::acquire(&fs, &layout));
        assert!(holder.starts_with("pid="), "{holder}");
        fs.restart(Crash::Process);
        let next = BrokerLock::acquire(&fs, &layout).expect("the dead broker's lock is gone");
        // The dead broker's guard, dropped late, must not release the new holder's lock.
        drop(dead);
        expect_held(BrokerLock::acquire(&fs, &layout));
        drop(next);
        BrokerLock::acquire(&fs, &layout).unwrap();
    }
}

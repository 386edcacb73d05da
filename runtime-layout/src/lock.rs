//! The broker lock: an exclusive lock on `broker/broker.lock`, held for the broker's lifetime,
//! so that a second broker on the same root refuses to start. The lock is taken through the
//! [`Fs`] seam ([`Fs::lock_exclusive`]): on the real filesystem the kernel drops it when the
//! process dies, however it dies, so a crashed broker never leaves a stale lock behind; on
//! [`crate::sim::SimFs`] a simulated crash does the same.
//!
//! The file's content (`pid=<pid> host=<host>`) only says who holds the lock, for the message of
//! whoever is refused it: the lock is the kernel's, never the file's existence or content.

use crate::fs::{Fs, FsError, LockGuard};
use crate::ops::hostname;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest holder note read back for a refusal message.
const MAX_HOLDER_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another broker holds {} ({holder})", path.display())]
    Held { path: PathBuf, holder: String },
    #[error("cannot take the broker lock: {0}")]
    Io(#[from] FsError),
}

/// Held while the broker runs; released on drop.
pub struct BrokerLock {
    _guard: Box<dyn LockGuard>,
    path: PathBuf,
}

impl fmt::Debug for BrokerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerLock").field("path", &self.path).finish()
    }
}

impl BrokerLock {
    /// Takes the lock without waiting, and records `pid=<pid> host=<host>` in the file.
    pub fn acquire(fs: &dyn Fs, path: &Path) -> Result<Self, LockError> {
        let Some(mut guard) = fs.lock_exclusive(path)? else {
            let holder = match fs.read(path, MAX_HOLDER_BYTES) {
                Ok(bytes) => match String::from_utf8_lossy(&bytes).trim() {
                    "" => "holder unknown".to_string(),
                    note => note.to_string(),
                },
                Err(e) => format!("holder unknown: {e}"),
            };
            return Err(LockError::Held { path: path.to_path_buf(), holder });
        };
        let note = format!("pid={} host={}\n", std::process::id(), hostname());
        guard.set_contents(note.as_bytes())?;
        Ok(Self { _guard: guard, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;
    use crate::sim::{Crash, SimFs};

    fn expect_held(r: Result<BrokerLock, LockError>) -> String {
        match r {
            Err(LockError::Held { holder, .. }) => holder,
            other => panic!("expected Held, got {other:?}"),
        }
    }

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("broker.lock");
        let first = BrokerLock::acquire(&RealFs, &p).unwrap();
        let holder = expect_held(BrokerLock::acquire(&RealFs, &p));
        assert_eq!(holder, format!("pid={} host={}", std::process::id(), hostname()));
        drop(first);
        BrokerLock::acquire(&RealFs, &p).unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("journal-of-someone-else");
        std::fs::write(&target, b"precious").unwrap();
        let p = d.path().join("broker.lock");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let err = BrokerLock::acquire(&RealFs, &p).unwrap_err();
        assert!(matches!(err, LockError::Io(FsError::NotRegular { .. })), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn on_simfs_a_crash_releases_the_lock_of_the_dead_broker() {
        let fs = SimFs::new();
        let p = Path::new("/r/broker.lock");
        fs.create_dir_all(Path::new("/r")).unwrap();
        let dead = BrokerLock::acquire(&fs, p).unwrap();
        let holder = expect_held(BrokerLock::acquire(&fs, p));
        assert!(holder.starts_with("pid="), "{holder}");
        fs.restart(Crash::Process);
        let next = BrokerLock::acquire(&fs, p).expect("the dead broker's lock is gone");
        // The dead broker's guard, dropped late, must not release the new holder's lock.
        drop(dead);
        expect_held(BrokerLock::acquire(&fs, p));
        drop(next);
        BrokerLock::acquire(&fs, p).unwrap();
    }
}

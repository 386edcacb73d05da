//! The broker lock: an exclusive lock on `broker/broker.lock`, held for the broker's lifetime,
//! so that a second broker on the same root refuses to start. The kernel drops the lock when the
//! process dies, however it dies, so a crashed broker never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another broker holds {} ({holder})", path.display())]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while the broker runs; released on drop.
#[derive(Debug)]
pub struct BrokerLock {
    file: File,
    path: PathBuf,
}

impl BrokerLock {
    /// Takes the lock without waiting, and records `pid=<pid> host=<host>` in the file.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io { path: path.to_path_buf(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() { "holder unknown".into() } else { holder },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "pid={} host={}", std::process::id(), crate::ops::hostname()).map_err(io)?;
        Ok(Self { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BrokerLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("broker.lock");
        let first = BrokerLock::acquire(&p).unwrap();
        match BrokerLock::acquire(&p) {
            Err(LockError::Held { holder, .. }) => {
                assert!(holder.contains(&format!("pid={}", std::process::id())))
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        BrokerLock::acquire(&p).unwrap();
    }
}

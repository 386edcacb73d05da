//! The handles [`SimFs`] gives out: an open append-only file ([`SimAppend`], the journal) and a
//! lock ([`SimLock`]); both are valid only in the generation (process life) they were made in.

use super::{Inner, Kind, SimFs, errno};
use crate::fs::{AppendFile, FsError, LockGuard};
use std::path::PathBuf;

pub(super) struct SimAppend {
    pub(super) fs: SimFs,
    pub(super) ino: u64,
    pub(super) generation: u64,
    pub(super) path: PathBuf,
}

impl SimAppend {
    fn check(&self, g: &Inner, op: &'static str) -> Result<(), FsError> {
        if g.generation != self.generation || !g.inodes.contains_key(&self.ino) {
            return Err(FsError::io(op, &self.path, errno(rustix::io::Errno::BADF)));
        }
        Ok(())
    }
}

impl AppendFile for SimAppend {
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        let mut g = self.fs.lock();
        self.check(&g, "append to")?;
        g.begin("append to", &self.path, Kind::Write)?;
        let now = self.fs.clock.now();
        let ino = g.inodes.get_mut(&self.ino).expect("checked");
        ino.data.extend_from_slice(bytes);
        ino.mtime = now;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FsError> {
        let mut g = self.fs.lock();
        self.check(&g, "fsync")?;
        g.begin("fsync", &self.path, Kind::Sync)?;
        let ino = g.inodes.get_mut(&self.ino).expect("checked");
        ino.durable = ino.data.clone();
        ino.durable_mtime = ino.mtime;
        Ok(())
    }
}

/// A lock taken by [`Fs::lock_exclusive`]; valid in the generation (process life) it was taken in.
pub(super) struct SimLock {
    pub(super) fs: SimFs,
    pub(super) ino: u64,
    pub(super) generation: u64,
    pub(super) path: PathBuf,
}

impl LockGuard for SimLock {
    fn set_contents(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        let now = self.fs.clock.now();
        let mut g = self.fs.lock();
        if g.generation != self.generation || !g.inodes.contains_key(&self.ino) {
            return Err(FsError::io("write", &self.path, errno(rustix::io::Errno::BADF)));
        }
        g.begin("write", &self.path, Kind::Write)?;
        let ino = g.inodes.get_mut(&self.ino).expect("checked");
        ino.data = bytes.to_vec();
        ino.mtime = now;
        Ok(())
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut g = self.fs.lock();
        if g.generation == self.generation {
            g.locks.remove(&self.ino);
        }
    }
}

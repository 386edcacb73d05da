//! What [`SimFs`] hands out: appenders ([`Fs::create_append`]) and directory locks
//! ([`Fs::lock_dir`]), each valid only in the generation (process life) it was made in.

use super::*;

pub(super) struct SimAppend {
    pub fs: SimFs,
    pub ino: u64,
    pub generation: u64,
    pub path: PathBuf,
    /// Bytes appended: where the next append goes (a reserve of zeros may follow).
    pub len: usize,
}

impl SimAppend {
    fn check(&self, g: &Inner, op: &'static str) -> Result<(), FsError> {
        if g.generation != self.generation || !g.inodes.contains_key(&self.ino) {
            return Err(FsError::io(op, &self.path, errno(rustix::io::Errno::BADF)));
        }
        Ok(())
    }

    /// The identity check of the real implementations: the path must still name this file.
    fn still_named(&self, g: &Inner) -> Result<(), FsError> {
        if g.lookup(&self.path) != Some(Node::File(self.ino)) {
            return Err(FsError::Replaced { path: self.path.clone() });
        }
        Ok(())
    }
}

impl AppendFile for SimAppend {
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        let mut g = self.fs.lock();
        self.check(&g, "append to")?;
        self.still_named(&g)?;
        g.begin("append to", &self.path, Kind::Write)?;
        let now = self.fs.clock.now();
        let ino = g.inodes.get_mut(&self.ino).expect("checked");
        let end = self.len + bytes.len();
        if ino.data.len() < end {
            ino.data.resize(end, 0);
        }
        ino.data[self.len..end].copy_from_slice(bytes);
        ino.mtime = now;
        self.len = end;
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

    fn reserve(&mut self, bytes: u64) -> Result<(), FsError> {
        let mut g = self.fs.lock();
        self.check(&g, "reserve")?;
        let want = self.len + bytes as usize;
        if g.inodes[&self.ino].data.len() >= want {
            return Ok(());
        }
        self.still_named(&g)?;
        g.begin("reserve", &self.path, Kind::Write)?;
        let ino = g.inodes.get_mut(&self.ino).expect("checked");
        ino.data.resize(want, 0);
        // Appends now overwrite zeros: a scrambled power loss may keep part of one.
        ino.reserved = true;
        Ok(())
    }

    fn trim(&mut self) -> Result<(), FsError> {
        let mut g = self.fs.lock();
        self.check(&g, "trim")?;
        if g.inodes[&self.ino].data.len() <= self.len {
            return Ok(());
        }
        self.still_named(&g)?;
        g.begin("trim", &self.path, Kind::Write)?;
        g.inodes.get_mut(&self.ino).expect("checked").data.truncate(self.len);
        Ok(())
    }
}

/// A lock taken by [`Fs::lock_dir`] on the directory `dir` (directories are never renamed here,
/// so the path is the directory's identity).
pub(super) struct SimLock {
    pub fs: SimFs,
    pub dir: PathBuf,
    pub generation: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut g = self.fs.lock();
        if g.generation == self.generation {
            g.locks.remove(&self.dir);
        }
    }
}

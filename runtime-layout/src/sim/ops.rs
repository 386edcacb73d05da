//! [`SimFs`]'s [`Fs`] operations on the model of the parent module.

use super::handles::{SimAppend, SimLock};
use super::*;

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

    fn overwrite(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        let path = normalise(path);
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("overwrite", &path, if sync { Kind::WriteSync } else { Kind::Write })?;
        let ino = match g.lookup(&path) {
            None => return Err(FsError::io("open", &path, errno(rustix::io::Errno::NOENT))),
            Some(Node::Dir) => return Err(FsError::NotRegular { path, kind: FileKind::Dir }),
            Some(Node::File(i)) => i,
        };
        // A file a crash left in two directories (an unsynced rename) has two names.
        let names = g.live.values().flat_map(|d| d.values()).filter(|n| **n == Node::File(ino)).count();
        if names > 1 {
            return Err(FsError::NotReusable { path, why: "it has another name (a hard link)" });
        }
        let inode = g.inodes.get_mut(&ino).expect("named inode");
        inode.data = bytes.to_vec();
        inode.mtime = now;
        if sync {
            inode.durable = bytes.to_vec();
            inode.durable_mtime = now;
        }
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
        let mut g = self.lock();
        g.read_only("open", path)?;
        match g.lookup(path) {
            None => Err(FsError::io("open", path, errno(rustix::io::Errno::NOENT))),
            Some(Node::Dir) => Err(FsError::NotRegular { path: path.to_path_buf(), kind: FileKind::Dir }),
            Some(Node::File(i)) => {
                g.fault(Kind::Open, "open", path)?;
                g.fault(Kind::Read, "read", path)?;
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

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let mut g = self.lock();
        g.read_only("open", path)?;
        match g.lookup(path) {
            None => Err(FsError::io("open", path, errno(rustix::io::Errno::NOENT))),
            Some(Node::Dir) => Err(FsError::NotRegular { path: path.to_path_buf(), kind: FileKind::Dir }),
            Some(Node::File(i)) => {
                g.fault(Kind::Open, "open", path)?;
                g.fault(Kind::Read, "read", path)?;
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

    fn create_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError> {
        let path = normalise(path);
        let now = self.clock.now();
        let mut g = self.lock();
        g.begin("create for append", &path, Kind::Meta)?;
        let (dir, name) = split(&path)
            .ok_or_else(|| FsError::io("create for append", &path, errno(rustix::io::Errno::INVAL)))?;
        if g.dir_mut("create for append", &dir)?.contains_key(&name) {
            return Err(FsError::io("create for append", &path, errno(rustix::io::Errno::EXIST)));
        }
        let ino = g.new_inode(Vec::new(), true, now);
        g.dir_mut("create for append", &dir)?.insert(name, Node::File(ino));
        Ok(Box::new(SimAppend { fs: self.clone(), ino, generation: g.generation, path, len: 0 }))
    }

    fn lock_dir(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
        let dir = normalise(path);
        let mut g = self.lock();
        g.begin("lock", &dir, Kind::Meta)?;
        match g.lookup(&dir) {
            Some(Node::Dir) => {}
            Some(Node::File(_)) => return Err(FsError::io("lock", &dir, errno(rustix::io::Errno::NOTDIR))),
            None => return Err(FsError::io("lock", &dir, errno(rustix::io::Errno::NOENT))),
        }
        if !g.locks.insert(dir.clone()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock { fs: self.clone(), dir, generation: g.generation })))
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

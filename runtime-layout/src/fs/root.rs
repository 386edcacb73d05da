//! [`RootFs`]: the [`Fs`] of a runtime root. It holds the root's directory descriptor; each
//! operation resolves the directory that holds its path beneath the root (`beneath.rs`: never
//! through a symbolic link, never out of the root) and then acts on the last component with the
//! `*at` system call relative to that directory: `openat(O_NOFOLLOW)`, `O_CREAT | O_EXCL` for
//! every creation, `renameat2(RENAME_NOREPLACE)`, `unlinkat`, `mkdirat`, `fstatat
//! (AT_SYMLINK_NOFOLLOW)`, `utimensat(AT_SYMLINK_NOFOLLOW)`. Whatever an agent does to the tree
//! meanwhile (a directory swapped for a link to `/`, a file for a hard link to someone else's),
//! the operation reads, creates, renames or removes an entry of a real directory beneath the root,
//! or fails naming what was in the way ([`FsError::NotBeneath`]).
//!
//! A path given to it must start with the root path it was opened with (as [`crate::Layout`]
//! builds them); anything else is [`FsError::Outside`].

use super::beneath::{Beneath, Dir};
use super::counts::{Counters, FsCounts};
use super::unix::{self, Appender, errno, id_of, meta_of, open_error};
use super::{AppendFile, Entry, FileKind, Fs, FsError, LockGuard, Meta, Space};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

pub use super::beneath::Resolve;

/// The filesystem of one runtime root, contained beneath it. Cheap to clone.
#[derive(Clone)]
pub struct RootFs {
    at: Arc<Beneath>,
    /// What this root's operations have done (shared by every clone).
    counts: Arc<Counters>,
}

/// The times a heartbeat sets: the modification time to now, the access time left alone.
const MTIME_NOW: Timestamps = Timestamps {
    last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
    last_modification: Timespec { tv_sec: 0, tv_nsec: UTIME_NOW },
};

impl std::fmt::Debug for RootFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootFs")
            .field("root", &self.at.root_path())
            .field("openat2", &self.at.uses_openat2())
            .finish()
    }
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

impl RootFs {
    /// What is at `path`, resolved beneath the root (for [`open_error`]).
    fn kind_at(&self, path: &Path) -> Option<FileKind> {
        self.stat(path).ok().flatten().map(|m| m.kind)
    }

    /// Opens the root directory `root` (which must exist); every path given later must lie
    /// beneath it. Resolves with `openat2` where the kernel has it.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, FsError> {
        Self::open_with(root, Resolve::Auto)
    }

    /// [`RootFs::open`], choosing how paths are resolved ([`Resolve::Walk`] forces the fallback).
    pub fn open_with(root: impl AsRef<Path>, resolve: Resolve) -> Result<Self, FsError> {
        Ok(Self { at: Arc::new(Beneath::open(root.as_ref(), resolve)?), counts: Arc::default() })
    }

    /// The root path every path given must start with.
    pub fn root(&self) -> &Path {
        self.at.root_path()
    }

    /// Does resolution use `openat2` (else the walk)?
    pub fn uses_openat2(&self) -> bool {
        self.at.uses_openat2()
    }

    /// `path` as a regular file beneath the root, opened for reading: O_NOFOLLOW refuses a
    /// symlink, O_NONBLOCK keeps a FIFO from blocking the open.
    fn open_to_read(&self, path: &Path) -> Result<OwnedFd, FsError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        self.at.open_file(path, flags, Mode::empty()).map_err(|e| match e {
            Ok(errno) => open_error("open", path, errno, || self.kind_at(path)),
            Err(refused) => refused,
        })
    }

    /// `path` as a directory beneath the root, opened for reading (listing, fsync).
    fn open_dir(&self, path: &Path) -> Result<Dir<'_>, FsError> {
        let rel = self.at.relative(path)?;
        self.at.dir(path, rel, true)
    }

    /// Creates `path` exclusively with `bits` (less the umask), writes it whole, fsyncs it when
    /// `sync`.
    fn create_with_mode(&self, path: &Path, bytes: &[u8], sync: bool, bits: u32) -> Result<(), FsError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = self.at.open_file(path, flags, mode(bits)).map_err(|e| created(path, "create", e))?;
        let written = unix::fill(fd, path, bytes, sync);
        match &written {
            Ok(()) => self.counts.created(bytes.len(), sync),
            // Leave no half-written file behind under a name someone may read.
            Err(_) => {
                let _ = self.remove_file(path);
            }
        }
        written
    }

    fn create_dirs(&self, path: &Path, rel: &Path) -> Result<(), FsError> {
        let mut cur = Dir::Root(self.at.root());
        let mut at = self.at.root_path().to_path_buf();
        let open = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for c in rel.components() {
            let name = c.as_os_str();
            at.push(name);
            let mut made = false;
            let next = loop {
                match rustix::fs::openat(&cur, name, open, Mode::empty()) {
                    Ok(fd) => break fd,
                    Err(Errno::NOENT) if !made => match rustix::fs::mkdirat(&cur, name, mode(0o777)) {
                        // mkdir is durable only once the parent's entry list is: fsync it.
                        Ok(()) => {
                            made = true;
                            self.counts.made_dir();
                            rustix::fs::fsync(&cur)
                                .map_err(|e| FsError::io("fsync directory", &at, errno(e)))?;
                            self.counts.dir_synced();
                        }
                        Err(Errno::EXIST) => made = true,
                        Err(e) => return Err(FsError::io("create directory", &at, errno(e))),
                    },
                    Err(Errno::LOOP | Errno::NOTDIR) => {
                        let kind = rustix::fs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW)
                            .ok()
                            .map(|s| unix::kind_of(&s));
                        return Err(FsError::NotBeneath { path: path.to_path_buf(), at, kind });
                    }
                    Err(e) => return Err(FsError::io("create directory", &at, errno(e))),
                }
            };
            cur = Dir::Under(next);
        }
        Ok(())
    }
}

/// The error of an exclusive creation: a link already at the name (`ELOOP` with
/// `RESOLVE_NO_SYMLINKS`) is a name taken, as `EEXIST` says for any other file there.
fn created(path: &Path, op: &'static str, e: Result<Errno, FsError>) -> FsError {
    match e {
        Ok(Errno::LOOP) => FsError::io(op, path, errno(Errno::EXIST)),
        Ok(e) => FsError::io(op, path, errno(e)),
        Err(refused) => refused,
    }
}

impl Fs for RootFs {
    fn create_dir_all(&self, path: &Path) -> Result<(), FsError> {
        let rel = self.at.relative(path)?;
        // Usually there already: one resolution says so.
        match self.at.dir(path, rel, false) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => self.create_dirs(path, rel),
            Err(e) => Err(e),
        }
    }

    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        self.create_with_mode(path, bytes, sync, 0o644)
    }

    fn create_private(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        self.create_with_mode(path, bytes, sync, 0o600)
    }

    fn overwrite(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = self.at.open_file(path, flags, Mode::empty()).map_err(|e| match e {
            Ok(e) => open_error("open", path, e, || self.kind_at(path)),
            Err(refused) => refused,
        })?;
        unix::rewrite(fd, path, bytes, sync)?;
        self.counts.rewritten(bytes.len(), sync);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        let (fdir, fname) = self.at.parent(from)?;
        let (tdir, tname) = self.at.parent(to)?;
        rustix::fs::renameat(&fdir, fname, &tdir, tname)
            .map_err(|e| FsError::io("rename", from, errno(e)))?;
        self.counts.renamed();
        Ok(())
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        let (fdir, fname) = self.at.parent(from)?;
        let (tdir, tname) = self.at.parent(to)?;
        let done = match rustix::fs::renameat_with(&fdir, fname, &tdir, tname, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::NOSYS) => {
                // Filesystems without RENAME_NOREPLACE: link() refuses an existing target.
                rustix::fs::linkat(&fdir, fname, &tdir, tname, AtFlags::empty())
                    .map_err(|e| FsError::io("link", from, errno(e)))?;
                rustix::fs::unlinkat(&fdir, fname, AtFlags::empty())
                    .map_err(|e| FsError::io("remove", from, errno(e)))
            }
            Err(e) => Err(FsError::io("rename", from, errno(e))),
        };
        if done.is_ok() {
            self.counts.renamed();
        }
        done
    }

    fn remove_file(&self, path: &Path) -> Result<(), FsError> {
        let (dir, name) = self.at.parent(path)?;
        rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            .map_err(|e| FsError::io("remove", path, errno(e)))?;
        self.counts.unlinked();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> Result<(), FsError> {
        let dir = self.open_dir(path)?;
        rustix::fs::fsync(&dir).map_err(|e| FsError::io("fsync directory", path, errno(e)))?;
        self.counts.dir_synced();
        Ok(())
    }

    fn list(&self, path: &Path) -> Result<Vec<Entry>, FsError> {
        let err = |e: Errno| FsError::io("list", path, errno(e));
        let mut dir = match self.open_dir(path)? {
            // The root's own descriptor is shared: read a fresh one of it.
            Dir::Root(fd) => rustix::fs::Dir::read_from(fd),
            Dir::Under(fd) => rustix::fs::Dir::new(fd),
        }
        .map_err(err)?;
        let mut out = Vec::new();
        while let Some(ent) = dir.read() {
            let ent = ent.map_err(err)?;
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_os_string();
            let kind = match ent.file_type() {
                rustix::fs::FileType::Unknown => {
                    match rustix::fs::statat(dir.fd().map_err(err)?, &name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => unix::kind_of(&st),
                        // Vanished between readdir and stat: another process moved it.
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(FsError::io("stat", &path.join(&name), errno(e))),
                    }
                }
                t => FileKind::from(t),
            };
            out.push(Entry { name, kind });
        }
        self.counts.listed();
        Ok(out)
    }

    /// With `openat2`, one call from the root for the whole path and an `fstat` of the handle
    /// (`O_PATH`): the usual answer for a name that is absent costs one call, not three.
    fn stat(&self, path: &Path) -> Result<Option<Meta>, FsError> {
        self.counts.statted();
        if let Some(found) = self.at.probe(path) {
            return match found {
                Some(fd) => rustix::fs::fstat(&fd)
                    .map(|st| Some(meta_of(&st)))
                    .map_err(|e| FsError::io("stat", path, errno(e))),
                None => Ok(None),
            };
        }
        let rel = self.at.relative(path)?;
        if rel.as_os_str().is_empty() {
            let st = rustix::fs::fstat(self.at.root()).map_err(|e| FsError::io("stat", path, errno(e)))?;
            return Ok(Some(meta_of(&st)));
        }
        let (dir, name) = match self.at.parent(path) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(meta_of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::io("stat", path, errno(e))),
        }
    }

    /// One `openat2` from the root for the whole path when the kernel has it (no directory
    /// opened apart, no `fstat`): a name that is absent, the usual answer, costs one call.
    fn exists(&self, path: &Path) -> Result<bool, FsError> {
        match self.at.probe(path) {
            Some(found) => {
                self.counts.statted();
                Ok(found.is_some())
            }
            None => self.stat(path).map(|m| m.is_some()),
        }
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let fd = self.open_to_read(path)?;
        let bytes = unix::read_limited(fd, path, limit)?;
        self.counts.read(bytes.len());
        Ok(bytes)
    }

    fn touch(&self, path: &Path) -> Result<(), FsError> {
        let (dir, name) = self.at.parent(path)?;
        rustix::fs::utimensat(&dir, name, &MTIME_NOW, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("touch", path, errno(e)))?;
        self.counts.touched();
        Ok(())
    }

    /// One open for both: the file is resolved once, its time set through the descriptor.
    fn touch_read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let fd = self.open_to_read(path)?;
        rustix::fs::futimens(&fd, &MTIME_NOW).map_err(|e| FsError::io("touch", path, errno(e)))?;
        self.counts.touched();
        let bytes = unix::read_limited(fd, path, limit)?;
        self.counts.read(bytes.len());
        Ok(bytes)
    }

    fn create_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd =
            self.at.open_file(path, flags, mode(0o644)).map_err(|e| created(path, "create for append", e))?;
        let fs = self.clone();
        let locate = Box::new(move |p: &Path| {
            let (dir, name) = fs.at.parent(p)?;
            match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(Some(id_of(&st))),
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(FsError::io("stat", p, errno(e))),
            }
        });
        let appender = Appender::new(fd, path, locate, Some(self.counts.clone()))?;
        self.counts.created_for_append();
        Ok(Box::new(appender))
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let fd = self.open_to_read(path)?;
        let bytes = unix::read_piece(fd, path, offset, len)?;
        self.counts.read(bytes.len());
        Ok(bytes)
    }

    fn set_mtime(&self, path: &Path, mtime: protocol::Timestamp) -> Result<(), FsError> {
        let (dir, name) = self.at.parent(path)?;
        rustix::fs::utimensat(&dir, name, &unix::mtime_times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("set mtime", path, errno(e)))?;
        self.counts.touched();
        Ok(())
    }

    fn space(&self, path: &Path) -> Result<Option<Space>, FsError> {
        let dir = self.open_dir(path)?;
        let s = rustix::fs::fstatvfs(&dir).map_err(|e| FsError::io("statvfs", path, errno(e)))?;
        Ok(Some(unix::space_of(&s)))
    }

    fn resolves_beneath(&self) -> bool {
        true
    }

    fn counts(&self) -> Option<FsCounts> {
        Some(self.counts.snapshot())
    }

    fn bind_socket(
        &self,
        path: &Path,
        like: &Path,
    ) -> Result<Option<std::os::unix::net::UnixListener>, FsError> {
        use std::os::fd::{AsFd, AsRawFd};
        let (ldir, lname) = self.at.parent(like)?;
        let st = rustix::fs::statat(&ldir, lname, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("stat", like, errno(e)))?;
        if unix::kind_of(&st) != FileKind::Dir {
            return Err(FsError::io("bind socket", like, std::io::Error::other("not a directory")));
        }
        let (dir, name) = self.at.parent(path)?;
        unix::clear_socket(&dir, name, path)?;
        // There is no `bindat`: the name is bound through the directory's descriptor (its
        // `/proc/self/fd` link), so the socket is made in the directory resolved beneath the root
        // whatever its path's components are by now.
        let at = Path::new("/proc/self/fd").join(dir.as_fd().as_raw_fd().to_string()).join(name);
        let listener =
            std::os::unix::net::UnixListener::bind(&at).map_err(|e| FsError::io("bind socket", path, e))?;
        if let Err(e) = unix::own_socket(&dir, name, path, st.st_mode & 0o777, st.st_gid) {
            let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
            return Err(e);
        }
        Ok(Some(listener))
    }

    fn lock_dir(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
        let fd = match self.open_dir(path)? {
            // A descriptor of its own: a flock belongs to the open file description.
            Dir::Root(fd) => rustix::fs::openat(
                fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| FsError::io("open directory", path, errno(e)))?,
            Dir::Under(fd) => fd,
        };
        unix::lock(fd, path)
    }
}

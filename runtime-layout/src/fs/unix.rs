//! What [`RealFs`](super::RealFs) and [`RootFs`](super::RootFs) do alike once a file is open:
//! read it within a limit, append to it all or nothing after checking it is still the file at
//! its path, hold a `flock`, and turn `stat` results and errors into the seam's types.

use super::counts::Counters;
use super::{AppendFile, FileKind, FsError, LockGuard, Meta, Space};
use protocol::Timestamp;
use rustix::fs::{AtFlags, FileType, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The device and inode of a file: what "the same file" means.
pub(crate) type FileId = (u64, u64);

pub(crate) fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Removes the socket `name` in `dir` (one a stopped broker left) so that a new one can be bound
/// there; nothing there is fine, and any other kind of file is an error naming `path`.
pub(crate) fn clear_socket(dir: impl AsFd, name: &OsStr, path: &Path) -> Result<(), FsError> {
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if kind_of(&st) == FileKind::Socket => rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            .map_err(|e| FsError::io("remove socket", path, errno(e))),
        Ok(st) => Err(FsError::io(
            "bind socket",
            path,
            std::io::Error::other(format!("a {} is at that name, not a socket", kind_of(&st))),
        )),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(FsError::io("bind socket", path, errno(e))),
    }
}

/// Gives the socket just bound at `name` in `dir` the mode `bits` and the group `gid`, through a
/// descriptor of that very socket (`O_PATH`, no link followed, checked to be a socket), so that
/// nothing put at the name meanwhile is changed. When the group cannot be given (a broker not
/// in it), the socket is the owner's alone.
pub(crate) fn own_socket(
    dir: impl AsFd,
    name: &OsStr,
    path: &Path,
    bits: u32,
    gid: u32,
) -> Result<(), FsError> {
    use rustix::fs::{Gid, Mode, OFlags};
    let fail = |op: &'static str, e: Errno| FsError::io(op, path, errno(e));
    let fd = rustix::fs::openat(&dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| fail("open socket", e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| fail("stat socket", e))?;
    if kind_of(&st) != FileKind::Socket {
        return Err(FsError::io("bind socket", path, std::io::Error::other("not the socket bound")));
    }
    // chmod and chown of an `O_PATH` descriptor go through its `/proc/self/fd` link, which
    // names the inode itself (`fchmod` would change the socket object, not the file).
    let link = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    let bits = if st.st_gid == gid || rustix::fs::chown(&link, None, Some(Gid::from_raw(gid))).is_ok() {
        bits
    } else {
        bits & 0o700
    };
    rustix::fs::chmod(&link, Mode::from_raw_mode(bits)).map_err(|e| fail("chmod socket", e))
}

pub(crate) fn kind_of(st: &Stat) -> FileKind {
    FileType::from_raw_mode(st.st_mode).into()
}

pub(crate) fn id_of(st: &Stat) -> FileId {
    (st.st_dev, st.st_ino)
}

pub(crate) fn meta_of(st: &Stat) -> Meta {
    let micros = st.st_mtime.saturating_mul(1_000_000).saturating_add(st.st_mtime_nsec as i64 / 1000);
    Meta {
        kind: kind_of(st),
        len: u64::try_from(st.st_size).unwrap_or(0),
        mtime: Timestamp::from_micros(micros),
        ino: st.st_ino,
    }
}

/// Why opening a file to read or rewrite it (`O_NOFOLLOW | O_NONBLOCK`) failed, as the seam
/// reports it: what is not a regular file is [`FsError::NotRegular`], whatever the open said.
/// A symlink fails with `ELOOP`; a directory opened for writing with `EISDIR`; a socket with
/// `ENXIO`, and so does a FIFO opened for writing with no reader; a device without a driver
/// with `ENODEV`. For the last two, `kind_at` looks at what is at the path (only then):
/// anything but a regular file is refused by its kind, like a FIFO or a directory seen on an
/// open descriptor, and never taken for a failing disk.
pub(crate) fn open_error(
    op: &'static str,
    path: &Path,
    e: Errno,
    kind_at: impl FnOnce() -> Option<FileKind>,
) -> FsError {
    let refused = |kind| FsError::NotRegular { path: path.to_path_buf(), kind };
    match e {
        Errno::LOOP => refused(FileKind::Symlink),
        // A directory opened for writing.
        Errno::ISDIR => refused(FileKind::Dir),
        Errno::NXIO | Errno::NODEV => match kind_at() {
            Some(kind) if kind != FileKind::File => refused(kind),
            // Gone since: as if the open had not found it.
            None => FsError::io(op, path, errno(Errno::NOENT)),
            Some(_) => FsError::io(op, path, errno(e)),
        },
        _ => FsError::io(op, path, errno(e)),
    }
}

/// Reads an open file that must be a regular file of at most `limit` bytes.
pub(crate) fn read_limited(fd: OwnedFd, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("fstat", path, errno(e)))?;
    let kind = kind_of(&st);
    if kind != FileKind::File {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind });
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    if len > limit {
        return Err(FsError::TooLarge { path: path.to_path_buf(), size: len, limit });
    }
    let mut buf = Vec::with_capacity(len as usize);
    // A writer may still be appending: never read past the limit whatever the file grows to.
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FsError::io("read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(FsError::TooLarge { path: path.to_path_buf(), size: buf.len() as u64, limit });
    }
    Ok(buf)
}

/// Reads at most `len` bytes from `offset` of an open file that must be a regular file.
pub(crate) fn read_piece(fd: OwnedFd, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
    use std::io::{Seek, SeekFrom};
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("fstat", path, errno(e)))?;
    let kind = kind_of(&st);
    if kind != FileKind::File {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind });
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let mut file = std::fs::File::from(fd);
    file.seek(SeekFrom::Start(offset)).map_err(|e| FsError::io("seek", path, e))?;
    let mut buf = Vec::with_capacity(len.min(size.saturating_sub(offset)) as usize);
    file.take(len).read_to_end(&mut buf).map_err(|e| FsError::io("read", path, e))?;
    Ok(buf)
}

/// `mtime` as the times `utimensat` sets (the access time left alone).
pub(crate) fn mtime_times(mtime: Timestamp) -> rustix::fs::Timestamps {
    use rustix::fs::{Timespec, UTIME_OMIT};
    let us = mtime.as_micros();
    rustix::fs::Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec {
            tv_sec: us.div_euclid(1_000_000),
            tv_nsec: us.rem_euclid(1_000_000) * 1000,
        },
    }
}

/// What `statvfs` says, as a [`Space`].
pub(crate) fn space_of(s: &rustix::fs::StatVfs) -> Space {
    let unit = if s.f_frsize > 0 { s.f_frsize } else { s.f_bsize };
    Space {
        free_bytes: s.f_bavail.saturating_mul(unit),
        total_bytes: s.f_blocks.saturating_mul(unit),
        free_inodes: s.f_favail,
        total_inodes: s.f_files,
    }
}

/// Where the file named by a path is now (`None`: nothing there), for the identity check.
pub(crate) type Locate = Box<dyn Fn(&Path) -> Result<Option<FileId>, FsError> + Send>;

/// A file created for appending, which checks before each append that its path still names it.
/// Appends are positional, at the end of what was appended (never `O_APPEND`): they may land in
/// a reserve of zeros written ahead ([`AppendFile::reserve`]).
pub(crate) struct Appender {
    file: std::fs::File,
    path: PathBuf,
    id: FileId,
    locate: Locate,
    /// Where appends and fsyncs are counted ([`RootFs`](super::RootFs)'s counters).
    counts: Option<Arc<Counters>>,
    /// Bytes appended: where the next append goes.
    len: u64,
    /// The file's size: `len` and the reserve after it.
    size: u64,
}

/// Zeros written a piece at a time when reserving.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl Appender {
    pub fn new(
        fd: OwnedFd,
        path: &Path,
        locate: Locate,
        counts: Option<Arc<Counters>>,
    ) -> Result<Self, FsError> {
        let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("stat", path, errno(e)))?;
        let size = st.st_size as u64;
        Ok(Self {
            file: fd.into(),
            path: path.to_path_buf(),
            id: id_of(&st),
            locate,
            counts,
            len: size,
            size,
        })
    }

    /// Checks that the path still names the open file (its identity, fixed at creation, against
    /// what the path names now: one lookup and one `fstatat`, cheap beside the fsync that
    /// follows). A file moved away or replaced is never written again, not even with zeros.
    fn still_named(&self) -> Result<(), FsError> {
        match (self.locate)(&self.path) {
            Ok(Some(id)) if id == self.id => Ok(()),
            Ok(_) => Err(FsError::Replaced { path: self.path.clone() }),
            Err(e) if e.is_not_found() => Err(FsError::Replaced { path: self.path.clone() }),
            Err(e) => Err(e),
        }
    }

    /// Zeros over `from..to` (within the file or past its end).
    fn zero(&self, from: u64, to: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
}

impl AppendFile for Appender {
    /// All or nothing: a write that fails part way (out of space, say) is cut back off (zeros
    /// again where the reserve was, the size it had), so that no torn record is left for later
    /// appends to follow (which would read as corruption).
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        self.still_named()?;
        let end = self.len + bytes.len() as u64;
        if let Err(e) = self.file.write_all_at(bytes, self.len) {
            let _ = self.zero(self.len, end.min(self.size));
            let _ = self.file.set_len(self.size);
            return Err(FsError::io("append to", &self.path, e));
        }
        self.len = end;
        self.size = self.size.max(end);
        if let Some(c) = &self.counts {
            c.appended(bytes.len());
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FsError> {
        self.file.sync_data().map_err(|e| FsError::io("fsync", &self.path, e))?;
        if let Some(c) = &self.counts {
            c.file_synced();
        }
        Ok(())
    }

    fn reserve(&mut self, bytes: u64) -> Result<(), FsError> {
        let want = self.len + bytes;
        if want <= self.size {
            return Ok(());
        }
        self.still_named()?;
        if let Err(e) = self.zero(self.size, want) {
            // Out of space, say: the reserve stays as it was, and appends grow the file.
            let _ = self.file.set_len(self.size);
            return Err(FsError::io("reserve", &self.path, e));
        }
        self.size = want;
        Ok(())
    }

    fn trim(&mut self) -> Result<(), FsError> {
        if self.size > self.len {
            self.still_named()?;
            self.file.set_len(self.len).map_err(|e| FsError::io("trim", &self.path, e))?;
            self.size = self.len;
        }
        Ok(())
    }
}

/// A `flock` held through an open directory; closing it (dropping the guard) releases the lock
/// (the descriptor is held, never read).
pub(crate) struct DirLock(#[allow(dead_code)] OwnedFd);

impl LockGuard for DirLock {}

/// Takes an exclusive `flock` on the open directory `fd` without waiting.
pub(crate) fn lock(fd: OwnedFd, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
    use rustix::fs::{FlockOperation, flock};
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(Box::new(DirLock(fd)))),
        Err(e) if e == Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(FsError::io("lock", path, errno(e))),
    }
}

/// Rewrites an open file in place ([`super::Fs::overwrite`]): checks on the descriptor that it is
/// a regular file of this process's user with one name, not executable, writable by others or
/// set-id, then writes `bytes` from its start, cuts it to their length (when it was longer) and
/// fsyncs it when `sync`.
pub(crate) fn rewrite(fd: OwnedFd, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("stat", path, errno(e)))?;
    let kind = kind_of(&st);
    if kind != FileKind::File {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind });
    }
    let why = if st.st_nlink != 1 {
        Some("it has another name (a hard link)")
    } else if st.st_uid != rustix::process::geteuid().as_raw() {
        Some("another user owns it")
    } else if st.st_mode & 0o7133 != 0 {
        // Executable, writable by others, or set-id: not a mode its owner made it with.
        Some("its mode was changed")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(FsError::NotReusable { path: path.to_path_buf(), why });
    }
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(|e| FsError::io("write", path, e))?;
    // Not longer than the bytes written over it: nothing to cut (a truncate is a call and an
    // inode update on every task file otherwise).
    if st.st_size as u64 > bytes.len() as u64 {
        f.set_len(bytes.len() as u64).map_err(|e| FsError::io("truncate", path, e))?;
    }
    if sync {
        f.sync_data().map_err(|e| FsError::io("fsync", path, e))?;
    }
    Ok(())
}

/// Writes `bytes` into a file just created, fsyncing it when `sync`.
pub(crate) fn fill(fd: OwnedFd, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(|e| FsError::io("write", path, e))?;
    if sync {
        f.sync_all().map_err(|e| FsError::io("fsync", path, e))?;
    }
    Ok(())
}

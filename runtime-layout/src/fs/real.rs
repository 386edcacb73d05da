//! The filesystem seam. [`Fs`] is every operation mailroom performs on its tree; [`RealFs`]
//! performs them on the real filesystem, never following a symlink it was not asked to follow.
//!
//! Besides files and directories, the seam covers the one lock mailroom takes
//! ([`Fs::lock_exclusive`], the broker lock): on the real filesystem a `flock` that the kernel
//! drops when its holder dies, so a test on another `Fs` can model that holder dying too.

use protocol::Timestamp;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "regular file",
            Self::Dir => "directory",
            Self::Symlink => "symbolic link",
            Self::Fifo => "FIFO",
            Self::Socket => "socket",
            Self::Other => "special file",
        })
    }
}

impl From<std::fs::FileType> for FileKind {
    fn from(t: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        if t.is_symlink() {
            Self::Symlink
        } else if t.is_file() {
            Self::File
        } else if t.is_dir() {
            Self::Dir
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else {
            Self::Other
        }
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: FileKind,
}

impl Entry {
    /// The name as UTF-8, or `None` for a name that is not (such files are quarantined).
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// What `stat` (without following symlinks) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileKind,
    pub len: u64,
    pub mtime: Timestamp,
    /// The file's identity on its filesystem (inode number): two names with the same one are
    /// the same file (a hard link, or a rename whose source entry a power loss kept).
    pub ino: u64,
}

/// An I/O failure, naming the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: is a {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: FileKind },
    #[error("{}: {size} bytes is over the {limit}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
}

impl FsError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { op, path: path.to_path_buf(), source }
    }

    pub fn kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(io::ErrorKind::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.kind() == Some(io::ErrorKind::AlreadyExists)
    }

    /// Permission denied (EACCES or EPERM): whoever owns the path decided the broker may not.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if source.kind() == io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()))
    }

    /// Out of space or quota: the broker refuses new work but keeps running.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(code) if code == libc_enospc() || code == libc_edquot()))
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}

/// A file opened for appending (the journal).
pub trait AppendFile: Send {
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), FsError>;
}

/// An exclusive lock on a file, taken by [`Fs::lock_exclusive`] and released when dropped (or when
/// the process holding it dies).
pub trait LockGuard: Send {
    /// Replaces the locked file's content through the locked handle: a note of who holds the lock,
    /// for whoever is refused it. Not fsynced: the note is a courtesy, the lock is the kernel's.
    fn set_contents(&mut self, bytes: &[u8]) -> Result<(), FsError>;
}

/// Every operation mailroom performs on its tree.
pub trait Fs: Send + Sync {
    /// Creates the directory and any missing parents. The entries it creates are durable when it
    /// returns (the parent of each new directory is fsynced): a file later made durable inside
    /// it must not vanish with a directory that a power loss forgot.
    fn create_dir_all(&self, path: &Path) -> Result<(), FsError>;
    /// Creates `path`, which must not exist, with `bytes`; fsyncs the file when `sync`.
    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError>;
    /// Renames, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError>;
    /// Renames, failing with `AlreadyExists` if `to` exists.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<(), FsError>;
    fn remove_file(&self, path: &Path) -> Result<(), FsError>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> Result<(), FsError>;
    /// The entries of a directory, dot-files included (callers decide what to skip).
    fn list(&self, dir: &Path) -> Result<Vec<Entry>, FsError>;
    /// `lstat`: `None` when nothing is there.
    fn stat(&self, path: &Path) -> Result<Option<Meta>, FsError>;
    /// Reads a regular file of at most `limit` bytes without following a symlink.
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError>;
    /// Sets the file's modification time to now (a heartbeat), without following a symlink.
    fn touch(&self, path: &Path) -> Result<(), FsError>;
    fn open_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError>;
    /// Takes an exclusive lock on `path` without waiting; `Ok(None)` when someone else holds it.
    /// The file is created (empty) when missing and otherwise left as it is: never truncated, and
    /// never opened through a symlink (a symlink, FIFO or directory there is
    /// [`FsError::NotRegular`]), so a link planted at the lock's path cannot make the locker
    /// create, lock or damage its target.
    fn lock_exclusive(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

struct RealAppend {
    file: std::fs::File,
    path: PathBuf,
}

impl AppendFile for RealAppend {
    /// All or nothing: a write that fails part way (out of space, say) is cut back off, so that
    /// no torn record is left for later appends to follow (which would read as corruption).
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        let before = self.file.metadata().map_err(|e| FsError::io("stat", &self.path, e))?.len();
        self.file.write_all(bytes).map_err(|e| {
            let _ = self.file.set_len(before);
            FsError::io("append to", &self.path, e)
        })
    }
    fn sync(&mut self) -> Result<(), FsError> {
        self.file.sync_data().map_err(|e| FsError::io("fsync", &self.path, e))
    }
}

/// A `flock` held through an open file; closing the file (dropping the guard) releases it.
struct RealLock {
    file: std::fs::File,
    path: PathBuf,
}

impl LockGuard for RealLock {
    fn set_contents(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        self.file.set_len(0).map_err(|e| FsError::io("truncate", &self.path, e))?;
        self.file.write_all_at(bytes, 0).map_err(|e| FsError::io("write", &self.path, e))
    }
}

impl Drop for RealLock {
    fn drop(&mut self) {
        // Closing the file, just after, releases the lock anyway: an unlock error changes nothing.
        let _ = self.file.unlock();
    }
}

/// Opening with `O_NOFOLLOW` fails with `ELOOP` on a symlink: report what is there.
fn open_error(op: &'static str, path: &Path, e: io::Error) -> FsError {
    match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
            FsError::NotRegular { path: path.to_path_buf(), kind: FileKind::Symlink }
        }
        _ => FsError::io(op, path, e),
    }
}

fn mtime_of(md: &std::fs::Metadata) -> Timestamp {
    Timestamp::from_micros(md.mtime().saturating_mul(1_000_000).saturating_add(md.mtime_nsec() / 1000))
}

impl Fs for RealFs {
    fn create_dir_all(&self, path: &Path) -> Result<(), FsError> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir_all(parent)?;
        }
        match std::fs::create_dir(path) {
            Ok(()) => {
                // mkdir is durable only once the parent's entry list is: fsync it.
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                self.sync_dir(parent)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            Err(e) => Err(FsError::io("create directory", path, e)),
        }
    }

    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| FsError::io("create", path, e))?;
        let written = f.write_all(bytes).map_err(|e| FsError::io("write", path, e)).and_then(|()| {
            if sync { f.sync_all().map_err(|e| FsError::io("fsync", path, e)) } else { Ok(()) }
        });
        if written.is_err() {
            // Leave no half-written file behind under a name someone may read.
            let _ = std::fs::remove_file(path);
        }
        written
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        std::fs::rename(from, to).map_err(|e| FsError::io("rename", from, e))
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                // Filesystems without RENAME_NOREPLACE: link() refuses an existing target.
                std::fs::hard_link(from, to).map_err(|e| FsError::io("link", from, e))?;
                std::fs::remove_file(from).map_err(|e| FsError::io("remove", from, e))
            }
            Err(e) => Err(FsError::io("rename", from, e.into())),
        }
    }

    fn remove_file(&self, path: &Path) -> Result<(), FsError> {
        std::fs::remove_file(path).map_err(|e| FsError::io("remove", path, e))
    }

    fn sync_dir(&self, path: &Path) -> Result<(), FsError> {
        let dir = std::fs::File::open(path).map_err(|e| FsError::io("open directory", path, e))?;
        dir.sync_all().map_err(|e| FsError::io("fsync directory", path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<Entry>, FsError> {
        let rd = std::fs::read_dir(dir).map_err(|e| FsError::io("list", dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| FsError::io("list", dir, e))?;
            let kind = match ent.file_type() {
                Ok(t) => FileKind::from(t),
                // Vanished between readdir and stat: another process moved it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::io("stat", &ent.path(), e)),
            };
            out.push(Entry { name: ent.file_name(), kind });
        }
        Ok(out)
    }

    fn stat(&self, path: &Path) -> Result<Option<Meta>, FsError> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => Ok(Some(Meta {
                kind: md.file_type().into(),
                len: md.len(),
                mtime: mtime_of(&md),
                ino: md.ino(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::io("stat", path, e)),
        }
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        // O_NOFOLLOW refuses a symlink; O_NONBLOCK keeps a FIFO from blocking the open.
        let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags as i32)
            .open(path)
            .map_err(|e| open_error("open", path, e))?;
        let md = file.metadata().map_err(|e| FsError::io("stat", path, e))?;
        let kind = FileKind::from(md.file_type());
        if kind != FileKind::File {
            return Err(FsError::NotRegular { path: path.to_path_buf(), kind });
        }
        if md.len() > limit {
            return Err(FsError::TooLarge { path: path.to_path_buf(), size: md.len(), limit });
        }
        let mut buf = Vec::with_capacity(md.len() as usize);
        // A writer may still be appending: never read past the limit whatever the file grows to.
        file.take(limit + 1).read_to_end(&mut buf).map_err(|e| FsError::io("read", path, e))?;
        if buf.len() as u64 > limit {
            return Err(FsError::TooLarge { path: path.to_path_buf(), size: buf.len() as u64, limit });
        }
        Ok(buf)
    }

    fn touch(&self, path: &Path) -> Result<(), FsError> {
        use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT, utimensat};
        let times = Timestamps {
            last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
            last_modification: Timespec { tv_sec: 0, tv_nsec: UTIME_NOW },
        };
        utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("touch", path, e.into()))
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| FsError::io("open for append", path, e))?;
        Ok(Box::new(RealAppend { file, path: path.to_path_buf() }))
    }

    fn lock_exclusive(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
        // O_CREAT without O_TRUNC, and O_NOFOLLOW: a symlink at `path` fails the open (ELOOP)
        // before its target is created, opened or truncated. O_NONBLOCK: a FIFO does not hang it.
        let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(flags as i32)
            .open(path)
            .map_err(|e| open_error("open lock file", path, e))?;
        let md = file.metadata().map_err(|e| FsError::io("stat", path, e))?;
        let kind = FileKind::from(md.file_type());
        if kind != FileKind::File {
            return Err(FsError::NotRegular { path: path.to_path_buf(), kind });
        }
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(RealLock { file, path: path.to_path_buf() }))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(FsError::io("lock", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_refuses_symlinks_fifos_and_oversized_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(RealFs.read(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(RealFs.read(&f, 9), Err(FsError::TooLarge { size: 10, limit: 9, .. })));
        let l = d.path().join("l");
        std::os::unix::fs::symlink("/etc/passwd", &l).unwrap();
        assert!(matches!(RealFs.read(&l, 1 << 20), Err(FsError::NotRegular { kind: FileKind::Symlink, .. })));
        assert!(matches!(
            RealFs.read(d.path(), 1 << 20),
            Err(FsError::NotRegular { kind: FileKind::Dir, .. })
        ));
        let fifo = d.path().join("p");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
        assert!(matches!(RealFs.read(&fifo, 1 << 20), Err(FsError::NotRegular { kind: FileKind::Fifo, .. })));
        assert_eq!(RealFs.stat(&l).unwrap().unwrap().kind, FileKind::Symlink);
        assert_eq!(RealFs.stat(&d.path().join("none")).unwrap(), None);
    }

    #[test]
    fn rename_noreplace_refuses_to_clobber() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        RealFs.create_new(&a, b"a", true).unwrap();
        RealFs.create_new(&b, b"b", false).unwrap();
        assert!(RealFs.create_new(&b, b"again", false).unwrap_err().is_already_exists());
        assert!(RealFs.rename_noreplace(&a, &b).unwrap_err().is_already_exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        RealFs.remove_file(&b).unwrap();
        RealFs.rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert!(RealFs.rename_noreplace(&a, &b).unwrap_err().is_not_found());
    }

    #[test]
    fn touch_moves_mtime_forward_and_append_accumulates() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        RealFs.create_new(&f, b"", false).unwrap();
        let old = std::fs::File::options().write(true).open(&f).unwrap();
        old.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000)).unwrap();
        let before = RealFs.stat(&f).unwrap().unwrap().mtime;
        RealFs.touch(&f).unwrap();
        assert!(RealFs.stat(&f).unwrap().unwrap().mtime > before);
        let mut j = RealFs.open_append(&d.path().join("j")).unwrap();
        j.append(b"one\n").unwrap();
        j.append(b"two\n").unwrap();
        j.sync().unwrap();
        assert_eq!(std::fs::read(d.path().join("j")).unwrap(), b"one\ntwo\n");
        RealFs.sync_dir(d.path()).unwrap();
    }

    #[test]
    fn a_lock_refuses_a_second_holder_until_dropped_and_keeps_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("broker.lock");
        std::fs::write(&p, b"pid=1 host=old\n").unwrap();
        let mut first = RealFs.lock_exclusive(&p).unwrap().expect("free");
        assert_eq!(std::fs::read(&p).unwrap(), b"pid=1 host=old\n", "taking the lock truncates nothing");
        assert!(RealFs.lock_exclusive(&p).unwrap().is_none(), "a second lock is refused");
        first.set_contents(b"me\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"me\n");
        drop(first);
        let again = RealFs.lock_exclusive(&p).unwrap();
        assert!(again.is_some(), "dropping the guard released the lock");
        // Missing files are created; what the lock is on stays a regular file.
        let fresh = d.path().join("fresh.lock");
        assert!(RealFs.lock_exclusive(&fresh).unwrap().is_some());
        assert_eq!(RealFs.stat(&fresh).unwrap().unwrap().kind, FileKind::File);
    }

    #[test]
    fn a_lock_never_goes_through_a_symlink_or_into_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let link = d.path().join("broker.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            RealFs.lock_exclusive(&link),
            Err(FsError::NotRegular { kind: FileKind::Symlink, .. })
        ));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "the target is not truncated");
        assert!(RealFs.lock_exclusive(&target).unwrap().is_some(), "nor left locked");
        // A dangling link does not create its target either.
        let dangling = d.path().join("dangling.lock");
        std::os::unix::fs::symlink(d.path().join("created?"), &dangling).unwrap();
        assert!(RealFs.lock_exclusive(&dangling).is_err());
        assert!(!d.path().join("created?").exists());
        let fifo = d.path().join("fifo.lock");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
        assert!(matches!(
            RealFs.lock_exclusive(&fifo),
            Err(FsError::NotRegular { kind: FileKind::Fifo, .. })
        ));
    }
}

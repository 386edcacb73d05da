//! The filesystem seam. [`Fs`] is every operation mailroom performs on its tree. Two real
//! implementations:
//!
//! - [`RootFs`] (`root.rs`), the one the product uses on a runtime root: it holds the root's
//!   directory and resolves every path *beneath* it, without following a symbolic link anywhere
//!   on the way (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a walk of the path
//!   one directory at a time where the kernel lacks `openat2`; `beneath.rs`), then performs the
//!   operation with the `*at` system call on the directory it resolved. A path outside the root,
//!   or one that could only be reached through a link, is an error naming it.
//! - [`RealFs`] (`real.rs`), plain absolute paths: intermediate symlinks are followed. For what
//!   is not a runtime root (the benchmark's scratch trees, tests).
//!
//! Both never follow a symlink in the last component, never read a FIFO or a file over the size
//! limit, publish with `RENAME_NOREPLACE`, and create every file exclusively
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`), so a file planted at the name the next creation will use
//! (a hard link to a file outside the root, say) is never opened, appended to or truncated. The
//! one write into an existing file, [`Fs::overwrite`], checks on the open file that it is a
//! regular file of this process's user with no other name before writing a byte.
//!
//! Besides files and directories, the seam covers the one lock mailroom takes
//! ([`Fs::lock_dir`], the broker lock): on the real filesystem a `flock` on a directory, which the
//! kernel drops when its holder dies, so a test on another `Fs` can model that holder dying too.

mod beneath;
mod counts;
mod real;
mod root;
mod unix;

#[cfg(test)]
mod tests;

pub use counts::FsCounts;
pub use real::RealFs;
pub use root::{Resolve, RootFs};

use protocol::Timestamp;
use std::ffi::OsString;
use std::fmt;
use std::io;
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

impl From<rustix::fs::FileType> for FileKind {
    fn from(t: rustix::fs::FileType) -> Self {
        use rustix::fs::FileType as T;
        match t {
            T::RegularFile => Self::File,
            T::Directory => Self::Dir,
            T::Symlink => Self::Symlink,
            T::Fifo => Self::Fifo,
            T::Socket => Self::Socket,
            _ => Self::Other,
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

/// What `statvfs` reports about the filesystem a path is on: what is left, and of how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer can still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Inodes (files) an unprivileged writer can still create; `total_inodes` is 0 on a
    /// filesystem without a fixed inode table (btrfs, some FUSE mounts).
    pub free_inodes: u64,
    pub total_inodes: u64,
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
    /// A contained filesystem was given a path that does not lie beneath its root.
    #[error("{}: not beneath the root {}: refused", path.display(), root.display())]
    Outside { path: PathBuf, root: PathBuf },
    /// A component of the path that must be a directory beneath the root is not one (a symbolic
    /// link, a file) and is never followed. `kind` is `None` when it changed while being looked at.
    #[error("{}: {}: not followed (paths are resolved beneath the root, never through a link)",
        path.display(), NotADir(at, *kind))]
    NotBeneath { path: PathBuf, at: PathBuf, kind: Option<FileKind> },
    /// The file an open handle writes to is no longer the file at the handle's path (it, or a
    /// directory above it, was replaced or moved away): nothing more is written through it.
    #[error("{}: no longer the file this handle writes to (replaced or moved): refused to write", path.display())]
    Replaced { path: PathBuf },
    /// A file offered to [`Fs::overwrite`] that may not be written in place: `why` says what
    /// about it (another name, another owner). Nothing was written.
    #[error("{}: not rewritten in place: {why}", path.display())]
    NotReusable { path: PathBuf, why: &'static str },
}

/// The process out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`): no file's fault.
fn exhausted(code: i32) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOMEM].iter().any(|e| e.raw_os_error() == code)
}

/// `at`, and what it is instead of a directory.
struct NotADir<'a>(&'a Path, Option<FileKind>);

impl fmt::Display for NotADir<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(kind) => write!(f, "{} is a {kind}, not a directory", self.0.display()),
            None => write!(f, "{} changed while it was resolved", self.0.display()),
        }
    }
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

    /// An error of the file itself, met reading it once open (`read`, or `fstat` of its
    /// descriptor): the system said so with an errno (`EIO` from a bad block, say), and the
    /// process is not out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`). An error
    /// opening it is not counted: the lookup of its name reads its directory, and a directory
    /// failing is not one file's fault. A reader of clients' input refuses such a file with the
    /// error rather than stopping.
    pub fn is_the_file_s(&self) -> bool {
        matches!(self, Self::Io { op: "read" | "fstat", source, .. }
            if source.raw_os_error().is_some_and(|code| !exhausted(code)))
    }

    /// An error opening the file at its path that the system gave an errno for, other than the
    /// process out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`) and what the seam
    /// names otherwise (not found, not a regular file, a containment refusal). It may be the
    /// file's (an inode that cannot be read) or its directory's: a caller that can still list
    /// the directory knows it is the file's.
    pub fn is_open_failure(&self) -> bool {
        !self.is_not_found()
            && matches!(self, Self::Io { op: "open", source, .. }
                if source.raw_os_error().is_some_and(|code| !exhausted(code)))
    }

    /// A directory where a file was expected (`EISDIR`, or refused as one by its kind).
    pub fn is_directory(&self) -> bool {
        match self {
            Self::NotRegular { kind, .. } => *kind == FileKind::Dir,
            Self::Io { source, .. } => source.raw_os_error() == Some(rustix::io::Errno::ISDIR.raw_os_error()),
            _ => false,
        }
    }

    /// Out of space or quota: the broker refuses new work but keeps running.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(code) if code == libc_enospc() || code == libc_edquot()))
    }

    /// Refused because it would have left the root: a path outside it, a link or a file where a
    /// directory belongs, a handle whose file was moved. Never a fault of the disk.
    pub fn is_containment(&self) -> bool {
        matches!(self, Self::Outside { .. } | Self::NotBeneath { .. } | Self::Replaced { .. })
    }

    /// The path that stood in the way of a containment refusal: the component that is not a
    /// directory, or the file that was replaced.
    pub fn culprit(&self) -> Option<&Path> {
        match self {
            Self::NotBeneath { at, .. } => Some(at),
            Self::Replaced { path } | Self::Outside { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}

/// A file created for appending (the journal).
pub trait AppendFile: Send {
    /// Appends `bytes`, all or nothing. Fails with [`FsError::Replaced`], writing nothing, when
    /// the file at the handle's path is no longer the one it writes to: a journal segment whose
    /// directory was swapped for another (or moved out of the root) is never written again.
    fn append(&mut self, bytes: &[u8]) -> Result<(), FsError>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), FsError>;
    /// Makes sure at least `bytes` bytes follow what was appended, written as zeros (the
    /// reserve). Appends that land in the reserve change neither the file's size nor its
    /// allocation, so the fsync after them writes data alone, no metadata: on ext4, no journal
    /// commit. A reader of such a file drops the zeros at its end (the journal's JSON never
    /// holds a NUL byte). Nothing to do when the reserve is that large already.
    fn reserve(&mut self, bytes: u64) -> Result<(), FsError>;
    /// Cuts the file back to what was appended, dropping the reserve. Not fsynced: a reserve a
    /// power loss brings back still reads as zeros.
    fn trim(&mut self) -> Result<(), FsError>;
}

/// An exclusive lock taken by [`Fs::lock_dir`], released when dropped (or when the process
/// holding it dies).
pub trait LockGuard: Send {}

/// Every operation mailroom performs on its tree.
pub trait Fs: Send + Sync {
    /// Creates the directory and any missing parents. The entries it creates are durable when it
    /// returns (the parent of each new directory is fsynced): a file later made durable inside
    /// it must not vanish with a directory that a power loss forgot.
    fn create_dir_all(&self, path: &Path) -> Result<(), FsError>;
    /// Creates `path`, which must not exist (not even as a symlink), with `bytes`; fsyncs the file
    /// when `sync`. Never opens what is already there.
    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError>;
    /// [`Fs::create_new`], readable and writable by its owner only (mode 0600): for a secret
    /// such as the HTTP token. The default is `create_new` itself, for filesystems that model no
    /// permissions (`SimFs`); [`RealFs`] and [`RootFs`] override it.
    fn create_private(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        self.create_new(path, bytes, sync)
    }
    /// Rewrites the existing regular file `path` in place: `bytes` from its start, the file cut to
    /// their length, fsynced when `sync`. For a file the caller took out of everyone's way to
    /// write it again instead of creating a new one (the broker's spare task files: creating a
    /// file costs an inode's allocation, and removing one its release). Never follows a link,
    /// never blocks on a FIFO, and refuses with [`FsError::NotReusable`], writing nothing, a file
    /// that has another name (a hard link: writing it would change a file elsewhere), another
    /// owner, or a mode that makes it executable, writable by others or set-id.
    fn overwrite(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError>;
    /// Renames, replacing any file at `to` (the name is replaced, never what it points to).
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
    /// Whether anything is at `path` (what [`Fs::stat`] would find), for a caller that needs no
    /// more: a filesystem that can answers in fewer calls.
    fn exists(&self, path: &Path) -> Result<bool, FsError> {
        self.stat(path).map(|m| m.is_some())
    }
    /// Reads a regular file of at most `limit` bytes without following a symlink.
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError>;
    /// Sets the file's modification time to now (a heartbeat), without following a symlink.
    fn touch(&self, path: &Path) -> Result<(), FsError>;
    /// [`Fs::touch`], then [`Fs::read`]: what an agent does to a file it just claimed. A
    /// filesystem that can does both through one open.
    fn touch_read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        self.touch(path)?;
        self.read(path, limit)
    }
    /// Creates `path`, which must not exist, for appending: `O_CREAT | O_EXCL | O_NOFOLLOW`, so a
    /// file already there (a hard link to someone else's file, a symlink) is never appended to.
    /// The new entry is durable once the caller fsyncs the directory.
    fn create_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError>;
    /// Reads at most `len` bytes of a regular file from `offset` (fewer at its end), without
    /// following a symlink: a large file read a piece at a time (an archived journal segment).
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError>;
    /// Sets the file's modification time (durable with the file's next fsync), without
    /// following a symlink: a compressed copy keeps the time of what it replaces.
    fn set_mtime(&self, path: &Path, mtime: Timestamp) -> Result<(), FsError>;
    /// Free and total space and inodes of the filesystem `path` is on; `None` when unknown.
    fn space(&self, path: &Path) -> Result<Option<Space>, FsError>;
    /// Takes an exclusive lock on the directory `dir` without waiting; `Ok(None)` when someone
    /// else holds it. Nothing is created, opened for writing or truncated: a lock on a directory
    /// cannot be dodged by removing or replacing a file, and cannot damage one.
    fn lock_dir(&self, dir: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError>;

    /// Binds a Unix stream socket at `path`, with the permission bits and the group of the
    /// directory `like` (whoever may write there may connect; owner-only when the group cannot
    /// be given), first removing a socket (only a socket: any other file there is an error)
    /// that a broker which stopped left at that name. `Ok(None)` where this filesystem has no
    /// sockets (a simulated one). Call it only while holding the broker lock: the name is the
    /// lock holder's.
    fn bind_socket(
        &self,
        path: &Path,
        like: &Path,
    ) -> Result<Option<std::os::unix::net::UnixListener>, FsError> {
        let _ = (path, like);
        Ok(None)
    }
    /// Does this filesystem resolve every path beneath a root, never through a link, at the
    /// moment of use ([`RootFs`])? Then no operation can leave the tree whatever a check made
    /// before it found, and such a check ([`crate::Layout::contain`]) needs one lookup of the
    /// deepest directory instead of one per component.
    fn resolves_beneath(&self) -> bool {
        false
    }
    /// What this filesystem has done since it was opened (creations, renames, removals, fsyncs,
    /// bytes written and appended, reads, listings), counted by the implementation as it works;
    /// `None` for one that does not count ([`RealFs`], `SimFs`). [`RootFs`] counts: one set per
    /// root opened, shared by its clones.
    fn counts(&self) -> Option<FsCounts> {
        None
    }
}

//! Resolution beneath a root: the directory that holds a path's last component, found from the
//! root's directory descriptor without ever following a symbolic link and without ever leaving
//! the root, afresh for every operation (a directory descriptor is never kept from one operation
//! to the next, so a directory moved out of the root is out of reach at once).
//!
//! Two ways, the same result:
//!
//! - `openat2(root, rel, …, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: the
//!   kernel walks the whole path in one call and refuses a link (`ELOOP`), a non-directory
//!   (`ENOTDIR`) or an escape (`EXDEV`) anywhere on it.
//! - where the kernel has no `openat2` (before Linux 5.6, or a seccomp policy that refuses it
//!   with `ENOSYS` or `EPERM`): a walk, one `openat(dir, component, O_PATH | O_DIRECTORY |
//!   O_NOFOLLOW)` per component, each relative to the directory the previous one opened.
//!
//! On a refusal the path is walked again with `fstatat(AT_SYMLINK_NOFOLLOW)` to name the
//! component that stood in the way and what it is ([`FsError::NotBeneath`]).

use super::FsError;
use super::unix::{errno, kind_of};
use crate::fs::FileKind;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, openat, openat2, statat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How paths are resolved beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` when the kernel has it, else the walk.
    Auto,
    /// Always the walk, one `openat(O_NOFOLLOW | O_DIRECTORY)` per component (the fallback,
    /// forced: for tests, and for comparing the two).
    Walk,
}

const RESOLVE: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// A directory resolved for one operation: the root itself, or one beneath it.
pub(crate) enum Dir<'a> {
    Root(BorrowedFd<'a>),
    Under(OwnedFd),
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Root(fd) => *fd,
            Self::Under(fd) => fd.as_fd(),
        }
    }
}

/// The root, and how paths are resolved beneath it.
pub(crate) struct Beneath {
    root_path: PathBuf,
    root: OwnedFd,
    openat2: AtomicBool,
}

impl Beneath {
    /// Opens the root directory (following links in `root` itself: the root is the operator's
    /// choice, everything beneath it is not).
    pub fn open(root: &Path, resolve: Resolve) -> Result<Self, FsError> {
        let fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FsError::io("open root", root, errno(e)))?;
        let openat2 = resolve == Resolve::Auto && probe(&fd);
        Ok(Self { root_path: root.to_path_buf(), root: fd, openat2: AtomicBool::new(openat2) })
    }

    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    pub fn uses_openat2(&self) -> bool {
        self.openat2.load(Ordering::Relaxed)
    }

    /// `path` relative to the root (empty for the root itself); [`FsError::Outside`] when it is
    /// not beneath it, lexically (a `..` anywhere counts as outside). On every operation, so on
    /// bytes: `Path`'s component parser was a tenth of the containment's cost.
    pub fn relative<'p>(&self, path: &'p Path) -> Result<&'p Path, FsError> {
        let outside = || FsError::Outside { path: path.to_path_buf(), root: self.root_path.clone() };
        let (p, root) = (path.as_os_str().as_bytes(), self.root_path.as_os_str().as_bytes());
        let rel = match p.strip_prefix(root) {
            Some(rest) if rest.is_empty() || rest[0] == b'/' || root.ends_with(b"/") => rest,
            // Spelled otherwise (`./runtime` against `runtime`, say): compare by components.
            _ => {
                let rel = path.strip_prefix(&self.root_path).map_err(|_| outside())?;
                return if rel.components().all(|c| matches!(c, Component::Normal(_))) {
                    Ok(rel)
                } else {
                    Err(outside())
                };
            }
        };
        let start = rel.iter().position(|&b| b != b'/').unwrap_or(rel.len());
        let rel = &rel[start..];
        if rel.split(|&b| b == b'/').any(|c| c == b"." || c == b"..") {
            return Err(outside());
        }
        Ok(Path::new(OsStr::from_bytes(rel)))
    }

    /// The directory holding `path`'s last component, and that component's name.
    pub fn parent<'p>(&self, path: &'p Path) -> Result<(Dir<'_>, &'p OsStr), FsError> {
        let (parent, name) = split_last(self.relative(path)?);
        if name.is_empty() {
            return Err(FsError::io("resolve", path, std::io::Error::other("the root itself has no name")));
        }
        Ok((self.dir(path, parent, false)?, name))
    }

    /// Opens the directory `rel` (relative to the root; the root itself when empty), for
    /// reading its entries or fsyncing it when `read`, else as a handle for `*at` calls only
    /// (`O_PATH`). `path` is what errors name.
    pub fn dir(&self, path: &Path, rel: &Path, read: bool) -> Result<Dir<'_>, FsError> {
        if rel.as_os_str().is_empty() {
            return Ok(Dir::Root(self.root.as_fd()));
        }
        let last = OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | if read { OFlags::RDONLY } else { OFlags::PATH };
        if self.uses_openat2() {
            match openat2(&self.root, rel, last, Mode::empty(), RESOLVE) {
                Ok(fd) => return Ok(Dir::Under(fd)),
                // A kernel (or a seccomp policy) without openat2 after all: walk from now on.
                Err(Errno::NOSYS) => self.openat2.store(false, Ordering::Relaxed),
                Err(e) => return Err(self.refused(path, rel, e)),
            }
        }
        let mut cur = Dir::Root(self.root.as_fd());
        let mut comps = rel.components().peekable();
        while let Some(c) = comps.next() {
            let flags = if comps.peek().is_none() { last } else { walk_flags() };
            match openat(&cur, c.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => cur = Dir::Under(fd),
                Err(e) => return Err(self.refused(path, rel, e)),
            }
        }
        Ok(cur)
    }

    /// Opens `path`'s last component with `flags` (which must hold `O_NOFOLLOW`) beneath the
    /// root: with `openat2` one call from the root for the whole path (no directory opened
    /// apart), else the walk to its parent and an `openat` there. `Err(Ok(errno))` is the open's
    /// own failure (`ELOOP`: the last component is a link; `ENOENT`: it is missing), `Err(Err)`
    /// a refusal or failure of the way to it.
    pub fn open_file(
        &self,
        path: &Path,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, Result<Errno, FsError>> {
        let rel = self.relative(path).map_err(Err)?;
        let (parent, name) = split_last(rel);
        if name.is_empty() {
            return Err(Ok(Errno::ISDIR));
        }
        if self.uses_openat2() {
            match openat2(&self.root, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS) => self.openat2.store(false, Ordering::Relaxed),
                // The way, or the last component? Resolving the way alone says (rare: errors only).
                Err(e) => return Err(self.dir(path, parent, false).map(|_| e)),
            }
        }
        let dir = self.dir(path, parent, false).map_err(Err)?;
        openat(&dir, name, flags | OFlags::CLOEXEC, mode).map_err(Ok)
    }

    /// What is at `path`, in one `openat2` of the whole path: a handle on it (`O_PATH |
    /// O_NOFOLLOW`: nothing read, a FIFO not opened, a link as itself) or `Some(None)` when
    /// nothing is there (a missing directory on the way included, as for `stat`). `None` when
    /// that one call cannot say (no `openat2`, a link or a refusal on the way): the caller walks
    /// the usual way, which names what stood in it.
    pub fn probe(&self, path: &Path) -> Option<Option<OwnedFd>> {
        if !self.uses_openat2() {
            return None;
        }
        let rel = self.relative(path).ok().filter(|r| !r.as_os_str().is_empty())?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat2(&self.root, rel, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => Some(Some(fd)),
            Err(Errno::NOENT) => Some(None),
            Err(_) => None,
        }
    }

    /// The error for a failed resolution: what stood in the way, or the I/O error as it is.
    fn refused(&self, path: &Path, rel: &Path, e: Errno) -> FsError {
        if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::XDEV) {
            self.culprit(path, rel)
        } else {
            FsError::io("resolve", path, errno(e))
        }
    }

    /// Walks `rel` again with `fstatat` to name the first component that is not a directory.
    fn culprit(&self, path: &Path, rel: &Path) -> FsError {
        let mut at = self.root_path.clone();
        let mut cur = Dir::Root(self.root.as_fd());
        for c in rel.components() {
            at.push(c);
            let changed = |at: PathBuf| FsError::NotBeneath { path: path.to_path_buf(), at, kind: None };
            match statat(&cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if kind_of(&st) == FileKind::Dir => {}
                Ok(st) => {
                    return FsError::NotBeneath { path: path.to_path_buf(), at, kind: Some(kind_of(&st)) };
                }
                Err(_) => return changed(at),
            }
            match openat(&cur, c.as_os_str(), walk_flags(), Mode::empty()) {
                Ok(fd) => cur = Dir::Under(fd),
                Err(_) => return changed(at),
            }
        }
        FsError::NotBeneath { path: path.to_path_buf(), at: path.to_path_buf(), kind: None }
    }
}

/// A relative path of plain names split into its directory and its last name (empty for the
/// root itself), on bytes.
fn split_last(rel: &Path) -> (&Path, &OsStr) {
    let b = rel.as_os_str().as_bytes();
    let end = b.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
    let b = &b[..end];
    match b.iter().rposition(|&c| c == b'/') {
        Some(i) => (Path::new(OsStr::from_bytes(&b[..i])), OsStr::from_bytes(&b[i + 1..])),
        None => (Path::new(""), OsStr::from_bytes(b)),
    }
}

fn walk_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Does `openat2` with the flags used here work on this kernel, under this process's policy?
fn probe(root: &OwnedFd) -> bool {
    openat2(root, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), RESOLVE).is_ok()
}

//! [`RealFs`]: the [`Fs`] of plain paths on the real filesystem. Intermediate components are
//! resolved by the kernel as usual (a symlinked directory is followed); the last component is
//! never followed. The product uses [`RootFs`](super::RootFs) on runtime roots; `RealFs` is for
//! trees that are not one (the benchmark's scratch directories, tests).

use super::unix::{self, Appender, errno, id_of, open_error};
use super::{AppendFile, Entry, FileKind, Fs, FsError, LockGuard, Meta, Space};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

fn mtime_of(md: &std::fs::Metadata) -> protocol::Timestamp {
    protocol::Timestamp::from_micros(
        md.mtime().saturating_mul(1_000_000).saturating_add(md.mtime_nsec() / 1000),
    )
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
        create_with_mode(path, bytes, sync, 0o644)
    }

    fn create_private(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        create_with_mode(path, bytes, sync, 0o600)
    }

    fn overwrite(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), FsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits();
        let file = std::fs::OpenOptions::new().write(true).custom_flags(flags as i32).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(code) => {
                    open_error("open", path, rustix::io::Errno::from_raw_os_error(code), || kind_at(path))
                }
                None => FsError::io("open", path, e),
            },
        )?;
        unix::rewrite(file.into(), path, bytes, sync)
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
        use rustix::fs::{CWD, Mode, OFlags, openat};
        // O_NOFOLLOW refuses a symlink; O_NONBLOCK keeps a FIFO from blocking the open.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = openat(CWD, path, flags, Mode::empty())
            .map_err(|e| open_error("open", path, e, || kind_at(path)))?;
        unix::read_limited(fd, path, limit)
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

    fn create_append(&self, path: &Path) -> Result<Box<dyn AppendFile>, FsError> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(CWD, path, flags, Mode::from_bits_truncate(0o644))
            .map_err(|e| FsError::io("create for append", path, errno(e)))?;
        let locate = Box::new(|p: &Path| match rustix::fs::lstat(p) {
            Ok(st) => Ok(Some(id_of(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::io("stat", p, errno(e))),
        });
        Ok(Box::new(Appender::new(fd, path, locate, None)?))
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = openat(CWD, path, flags, Mode::empty())
            .map_err(|e| open_error("open", path, e, || kind_at(path)))?;
        unix::read_piece(fd, path, offset, len)
    }

    fn set_mtime(&self, path: &Path, mtime: protocol::Timestamp) -> Result<(), FsError> {
        use rustix::fs::{AtFlags, CWD, utimensat};
        utimensat(CWD, path, &unix::mtime_times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("set mtime", path, errno(e)))
    }

    fn space(&self, path: &Path) -> Result<Option<Space>, FsError> {
        let s = rustix::fs::statvfs(path).map_err(|e| FsError::io("statvfs", path, errno(e)))?;
        Ok(Some(unix::space_of(&s)))
    }

    fn bind_socket(
        &self,
        path: &Path,
        like: &Path,
    ) -> Result<Option<std::os::unix::net::UnixListener>, FsError> {
        let st = std::fs::symlink_metadata(like).map_err(|e| FsError::io("stat", like, e))?;
        let parent = path.parent().unwrap_or(Path::new("."));
        let dir = std::fs::File::open(parent).map_err(|e| FsError::io("open", parent, e))?;
        let name = path.file_name().unwrap_or_default();
        unix::clear_socket(&dir, name, path)?;
        let listener =
            std::os::unix::net::UnixListener::bind(path).map_err(|e| FsError::io("bind socket", path, e))?;
        if let Err(e) = unix::own_socket(&dir, name, path, st.mode() & 0o777, st.gid()) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Some(listener))
    }

    fn lock_dir(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>, FsError> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        // A plain path: a link in it (the root given as a link, say) is followed, as for every
        // other operation of RealFs. RootFs locks what it holds, never through a link.
        let fd = openat(CWD, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FsError::io("open directory", path, errno(e)))?;
        unix::lock(fd, path)
    }
}

/// Creates a new file with `mode` (less the umask), never opening one already there, writes it
/// whole, fsyncs it when `sync`.
fn create_with_mode(path: &Path, bytes: &[u8], sync: bool, mode: u32) -> Result<(), FsError> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat(CWD, path, flags, Mode::from_bits_truncate(mode))
        .map_err(|e| FsError::io("create", path, errno(e)))?;
    let written = unix::fill(fd, path, bytes, sync);
    if written.is_err() {
        // Leave no half-written file behind under a name someone may read.
        let _ = std::fs::remove_file(path);
    }
    written
}

/// What is at `path`, not following a link (for [`open_error`]).
fn kind_at(path: &Path) -> Option<FileKind> {
    std::fs::symlink_metadata(path).ok().map(|m| m.file_type().into())
}

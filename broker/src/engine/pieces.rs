//! A large file replaced a piece at a time. The ready board of a deep queue is over a hundred
//! megabytes; written at once it held the broker's loop (claims, messages, the HTTP surface)
//! for as long as the kernel took to take the bytes. A [`Piecewise`] write puts the new content
//! into a temporary beside the file, at most one piece per pass, and renames it over the file
//! once all of it is there: readers see the old file whole, then the new one whole, as with any
//! atomic replacement. A crash leaves only the temporary, which the next start removes.

use runtime_layout::{AppendFile, Fs, FsError, NameSource};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file larger than this is written in pieces; a smaller one at once.
pub(crate) const LARGE: usize = 4 << 20;

/// Bytes written per pass: about a millisecond of the loop. (4 MB pieces drained a queue of
/// 100,000 at 0.83× the rate of one of 1,000, 1 MB pieces at 0.93×: medians of 3, interleaved.)
pub(crate) const PIECE: usize = 1 << 20;

/// A replacement under way.
pub(crate) struct Piecewise {
    path: PathBuf,
    tmp: PathBuf,
    file: Box<dyn AppendFile>,
    bytes: Vec<u8>,
    written: usize,
    /// Time spent writing pieces so far.
    spent: Duration,
}

/// The temporary's name prefix for `path` (the broker's own, in a directory only it writes).
fn tmp_prefix(path: &Path) -> String {
    format!(".{}.tmp-", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

impl Piecewise {
    /// Starts replacing `path` with `bytes` (nothing is written yet).
    pub fn start(fs: &dyn Fs, path: &Path, bytes: Vec<u8>, names: &NameSource) -> Result<Self, FsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!("{}{}", tmp_prefix(path), names.tmp_suffix()));
        let file = match fs.create_append(&tmp) {
            // Left by a crashed process with the same pid: the name is this writer's, reclaim it.
            Err(e) if e.is_already_exists() => {
                fs.remove_file(&tmp)?;
                fs.create_append(&tmp)?
            }
            other => other?,
        };
        Ok(Self { path: path.to_path_buf(), tmp, file, bytes, written: 0, spent: Duration::ZERO })
    }

    /// Writes the next piece. `Ok(true)` once every byte is in the temporary.
    pub fn advance(&mut self) -> Result<bool, FsError> {
        let started = Instant::now();
        let end = (self.written + PIECE).min(self.bytes.len());
        if end > self.written {
            self.file.append(&self.bytes[self.written..end])?;
            self.written = end;
        }
        self.spent += started.elapsed();
        Ok(self.written == self.bytes.len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Time spent writing pieces so far.
    pub fn spent(&self) -> Duration {
        self.spent
    }

    /// Renames the complete temporary over the file (fsynced first when `sync`). Gives the
    /// buffer back for the next write.
    pub fn finish(mut self, fs: &dyn Fs, sync: bool) -> Result<Vec<u8>, FsError> {
        while !self.advance()? {}
        let done =
            if sync { self.file.sync() } else { Ok(()) }.and_then(|()| fs.rename(&self.tmp, &self.path));
        if let Err(e) = done {
            let _ = fs.remove_file(&self.tmp);
            return Err(e);
        }
        Ok(std::mem::take(&mut self.bytes))
    }

    /// Gives the replacement up: the temporary is removed and the file left as it is.
    pub fn abandon(mut self, fs: &dyn Fs) -> Vec<u8> {
        if let Err(e) = fs.remove_file(&self.tmp) {
            tracing::warn!(file = %self.tmp.display(), error = %e, "cannot remove an abandoned temporary");
        }
        std::mem::take(&mut self.bytes)
    }
}

/// Removes the temporaries a crash left beside the files of `paths` (the broker holds the
/// root's lock, so no other writer's are there). One that cannot be removed is left, with a
/// warning: it is litter, not a reason to stop.
pub(crate) fn sweep(fs: &dyn Fs, dir: &Path, paths: &[PathBuf]) {
    let prefixes: Vec<String> = paths.iter().map(|p| tmp_prefix(p)).collect();
    let entries = match fs.list(dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot look for temporaries a crash left");
            return;
        }
    };
    for e in entries {
        let Some(name) = e.name_str() else { continue };
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            match fs.remove_file(&dir.join(name)) {
                Ok(()) => tracing::info!(file = name, "removed a board's temporary left by a crash"),
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(file = name, error = %e, "cannot remove a temporary a crash left"),
            }
        }
    }
}

//! Writing a large file of the journal directory (a snapshot, a tomb file) without holding it in
//! memory: serialised straight into a hidden temporary (`.<name>.tmp-<suffix>`) a mebibyte at a
//! time, fsynced when durability asks for it, then renamed over its name, so a reader sees the
//! old file or the whole new one. The caller fsyncs the directory.

use runtime_layout::{AppendFile, Fs, FsError, NameSource};
use std::path::Path;

/// Writes `name` in `dir` from what `write` streams; returns its size in bytes. On failure the
/// temporary is removed and the old file, if any, is left as it was.
pub(crate) fn write_streamed(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    names: &NameSource,
    sync: bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> serde_json::Result<()>,
) -> Result<u64, FsError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", names.tmp_suffix()));
    if fs.stat(&tmp)?.is_some() {
        fs.remove_file(&tmp)?;
    }
    let mut out =
        Chunked { file: fs.create_append(&tmp)?, buf: Vec::with_capacity(CHUNK), failed: None, total: 0 };
    let written = write(&mut out);
    out.flush_chunk();
    let flushed = match (out.failed.take(), written) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(FsError::io("write", &tmp, std::io::Error::other(e))),
        (None, Ok(())) if sync => out.file.sync(),
        (None, Ok(())) => Ok(()),
    };
    if let Err(e) = flushed.and_then(|()| fs.rename(&tmp, &dir.join(name))) {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    Ok(out.total)
}

/// A file is appended to its temporary this many bytes at a time.
const CHUNK: usize = 1 << 20;

/// An `io::Write` over an [`AppendFile`] that appends a chunk at a time and keeps the first
/// error (serde_json sees only an `io::Error`).
struct Chunked {
    file: Box<dyn AppendFile>,
    buf: Vec<u8>,
    failed: Option<FsError>,
    /// Bytes appended so far.
    total: u64,
}

impl Chunked {
    fn flush_chunk(&mut self) {
        if self.failed.is_none()
            && !self.buf.is_empty()
            && let Err(e) = self.file.append(&self.buf)
        {
            self.failed = Some(e);
        }
        self.total += self.buf.len() as u64;
        self.buf.clear();
    }
}

impl std::io::Write for Chunked {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_some() {
            return Err(std::io::Error::other("write failed"));
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.flush_chunk();
            if self.failed.is_some() {
                return Err(std::io::Error::other("write failed"));
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

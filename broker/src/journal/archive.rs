//! The archive (`journal/archive/`): segments a snapshot covers, kept for `mailroom trace` only
//! (replay never reads them). Here: what the archive holds ([`list`]), which segments the
//! retention rules remove ([`beyond_retention`]), and compression ([`Compressor`]), which turns
//! `segment-N.jsonl` into `segment-N.jsonl.zst` a bounded piece at a time.
//!
//! Compression never risks the history it compresses. The compressed copy is written under a
//! hidden temporary name (`.segment-N.jsonl.zst.tmp`), one zstd frame per piece (concatenated
//! frames decompress to the concatenated pieces, so any piece size gives the same bytes), given
//! the segment's mtime and fsynced; only then is it renamed to its name, the directory fsynced,
//! and the plain segment removed. A crash at any point leaves a readable archive: before the
//! rename, the plain segment and a temporary (removed at the next start); after it, both forms
//! of one segment, which readers take once (the plain one) and the next pass finishes by removing
//! the plain one.

use super::{MAX_SEGMENT_BYTES, parse_numbered};
use crate::config::KeepFor;
use protocol::Timestamp;
use runtime_layout::{AppendFile, FileKind, Fs, FsError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name of a compressed archived segment.
pub(crate) const COMPRESSED_SUFFIX: &str = ".jsonl.zst";
/// Input compressed into one zstd frame.
pub const PIECE_BYTES: u64 = 1 << 20;
/// zstd's default level: about 10x on journal JSON, hundreds of MB/s.
const LEVEL: i32 = 3;

/// One archived segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The sequence number of its first record (its name).
    pub first: u64,
    pub path: PathBuf,
    pub bytes: u64,
    /// The time of its last record (the plain segment's mtime, kept by compression).
    pub mtime: Timestamp,
    pub compressed: bool,
}

/// What `archive/` holds: its segments by first sequence number (both forms of one segment, when
/// a crash left both, one after the other: plain first), and temporaries a crash left.
#[derive(Debug, Default)]
pub struct ArchiveListing {
    pub segments: Vec<Archived>,
    pub temporaries: Vec<PathBuf>,
}

/// `segment-N.jsonl` or `segment-N.jsonl.zst`: N and whether it is compressed.
pub fn segment_number(name: &str) -> Option<(u64, bool)> {
    if let Some(n) = parse_numbered(name, "segment-", COMPRESSED_SUFFIX) {
        return Some((n, true));
    }
    parse_numbered(name, "segment-", ".jsonl").map(|n| (n, false))
}

/// The compressed name of the segment named `plain`.
pub fn compressed_name(plain: &str) -> String {
    format!("{plain}.zst")
}

fn temporary_name(plain: &str) -> String {
    format!(".{plain}.zst.tmp")
}

/// Lists `archive/` (an empty listing when it does not exist). Non-regular files are skipped.
pub fn list(fs: &dyn Fs, archive: &Path) -> Result<ArchiveListing, FsError> {
    let mut out = ArchiveListing::default();
    if fs.stat(archive)?.is_none() {
        return Ok(out);
    }
    for e in fs.list(archive)? {
        let Some(name) = e.name_str() else { continue };
        if e.kind != FileKind::File {
            continue;
        }
        let path = archive.join(name);
        if name.starts_with(".segment-") && name.ends_with(".zst.tmp") {
            out.temporaries.push(path);
            continue;
        }
        let Some((first, compressed)) = segment_number(name) else { continue };
        // Gone between the listing and the stat: an operator removed it.
        let Some(m) = fs.stat(&path)? else { continue };
        out.segments.push(Archived { first, path, bytes: m.len, mtime: m.mtime, compressed });
    }
    out.segments.sort_by_key(|s| (s.first, s.compressed));
    Ok(out)
}

/// The retention limits of the archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub keep: KeepFor,
    pub keep_bytes: u64,
    /// Plain segments wait for compression: they count toward the byte limit once compressed.
    pub compressing: bool,
}

/// The segments (indexes into `segs`, sorted by first sequence number, one form each) that the
/// limits remove, oldest first: those older than `keep`, then the oldest until the rest fits in
/// `keep_bytes`.
pub fn beyond_retention(segs: &[Archived], limits: Limits, now: Timestamp) -> Vec<usize> {
    let counted = |s: &Archived| s.compressed || !limits.compressing;
    let mut total: u64 = segs.iter().filter(|s| counted(s)).map(|s| s.bytes).sum();
    let mut out = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let age = (now.as_micros() - s.mtime.as_micros()) / 1_000_000;
        if limits.keep.expired(age) {
            out.push(i);
            total -= if counted(s) { s.bytes } else { 0 };
        } else if total > limits.keep_bytes && counted(s) {
            out.push(i);
            total -= s.bytes;
        }
    }
    out
}

/// The decompressed records of a compressed segment, at most [`MAX_SEGMENT_BYTES`].
pub(crate) fn decompress(compressed: &[u8], path: &Path) -> Result<Vec<u8>, FsError> {
    let bad = |e: std::io::Error| FsError::io("decompress", path, e);
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(bad)?;
    let mut out = Vec::new();
    decoder.take(MAX_SEGMENT_BYTES + 1).read_to_end(&mut out).map_err(bad)?;
    if out.len() as u64 > MAX_SEGMENT_BYTES {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            size: out.len() as u64,
            limit: MAX_SEGMENT_BYTES,
        });
    }
    Ok(out)
}

/// A segment being compressed, a piece per [`Compressor::step`].
pub struct Compressor {
    src: PathBuf,
    tmp: PathBuf,
    dest: PathBuf,
    out: Box<dyn AppendFile>,
    offset: u64,
    len: u64,
    mtime: Timestamp,
    sync: bool,
    /// Compressed bytes written so far.
    pub written: u64,
}

/// What a step of a [`Compressor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More pieces to go.
    More,
    /// The compressed segment replaced the plain one.
    Done { plain: u64, compressed: u64 },
}

impl Compressor {
    /// Starts compressing the plain archived segment `src` (a leftover temporary of an earlier
    /// attempt is replaced). `sync`: fsync the copy and the directory (any durability but `never`).
    pub fn start(fs: &dyn Fs, src: &Path, sync: bool) -> Result<Self, FsError> {
        let dir = src.parent().unwrap_or(Path::new("."));
        let plain = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(temporary_name(&plain));
        let dest = dir.join(compressed_name(&plain));
        let Some(m) = fs.stat(src)? else {
            return Err(FsError::io("compress", src, std::io::ErrorKind::NotFound.into()));
        };
        if fs.stat(&tmp)?.is_some() {
            fs.remove_file(&tmp)?;
        }
        let len = super::read::bytes_before_zeros(fs, src, m.len)?;
        let out = fs.create_append(&tmp)?;
        Ok(Self { src: src.to_path_buf(), tmp, dest, out, offset: 0, len, mtime: m.mtime, sync, written: 0 })
    }

    /// The plain segment being compressed.
    pub fn source(&self) -> &Path {
        &self.src
    }

    /// Compresses up to `budget` bytes of the segment (at least one piece); once all of it is
    /// written, makes the copy durable, renames it into place and removes the plain segment.
    pub fn step(&mut self, fs: &dyn Fs, budget: u64) -> Result<Progress, FsError> {
        let mut done = 0;
        while self.offset < self.len && (done == 0 || done < budget) {
            let piece = fs.read_at(&self.src, self.offset, PIECE_BYTES.min(self.len - self.offset))?;
            if piece.is_empty() {
                // The file is shorter than it was: someone truncated an archived segment.
                return Err(FsError::io("compress", &self.src, std::io::ErrorKind::UnexpectedEof.into()));
            }

            let frame =
                zstd::bulk::compress(&piece, LEVEL).map_err(|e| FsError::io("compress", &self.src, e))?;
            self.out.append(&frame)?;
            self.written += frame.len() as u64;
            self.offset += piece.len() as u64;
            done += piece.len() as u64;
        }
        if self.offset < self.len {
            return Ok(Progress::More);
        }
        // The copy keeps the segment's time (retention by age reads it), and is durable before
        // its name appears: a name that survives a power loss always has all its bytes.
        fs.set_mtime(&self.tmp, self.mtime)?;
        if self.sync {
            self.out.sync()?;
        }
        match fs.rename_noreplace(&self.tmp, &self.dest) {
            Ok(()) => {}
            // Compressed before a crash that kept the plain segment too: that copy is complete.
            Err(e) if e.is_already_exists() => fs.remove_file(&self.tmp)?,
            Err(e) => return Err(e),
        }
        let dir = self.dest.parent().unwrap_or(Path::new("."));
        if self.sync {
            fs.sync_dir(dir)?;
        }
        // Not fsynced: a plain segment a power loss brings back is removed again (see `finish`).
        match fs.remove_file(&self.src) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        Ok(Progress::Done { plain: self.len, compressed: self.written })
    }

    /// Gives up (an error, or the segment is being removed): the temporary goes, the plain
    /// segment stays.
    pub fn abandon(self, fs: &dyn Fs) {
        drop(self.out);
        if let Err(e) = fs.remove_file(&self.tmp)
            && !e.is_not_found()
        {
            tracing::warn!(file = %self.tmp.display(), error = %e, "could not remove a temporary");
        }
    }
}

/// Snapshot and tomb file temporaries in the journal directory (`.snapshot-N.json.tmp-*`,
/// `.tombs-N.jsonl.tmp-*`): a compaction writes and renames its own within one call, so any
/// found outside one was left by a crash.
pub fn snapshot_temporaries(fs: &dyn Fs, journal: &Path) -> Result<Vec<PathBuf>, FsError> {
    if fs.stat(journal)?.is_none() {
        return Ok(Vec::new());
    }
    Ok(fs
        .list(journal)?
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .filter_map(|e| {
            e.name_str()
                .filter(|n| (n.starts_with(".snapshot-") || n.starts_with(".tombs-")) && n.contains(".tmp-"))
                .map(|n| journal.join(n))
        })
        .collect())
}

/// Removes what a crash left in `archive/`: temporaries, and the plain form of any segment that
/// also has its (complete: renamed only once durable) compressed form. Returns what it removed.
pub fn finish_interrupted(fs: &dyn Fs, listing: &ArchiveListing) -> Result<Vec<PathBuf>, FsError> {
    let mut removed = Vec::new();
    for t in &listing.temporaries {
        fs.remove_file(t)?;
        removed.push(t.clone());
    }
    for w in listing.segments.windows(2) {
        if w[0].first == w[1].first && !w[0].compressed && w[1].compressed {
            fs.remove_file(&w[0].path)?;
            removed.push(w[0].path.clone());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::sim::{Crash, SimFs};

    fn seg(first: u64, bytes: u64, age_secs: i64, compressed: bool) -> Archived {
        Archived {
            first,
            path: PathBuf::from(format!("/a/segment-{first}")),
            bytes,
            mtime: Timestamp::from_micros(1_000_000_000 - age_secs * 1_000_000),
            compressed,
        }
    }

    #[test]
    fn retention_removes_the_old_then_the_oldest_beyond_the_byte_limit() {
        let now = Timestamp::from_micros(1_000_000_000);
        let segs =
            [seg(1, 10, 900, true), seg(5, 10, 500, true), seg(9, 10, 100, true), seg(13, 10, 10, true)];
        let lim = |keep, keep_bytes| Limits { keep, keep_bytes, compressing: true };
        assert_eq!(beyond_retention(&segs, lim(KeepFor::Secs(600), 100), now), vec![0]);
        assert_eq!(beyond_retention(&segs, lim(KeepFor::Forever, 25), now), vec![0, 1]);
        assert_eq!(beyond_retention(&segs, lim(KeepFor::Secs(200), 15), now), vec![0, 1, 2]);
        assert!(beyond_retention(&segs, lim(KeepFor::Forever, 40), now).is_empty());
        // A plain segment waiting for compression does not push compressed ones out.
        let waiting = [seg(1, 10, 50, true), seg(5, 1000, 20, false)];
        assert!(beyond_retention(&waiting, lim(KeepFor::Forever, 15), now).is_empty());
        let off = Limits { keep: KeepFor::Forever, keep_bytes: 15, compressing: false };
        assert_eq!(beyond_retention(&waiting, off, now), vec![0, 1]);
    }

    fn history(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("{{\"seq\":{i},\"op\":\"stray\",\"pad\":\"{}\"}}\n", "x".repeat(i % 50)).into_bytes()
            })
            .collect()
    }

    #[test]
    fn a_segment_compressed_piece_by_piece_decompresses_to_the_same_bytes_and_keeps_its_time() {
        let fs = SimFs::new();
        let dir = Path::new("/j/archive");
        fs.create_dir_all(dir).unwrap();
        let plain = history(40_000);
        assert!(plain.len() as u64 > 2 * PIECE_BYTES, "several pieces");
        let src = dir.join("segment-0000000000000001.jsonl");
        fs.create_new(&src, &plain, true).unwrap();
        let t = Timestamp::from_micros(1_234_567);
        fs.set_mtime(&src, t).unwrap();
        let mut c = Compressor::start(&fs, &src, true).unwrap();
        let mut steps = 1;
        while c.step(&fs, PIECE_BYTES).unwrap() == Progress::More {
            steps += 1;
        }
        assert!(steps >= 3, "one piece per step: {steps}");
        let l = list(&fs, dir).unwrap();
        assert_eq!(l.segments.len(), 1);
        assert!(l.temporaries.is_empty());
        let s = &l.segments[0];
        assert!(s.compressed && s.first == 1 && s.mtime == t, "{s:?}");
        assert!(s.bytes * 5 < plain.len() as u64, "compressed {} of {}", s.bytes, plain.len());
        let back = decompress(&fs.read(&s.path, MAX_SEGMENT_BYTES).unwrap(), &s.path).unwrap();
        assert_eq!(back, plain);
    }

    /// A segment a crash left with its reserve of zeros is compressed without them.
    #[test]
    fn a_segment_s_reserve_of_zeros_is_not_compressed() {
        let fs = SimFs::new();
        let dir = Path::new("/j/archive");
        fs.create_dir_all(dir).unwrap();
        let records = history(20_000);
        let mut plain = records.clone();
        plain.resize(records.len() + 3 * PIECE_BYTES as usize, 0);
        let src = dir.join("segment-0000000000000001.jsonl");
        fs.create_new(&src, &plain, true).unwrap();
        let mut c = Compressor::start(&fs, &src, true).unwrap();
        let done = loop {
            if let Progress::Done { plain, .. } = c.step(&fs, PIECE_BYTES).unwrap() {
                break plain;
            }
        };
        assert_eq!(done, records.len() as u64);
        let s = &list(&fs, dir).unwrap().segments[0];
        assert_eq!(decompress(&fs.read(&s.path, MAX_SEGMENT_BYTES).unwrap(), &s.path).unwrap(), records);
    }

    #[test]
    fn a_crash_anywhere_in_compression_leaves_one_readable_copy_and_a_restart_tidies_up() {
        let plain = history(30_000);
        let src = Path::new("/j/archive/segment-0000000000000007.jsonl");
        // Count the operations of a clean run, then crash after each of them.
        let run = |fs: &SimFs| -> Result<(), FsError> {
            let mut c = Compressor::start(fs, src, true)?;
            while c.step(fs, PIECE_BYTES)? == Progress::More {}
            Ok(())
        };
        let setup = || {
            let fs = SimFs::new();
            fs.create_dir_all(src.parent().unwrap()).unwrap();
            fs.create_new(src, &plain, true).unwrap();
            fs.sync_dir(src.parent().unwrap()).unwrap();
            fs
        };
        let fs = setup();
        let base = fs.ops();
        run(&fs).unwrap();
        let total = fs.ops() - base;
        for k in 0..total {
            for mode in [Crash::PowerLoss, Crash::Process, Crash::Scrambled { seed: k }] {
                let fs = setup();
                fs.crash_after(k);
                assert!(run(&fs).is_err(), "crashed after {k}");
                fs.restart(mode);
                let dir = src.parent().unwrap();
                let l = list(&fs, dir).unwrap();
                let readable = l.segments.first().expect("a copy survives");
                let bytes = fs.read(&readable.path, MAX_SEGMENT_BYTES).unwrap();
                let bytes =
                    if readable.compressed { decompress(&bytes, &readable.path).unwrap() } else { bytes };
                assert_eq!(bytes, plain, "after {k} ops ({mode:?}) the first copy is whole");
                finish_interrupted(&fs, &l).unwrap();
                let l = list(&fs, dir).unwrap();
                assert!(l.temporaries.is_empty() && l.segments.len() == 1, "{mode:?} after {k}: {l:?}");
                // Finishing the job again works whatever the crash left.
                if !l.segments[0].compressed {
                    run(&fs).unwrap();
                }
                let l = list(&fs, dir).unwrap();
                assert!(l.segments.len() == 1 && l.segments[0].compressed);
            }
        }
    }
}

//! Reading the journal back: the newest snapshot and every record after it (replay at start),
//! every segment, archived or not, compressed or not (`trace`), and a range of records (an outbox
//! sink catching up).
//!
//! A segment's records end at its first zeros (the reserve its next records were to go into,
//! see `RESERVE`, or a stretch of a commit a power loss cut: see [`read_segment`]).
//!
//! Reading never bricks a root. A final line that does not parse is a torn append (a crash in
//! the middle of a write): ignored and reported. Any other line that cannot be read as a record
//! — damaged bytes, a record this version cannot decode, a sequence number out of order — is
//! *set aside*: skipped, reported with its segment, line and reason, and the rest is read. A
//! snapshot that cannot be read is set aside too, and the state is rebuilt from every segment.
//! What was set aside is the operator's to look at (the broker logs it at every start); the
//! broker serves what it could read.

use super::archive::{self, segment_number};
use super::delta::Resolver;
use super::tombfiles::{read_into, tomb_number};
use super::{JournalError, MAX_SEGMENT_BYTES, Record, Snapshot, parse_numbered, segment_name};
use runtime_layout::{FileKind, Fs, FsError};
use std::path::{Path, PathBuf};

/// What reading went past instead of stopping.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notes {
    /// Torn tails: a final line a crash cut short.
    pub torn: Vec<String>,
    /// Lines (and snapshots) that could not be read, each with where and why.
    pub set_aside: Vec<String>,
}

/// What a journal directory holds, ready for replay.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    /// Records after the snapshot, in order.
    pub records: Vec<Record>,
    pub notes: Notes,
}

/// Reads the newest snapshot and every later record.
pub fn load(fs: &dyn Fs, dir: &Path) -> Result<Loaded, JournalError> {
    let mut out = Loaded::default();
    let mut snapshot = None;
    let replayed = replay(fs, dir, |s| snapshot = s, |rec| out.records.push(rec))?;
    out.snapshot = snapshot;
    out.notes = replayed.notes;
    Ok(out)
}

/// What [`replay`] went through.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Records after the snapshot.
    pub records: usize,
    pub notes: Notes,
}

/// The snapshots, live segments and tomb files of a journal directory, each by number.
struct Numbered {
    snaps: Vec<u64>,
    segs: Vec<u64>,
    tombs: Vec<u64>,
}

fn numbered(fs: &dyn Fs, dir: &Path) -> Result<Numbered, FsError> {
    let mut snaps = Vec::new();
    let mut segs = Vec::new();
    let mut tombs = Vec::new();
    for e in fs.list(dir)? {
        let Some(name) = e.name_str() else { continue };
        if e.kind == FileKind::Dir {
            continue; // `archive/`: the compacted segments, read by `trace`, not by replay
        }
        if e.kind != FileKind::File {
            // The broker writes only regular files here: a symbolic link (or anything else)
            // under a journal name was put there by someone else and is never followed.
            tracing::warn!(file = %dir.join(name).display(), kind = %e.kind, "ignored: not a regular file");
            continue;
        }
        if let Some(n) = parse_numbered(name, "snapshot-", ".json") {
            snaps.push(n);
        } else if let Some(n) = parse_numbered(name, "segment-", ".jsonl") {
            segs.push(n);
        } else if let Some(n) = tomb_number(name) {
            tombs.push(n);
        }
    }
    snaps.sort_unstable();
    segs.sort_unstable();
    tombs.sort_unstable();
    Ok(Numbered { snaps, segs, tombs })
}

/// Like [`load`], but hands over the newest snapshot (`on_snapshot`, called once, first) and then
/// every later record in order (`on_record`), one at a time: a restart holds one record in memory,
/// not every record since the snapshot (up to `compact_after_records` full tasks).
pub fn replay(
    fs: &dyn Fs,
    dir: &Path,
    on_snapshot: impl FnOnce(Option<Snapshot>),
    mut on_record: impl FnMut(Record),
) -> Result<Replayed, JournalError> {
    let mut out = Replayed::default();
    if fs.stat(dir)?.is_none() {
        on_snapshot(None);
        return Ok(out);
    }
    let Numbered { snaps, segs, tombs: tomb_files } = numbered(fs, dir)?;
    let mut after = 0;
    let mut segments: Vec<PathBuf> = segs.iter().map(|n| dir.join(segment_name(*n))).collect();
    let mut snapshot = None;
    if let Some(&latest) = snaps.last() {
        let path = dir.join(format!("snapshot-{latest:016}.json"));
        // The file's bytes are dropped before the state is built from the snapshot: the three
        // at once were the restart's peak memory.
        let read = fs.read(&path, MAX_SEGMENT_BYTES)?;
        let mut parsed = serde_json::from_slice::<Snapshot>(&read).map_err(|e| e.to_string());
        drop(read);
        if let Ok(snap) = parsed.as_mut()
            && snap.tombs_next > 0
            && let Err(why) = read_into(fs, dir, &tomb_files, snap, &mut out.notes)?
        {
            parsed = Err(why);
        }
        match parsed {
            Ok(snap) => {
                after = snap.seq;
                snapshot = Some(snap);
            }
            Err(e) => {
                // Rebuild from every segment there is, the archived ones included.
                out.notes.set_aside.push(format!(
                    "{}: cannot be read ({e}); the state is rebuilt from every segment",
                    path.display()
                ));
                segments = all_segments(fs, dir)?;
            }
        }
    }
    on_snapshot(snapshot);
    let mut last = after;
    for path in segments {
        read_segment(
            fs,
            &path,
            |rec, line, notes| {
                if rec.seq <= after {
                    return;
                }
                if rec.seq <= last {
                    notes.set_aside.push(format!(
                        "{}: line {line}: record {} comes after record {last}: sequence numbers must increase",
                        path.display(),
                        rec.seq
                    ));
                    return;
                }
                last = rec.seq;
                out.records += 1;
                on_record(rec);
            },
            &mut out.notes,
        )?;
    }
    Ok(out)
}

/// The bytes of one segment as JSON Lines, decompressed if it is compressed (`.jsonl.zst`),
/// without the zeros at its end: the reserve appends were to go into ([`super::RESERVE`]; JSON
/// never holds a NUL byte). Zeros before the last record end the records
/// ([`read_segment`] says why).
///
/// A plain archived segment compressed since it was listed is read in its compressed form:
/// compression puts the compressed copy in place before it removes the plain one.
pub fn segment_bytes(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>, FsError> {
    let mut bytes = whole_segment(fs, path)?;
    bytes.truncate(records_end(&bytes));
    Ok(bytes)
}

/// Where the zeros at the end of `bytes` begin.
fn records_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// The length of the plain segment at `path`, `len` bytes long, without the zeros at its end,
/// read a piece at a time from the end (a mebibyte or so for a live segment, however long its
/// records are).
pub fn bytes_before_zeros(fs: &dyn Fs, path: &Path, len: u64) -> Result<u64, FsError> {
    const PIECE: u64 = 64 << 10;
    let mut end = len;
    while end > 0 {
        let from = end.saturating_sub(PIECE);
        let piece = fs.read_at(path, from, end - from)?;
        let kept = records_end(&piece) as u64;
        if kept > 0 || piece.is_empty() {
            return Ok(from + kept);
        }
        end = from;
    }
    Ok(0)
}

fn whole_segment(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>, FsError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let compressed = segment_number(name).is_some_and(|(_, c)| c);
    match fs.read(path, MAX_SEGMENT_BYTES) {
        Ok(bytes) if compressed => archive::decompress(&bytes, path),
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is_not_found() && !compressed && segment_number(name).is_some() => {
            let other = path.with_file_name(archive::compressed_name(name));
            match fs.read(&other, MAX_SEGMENT_BYTES) {
                Ok(bytes) => archive::decompress(&bytes, &other),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Calls `f` for every record of one segment, compressed or not, with its line number. A final
/// line that does not parse is a torn append (noted in `torn`); any other line that does not
/// parse is set aside.
///
/// A line holding a NUL byte ends the segment: zeros are the reserve the records are written
/// into ([`super::RESERVE`]), so zeros before the reserve's own are a stretch of a commit that
/// never reached the disk. The disk keeps a commit's pages in any order when a power loss cuts
/// it, so lines after such a stretch are the rest of that same commit, never acknowledged, and
/// replaying them without what came before them would be wrong (a message's consumption without
/// the report it carried): they are not read, and a note says how many bytes were skipped.
pub fn read_segment(
    fs: &dyn Fs,
    path: &Path,
    f: impl FnMut(Record, usize, &mut Notes),
    notes: &mut Notes,
) -> Result<(), JournalError> {
    read_segment_where(fs, path, |_| true, f, notes)
}

/// [`read_segment`] for a reader that wants few of the records (`trace`): a line `keep` refuses
/// is passed over without being parsed, and a compressed segment is decompressed as it is read,
/// never whole in memory (an archived segment is hundreds of megabytes of records). `keep` must
/// take every line of a task whose records it wants: a record about a task may be a change to
/// that task's last record in the segment, resolved only from it.
pub fn read_segment_where(
    fs: &dyn Fs,
    path: &Path,
    keep: impl FnMut(&[u8]) -> bool,
    f: impl FnMut(Record, usize, &mut Notes),
    notes: &mut Notes,
) -> Result<(), JournalError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // A plain segment is read whole (`segment_bytes`, which also finds one compressed since it
    // was listed): the live one, bounded by compaction, and an archived one only until the
    // retention compresses it (a pass or so after the compaction that archived it).
    match segment_number(name) {
        Some((_, true)) => {
            let bytes = fs.read(path, MAX_SEGMENT_BYTES)?;
            let bad = |e: std::io::Error| FsError::io("decompress", path, e);
            let decoder = zstd::stream::read::Decoder::with_buffer(&bytes[..]).map_err(bad)?;
            // No more than a plain segment may hold, however well the bytes compress.
            let lines =
                std::io::BufReader::with_capacity(1 << 20, std::io::Read::take(decoder, MAX_SEGMENT_BYTES));
            read_lines(lines, path, keep, f, notes).map_err(|e| JournalError::Fs(bad(e)))
        }
        _ => {
            let bytes = segment_bytes(fs, path)?;
            read_lines(&bytes[..], path, keep, f, notes)
                .map_err(|e| JournalError::Fs(FsError::io("read", path, e)))
        }
    }
}

/// The records of one segment's lines (see [`read_segment`]).
fn read_lines(
    mut lines: impl std::io::BufRead,
    path: &Path,
    mut keep: impl FnMut(&[u8]) -> bool,
    mut f: impl FnMut(Record, usize, &mut Notes),
    notes: &mut Notes,
) -> std::io::Result<()> {
    // Unreadable lines seen since the last good one: set aside once a good line follows them,
    // a torn tail if none does.
    let mut bad: Vec<(usize, String)> = Vec::new();
    // Records about a task the segment already holds carry deltas: resolved here, so every
    // reader sees whole records.
    let mut resolver = Resolver::default();
    let mut line = Vec::new();
    let mut i = 0;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        i += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        if line.contains(&0) {
            let mut skipped = line.iter().filter(|&&b| b != 0).count() as u64;
            let mut rest = Vec::new();
            while lines.read_until(b'\n', &mut rest)? > 0 {
                skipped += rest.iter().filter(|&&b| b != 0 && b != b'\n').count() as u64;
                rest.clear();
            }
            // Zeros alone to the end are the reserve itself, not a cut commit.
            if skipped > 0 {
                bad.push((
                    i,
                    format!(
                        "zeros where records were being written (a commit a power loss cut short): \
                         the rest of the segment ({skipped} bytes) is not read"
                    ),
                ));
            }
            break;
        }
        if !keep(&line) {
            continue;
        }
        match resolver.read(&line) {
            Ok(rec) => {
                for (n, why) in bad.drain(..) {
                    notes.set_aside.push(format!("{}: line {n}: {why}", path.display()));
                }
                f(rec, i, notes);
            }
            Err(e) => bad.push((i, e)),
        }
    }
    for (n, why) in bad {
        notes.torn.push(format!("{}: line {n}: {why}", path.display()));
    }
    Ok(())
}

/// Every segment, archived (plain or compressed) or not, in sequence order, each once (for
/// `trace`). A crash can leave one segment in two places or two forms: the plain archived copy is
/// read first, then the live one, then the compressed one (each is whole; see `archive`).
pub fn all_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut segs: Vec<(u64, u8, PathBuf)> = Vec::new();
    for (d, archived) in [(dir.join("archive"), true), (dir.to_path_buf(), false)] {
        if fs.stat(&d)?.is_none() {
            continue;
        }
        for e in fs.list(&d)? {
            if e.kind != FileKind::File {
                continue;
            }
            let Some((n, compressed)) = e.name_str().and_then(segment_number) else { continue };
            let rank = match (archived, compressed) {
                (true, false) => 0,
                (false, false) => 1,
                (true, true) => 2,
                // The broker never compresses a live segment: not its file.
                (false, true) => continue,
            };
            segs.push((n, rank, d.join(e.name)));
        }
    }
    segs.sort();
    segs.dedup_by_key(|(n, _, _)| *n);
    Ok(segs.into_iter().map(|(_, _, p)| p).collect())
}

/// The committed records numbered `from..to`, in order, at most `limit` of them, from every
/// segment (archived ones too) that can hold them. Segments are read whole: catching up is for
/// a sink that fell behind, not for every record. A segment that moves into `archive/` while it
/// is read is looked for again.
pub fn read_range(
    fs: &dyn Fs,
    dir: &Path,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<Record>, JournalError> {
    let mut tries = 0;
    loop {
        match read_range_once(fs, dir, from, to, limit) {
            Err(JournalError::Fs(e)) if e.is_not_found() && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

fn read_range_once(
    fs: &dyn Fs,
    dir: &Path,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<Record>, JournalError> {
    let segs = all_segments(fs, dir)?;
    let firsts: Vec<u64> = segs
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).and_then(segment_number))
        .map(|n| n.map_or(0, |(n, _)| n))
        .collect();
    let mut out = Vec::new();
    // A line set aside at start is set aside here too: the feed reports the gap it leaves.
    let mut notes = Notes::default();
    for (i, path) in segs.iter().enumerate() {
        let next_first = firsts.get(i + 1).copied().unwrap_or(u64::MAX);
        if next_first <= from || firsts[i] >= to {
            continue;
        }
        read_segment(
            fs,
            path,
            |r, _, _| {
                if r.seq >= from && r.seq < to && out.len() < limit {
                    out.push(r);
                }
            },
            &mut notes,
        )?;
        if out.len() >= limit {
            break;
        }
    }
    out.sort_by_key(|r| r.seq);
    out.dedup_by_key(|r| r.seq);
    Ok(out)
}

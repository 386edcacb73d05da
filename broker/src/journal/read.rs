//! Reading the journal back: the newest snapshot and every record after it (replay at start),
//! every segment archived or not (`trace`), and the rule that tells a torn tail (a crash in the
//! middle of an append: ignored and reported) from corruption (an error that stops the start).

use super::{JournalError, MAX_SEGMENT_BYTES, Record, Snapshot, parse_numbered, segment_name};
use runtime_layout::{FileKind, Fs, FsError};
use std::path::{Path, PathBuf};

/// What a journal directory holds, ready for replay.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    /// Records after the snapshot, in order.
    pub records: Vec<Record>,
    /// Torn tails that were ignored (a crash in the middle of an append).
    pub torn: Vec<String>,
}

/// Reads the newest snapshot and every later record.
pub fn load(fs: &dyn Fs, dir: &Path) -> Result<Loaded, JournalError> {
    let mut out = Loaded::default();
    let mut snapshot = None;
    let replayed = replay(fs, dir, |s| snapshot = s, |rec| out.records.push(rec))?;
    out.snapshot = snapshot;
    out.torn = replayed.torn;
    Ok(out)
}

/// What [`replay`] went through.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Records after the snapshot.
    pub records: usize,
    /// Torn tails that were ignored (a crash in the middle of an append).
    pub torn: Vec<String>,
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
    let entries = fs.list(dir)?;
    let mut snaps: Vec<u64> = Vec::new();
    let mut segs: Vec<u64> = Vec::new();
    for e in &entries {
        let Some(name) = e.name_str() else { continue };
        if e.kind == FileKind::Dir && name == "archive" {
            continue; // the compacted segments, read by `trace`, not by replay
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
        }
    }
    snaps.sort_unstable();
    let mut after = 0;
    if let Some(&latest) = snaps.last() {
        let path = dir.join(format!("snapshot-{latest:016}.json"));
        // The file's bytes are dropped before the state is built from the snapshot: the three
        // at once were the restart's peak memory.
        let snap: Snapshot = serde_json::from_slice(&fs.read(&path, MAX_SEGMENT_BYTES)?).map_err(|e| {
            JournalError::Corrupt { path: path.clone(), line: e.line(), message: e.to_string() }
        })?;
        after = snap.seq;
        on_snapshot(Some(snap));
    } else {
        on_snapshot(None);
    }
    segs.sort_unstable();
    let mut last = after;
    let mut out_of_order: Option<String> = None;
    for first in segs {
        let path = dir.join(segment_name(first));
        read_segment(
            fs,
            &path,
            |rec| {
                if rec.seq <= after || out_of_order.is_some() {
                    return;
                }
                if rec.seq <= last {
                    out_of_order = Some(format!(
                        "record {} comes after record {last}: sequence numbers must increase",
                        rec.seq
                    ));
                    return;
                }
                last = rec.seq;
                out.records += 1;
                on_record(rec);
            },
            &mut out.torn,
        )?;
        if let Some(message) = out_of_order {
            return Err(JournalError::Corrupt { path: dir.to_path_buf(), line: 0, message });
        }
    }
    Ok(out)
}

/// Calls `f` for every record of one segment. A final line that is incomplete or unparseable is a
/// torn append and is reported in `torn`; an unparseable line followed by valid ones is corruption.
pub fn read_segment(
    fs: &dyn Fs,
    path: &Path,
    mut f: impl FnMut(Record),
    torn: &mut Vec<String>,
) -> Result<(), JournalError> {
    let bytes = fs.read(path, MAX_SEGMENT_BYTES)?;
    let mut bad: Option<(usize, String)> = None;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(rec) => {
                if let Some((line, message)) = bad.take() {
                    return Err(JournalError::Corrupt { path: path.to_path_buf(), line, message });
                }
                f(rec);
            }
            Err(e) => {
                if bad.is_none() {
                    bad = Some((i + 1, e.to_string()));
                }
            }
        }
    }
    if let Some((line, message)) = bad {
        torn.push(format!("{}: line {line}: {message}", path.display()));
    }
    Ok(())
}

/// Every segment, archived ones first, in sequence order (for `trace`).
pub fn all_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for d in [dir.join("archive"), dir.to_path_buf()] {
        if fs.stat(&d)?.is_none() {
            continue;
        }
        for e in fs.list(&d)? {
            if e.kind != FileKind::File {
                continue;
            }
            if let Some(n) = e.name_str().and_then(|n| parse_numbered(n, "segment-", ".jsonl")) {
                segs.push((n, d.join(e.name)));
            }
        }
    }
    segs.sort();
    // A power loss during compaction can leave a segment both archived and not: read it once.
    segs.dedup_by_key(|(n, _)| *n);
    Ok(segs.into_iter().map(|(_, p)| p).collect())
}

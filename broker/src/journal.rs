//! The journal: an append-only log of every transition the broker accepted or refused, as JSON
//! Lines in `broker/journal/segment-<first seq>.jsonl`, plus periodic snapshots
//! (`snapshot-<seq>.json`) so that a restart replays only what came after the last snapshot.
//!
//! A record is appended (and, unless durability is `never`, fsynced) before any file it
//! describes is moved, so the journal is always ahead of the tree and recovery can redo effects.
//! Segments made obsolete by a snapshot move to `journal/archive/`, where `mailroom trace` still
//! reads them.

use protocol::{Task, Timestamp};
use runtime_layout::{AppendFile, Durability, FileKind, Fs, FsError, NameSource, write_atomic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a task's file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Place {
    /// No file: waiting for dependencies, `not_before`, a backoff, or an operator (BLOCKED).
    Backlog,
    /// Waiting in `<dir>/new/<name>`, where `dir` is `queues/<pool>` or `mailboxes/<agent>`.
    Queued { dir: String, name: String },
    /// Claimed: in `mailboxes/<agent>/cur/<name>` since the broker first saw it at `seen_at`.
    Held {
        agent: String,
        name: String,
        seen_at: Timestamp,
        /// The maildir it was claimed from (`queues/<pool>` or `mailboxes/<agent>`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        from: String,
    },
    /// Finished (COMPLETED, FAILED or CANCELLED): no file.
    Done,
}

impl Place {
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Queued { name, .. } | Self::Held { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The file's path relative to `agent_comms/`, for operators.
    pub fn rel_path(&self) -> Option<String> {
        match self {
            Self::Queued { dir, name } => Some(format!("{dir}/new/{name}")),
            Self::Held { agent, name, .. } => Some(format!("mailboxes/{agent}/cur/{name}")),
            _ => None,
        }
    }
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Submit,
    /// A task migrated from a legacy tree, in the state it had there.
    Import,
    /// An identical resubmission of an existing task: accepted as a no-op.
    Duplicate,
    Dispatch,
    Claim,
    Complete,
    Fail,
    Release,
    /// The lease ran out; the task was taken back.
    Expire,
    /// The claimed file disappeared from the holder's `cur/`; the task was taken back.
    Vanish,
    Cancel,
    Retry,
    Block,
    /// A message or file that could not be accepted.
    Reject,
    /// Mail delivered from one agent to another.
    Mail,
    /// A message file was consumed: moved to `inbox/cur` or to quarantine.
    Consume,
    /// A stray file (stale claim, unknown dispatch name) was moved to quarantine.
    Stray,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: Timestamp,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The whole task after the operation (replay sets it verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
    /// The inbox message (file name) that caused this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A path relative to `agent_comms/` (where a file went).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Record {
    pub fn new(op: Op, ts: Timestamp) -> Self {
        Self {
            seq: 0,
            ts,
            op,
            task_id: None,
            task: None,
            place: None,
            msg: None,
            actor: None,
            reason: None,
            path: None,
            hash: None,
            detail: None,
        }
    }
}

/// A terminal task kept only as an id, its status and its submission hash (for duplicate checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tomb {
    pub id: String,
    pub status: protocol::Status,
    pub hash: u64,
}

/// A live task as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapTask {
    pub task: Task,
    pub place: Place,
    pub hash: u64,
}

/// Everything needed to restart without replaying older segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub seq: u64,
    pub live: Vec<SnapTask>,
    pub tombs: Vec<Tomb>,
    /// The most recent finished tasks, oldest first (the completed board).
    pub recent_done: Vec<Task>,
    /// Inbox messages consumed but possibly not yet moved: name → where they go.
    pub consumed: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: line {line}: {message}", path.display())]
    Corrupt { path: PathBuf, line: usize, message: String },
}

const MAX_SEGMENT_BYTES: u64 = 4 << 30;

/// Appends records, with group commit.
pub struct Journal {
    dir: PathBuf,
    file: Box<dyn AppendFile>,
    /// The segment being appended to.
    path: PathBuf,
    /// Set by a failed append or fsync: the segment's tail is unknown (a partial write, or pages
    /// the kernel dropped after a failed fsync), so nothing more is written or acted upon.
    broken: Option<String>,
    buf: Vec<u8>,
    next_seq: u64,
    since_snapshot: u64,
    durability: Durability,
}

/// The segment of a read-only journal: refuses every write.
struct NoAppend;

impl AppendFile for NoAppend {
    fn append(&mut self, _bytes: &[u8]) -> Result<(), FsError> {
        Err(FsError::io(
            "append to",
            Path::new("journal"),
            std::io::Error::other("the journal is open read-only"),
        ))
    }
    fn sync(&mut self) -> Result<(), FsError> {
        Ok(())
    }
}

fn segment_name(first: u64) -> String {
    format!("segment-{first:016}.jsonl")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

impl Journal {
    /// Opens a fresh segment starting at `next_seq` (every start begins a new segment, so a torn
    /// tail of an older one is never appended to).
    pub fn open(fs: &dyn Fs, dir: &Path, next_seq: u64, durability: Durability) -> Result<Self, FsError> {
        fs.create_dir_all(&dir.join("archive"))?;
        let path = dir.join(segment_name(next_seq));
        // A segment named for `next_seq` can exist only if none of its records was complete: a
        // crash tore its first append. Appending after those bytes would glue them to the next
        // record and make the segment corrupt in the middle, so start it afresh.
        if fs.stat(&path)?.is_some() {
            tracing::warn!(segment = %path.display(), "replaced a segment holding only a torn record");
            fs.remove_file(&path)?;
        }
        let file = fs.open_append(&path)?;
        if durability.sync_files() {
            fs.sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            path,
            broken: None,
            buf: Vec::new(),
            next_seq,
            since_snapshot: 0,
            durability,
        })
    }

    /// A journal that can be read back into state but never written: a commit with records
    /// pending fails. For views that must not change the root (`mailroom import --dry-run`).
    pub fn read_only(dir: &Path, next_seq: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file: Box::new(NoAppend),
            path: dir.join(segment_name(next_seq)),
            broken: None,
            buf: Vec::new(),
            next_seq,
            since_snapshot: 0,
            durability: Durability::Never,
        }
    }

    /// Numbers and buffers a record; it is written by the next [`Journal::commit`].
    pub fn push(&mut self, mut rec: Record) -> Record {
        rec.seq = self.next_seq;
        self.next_seq += 1;
        self.since_snapshot += 1;
        // Serialising our own types cannot fail.
        serde_json::to_writer(&mut self.buf, &rec).expect("journal record serialises");
        self.buf.push(b'\n');
        rec
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes the buffered records and makes them durable. An error here is fatal to the broker,
    /// and final: every later commit fails too (never retry an fsync; never act on records whose
    /// durability is unknown).
    pub fn commit(&mut self) -> Result<(), FsError> {
        if let Some(why) = &self.broken {
            return Err(FsError::io(
                "append to",
                &self.path,
                std::io::Error::other(format!("journal unusable since an earlier failure: {why}")),
            ));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .append(&self.buf)
            .and_then(|()| if self.durability.sync_files() { self.file.sync() } else { Ok(()) });
        if let Err(e) = written {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        self.buf.clear();
        Ok(())
    }

    pub fn records_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    /// Writes `snap` (which must cover every record before `next_seq`), starts a new segment and
    /// moves the segments the snapshot covers into `archive/`.
    pub fn compact(&mut self, fs: &dyn Fs, snap: &Snapshot, names: &NameSource) -> Result<(), FsError> {
        self.commit()?;
        debug_assert_eq!(snap.seq + 1, self.next_seq);
        let bytes = serde_json::to_vec(snap).expect("snapshot serialises");
        write_atomic(
            fs,
            &self.dir.join(format!("snapshot-{:016}.json", snap.seq)),
            &bytes,
            names,
            self.durability,
        )?;
        let new_path = self.dir.join(segment_name(self.next_seq));
        self.file = fs.open_append(&new_path)?;
        self.path = new_path;
        self.since_snapshot = 0;
        for e in fs.list(&self.dir)? {
            let Some(name) = e.name_str() else { continue };
            if let Some(first) = parse_numbered(name, "segment-", ".jsonl") {
                if first < self.next_seq {
                    fs.rename(&self.dir.join(name), &self.dir.join("archive").join(name))?;
                }
            } else if let Some(seq) = parse_numbered(name, "snapshot-", ".json")
                && seq < snap.seq
            {
                fs.remove_file(&self.dir.join(name))?;
            }
        }
        if self.durability.sync_files() {
            // Destination first: a power loss between the two leaves a segment in both places
            // (replay skips what the snapshot covers), never in neither.
            fs.sync_dir(&self.dir.join("archive"))?;
            fs.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::RealFs;

    #[test]
    fn records_survive_restart_and_torn_tails_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        for i in 0..3 {
            let mut r = Record::new(Op::Submit, Timestamp::from_micros(i));
            r.task_id = Some(format!("t{i}"));
            j.push(r);
        }
        j.commit().unwrap();
        // A torn append: half a line at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(segment_name(1)))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":4,\"ts\":"))
            .unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(l.torn.len(), 1);
        // A new segment after restart continues the sequence.
        let j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
        // A segment whose only record was torn is started afresh, not appended to.
        drop(j);
        std::fs::write(d.path().join(segment_name(4)), b"{\"seq\":4,\"ts").unwrap();
        assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 3);
        let mut j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
        j.push(Record::new(Op::Dispatch, Timestamp::from_micros(9)));
        j.commit().unwrap();
        assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 4);
    }

    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(segment_name(1));
        let good =
            serde_json::to_string(&Record { seq: 2, ..Record::new(Op::Submit, Timestamp::from_micros(0)) })
                .unwrap();
        std::fs::write(&p, format!("garbage\n{good}\n")).unwrap();
        match load(&RealFs, d.path()) {
            Err(JournalError::Corrupt { line: 1, .. }) => {}
            other => panic!("expected corruption at line 1, got {other:?}"),
        }
    }

    #[test]
    fn compaction_archives_old_segments_and_replays_only_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let names = NameSource::new();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        j.push(Record::new(Op::Submit, Timestamp::from_micros(0)));
        j.push(Record::new(Op::Submit, Timestamp::from_micros(0)));
        let snap = Snapshot { seq: 2, ..Default::default() };
        j.compact(&RealFs, &snap, &names).unwrap();
        j.push(Record::new(Op::Dispatch, Timestamp::from_micros(0)));
        j.commit().unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert_eq!(l.snapshot.unwrap().seq, 2);
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(all_segments(&RealFs, d.path()).unwrap().len(), 2);
        assert!(d.path().join("archive").join(segment_name(1)).exists());
    }
}

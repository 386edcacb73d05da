//! The journal: an append-only log of every transition the broker accepted or refused, as JSON
//! Lines in `broker/journal/segment-<first seq>.jsonl`, plus periodic snapshots
//! (`snapshot-<seq>.json`) so that a restart replays only what came after the last snapshot.
//!
//! A record is appended (and, unless durability is `never`, fsynced) before any file it
//! describes is moved, so the journal is always ahead of the tree and recovery can redo effects.
//! Segments made obsolete by a snapshot move to `journal/archive/`, where they are compressed and
//! kept within the retention limits, and where `mailroom trace` still reads them.
//!
//! The parts: [`record`] (what a line holds), [`delta`] (a record about a task the segment
//! already holds carries only what changed), [`read`] (replay, torn tails, every segment for
//! `trace`), [`archive`] (compression and the retention rule of archived segments), and
//! [`Journal`] here (numbering, group commit, compaction).

pub mod archive;
mod delta;
mod place;
mod read;
mod record;
mod streamed;
mod tombfiles;

pub use delta::Resolver;
pub use read::{
    Loaded, Notes, Replayed, all_segments, load, read_range, read_segment, replay, segment_bytes,
};
pub use record::{
    Admitted, BoardEdit, Entry, MailSent, POOLS_DIR, Place, Record, RefusedClaim, Rejected, Report, Requeued,
    SnapTask, Snapshot, TakenBack, Tomb, consumed_path,
};
pub use tombfiles::{NoTombs, TombSource};

use protocol::Timestamp;
use runtime_layout::{AppendFile, Durability, FileKind, Fs, FsError, NameSource};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: line {line}: {message}", path.display())]
    Corrupt { path: PathBuf, line: usize, message: String },
}

pub(crate) const MAX_SEGMENT_BYTES: u64 = 4 << 30;

/// Appends records, with group commit.
pub struct Journal {
    dir: PathBuf,
    /// Where the next commit's records go.
    file: Segment,
    /// The segment's path.
    path: PathBuf,
    /// Set by a failed append or fsync: the segment's tail is unknown (a partial write, or pages
    /// the kernel dropped after a failed fsync), so nothing more is written or acted upon.
    broken: Option<String>,
    buf: Vec<u8>,
    next_seq: u64,
    since_snapshot: u64,
    /// Bytes of records appended since the last snapshot (or since the journal was opened).
    bytes_since_snapshot: u64,
    /// The newest snapshot's size (0 when there is none).
    snapshot_bytes: u64,
    durability: Durability,
    /// Bytes of records appended since the journal was opened.
    written: u64,
    /// Which tasks the current segment has whole, so later records about them carry deltas.
    encoder: delta::Encoder,
    /// The tomb files beside the snapshots.
    tombs: tombfiles::TombFiles,
}

/// The segment the next commit appends to.
enum Segment {
    /// Not created yet: the next commit with records creates it, exclusively.
    Pending,
    Open(Box<dyn AppendFile>),
    /// A journal open read-only: every commit with records fails.
    ReadOnly,
}

pub(crate) fn segment_name(first: u64) -> String {
    format!("segment-{first:016}.jsonl")
}

pub(crate) fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

impl Journal {
    /// A journal whose next record is `next_seq`. Every start begins a new segment, so a torn
    /// tail of an older one is never appended to; the segment is created by the first commit
    /// that has records for it (a start or an import that records nothing leaves no empty
    /// segment behind).
    pub fn open(fs: &dyn Fs, dir: &Path, next_seq: u64, durability: Durability) -> Result<Self, FsError> {
        fs.create_dir_all(&dir.join("archive"))?;
        let mut newest = None;
        let mut tomb_files = Vec::new();
        for e in fs.list(dir)? {
            let Some(name) = e.name_str() else { continue };
            if e.kind != FileKind::File {
                continue;
            }
            if let Some(seq) = parse_numbered(name, "snapshot-", ".json") {
                newest = newest.max(Some((seq, dir.join(name))));
            } else if let Some(first) = tombfiles::tomb_number(name) {
                tomb_files.push((first, fs.stat(&dir.join(name))?.map_or(0, |m| m.len)));
            }
        }
        let snapshot_bytes = match newest {
            Some((_, p)) => fs.stat(&p)?.map_or(0, |m| m.len),
            None => 0,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            file: Segment::Pending,
            path: dir.join(segment_name(next_seq)),
            broken: None,
            buf: Vec::new(),
            next_seq,
            since_snapshot: 0,
            bytes_since_snapshot: 0,
            snapshot_bytes,
            durability,
            written: 0,
            encoder: delta::Encoder::default(),
            tombs: tombfiles::TombFiles::found(tomb_files),
        })
    }

    /// Says which tomb files are in use: those of the snapshot read back, whose finished tasks
    /// end at ordinal `next` (`Snapshot::tombs_next`, 0 without one). Every other tomb file is
    /// removed at the next compaction, so a journal that compacts with tomb files
    /// ([`Journal::compact_with`]) must be told this first.
    pub fn settle_tombs(&mut self, next: u64) {
        self.tombs.settle(next);
    }

    /// A journal that can be read back into state but never written: a commit with records
    /// pending fails. For views that must not change the root (`mailroom import --dry-run`).
    pub fn read_only(dir: &Path, next_seq: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file: Segment::ReadOnly,
            path: dir.join(segment_name(next_seq)),
            broken: None,
            buf: Vec::new(),
            next_seq,
            since_snapshot: 0,
            bytes_since_snapshot: 0,
            snapshot_bytes: 0,
            durability: Durability::Never,
            written: 0,
            encoder: delta::Encoder::default(),
            tombs: tombfiles::TombFiles::default(),
        }
    }

    /// Creates the segment, exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`): whatever already has
    /// its name (the torn first record of a crashed start, or a file planted there, such as a
    /// hard link to a file outside the root) is never appended to; it is moved aside, intact.
    fn create_segment(&self, fs: &dyn Fs) -> Result<Box<dyn AppendFile>, FsError> {
        match fs.create_append(&self.path) {
            // An empty file is what an earlier version left when it started and recorded
            // nothing: nothing to keep, nothing to say (removing a name never touches its target).
            Err(e)
                if e.is_already_exists()
                    && fs.stat(&self.path)?.is_some_and(|m| m.kind == FileKind::File && m.len == 0) =>
            {
                fs.remove_file(&self.path)?;
                fs.create_append(&self.path)
            }
            Err(e) if e.is_already_exists() => {
                let name =
                    self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let aside = self.dir.join(format!("{name}.displaced-{}", runtime_layout::now().compact()));
                fs.rename_noreplace(&self.path, &aside)?;
                tracing::warn!(segment = %self.path.display(), moved_to = %aside.display(),
                    "a file already had the name of the new journal segment (a torn record left by a \
                     crash, or planted): moved aside, never appended to");
                fs.create_append(&self.path)
            }
            other => other,
        }
    }

    /// Numbers and buffers a record; it is written by the next [`Journal::commit`].
    pub fn push(&mut self, ts: Timestamp, entry: Entry) -> Record {
        self.push_change(ts, entry, None)
    }

    /// [`Journal::push`] for a writer that knows the task as it was before `entry` (`prev`, the
    /// image the task's last record left, if the task is live): a record about a task the
    /// current segment already holds whole carries only what changed (see [`delta`]).
    pub fn push_change(&mut self, ts: Timestamp, entry: Entry, prev: Option<&protocol::Task>) -> Record {
        let rec = Record { seq: self.next_seq, ts, entry };
        self.next_seq += 1;
        self.since_snapshot += 1;
        self.encoder.write(&mut self.buf, &rec, prev);
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
    pub fn commit(&mut self, fs: &dyn Fs) -> Result<(), FsError> {
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
        if let Err(e) = self.write(fs) {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        self.written += self.buf.len() as u64;
        self.bytes_since_snapshot += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn write(&mut self, fs: &dyn Fs) -> Result<(), FsError> {
        let created = match self.file {
            Segment::Open(_) => false,
            Segment::Pending => {
                self.file = Segment::Open(self.create_segment(fs)?);
                true
            }
            Segment::ReadOnly => {
                let why = std::io::Error::other("the journal is open read-only");
                return Err(FsError::io("append to", &self.path, why));
            }
        };
        let Segment::Open(file) = &mut self.file else { unreachable!("opened above") };
        file.append(&self.buf)?;
        if self.durability.sync_files() {
            file.sync()?;
            if created {
                // The records are durable once the segment's own entry is.
                fs.sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Bytes of records appended since the journal was opened.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn records_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    /// Bytes of records appended since the last snapshot (or since the journal was opened).
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot
    }

    /// The newest snapshot's size in bytes (0 when there is none).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// Writes `snap` (which must cover every record before `next_seq`, its finished tasks
    /// inline), starts a new segment and moves the segments the snapshot covers into `archive/`.
    /// Tomb files, which such a snapshot does not use, are removed.
    pub fn compact(&mut self, fs: &dyn Fs, snap: &Snapshot, names: &NameSource) -> Result<(), FsError> {
        debug_assert_eq!(snap.tombs_next, 0, "a snapshot written whole carries its tombs inline");
        self.compact_with(fs, snap.seq, names, &NoTombs, |w, _| serde_json::to_writer(w, snap))?;
        self.tombs.drop_all(fs, &self.dir)
    }

    /// [`Journal::compact`] with the snapshot of everything up to `seq` written by `write`, which
    /// streams its JSON: it goes to a temporary a mebibyte at a time (never whole in memory),
    /// which is fsynced and renamed into place, as `write_atomic` does. The tombs `tombs` made
    /// since the last compaction go to a tomb file first; `write` is told the first ordinal
    /// written afresh there (the snapshot lists the dead ones before it, see
    /// [`Snapshot::tombs_gone`]). Tomb files wholly before the tombs' front go last.
    pub fn compact_with(
        &mut self,
        fs: &dyn Fs,
        seq: u64,
        names: &NameSource,
        tombs: &dyn TombSource,
        write: impl FnOnce(&mut dyn std::io::Write, u64) -> serde_json::Result<()>,
    ) -> Result<(), FsError> {
        self.commit(fs)?;
        debug_assert_eq!(seq + 1, self.next_seq);
        let sync = self.durability.sync_files();
        let fresh = self.tombs.write(fs, &self.dir, names, sync, tombs)?;
        let name = format!("snapshot-{seq:016}.json");
        let total = streamed::write_streamed(fs, &self.dir, &name, names, sync, |w| write(w, fresh))?;
        if sync {
            fs.sync_dir(&self.dir)?;
        }
        self.tombs.prune(fs, &self.dir, tombs.front());
        // The next segment is created by the next commit; the current one is archived below.
        self.file = Segment::Pending;
        self.path = self.dir.join(segment_name(self.next_seq));
        self.encoder.new_segment();
        self.since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        self.snapshot_bytes = total;
        for e in fs.list(&self.dir)? {
            let Some(name) = e.name_str() else { continue };
            if let Some(first) = parse_numbered(name, "segment-", ".jsonl") {
                if first < self.next_seq {
                    fs.rename(&self.dir.join(name), &self.dir.join("archive").join(name))?;
                }
            } else if let Some(n) = parse_numbered(name, "snapshot-", ".json")
                && n < seq
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

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::RealFs;

    fn stray(why: &str) -> Entry {
        Entry::Stray { reason: why.into(), path: String::new(), from: String::new() }
    }

    #[test]
    fn records_survive_restart_and_torn_tails_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        for i in 0..3 {
            j.push(Timestamp::from_micros(i), stray(&format!("t{i}")));
        }
        j.commit(&RealFs).unwrap();
        // A torn append: half a line at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(segment_name(1)))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":4,\"ts\":"))
            .unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(l.notes.torn.len(), 1);
        // A new segment after restart continues the sequence.
        let j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
        // A segment whose only record was torn is started afresh, not appended to.
        drop(j);
        std::fs::write(d.path().join(segment_name(4)), b"{\"seq\":4,\"ts").unwrap();
        assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 3);
        let mut j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
        j.push(Timestamp::from_micros(9), stray("d"));
        j.commit(&RealFs).unwrap();
        assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 4);
    }

    /// Damage in the middle of a segment, a record this version cannot decode and a sequence
    /// number out of order are each set aside with where and why; the rest replays.
    #[test]
    fn unreadable_records_are_set_aside_and_the_rest_replays() {
        let d = tempfile::tempdir().unwrap();
        let line = |seq: u64| {
            serde_json::to_string(&Record { seq, ts: Timestamp::from_micros(0), entry: stray("s") }).unwrap()
        };
        let future = r#"{"seq":3,"ts":"2026-01-01T00:00:00Z","op":"teleport","task_id":"T"}"#;
        let bad_time = r#"{"seq":4,"ts":"9999-12-31T23:30:00-01:00","op":"stray","reason":"r","path":"p"}"#;
        let body =
            format!("{}\ngarbage\n{future}\n{bad_time}\n{}\n{}\n{}\n", line(1), line(5), line(2), line(6));
        std::fs::write(d.path().join(segment_name(1)), body).unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 5, 6]);
        let why = l.notes.set_aside.join("\n");
        assert_eq!(l.notes.set_aside.len(), 4, "{why}");
        assert!(why.contains("line 2") && why.contains("teleport") && why.contains("0000-9999"), "{why}");
        assert!(why.contains("record 2 comes after record 5"), "{why}");
        assert!(l.notes.torn.is_empty());
    }

    /// A snapshot that cannot be read is set aside and the state is rebuilt from every segment.
    #[test]
    fn an_unreadable_snapshot_falls_back_to_every_segment() {
        let d = tempfile::tempdir().unwrap();
        let names = NameSource::new();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        j.push(Timestamp::from_micros(0), stray("a"));
        j.push(Timestamp::from_micros(0), stray("b"));
        j.compact(&RealFs, &Snapshot { seq: 2, ..Default::default() }, &names).unwrap();
        j.push(Timestamp::from_micros(0), stray("c"));
        j.commit(&RealFs).unwrap();
        std::fs::write(d.path().join(format!("snapshot-{:016}.json", 2)), b"{\"seq\": 2, \"live\": [")
            .unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert!(l.snapshot.is_none());
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(l.notes.set_aside[0].contains("rebuilt from every segment"), "{:?}", l.notes);
    }

    #[test]
    fn compaction_archives_old_segments_and_replays_only_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let names = NameSource::new();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        j.push(Timestamp::from_micros(0), stray("a"));
        j.push(Timestamp::from_micros(0), stray("b"));
        let snap = Snapshot { seq: 2, ..Default::default() };
        j.compact(&RealFs, &snap, &names).unwrap();
        j.push(Timestamp::from_micros(0), stray("c"));
        j.commit(&RealFs).unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert_eq!(l.snapshot.unwrap().seq, 2);
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(all_segments(&RealFs, d.path()).unwrap().len(), 2);
        assert!(d.path().join("archive").join(segment_name(1)).exists());
    }

    #[test]
    fn a_segment_is_created_at_the_first_commit_and_only_then() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        j.commit(&RealFs).unwrap();
        assert!(all_segments(&RealFs, d.path()).unwrap().is_empty(), "nothing recorded, no segment");
        j.push(Timestamp::from_micros(0), stray("a"));
        j.commit(&RealFs).unwrap();
        assert_eq!(all_segments(&RealFs, d.path()).unwrap(), [d.path().join(segment_name(1))]);
        let mut ro = Journal::read_only(d.path(), 2);
        ro.commit(&RealFs).unwrap();
        ro.push(Timestamp::from_micros(0), stray("b"));
        assert!(ro.commit(&RealFs).is_err(), "a read-only journal refuses records");
    }

    /// A hard link to a file outside the journal (or a symlink), planted at the name of the next
    /// segment, is moved aside untouched; the records go into a segment of the journal's own.
    #[test]
    fn a_file_planted_at_the_next_segment_name_is_never_appended_to() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (dir, outside) = (d.path().join("journal"), d.path().join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        let bait = outside.join("bait");
        std::fs::write(&bait, b"someone else's").unwrap();
        let mut j = Journal::open(&RealFs, &dir, 1, Durability::Batch).unwrap();
        std::fs::hard_link(&bait, dir.join(segment_name(1))).unwrap();
        j.push(Timestamp::from_micros(0), stray("a"));
        j.commit(&RealFs).unwrap();
        let snap = Snapshot { seq: 1, ..Default::default() };
        std::os::unix::fs::symlink(&bait, dir.join(segment_name(2))).unwrap();
        j.compact(&RealFs, &snap, &NameSource::new()).unwrap();
        j.push(Timestamp::from_micros(0), stray("b"));
        j.commit(&RealFs).unwrap();
        assert_eq!(std::fs::read(&bait).unwrap(), b"someone else's");
        assert_eq!(std::fs::metadata(&bait).unwrap().nlink(), 2, "the link was moved, not removed");
        let l = load(&RealFs, &dir).unwrap();
        assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
        let displaced = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".displaced-"));
        assert_eq!(displaced.count(), 2);
    }

    #[test]
    fn trace_reads_compressed_and_plain_segments_alike_each_once() {
        let d = tempfile::tempdir().unwrap();
        let names = NameSource::new();
        let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
        j.push(Timestamp::from_micros(0), stray("a"));
        j.push(Timestamp::from_micros(0), stray("b"));
        j.compact(&RealFs, &Snapshot { seq: 2, ..Default::default() }, &names).unwrap();
        j.push(Timestamp::from_micros(0), stray("c"));
        j.commit(&RealFs).unwrap();
        let plain = d.path().join("archive").join(segment_name(1));
        let mut c = archive::Compressor::start(&RealFs, &plain, true).unwrap();
        assert!(matches!(c.step(&RealFs, 1 << 20).unwrap(), archive::Progress::Done { .. }));
        assert!(
            !plain.exists()
                && d.path().join("archive").join(archive::compressed_name(&segment_name(1))).exists()
        );
        let seqs = |d: &Path| {
            let mut out = Vec::new();
            for s in all_segments(&RealFs, d).unwrap() {
                read_segment(&RealFs, &s, |r, _, _| out.push(r.seq), &mut Notes::default()).unwrap();
            }
            out
        };
        assert_eq!(seqs(d.path()), vec![1, 2, 3]);
        // A crash between the rename and the removal leaves both forms: read once.
        std::fs::write(&plain, segment_bytes(&RealFs, &all_segments(&RealFs, d.path()).unwrap()[0]).unwrap())
            .unwrap();
        assert_eq!(seqs(d.path()), vec![1, 2, 3]);
        assert_eq!(all_segments(&RealFs, d.path()).unwrap()[0], plain, "the plain copy is the one read");
        // Listed plain, then compressed before it is read (a reader beside a running broker):
        // the compressed form is read in its place.
        let listed = all_segments(&RealFs, d.path()).unwrap();
        std::fs::remove_file(&plain).unwrap();
        let mut out = Vec::new();
        read_segment(&RealFs, &listed[0], |r, _, _| out.push(r.seq), &mut Notes::default()).unwrap();
        assert_eq!(out, vec![1, 2], "segment 1 holds records 1 and 2");
        // Replay never reads the archive.
        assert_eq!(
            load(&RealFs, d.path()).unwrap().records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3]
        );
    }
}

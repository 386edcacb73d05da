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
    Loaded, Notes, Replayed, all_segments, bytes_before_zeros, load, read_range, read_segment,
    read_segment_where, replay, segment_bytes,
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
    /// Bytes of zeros known to follow the current segment's records.
    room: u64,
    /// How many are written at a time ([`RESERVE`] unless set; 0: none).
    reserve: u64,
    /// There was no space for the current segment's reserve: its appends grow it instead, as
    /// they did before reserves.
    no_reserve: bool,
}

/// Zeros written ahead of the records, a mebibyte at a time: an append into them changes
/// neither the segment's size nor its allocation, so its fsync writes data alone. On ext4 that
/// spares each commit a journal commit of the filesystem's own, about half its time
/// (BENCHMARKS.md, "A journal written into zeros"). A segment's records end at its first zeros
/// ([`read_segment`] says why); a clean stop and a compaction cut the reserve off.
pub const RESERVE: u64 = 1 << 20;

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

/// Is the file at `path` nothing but zeros (a start's reserve, written before any record)? Read
/// up to a few reserves' worth; anything larger, unreadable or holding a byte is not.
fn zeros_alone(fs: &dyn Fs, path: &Path) -> bool {
    fs.read(path, 4 * RESERVE).is_ok_and(|b| b.iter().all(|&x| x == 0))
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
            room: 0,
            reserve: RESERVE,
            no_reserve: false,
        })
    }

    /// Writes `bytes` of zeros ahead of the records at a time ([`RESERVE`] by default); 0 writes
    /// none, and the segment grows with every commit.
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
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
            room: 0,
            reserve: RESERVE,
            no_reserve: false,
        }
    }

    /// Creates the segment, exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`): whatever already has
    /// its name (the torn first record of a crashed start, or a file planted there, such as a
    /// hard link to a file outside the root) is never appended to; it is moved aside, intact.
    fn create_segment(&self, fs: &dyn Fs) -> Result<Box<dyn AppendFile>, FsError> {
        match fs.create_append(&self.path) {
            // An empty file is what an earlier version left when it started and recorded
            // nothing: nothing to keep, nothing to say (removing a name never touches its target).
            // The same for a file of zeros alone: a start that crashed before its first
            // records reached the disk left its reserve.
            Err(e)
                if e.is_already_exists()
                    && fs.stat(&self.path)?.is_some_and(|m| m.kind == FileKind::File)
                    && zeros_alone(fs, &self.path) =>
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
        let mut rec = Record { seq: self.next_seq, ts, entry };
        self.next_seq += 1;
        self.since_snapshot += 1;
        self.encoder.write(&mut self.buf, &mut rec, prev);
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
        if created {
            (self.room, self.no_reserve) = (0, false);
        }
        // Zeros ahead, when records are fsynced and the reserve cannot hold these: the fsync
        // below then also makes the new reserve durable (once per mebibyte of records).
        let len = self.buf.len() as u64;
        if self.reserve > 0 && self.durability.sync_files() && !self.no_reserve && self.room < len {
            match file.reserve(len + self.reserve) {
                Ok(()) => self.room = len + self.reserve,
                // Out of space for the zeros: the records themselves may still fit. Any other
                // error is the journal's, and breaks it like a failed append.
                Err(e) if e.is_no_space() => {
                    tracing::warn!(segment = %self.path.display(), error = %e,
                        "no space for the journal's reserve of zeros: appending without one \
                         (each commit's fsync then also commits the segment's growth)");
                    self.no_reserve = true;
                }
                Err(e) => return Err(e),
            }
        }
        file.append(&self.buf)?;
        self.room = self.room.saturating_sub(len);
        if self.durability.sync_files() {
            file.sync()?;
            if created {
                // The records are durable once the segment's own entry is.
                fs.sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Cuts the current segment's reserve of zeros off (at a clean stop, and before a segment
    /// is archived), so that what is left is its records alone. Appending later grows the
    /// segment again.
    /// Never fails: the zeros are a matter of looks, so an error is logged and the broker goes
    /// on (a broken journal is left alone).
    pub fn trim(&mut self) {
        if let Segment::Open(file) = &mut self.file
            && self.broken.is_none()
            && let Err(e) = file.trim()
        {
            tracing::warn!(segment = %self.path.display(), error = %e,
                "cannot cut the journal's reserve of zeros off: the segment keeps them");
        }
        self.room = 0;
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
        // The next segment is created by the next commit; the current one, its reserve cut off,
        // is archived below.
        self.trim();
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
mod tests;

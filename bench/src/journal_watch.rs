//! The one module of the bench that knows the broker's journal (`mailroom::journal`): when the
//! record types change, this is the file to adapt. Everything else sees [`Completion`]s.
//!
//! - Reading: [`completed`] says which task one record completed, the narrow question every
//!   figure starts from; [`for_each_completion`] reads the segments a run wrote, and
//!   [`JournalTail`] counts completions while the run goes on, reading only new bytes.
//! - Writing: [`HistoryWriter`] writes a finished history through the broker's own [`Journal`]
//!   (segments, then a compaction that writes the snapshot and archives them), so the bench's
//!   prebuilt roots follow any change of the journal's format.

use crate::error::BenchError;
use mailroom::journal::{
    self, Entry, Journal, JournalError, Place, Record, Report, Snapshot, Tomb, TombSource,
};
use protocol::{Status, Task, Timestamp};
use runtime_layout::{Durability, Fs, FsError, Layout, NameSource};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

impl From<JournalError> for BenchError {
    fn from(e: JournalError) -> Self {
        Self::Journal(e.to_string())
    }
}

/// A task the journal shows completed.
#[derive(Debug, Clone)]
pub struct Completion {
    /// When the broker journaled the completion (its own clock), in µs since the epoch.
    pub at_us: i64,
    /// The task as completed: its `params`, its `result`, its timestamped `history`.
    pub task: Task,
}

/// The task that `rec` completed, if it completed one. The only place that reads a record.
pub fn completed(rec: Record) -> Option<Completion> {
    match rec.entry {
        Entry::Complete(r) => Some(Completion { at_us: rec.ts.as_micros(), task: r.task }),
        _ => None,
    }
}

/// The segments of `root`'s journal that hold records now. A run reads only segments that are
/// not among them: a broker never appends to a segment it did not open, and it opens a fresh one
/// at every start (an empty one left by compaction is replaced, so it does not count here).
pub fn sealed_segments(fs: &dyn Fs, root: &Path) -> Result<HashSet<PathBuf>, BenchError> {
    let mut out = HashSet::new();
    for seg in journal::all_segments(fs, &Layout::new(root).journal_dir())? {
        // Records, not a crashed start's reserve of zeros alone: a record is there when the
        // first byte is (a compressed segment's first byte is its frame's, never zero).
        if fs.read_at(&seg, 0, 1)?.first().is_some_and(|&b| b != 0) {
            out.insert(seg);
        }
    }
    Ok(out)
}

/// Calls `f` for every completion in `root`'s journal, except in the segments of `skip`.
pub fn for_each_completion(
    fs: &dyn Fs,
    root: &Path,
    skip: &HashSet<PathBuf>,
    mut f: impl FnMut(Completion),
) -> Result<(), BenchError> {
    let mut notes = journal::Notes::default();
    for seg in journal::all_segments(fs, &Layout::new(root).journal_dir())? {
        if !skip.contains(&seg) {
            journal::read_segment(
                fs,
                &seg,
                |rec, _, _| completed(rec).into_iter().for_each(&mut f),
                &mut notes,
            )?;
        }
    }
    Ok(())
}

/// Bytes of journal the segments not in `skip` hold (uncompressed), and what the same records
/// would take if each carried its task whole (as records did before deltas): side by side, the
/// saving in one run.
pub fn journal_cost(fs: &dyn Fs, root: &Path, skip: &HashSet<PathBuf>) -> Result<(u64, u64), BenchError> {
    let (mut written, mut whole) = (0u64, 0u64);
    let mut notes = journal::Notes::default();
    for seg in journal::all_segments(fs, &Layout::new(root).journal_dir())? {
        if skip.contains(&seg) {
            continue;
        }
        written += journal::segment_bytes(fs, &seg)?.len() as u64;
        journal::read_segment(
            fs,
            &seg,
            |rec, _, _| whole += serde_json::to_vec(&rec).map_or(0, |b| b.len() as u64 + 1),
            &mut notes,
        )?;
    }
    Ok((written, whole))
}

/// Whether `rec` made a task ready (its file went into a queue or a mailbox, or it waits for
/// room in the ready window).
pub fn dispatched(rec: &Record) -> bool {
    matches!(rec.entry, Entry::Dispatch { .. })
}

/// Counts completions and dispatches appended to a journal, reading only the new bytes of each
/// segment on every poll. A line is parsed only if it mentions `complete` or `dispatch` at all,
/// so watching costs the run little. It reads with `std::fs` (it needs to seek), never writes. A
/// segment compressed in the archive (`.jsonl.zst`) before the tail read all of it is
/// decompressed once and read from where the tail had stopped.
pub struct JournalTail {
    dir: PathBuf,
    offsets: HashMap<String, u64>,
    /// Plain segments read in the archive (sealed: read to their end).
    sealed: HashSet<String>,
    /// Compressed segments already dealt with.
    compressed: HashSet<String>,
    pub completes: usize,
    pub dispatches: usize,
}

impl JournalTail {
    pub fn new(layout: &Layout) -> Self {
        let dir = layout.journal_dir();
        let mut offsets = HashMap::new();
        let mut compressed = HashSet::new();
        // Whatever is there before the run (a built history) is not counted.
        for d in [dir.clone(), dir.join("archive")] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".jsonl") {
                    // Its records' end, not its size: the live segment ends in the zeros its
                    // next records go into.
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    let records = journal::bytes_before_zeros(&runtime_layout::RealFs, &e.path(), len);
                    offsets.insert(name, records.unwrap_or(0));
                } else if name.ends_with(".jsonl.zst") {
                    compressed.insert(name);
                }
            }
        }
        Self { dir, offsets, sealed: HashSet::new(), compressed, completes: 0, dispatches: 0 }
    }

    pub fn poll(&mut self) {
        self.poll_ids(|_| {});
    }

    /// Like [`JournalTail::poll`], calling `f` with the id of every task completed since.
    pub fn poll_ids(&mut self, mut f: impl FnMut(&str)) {
        use std::io::{Read, Seek, SeekFrom};
        for (d, archived) in [(self.dir.clone(), false), (self.dir.join("archive"), true)] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".jsonl.zst") {
                    self.compressed_segment(&e.path(), name, &mut f);
                    continue;
                }
                if !name.ends_with(".jsonl") {
                    continue;
                }
                let mut off = self.offsets.get(&name).copied().unwrap_or(0);
                let Ok(mut file) = std::fs::File::open(e.path()) else { continue };
                // A segment shorter than what was read of it was replaced (an empty one at start).
                if file.metadata().is_ok_and(|m| m.len() < off) {
                    off = 0;
                }
                if file.seek(SeekFrom::Start(off)).is_err() {
                    continue;
                }
                let mut buf = Vec::new();
                if file.read_to_end(&mut buf).is_err() {
                    continue;
                }
                if archived {
                    self.sealed.insert(name.clone());
                }
                // Only whole lines before the first zero: the live segment ends in the zeros its
                // next records go into, and a read racing an append can see a later page of it
                // before an earlier one. A record being appended is counted on the next poll.
                if let Some(zero) = buf.iter().position(|&b| b == 0) {
                    buf.truncate(zero);
                }
                let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { continue };
                self.count(&buf[..end], &mut f);
                self.offsets.insert(name, off + end as u64 + 1);
            }
        }
    }

    fn compressed_segment(&mut self, path: &Path, name: String, f: &mut impl FnMut(&str)) {
        if !self.compressed.insert(name.clone()) {
            return;
        }
        let plain = name.trim_end_matches(".zst").to_string();
        if self.sealed.contains(&plain) {
            return;
        }
        let Ok(bytes) = journal::segment_bytes(&runtime_layout::RealFs, path) else { return };
        let off = self.offsets.get(&plain).copied().unwrap_or(0) as usize;
        if bytes.len() > off {
            self.count(&bytes[off..], f);
        }
        self.offsets.insert(plain, bytes.len() as u64);
    }

    fn count(&mut self, lines: &[u8], f: &mut impl FnMut(&str)) {
        let mentions = |line: &[u8], word: &[u8]| line.windows(word.len()).any(|w| w == word);
        // Only the operation and the task: a record about a task its segment already holds
        // carries a delta, not the task, and the tail reads lines one at a time.
        #[derive(serde::Deserialize)]
        struct Head {
            op: String,
            task_id: Option<String>,
        }
        for head in lines
            .split(|&b| b == b'\n')
            .filter(|line| mentions(line, b"complete") || mentions(line, b"dispatch"))
            .filter_map(|line| serde_json::from_slice::<Head>(line).ok())
        {
            match (head.op.as_str(), head.task_id) {
                ("dispatch", _) => self.dispatches += 1,
                ("complete", Some(id)) => {
                    self.completes += 1;
                    f(&id);
                }
                _ => {}
            }
        }
    }
}

/// Compressed archived segments of `root` and, for each, its bytes and the tasks its records
/// complete: what a finished task costs in the archive.
pub fn archive_cost(fs: &dyn Fs, root: &Path) -> Result<(u64, usize), BenchError> {
    let dir = Layout::new(root).journal_dir().join("archive");
    let (mut bytes, mut tasks) = (0, 0);
    for s in journal::archive::list(fs, &dir)?.segments.iter().filter(|s| s.compressed) {
        bytes += s.bytes;
        journal::read_segment(
            fs,
            &s.path,
            |r, _, _| tasks += usize::from(completed(r).is_some()),
            &mut journal::Notes::default(),
        )?;
    }
    Ok((bytes, tasks))
}

/// Records per segment of a written history.
const PER_SEGMENT: u64 = 250_000;
/// Records buffered between two appends while writing a history.
const PER_COMMIT: u64 = 4_096;

/// Writes a root's journal as a broker leaves it after compacting a history of finished tasks:
/// one `complete` record per task in archived segments (what `mailroom trace` reads), and a
/// snapshot whose tombs are the finished tasks and whose `recent_done` fills the completed
/// board. Nothing is fsynced: the files are read back warm by the broker that starts next.
pub struct HistoryWriter<'a> {
    fs: &'a dyn Fs,
    dir: PathBuf,
    journal: Journal,
    written: u64,
    tombs: Vec<Tomb>,
    recent: Vec<Task>,
    /// Each segment's first record and the time of its last, which becomes its mtime (as a
    /// broker's segment has the time of its last append).
    segments: Vec<(u64, Timestamp)>,
}

impl<'a> HistoryWriter<'a> {
    pub fn open(fs: &'a dyn Fs, root: &Path) -> Result<Self, BenchError> {
        let dir = Layout::new(root).journal_dir();
        let journal = Journal::open(fs, &dir, 1, Durability::Never)?;
        Ok(Self { fs, dir, journal, written: 0, tombs: Vec::new(), recent: Vec::new(), segments: Vec::new() })
    }

    /// Appends a finished task; `on_board` keeps it for the completed board too.
    pub fn finished(&mut self, task: Task, hash: u64, on_board: bool) -> Result<(), BenchError> {
        let ts = task.updated_at.unwrap_or(Timestamp::from_micros(0));
        if self.written > 0 && self.written.is_multiple_of(PER_SEGMENT) {
            self.journal.commit(self.fs)?;
            self.journal = Journal::open(self.fs, &self.dir, self.journal.next_seq(), Durability::Never)?;
            self.segments.push((self.journal.next_seq(), ts));
        }
        match self.segments.last_mut() {
            Some(last) => last.1 = ts,
            None => self.segments.push((self.journal.next_seq(), ts)),
        }
        self.tombs.push(Tomb { id: task.task_id.clone(), status: Status::Completed, hash, pooled: false });
        if on_board {
            self.recent.push(task.clone());
        }
        let msg = format!("history-{}", task.task_id);
        let report = Report {
            task_id: task.task_id.clone(),
            task,
            place: Place::Done,
            msg,
            agent: "Agent-1".into(),
            claim: String::new(),
        };
        self.journal.push(ts, Entry::Complete(report));
        self.written += 1;
        if self.written.is_multiple_of(PER_COMMIT) {
            self.journal.commit(self.fs)?;
        }
        Ok(())
    }

    /// Compacts as the broker does: the finished tasks into a tomb file, then the snapshot
    /// naming them, and the segments it covers into `archive/` (the next segment is created by
    /// the first commit of the broker that starts on the root).
    pub fn finish(mut self) -> Result<(), FsError> {
        let seq = self.journal.next_seq() - 1;
        let tombs = Tombs(std::mem::take(&mut self.tombs));
        let snap = Snapshot {
            seq,
            tombs_next: tombs.0.len() as u64,
            recent_done: std::mem::take(&mut self.recent),
            ..Snapshot::default()
        };
        self.journal
            .compact_with(self.fs, seq, &NameSource::new(), &tombs, |w, _| serde_json::to_writer(w, &snap))?;
        for (first, last) in &self.segments {
            let path = self.dir.join("archive").join(format!("segment-{first:016}.jsonl"));
            if self.fs.stat(&path)?.is_some() {
                self.fs.set_mtime(&path, *last)?;
            }
        }
        Ok(())
    }
}

/// The history's finished tasks as tomb file lines: ordinal `i` is the `i`th finished.
struct Tombs(Vec<Tomb>);

impl TombSource for Tombs {
    fn front(&self) -> u64 {
        0
    }

    fn next(&self) -> u64 {
        self.0.len() as u64
    }

    fn write_lines(&self, from: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()> {
        for t in &self.0[from as usize..] {
            serde_json::to_writer(&mut *w, t)?;
            w.write_all(b"\n").map_err(serde_json::Error::io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::sim::SimFs;

    fn task(i: usize) -> Task {
        let mut t = Task::from_value(serde_json::json!({"task_id": format!("T-{i}"), "task_type": "bench"}))
            .expect("a valid task");
        t.status = Status::Completed;
        t.updated_at = Some(Timestamp::from_micros(1_000 + i as i64));
        t
    }

    /// A history written through the seam is what the broker's own replay and the bench's
    /// readers see: the snapshot holds every tomb and the board's tasks, the archived segments
    /// one completion per task, and no empty live segment is left behind.
    #[test]
    fn a_written_history_replays_as_a_compacted_journal() {
        let fs = SimFs::new();
        let root = Path::new("/r");
        Layout::new(root).create(&fs).unwrap();
        let mut w = HistoryWriter::open(&fs, root).unwrap();
        for i in 0..10 {
            w.finished(task(i), i as u64, i >= 7).unwrap();
        }
        w.finish().unwrap();
        let dir = Layout::new(root).journal_dir();
        let loaded = journal::load(&fs, &dir).unwrap();
        let snap = loaded.snapshot.expect("a snapshot");
        assert_eq!((snap.seq, snap.tombs.len(), snap.recent_done.len()), (10, 10, 3));
        assert!(loaded.records.is_empty(), "every record is covered by the snapshot");
        let mut ids = Vec::new();
        for_each_completion(&fs, root, &HashSet::new(), |c| ids.push(c.task.task_id)).unwrap();
        assert_eq!(ids, (0..10).map(|i| format!("T-{i}")).collect::<Vec<_>>());
        assert!(sealed_segments(&fs, root).unwrap().iter().all(|s| s.starts_with(dir.join("archive"))));
        assert_eq!(journal::all_segments(&fs, &dir).unwrap().len(), 1);
    }

    /// A tail made while the live segment exists counts what is appended after: the records go
    /// into the zeros written ahead of them, so it starts at the records' end, not at the size.
    #[test]
    fn a_tail_counts_records_appended_into_the_reserve() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        let dir = layout.journal_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let fs = runtime_layout::RealFs;
        let mut j = journal::Journal::open(&fs, &dir, 1, runtime_layout::Durability::Batch).unwrap();
        let dispatch =
            |i: usize| Entry::Dispatch { task_id: format!("T-{i}"), task: task(i), place: Place::Done };
        j.push(Timestamp::from_micros(1), dispatch(1));
        j.commit(&fs).unwrap();
        let mut tail = JournalTail::new(&layout);
        tail.poll();
        assert_eq!(tail.dispatches, 0, "what was there before the tail is not counted");
        j.push(Timestamp::from_micros(2), dispatch(2));
        j.push(Timestamp::from_micros(3), dispatch(3));
        j.commit(&fs).unwrap();
        tail.poll();
        assert_eq!(tail.dispatches, 2);
    }

    #[test]
    fn only_complete_records_complete_a_task_and_only_dispatch_records_dispatch_one() {
        let t = task(1);
        let ts = Timestamp::from_micros(5);
        let place = Place::Done;
        let claim = Entry::Claim {
            task_id: t.task_id.clone(),
            task: t.clone(),
            place: place.clone(),
            agent: "A".into(),
        };
        let claim = Record { seq: 1, ts, entry: claim };
        assert!(!dispatched(&claim));
        assert!(completed(claim).is_none());
        let dispatch = Entry::Dispatch { task_id: t.task_id.clone(), task: t.clone(), place: place.clone() };
        assert!(dispatched(&Record { seq: 3, ts, entry: dispatch }));
        let report = Report {
            task_id: t.task_id.clone(),
            task: t,
            place,
            msg: "m".into(),
            agent: "A".into(),
            claim: "c".into(),
        };
        let c = completed(Record { seq: 2, ts, entry: Entry::Complete(report) }).expect("a completion");
        assert_eq!((c.task.task_id.as_str(), c.at_us), ("T-1", 5));
    }
}

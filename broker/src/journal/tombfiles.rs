//! Tomb files (`journal/tombs-<first>.jsonl`): the finished tasks a snapshot remembers, kept
//! beside it instead of inside it, so that a compaction writes the tombs made since the last one
//! rather than every tomb again. With a million finished tasks remembered, the snapshot was
//! 86 MB rewritten at every compaction; now it holds the live tasks, and the tombs are appended
//! a file at a time.
//!
//! Each tomb has an ordinal, its place in finish order (see the state's `tombs.rs`). A tomb file
//! holds one line per ordinal from its first: the tomb as JSON, or `null` for one that was
//! already dead when the file was written. A snapshot names the range it uses (`tombs_front`
//! to `tombs_next`) and the ordinals in it that died since their file was written
//! (`tombs_gone`); the files covering that range, each up to the next one's first ordinal,
//! make the chain.
//!
//! A file, once a snapshot names it, never changes under that snapshot:
//!
//! 1. Files a crash left beyond the durable snapshot's range are removed first.
//! 2. The new tombs go into a new file, written whole under a temporary name and renamed; while
//!    the newest file is under [`MERGE_BELOW`] bytes, its lines are copied into the new file
//!    (same first ordinal) and the new tombs follow them, so a trickle of finished tasks does
//!    not make a file per compaction. The lines the old snapshot reads are the same bytes.
//! 3. The directory is fsynced, then the snapshot is written and renamed (`Journal::compact_with`).
//! 4. Only then are the files wholly before the new front removed.

use super::read::Notes;
use super::record::{Snapshot, Tomb};
use super::streamed::write_streamed;
use super::{MAX_SEGMENT_BYTES, parse_numbered};
use runtime_layout::{Fs, FsError, NameSource};
use std::path::Path;

/// The newest tomb file is extended (rewritten with the new tombs after its lines) while it is
/// smaller than this; past it a compaction starts a new file.
pub const MERGE_BELOW: u64 = 1 << 20;

pub(crate) fn tomb_name(first: u64) -> String {
    format!("tombs-{first:016}.jsonl")
}

/// The first ordinal of a tomb file, by its name as [`tomb_name`] writes it (only that form).
pub(crate) fn tomb_number(name: &str) -> Option<u64> {
    parse_numbered(name, "tombs-", ".jsonl").filter(|n| tomb_name(*n) == name)
}

/// The most ordinals a snapshot may name beyond what its tomb files hold: more means the
/// snapshot is not one the broker wrote (a missing file holds far fewer).
const MAX_GAP: u64 = 1 << 26;

/// What a compaction writes of the tombs: the state's side.
pub trait TombSource {
    /// Every ordinal before this one is dead.
    fn front(&self) -> u64;
    /// The ordinal the next tomb will get.
    fn next(&self) -> u64;
    /// One line per ordinal from `from` to [`TombSource::next`]: the tomb, or `null`.
    fn write_lines(&self, from: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()>;
}

/// No tombs beside the snapshot (a snapshot that carries its tombs inline).
pub struct NoTombs;

impl TombSource for NoTombs {
    fn front(&self) -> u64 {
        0
    }
    fn next(&self) -> u64 {
        0
    }
    fn write_lines(&self, _: u64, _: &mut dyn std::io::Write) -> serde_json::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TombFile {
    first: u64,
    bytes: u64,
}

/// The tomb files of a journal directory, as the journal writing it sees them.
#[derive(Debug, Default)]
pub(crate) struct TombFiles {
    /// The files the durable snapshot uses, by first ordinal.
    chain: Vec<TombFile>,
    /// Every other tomb file found (a crash's leftovers): removed before the next write.
    stale: Vec<TombFile>,
    /// The ordinals on disk end here.
    next: u64,
}

impl TombFiles {
    /// The tomb files found in the directory (`(first ordinal, bytes)`), none of them used until
    /// [`TombFiles::settle`] says which ones the snapshot read back uses.
    pub fn found(files: Vec<(u64, u64)>) -> Self {
        let stale = files.into_iter().map(|(first, bytes)| TombFile { first, bytes }).collect();
        Self { chain: Vec::new(), stale, next: 0 }
    }

    /// After replay: the snapshot read back uses the ordinals before `next`; the files that
    /// cover them make the chain, and the others are stale.
    pub fn settle(&mut self, next: u64) {
        *self = std::mem::take(self).settled(next);
    }

    fn settled(self, next: u64) -> Self {
        let (mut chain, mut stale) = (Vec::new(), Vec::new());
        for f in self.chain.into_iter().chain(self.stale) {
            if f.first < next { chain.push(f) } else { stale.push(f) }
        }
        chain.sort_by_key(|f| f.first);
        Self { chain, stale, next }
    }

    /// Writes the tombs made since the last compaction (steps 1 and 2). Returns the first
    /// ordinal written afresh: the lines before it are in files as they were, so the snapshot
    /// lists those of them that died since (`tombs_gone`).
    pub fn write(
        &mut self,
        fs: &dyn Fs,
        dir: &Path,
        names: &NameSource,
        sync: bool,
        src: &dyn TombSource,
    ) -> Result<u64, FsError> {
        // One at a time, forgotten only once removed: a stale file left in place would be read
        // as part of a later snapshot's range.
        while let Some(f) = self.stale.last() {
            remove(fs, dir, f.first)?;
            self.stale.pop();
        }
        let (front, next) = (src.front(), src.next());
        if next <= self.next {
            return Ok(next);
        }
        // Extend the newest file while it is small and every line it should have is there.
        let newest = self.chain.last().copied().filter(|f| f.bytes < MERGE_BELOW && self.next >= front);
        let (start, kept) = match newest {
            Some(f) => match lines(fs, dir, f.first, self.next - f.first)? {
                Some(kept) => (f.first, Some(kept)),
                None => (self.next.max(front), None),
            },
            None => (self.next.max(front), None),
        };
        let from = if kept.is_some() { self.next } else { start };
        let bytes = write_streamed(fs, dir, &tomb_name(start), names, sync, |w| {
            if let Some(k) = &kept {
                w.write_all(k).map_err(serde_json::Error::io)?;
            }
            src.write_lines(from, w)
        })?;
        if sync {
            fs.sync_dir(dir)?;
        }
        self.chain.retain(|f| f.first < start);
        self.chain.push(TombFile { first: start, bytes });
        self.next = next;
        Ok(from)
    }

    /// After the snapshot is durable (step 4): removes the files wholly before `front`. A file
    /// that cannot be removed is a warning, tried again at the next compaction: readers skip
    /// the lines before the front.
    pub fn prune(&mut self, fs: &dyn Fs, dir: &Path, front: u64) {
        loop {
            let whole = match self.chain.as_slice() {
                [f, g, ..] => g.first <= front && f.first < front,
                [f] => self.next <= front && f.first < front,
                [] => false,
            };
            if !whole {
                return;
            }
            if let Err(e) = remove(fs, dir, self.chain[0].first) {
                tracing::warn!(error = %e, "could not remove a tomb file every finished task of which is forgotten");
                return;
            }
            self.chain.remove(0);
        }
    }

    /// The snapshot just written carries its tombs inline: every tomb file goes (as stale ones,
    /// one at a time, forgotten only once removed).
    pub fn drop_all(&mut self, fs: &dyn Fs, dir: &Path) -> Result<(), FsError> {
        self.stale.append(&mut self.chain);
        self.next = 0;
        while let Some(f) = self.stale.last() {
            remove(fs, dir, f.first)?;
            self.stale.pop();
        }
        Ok(())
    }
}

fn remove(fs: &dyn Fs, dir: &Path, first: u64) -> Result<(), FsError> {
    let path = dir.join(tomb_name(first));
    if fs.stat(&path)?.is_some() {
        fs.remove_file(&path)?;
    }
    Ok(())
}

/// The first `n` lines of a tomb file, newline included; `None` when it has fewer (damaged).
fn lines(fs: &dyn Fs, dir: &Path, first: u64, n: u64) -> Result<Option<Vec<u8>>, FsError> {
    let path = dir.join(tomb_name(first));
    if fs.stat(&path)?.is_none() {
        return Ok(None);
    }
    let mut bytes = fs.read(&path, MAX_SEGMENT_BYTES)?;
    let mut seen = 0;
    let mut cut = None;
    for (i, b) in bytes.iter().enumerate() {
        if seen == n {
            cut = Some(i);
            break;
        }
        seen += u64::from(*b == b'\n');
    }
    match cut {
        Some(i) => bytes.truncate(i),
        None if seen == n => {}
        None => return Ok(None),
    }
    Ok(Some(bytes))
}

/// Reads the tombs `snap` names from the files in `dir` (`files`: first ordinals) into
/// `snap.tombs`, each with its ordinal in `snap.tomb_ordinals`. A line that cannot be read, or
/// ordinals no file covers, are set aside in `notes`: those finished tasks are forgotten, as if
/// `finished_keep_count` had dropped them, and the rest is served. The ordinals stay as the
/// snapshot says (a tomb made after the restart never takes the ordinal of one a file may still
/// hold). Returns `Err` with why when the snapshot's range cannot be one the broker wrote.
pub(crate) fn read_into(
    fs: &dyn Fs,
    dir: &Path,
    files: &[u64],
    snap: &mut Snapshot,
    notes: &mut Notes,
) -> Result<Result<(), String>, FsError> {
    let (front, next) = (snap.tombs_front, snap.tombs_next);
    if front > next || next > u64::MAX / 4 {
        return Ok(Err(format!("its finished tasks' range {front}..{next} is not one the broker writes")));
    }
    let mut chain: Vec<u64> = files.iter().copied().filter(|&f| f < next).collect();
    chain.sort_unstable();
    let gone: std::collections::HashSet<u64> = snap.tombs_gone.iter().copied().collect();
    let mut covered = front;
    for (k, &first) in chain.iter().enumerate() {
        let end = chain.get(k + 1).copied().unwrap_or(next);
        if end <= front {
            continue;
        }
        let path = dir.join(tomb_name(first));
        if first > covered {
            notes.set_aside.push(format!(
                "{}: finished tasks {covered} to {first} are in no tomb file: forgotten",
                dir.display()
            ));
        }
        let bytes = match fs.read(&path, MAX_SEGMENT_BYTES) {
            Ok(b) => b,
            // Removed under a reader (`trace` while the broker compacts): like a missing file.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let mut o = first;
        for (i, line) in body.split(|b| *b == b'\n').enumerate().take_while(|_| !body.is_empty()) {
            if o >= end {
                break;
            }
            let ordinal = o;
            o += 1;
            if ordinal < front || line == b"null" || gone.contains(&ordinal) {
                continue;
            }
            match serde_json::from_slice::<Tomb>(line) {
                Ok(t) => {
                    snap.tombs.push(t);
                    snap.tomb_ordinals.push(ordinal);
                }
                Err(e) => notes.set_aside.push(format!(
                    "{}: line {}: cannot be read as a finished task ({e}): forgotten",
                    path.display(),
                    i + 1
                )),
            }
        }
        covered = covered.max(o);
    }
    if covered < next {
        if next - covered > MAX_GAP {
            return Ok(Err(format!(
                "it names finished tasks up to {next} but its tomb files end at {covered}"
            )));
        }
        notes.set_aside.push(format!(
            "{}: the snapshot names finished tasks up to {next} but its tomb files end at {covered}: those after are forgotten",
            dir.display()
        ));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;

//! The board writer: the four central boards (`central_task_boards/*.json`) derived from the
//! state and replaced atomically (temporary, fsync, rename; one directory fsync for the four),
//! at most every 200 ms (or four times as long as the last rewrite took, or as long as its bytes
//! take at 16 MB/s) unless forced; a board larger than 4 MB (the ready board of a deep queue) is
//! written 1 MB per pass and renamed into place once whole ([`super::pieces`]); the
//! completed board, the largest under a steady load (the last `completed_board_limit` finished
//! tasks, each with its whole history) and one that only grows older, at most every 500 ms.
//!
//! The live boards' rows are kept in order as records change tasks ([`LiveRows`]); the completed
//! board's are cached by version. Either way a rewrite serialises only what changed and skips a
//! board whose entries are all unchanged. The writer keeps a mark of what it wrote on each board,
//! so an edit made behind its back is noticed, left to settle, and handed to board-edit
//! absorption instead of being overwritten unread.

use super::EngineError;
use super::board_rows::{CachedTask, LiveRows};
use super::env::Env;
use super::pieces::{self, LARGE, Piecewise};
use crate::state::{State, fnv64};
use protocol::Timestamp;
use runtime_layout::{Board, replace_file};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// What the writer last wrote to one board: the file's size and mtime, and a hash of each task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BoardMark {
    stamp: Option<(u64, Timestamp)>,
    /// Each task's row as written: the hash of its id and the hash of its JSON, in board order.
    /// Made as the board's bytes are (from the rows, reaching no other memory); looked up only
    /// when an edit is absorbed, through `by_id`. Marks saved by earlier versions, a map from
    /// each id to its hash, are read too.
    #[serde(deserialize_with = "pairs_or_map")]
    tasks: Vec<(u64, u64)>,
    #[serde(skip)]
    by_id: OnceLock<HashMap<u64, u64>>,
    /// An edit seen but not yet settled: (size, mtime) when first seen changed, and when.
    #[serde(skip)]
    pending: Option<((u64, Timestamp), Timestamp)>,
}

/// [`BoardMark::tasks`] as saved: (id hash, JSON hash) pairs, or the `{id: hash}` map of earlier
/// versions.
fn pairs_or_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(u64, u64)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Pairs(Vec<(u64, u64)>),
        ById(HashMap<String, u64>),
    }
    Ok(match Saved::deserialize(d)? {
        Saved::Pairs(v) => v,
        Saved::ById(m) => m.into_iter().map(|(id, hash)| (fnv64(id.as_bytes()), hash)).collect(),
    })
}

/// The marks a clean stop leaves beside the boards, so that an edit made while the broker is
/// stopped is absorbed at the next start rather than overwritten. Valid only for the journal
/// position it was written at: after any later record the boards were rewritten, so older marks
/// would mistake the broker's own writes for edits.
#[derive(Debug, Serialize, Deserialize)]
struct SavedMarks {
    /// The last journal record when the boards were last written.
    seq: u64,
    boards: HashMap<String, BoardMark>,
}

/// The file that holds [`SavedMarks`], in `central_task_boards/` (hidden: not a board).
const MARKS: &str = ".mailroom-board-marks.json";

/// The least time between two rewrites of the completed board (µs) unless forced. At 1,000
/// finished tasks of 1 KB that board is about 1.5 MB, and rewriting it with every other board
/// (up to five times a second under a steady load) was most of the bytes the broker wrote and a
/// fifth of its CPU time; the others hold only live tasks. At 500 ms plus a tick (500 ms by
/// default) a finished task still reaches it within about a second.
const COMPLETED_EVERY_US: i64 = 500_000;

/// Board bytes the writer may write per second on average: the next rewrite waits until the
/// last one's bytes fit this rate. Rewrites of the boards of a few thousand tasks (a few
/// megabytes) are not slowed by it; the ready board of 20,000 queued tasks (about 22 MB) is
/// rewritten every 1.4 s rather than five times a second, which would have the kernel write
/// back a hundred megabytes a second that no reader needs.
const BYTES_PER_SEC: i64 = 16 << 20;

impl BoardMark {
    /// The hash of the task's compact JSON as the writer put it on the board.
    pub fn written_hash(&self, id: &str) -> Option<u64> {
        self.by_id.get_or_init(|| self.tasks.iter().copied().collect()).get(&fnv64(id.as_bytes())).copied()
    }

    fn new(stamp: Option<(u64, Timestamp)>, tasks: Vec<(u64, u64)>) -> Self {
        Self { stamp, tasks, by_id: OnceLock::new(), pending: None }
    }

    /// Has the board file changed since it was written (`now` is its current size and mtime)?
    fn edited(&self, now: Option<(u64, Timestamp)>) -> bool {
        now.is_some() && now != self.stamp
    }
}

#[derive(Default)]
pub(crate) struct BoardWriter {
    dirty: bool,
    force_next: bool,
    written: Option<Timestamp>,
    /// When the completed board was last rewritten (see [`COMPLETED_EVERY_US`]).
    completed_written: Option<Timestamp>,
    /// How long the last rewrite took (µs): the next waits at least four times that, so that
    /// boards of a deep queue (every ready task is on the ready board) never take more than a
    /// fifth of the broker's time.
    cost_us: i64,
    /// Bytes the last rewrite wrote (see [`BYTES_PER_SEC`]).
    last_bytes: i64,
    marks: HashMap<Board, BoardMark>,
    /// The live boards' rows, kept in order as records change tasks.
    live: LiveRows,
    /// The completed board's rows by task id, so that a rewrite serialises only the tasks that
    /// finished since the last.
    cache: HashMap<String, Arc<CachedTask>>,
    sigs: HashMap<Board, u64>,
    /// The bytes of the board being written, kept between rewrites: the ready board of a deep
    /// queue is tens of megabytes, allocated and freed again at every rewrite otherwise.
    buf: Vec<u8>,
    /// A board larger than a piece, being written a piece per pass (see [`super::pieces`]).
    large: Option<Large>,
    /// Temporaries a crash left in the boards' directory were removed (at the first write).
    swept: bool,
}

/// A board being replaced a piece at a time, with what to record once it is in place.
struct Large {
    board: Board,
    write: Piecewise,
    sig: u64,
    hashes: Vec<(u64, u64)>,
    /// When its rewrite started (the engine's clock).
    started: Timestamp,
}

impl BoardWriter {
    pub fn new() -> Self {
        Self { dirty: true, ..Default::default() }
    }

    /// Takes the marks a clean stop left (see [`SavedMarks`]), if they are for journal record
    /// `last_seq`; the file is removed either way, so no later start can trust it.
    pub fn load_marks(&mut self, env: &Env, last_seq: u64) -> Result<(), EngineError> {
        let path = env.layout.boards_dir().join(MARKS);
        let bytes = match env.fs().read(&path, 1 << 30) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                env.warn_once(&path, "cannot read the board marks of the last stop", &e);
                return Ok(());
            }
        };
        match serde_json::from_slice::<SavedMarks>(&bytes) {
            Ok(saved) if saved.seq == last_seq => {
                for board in Board::ALL {
                    if let Some(m) = saved.boards.get(board.file_name()) {
                        self.marks.insert(board, m.clone());
                    }
                }
            }
            Ok(_) => tracing::debug!("board marks of an earlier stop are out of date: not used"),
            Err(e) => tracing::warn!(error = %e, "board marks of the last stop cannot be read: not used"),
        }
        match env.fs().remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Leaves the marks of what was last written for the next start (on a clean stop).
    pub fn save_marks(&self, env: &Env, last_seq: u64) -> Result<(), EngineError> {
        if self.marks.is_empty() {
            return Ok(());
        }
        let boards = self.marks.iter().map(|(b, m)| (b.file_name().to_string(), m.clone())).collect();
        let bytes = serde_json::to_vec(&SavedMarks { seq: last_seq, boards }).expect("marks serialise");
        let path = env.layout.boards_dir().join(MARKS);
        runtime_layout::write_atomic(env.fs(), &path, &bytes, &env.names, env.durability)?;
        Ok(())
    }

    /// A task changed: the boards are rewritten at the next chance.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether a large board is being written a piece per pass (come back soon, not a tick later).
    pub fn in_flight(&self) -> bool {
        self.large.is_some()
    }

    /// Writes the next piece of the large board under way (all of it when `force`) and, once it
    /// is all written, puts it in place and records it. A board edited meanwhile is left for
    /// absorption: the replacement is given up and the board rewritten after the edit.
    fn advance_large(&mut self, env: &Env, force: bool, durable: bool) -> Result<(), EngineError> {
        let Some(large) = self.large.as_mut() else { return Ok(()) };
        let complete = if force {
            while !large.write.advance()? {}
            true
        } else {
            large.write.advance()?
        };
        if !complete {
            return Ok(());
        }
        let Large { board, write, sig, hashes, started } = self.large.take().expect("checked above");
        let absorb = env.cfg.ingest.absorb_board_edits;
        // A board whose replacement fails is written again at the next rewrite.
        let on_disk = env.fs().stat(write.path()).inspect_err(|_| self.live.mark_changed(board))?;
        let on_disk = on_disk.map(|m| (m.len, m.mtime));
        if absorb && self.marks.get(&board).is_some_and(|m| m.edited(on_disk)) {
            self.buf = write.abandon(env.fs());
            self.live.mark_changed(board);
            self.dirty = true;
            return Ok(());
        }
        let sync = durable && env.durability.sync_files();
        let (len, spent) = (write.len(), write.spent());
        let path = write.path().to_path_buf();
        self.buf = write.finish(env.fs(), sync).inspect_err(|_| self.live.mark_changed(board))?;
        if sync {
            env.fs().sync_dir(&env.layout.boards_dir())?;
        }
        self.sigs.insert(board, sig);
        if board == Board::Completed {
            self.completed_written = Some(started);
        }
        if absorb {
            let stamp = env.fs().stat(&path)?.map(|m| (m.len, m.mtime));
            self.marks.insert(board, BoardMark::new(stamp, hashes));
        }
        // The next rewrite waits for this one's time too (its bytes were counted when it began).
        self.cost_us += i64::try_from(spent.as_micros()).unwrap_or(i64::MAX / 8);
        tracing::debug!(
            board = board.file_name(),
            bytes = len,
            pieces_us = spent.as_micros() as u64,
            "large board in place"
        );
        Ok(())
    }

    /// Whether an edited board is waiting to settle (a later pass must look again).
    pub fn edit_settling(&self) -> bool {
        self.marks.values().any(|m| m.pending.is_some())
    }

    /// Boards edited behind the writer's back whose edit has settled (not changed for
    /// `settle_ms`), each with the mark of what was written before. Their marks are dropped, so
    /// they are rewritten, after absorption, at the next write. A deleted board is written again.
    pub fn settled_edits(&mut self, env: &Env) -> Result<Vec<(Board, BoardMark)>, EngineError> {
        if self.marks.is_empty() {
            return Ok(Vec::new());
        }
        let now = env.now();
        let settle = env.cfg.broker.settle_ms as i64 * 1000;
        let mut out = Vec::new();
        for board in Board::ALL {
            let stamp = env.fs().stat(&env.layout.board(board))?.map(|m| (m.len, m.mtime));
            let Some(mark) = self.marks.get_mut(&board) else { continue };
            if stamp == mark.stamp {
                mark.pending = None;
                continue;
            }
            let Some(cur) = stamp else {
                mark.stamp = None;
                self.force_next = true;
                continue;
            };
            match mark.pending {
                Some((seen, since)) if seen == cur => {
                    if now.as_micros() - since.as_micros() < settle
                        && cur.1.as_micros() + settle > now.as_micros()
                    {
                        continue;
                    }
                }
                _ => {
                    mark.pending = Some((cur, now));
                    continue;
                }
            }
            out.push((board, self.marks.remove(&board).unwrap_or_default()));
            self.force_next = true;
        }
        Ok(out)
    }

    /// Rewrites the boards from state when they changed (at most every 200 ms, or four times the
    /// last rewrite's duration, unless `force`).
    ///
    /// Boards are derived state, rewritten from the journal at every start, so a rewrite is not
    /// fsynced unless `durable` (a clean stop, or `always` durability): a power loss can leave an
    /// old board (or, on a filesystem that does not flush a file renamed over another, an empty
    /// one) until the broker starts again.
    ///
    /// `changed` names the tasks records changed since the last call (see [`LiveRows`]).
    pub fn write(
        &mut self,
        env: &Env,
        state: &State,
        changed: Vec<String>,
        force: bool,
        durable: bool,
    ) -> Result<(), EngineError> {
        self.live.update(state, changed);
        // The caller's force (a start, a clean stop) finishes everything now; a rewrite the
        // writer forces itself (after an absorbed edit) still writes a large board in pieces.
        let now_whole = force;
        if !self.swept {
            let mut paths: Vec<_> = Board::ALL.iter().map(|b| env.layout.board(*b)).collect();
            paths.push(env.layout.agents_board());
            pieces::sweep(env.fs(), &env.layout.boards_dir(), &paths);
            self.swept = true;
        }
        // A large board under way: one more piece, or all of it when forced. No other rewrite
        // starts before it is in place.
        if self.large.is_some() {
            self.advance_large(env, now_whole, durable)?;
            if self.large.is_some() {
                return Ok(());
            }
        }
        let force = force || std::mem::take(&mut self.force_next);
        if !self.dirty && !force {
            return Ok(());
        }
        // The engine's clock, not `Instant`: with an injected clock a pass is deterministic.
        let now = env.now();
        let interval = (4 * self.cost_us).max(200_000).max(self.last_bytes * 1_000_000 / BYTES_PER_SEC);
        if !force && self.written.is_some_and(|t| now >= t && now.as_micros() - t.as_micros() < interval) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut marks = Vec::new();
        let (mut largest, mut total) = (0, 0);
        // Each board: temporary, fsync, rename; then one fsync of the directory for all four.
        let sync = durable && env.durability.sync_files();
        let mut deferred = false;
        // The completed board waits for its own turn; the writer stays dirty until it comes.
        let completed_due = force
            || self.completed_written.is_none_or(|t| {
                now < t || now.as_micros() - t.as_micros() >= COMPLETED_EVERY_US.max(interval)
            });
        let absorb = env.cfg.ingest.absorb_board_edits;
        for board in Board::ALL {
            let path = env.layout.board(board);
            let on_disk = env.fs().stat(&path)?.map(|m| (m.len, m.mtime));
            // A board someone else changed is absorbed first, never overwritten unread.
            if absorb && self.marks.get(&board).is_some_and(|m| m.edited(on_disk)) {
                deferred = true;
                continue;
            }
            if board == Board::Completed && !completed_due {
                deferred = true;
                continue;
            }
            let (completed, sig, unchanged) = if board == Board::Completed {
                // A task is serialised again only when it changed since the last rewrite (its
                // version). Its bytes also give the hash that tells an edited entry from an
                // untouched one, and the board's signature: a board whose entries are all
                // unchanged is not rewritten at all.
                let mut sig = fnv64(board.file_name().as_bytes());
                let mut rows = Vec::with_capacity(state.recent_done().len());
                for t in state.recent_done() {
                    let row = match self.cache.get(&t.task_id) {
                        Some(c) if c.version == CachedTask::version_of(t) => Arc::clone(c),
                        _ => {
                            let row = Arc::new(CachedTask::of(t));
                            self.cache.insert(t.task_id.clone(), Arc::clone(&row));
                            row
                        }
                    };
                    sig = sig.rotate_left(5) ^ row.hash;
                    rows.push(row);
                }
                let same = self.sigs.get(&board) == Some(&sig);
                (Some(rows), sig, same)
            } else {
                // Rows no record touched since this board was last written are the same rows.
                (None, 0, !self.live.take_changed(board))
            };
            let unchanged =
                !force && unchanged && (!absorb || self.marks.contains_key(&board)) && on_disk.is_some();
            if unchanged {
                continue;
            }
            // One task per line.
            let mut hashes = Vec::new();
            let mut bytes = std::mem::take(&mut self.buf);
            match &completed {
                Some(rows) => assemble(&mut bytes, &mut hashes, absorb, rows.iter().map(|r| &**r)),
                None => {
                    self.live.resolve(state, board);
                    assemble(&mut bytes, &mut hashes, absorb, self.live.rows(board))
                }
            }
            largest = largest.max(bytes.len());
            total += bytes.len();
            if bytes.len() > LARGE && !now_whole {
                // Written a piece per pass from the next one on; recorded once in place. A second
                // large board waits for the next rewrite.
                if self.large.is_some() {
                    self.buf = bytes;
                    self.live.mark_changed(board);
                    deferred = true;
                    continue;
                }
                let write = Piecewise::start(env.fs(), &path, bytes, &env.names).inspect_err(|_| {
                    self.live.mark_changed(board);
                })?;
                self.large = Some(Large { board, write, sig, hashes, started: now });
                continue;
            }
            let replaced = replace_file(env.fs(), &path, &bytes, &env.names, sync);
            self.buf = bytes;
            if replaced.is_err() {
                self.live.mark_changed(board);
            }
            replaced?;
            self.sigs.insert(board, sig);
            if board == Board::Completed {
                self.completed_written = Some(now);
            }
            if absorb {
                let stamp = env.fs().stat(&path)?.map(|m| (m.len, m.mtime));
                marks.push((board, BoardMark::new(stamp, hashes)));
            }
        }
        // A queue that drained does not keep its deep board's buffer.
        if largest > 0 && self.buf.capacity() > 4 * largest.max(1 << 20) {
            self.buf = Vec::new();
        }
        // Forget tasks that left the completed board.
        if self.cache.len() > state.recent_done().len() + 1024 {
            let keep: HashSet<&str> = state.recent_done().map(|t| t.task_id.as_str()).collect();
            self.cache.retain(|k, _| keep.contains(k.as_str()));
        }
        if sync {
            env.fs().sync_dir(&env.layout.boards_dir())?;
        }
        for (b, m) in marks {
            self.marks.insert(b, m);
        }
        self.dirty = deferred;
        self.written = Some(now);
        self.cost_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX / 8);
        self.last_bytes = i64::try_from(total).unwrap_or(i64::MAX / 8);
        tracing::debug!(cost_us = self.cost_us, bytes = total, force, "boards rewritten");
        Ok(())
    }
}

/// A board's bytes: a JSON array of `rows`, one per line; with `marks`, each row's id hash and
/// JSON hash into `hashes` too.
fn assemble<'a>(
    bytes: &mut Vec<u8>,
    hashes: &mut Vec<(u64, u64)>,
    marks: bool,
    rows: impl Iterator<Item = &'a CachedTask>,
) {
    bytes.clear();
    bytes.push(b'[');
    for (i, row) in rows.enumerate() {
        bytes.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        bytes.extend_from_slice(&row.json);
        if marks {
            hashes.push((row.id_hash, row.hash));
        }
    }
    bytes.extend_from_slice(b"\n]\n");
}

#[cfg(test)]
mod tests {
    use super::BoardMark;

    /// Marks saved by this version and by earlier ones (a map from id to hash) both give the
    /// hash written for an id, so an edit made while the broker was stopped across an upgrade
    /// is still absorbed.
    #[test]
    fn saved_marks_of_either_form_give_the_written_hashes() {
        let old: BoardMark = serde_json::from_str(r#"{"stamp":null,"tasks":{"T1":5,"T2":7}}"#).unwrap();
        assert_eq!(
            (old.written_hash("T1"), old.written_hash("T2"), old.written_hash("T3")),
            (Some(5), Some(7), None)
        );
        let new: BoardMark = serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        assert_eq!(
            (new.written_hash("T1"), new.written_hash("T2"), new.written_hash("T3")),
            (Some(5), Some(7), None)
        );
    }
}

//! The rows of the three live boards (backlog, ready, working), kept in board order as records
//! change tasks.
//!
//! Every ready task is on the ready board, so at 100,000 queued a rewrite that gathered the rows
//! from the whole state, sorted them and looked each up in a cache touched 100,000 scattered
//! tasks, several times each: most of a second per rewrite on the benchmark machine. Here each
//! record that changes a task ([`Ledger::take_changed`](super::ledger::Ledger::take_changed))
//! moves that one task's row: out of the board it was on, into the one its place now puts it
//! on, under its sort key, serialised again only if its version (update time, history length,
//! status) changed. A rewrite then walks one board's rows in order; a board no record touched
//! since it was written is not rewritten at all.
//!
//! Sort keys: the dispatch name on the ready and working boards (dispatch order), and creation
//! time then id on the backlog.

use crate::journal::Place;
use crate::state::{State, fnv64};
use protocol::{Status, Task};
use runtime_layout::Board;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A task as written to a board: the version it had (update time, history length, status),
/// its compact JSON, that JSON's hash, and its id's hash.
pub(crate) struct CachedTask {
    pub version: (Option<i64>, usize, Status),
    pub json: Vec<u8>,
    pub hash: u64,
    /// The hash of the task's id, for the board's mark.
    pub id_hash: u64,
}

impl CachedTask {
    pub fn version_of(t: &Task) -> (Option<i64>, usize, Status) {
        (t.updated_at.map(|u| u.as_micros()), t.history.len(), t.status)
    }

    pub fn of(t: &Task) -> Self {
        let json = serde_json::to_vec(t).expect("a task always serialises");
        let hash = fnv64(&json);
        let id_hash = fnv64(t.task_id.as_bytes());
        Self { version: Self::version_of(t), json, hash, id_hash }
    }
}

/// The live boards' rows, in order, and which boards changed since they were last taken.
#[derive(Default)]
pub(crate) struct LiveRows {
    /// Filled from the whole state once, at the first update.
    built: bool,
    /// Each live task's board and sort key.
    at: HashMap<Arc<str>, (Board, Arc<str>)>,
    /// Per live board: sort key → row.
    rows: HashMap<Board, BTreeMap<Arc<str>, Slot>>,
    /// Per live board, the keys of rows whose task changed since it was serialised: serialised
    /// when their board is next written ([`resolve`](LiveRows::resolve)), so that a task that
    /// changes five times between two rewrites is serialised once.
    stale: HashMap<Board, Vec<Arc<str>>>,
    /// Boards whose rows changed since [`take_changed`](Self::take_changed) last said so.
    changed: HashMap<Board, bool>,
}

/// One task's place on a board: its id, and its row once serialised.
struct Slot {
    id: Arc<str>,
    row: Option<Arc<CachedTask>>,
}

/// The board a live task in `place` is on, and its sort key there.
fn placed(place: &Place, task: &Task) -> (Board, Arc<str>) {
    match place {
        Place::Backlog | Place::Done | Place::Outbound { .. } | Place::Forwarded { .. } => {
            let created = task.created_at.map(|t| t.compact()).unwrap_or_default();
            (Board::Backlog, Arc::from(created + &task.task_id))
        }
        Place::Queued { name, .. } | Place::Waiting { name, .. } => (Board::Ready, Arc::from(name.as_str())),
        Place::Held { name, .. } => (Board::Working, Arc::from(name.as_str())),
    }
}

impl LiveRows {
    /// Brings the rows in line with `state` for the tasks `changed` names (every record that
    /// changed a task names it); the first call takes every live task.
    pub fn update(&mut self, state: &State, changed: impl IntoIterator<Item = String>) {
        if !self.built {
            self.built = true;
            for l in state.lives() {
                self.place(Arc::from(l.task.task_id.as_str()), &l.place, &l.task, None);
            }
            for b in [Board::Backlog, Board::Ready, Board::Working] {
                self.changed.insert(b, true);
            }
            return;
        }
        for id in changed {
            self.refresh(state, &id);
        }
    }

    /// Moves task `id`'s row to where its place puts it now (nowhere once it finished).
    fn refresh(&mut self, state: &State, id: &str) {
        let old = self.at.remove(id).and_then(|(board, key)| {
            self.changed.insert(board, true);
            self.rows.get_mut(&board).and_then(|rows| rows.remove(&key))
        });
        let Some(l) = state.live(id) else { return };
        let (id, row) = match old {
            Some(slot) => (slot.id, slot.row),
            None => (Arc::from(id), None),
        };
        let row = row.filter(|r| r.version == CachedTask::version_of(&l.task));
        self.place(id, &l.place, &l.task, row);
    }

    /// Puts task `id` on the board `place` puts it on, with its row if it is up to date.
    fn place(&mut self, id: Arc<str>, place: &Place, task: &Task, row: Option<Arc<CachedTask>>) {
        let (board, key) = placed(place, task);
        if row.is_none() {
            self.stale.entry(board).or_default().push(Arc::clone(&key));
        }
        self.at.insert(Arc::clone(&id), (board, Arc::clone(&key)));
        self.rows.entry(board).or_default().insert(key, Slot { id, row });
        self.changed.insert(board, true);
    }

    /// Serialises the rows of `board` whose task changed since (before it is written).
    pub fn resolve(&mut self, state: &State, board: Board) {
        let (Some(keys), Some(rows)) = (self.stale.remove(&board), self.rows.get_mut(&board)) else { return };
        for key in keys {
            if let Some(slot) = rows.get_mut(&key)
                && slot.row.is_none()
                && let Some(l) = state.live(&slot.id)
            {
                slot.row = Some(Arc::new(CachedTask::of(&l.task)));
            }
        }
    }

    /// Whether `board`'s rows changed since the last call for it.
    pub fn take_changed(&mut self, board: Board) -> bool {
        self.changed.insert(board, false).unwrap_or(true)
    }

    /// `board` is to be written again although no record touched it (its last write did not
    /// happen).
    pub fn mark_changed(&mut self, board: Board) {
        self.changed.insert(board, true);
    }

    /// `board`'s rows in board order (those [`resolve`](Self::resolve)d).
    pub fn rows(&self, board: Board) -> impl Iterator<Item = &CachedTask> {
        self.rows.get(&board).into_iter().flat_map(BTreeMap::values).filter_map(|s| s.row.as_deref())
    }
}

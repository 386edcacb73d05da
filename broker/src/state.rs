//! The broker's in-memory state, rebuilt at start from the journal and changed only by applying
//! journal records, so that live operation and replay cannot disagree.

use crate::journal::{Op, Place, Record, SnapTask, Snapshot, Tomb};
use protocol::{Status, Task};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A task that is not finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub task: Task,
    pub place: Place,
    /// Hash of the task as first submitted: an identical resubmission is a no-op.
    pub hash: u64,
}

/// How many former dispatch names are remembered, so that a file left behind under an old name
/// (a crash between a journal entry and its file move) is recognised and cleaned up.
const RETIRED_NAMES: usize = 100_000;

#[derive(Debug, Default)]
pub struct State {
    pub live: HashMap<String, Live>,
    /// Finished tasks: id → (status, submission hash).
    pub tombs: HashMap<String, (Status, u64)>,
    /// The most recent finished tasks, oldest first.
    pub recent_done: VecDeque<Task>,
    pub recent_limit: usize,
    /// Current dispatch name → task id (tasks that are Queued or Held).
    pub by_name: HashMap<String, String>,
    /// Former dispatch names → task id.
    pub retired: HashMap<String, String>,
    retired_order: VecDeque<String>,
    /// Live PENDING tasks in the backlog, waiting to be dispatched.
    pub backlog: BTreeSet<String>,
    /// Inbox messages already consumed → where they belong (`cur` or a quarantine path).
    pub consumed: BTreeMap<String, String>,
    /// Why each refused inbox message (of `consumed`) was refused, from its `Reject` record: a
    /// restart that must finish moving it to quarantine writes this reason beside it.
    pub refusals: BTreeMap<String, String>,
}

impl State {
    pub fn new(recent_limit: usize) -> Self {
        Self { recent_limit, ..Default::default() }
    }

    pub fn from_snapshot(snap: Snapshot, recent_limit: usize) -> Self {
        let mut s = Self::new(recent_limit);
        // Sized once: growing by doubling to a million tombs peaks at 1.5 tables during a rehash.
        s.tombs.reserve(snap.tombs.len());
        for t in snap.tombs {
            s.tombs.insert(t.id, (t.status, t.hash));
        }
        s.recent_done = snap.recent_done.into();
        for st in snap.live {
            s.set_live(st.task, st.place, st.hash);
        }
        s.consumed = snap.consumed;
        s
    }

    pub fn snapshot(&self, seq: u64) -> Snapshot {
        let mut live: Vec<SnapTask> = self
            .live
            .values()
            .map(|l| SnapTask { task: l.task.clone(), place: l.place.clone(), hash: l.hash })
            .collect();
        live.sort_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
        let mut tombs: Vec<Tomb> = self
            .tombs
            .iter()
            .map(|(id, (status, hash))| Tomb { id: id.clone(), status: *status, hash: *hash })
            .collect();
        tombs.sort_by(|a, b| a.id.cmp(&b.id));
        // Moves of consumed messages are complete when a snapshot is taken, so the set restarts.
        Snapshot {
            seq,
            live,
            tombs,
            recent_done: self.recent_done.iter().cloned().collect(),
            consumed: BTreeMap::new(),
        }
    }

    pub fn status_of(&self, id: &str) -> Option<Status> {
        self.live.get(id).map(|l| l.task.status).or_else(|| self.tombs.get(id).map(|t| t.0))
    }

    pub fn hash_of(&self, id: &str) -> Option<u64> {
        self.live.get(id).map(|l| l.hash).or_else(|| self.tombs.get(id).map(|t| t.1))
    }

    fn retire(&mut self, name: String, id: String) {
        if self.retired.insert(name.clone(), id).is_none() {
            self.retired_order.push_back(name);
            while self.retired_order.len() > RETIRED_NAMES {
                if let Some(old) = self.retired_order.pop_front() {
                    self.retired.remove(&old);
                }
            }
        }
    }

    fn set_live(&mut self, task: Task, place: Place, hash: u64) {
        let id = task.task_id.clone();
        if let Some(old) = self.live.get(&id)
            && let Some(old_name) = old.place.name()
            && Some(old_name) != place.name()
        {
            let old_name = old_name.to_string();
            self.by_name.remove(&old_name);
            self.retire(old_name, id.clone());
        }
        if let Some(n) = place.name() {
            self.by_name.insert(n.to_string(), id.clone());
        }
        if place == Place::Backlog && task.status == Status::Pending {
            self.backlog.insert(id.clone());
        } else {
            self.backlog.remove(&id);
        }
        self.live.insert(id, Live { task, place, hash });
    }

    /// Applies one journal record. Live operation and replay both go through here.
    pub fn apply(&mut self, rec: &Record) {
        // Any record caused by a message means the message was handled, not only its Consume
        // record: a power loss can keep a prefix of an unsynced batch (a torn append), and a
        // message whose effect survived without its Consume must not be handled a second time.
        if let Some(msg) = &rec.msg {
            let dest = match rec.op {
                Op::Consume | Op::Reject => rec.path.clone(),
                _ => Some(format!("broker/inbox/cur/{msg}")),
            };
            if let Some(dest) = dest {
                self.consumed.insert(msg.clone(), dest);
            }
            if rec.op == Op::Reject
                && let Some(reason) = &rec.reason
            {
                self.refusals.insert(msg.clone(), reason.clone());
            }
        }
        let (Some(task), Some(place)) = (&rec.task, &rec.place) else { return };
        let id = task.task_id.clone();
        let hash = rec.hash.or_else(|| self.hash_of(&id)).unwrap_or(0);
        if *place == Place::Done {
            if let Some(old) = self.live.remove(&id) {
                self.backlog.remove(&id);
                if let Some(n) = old.place.name() {
                    self.by_name.remove(n);
                    self.retire(n.to_string(), id.clone());
                }
            }
            self.tombs.insert(id, (task.status, hash));
            self.recent_done.push_back(task.clone());
            while self.recent_done.len() > self.recent_limit.max(1) {
                self.recent_done.pop_front();
            }
        } else {
            self.tombs.remove(&id);
            self.set_live(task.clone(), place.clone(), hash);
        }
    }
}

/// FNV-1a, 64 bit: a stable hash of a task's submitted form (stable across builds and restarts).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

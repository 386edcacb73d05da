//! The broker's in-memory state, rebuilt at start from the journal and changed only by applying
//! journal records ([`State::apply`] is its one writer), so that live operation and replay
//! cannot disagree. Everything else reads it through the accessors below.

use crate::journal::{Entry, Place, Record, Requeued, SnapTask, Snapshot, Tomb, consumed_path};
use protocol::{Status, Task, Timestamp};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use tombs::Tombs;

mod snapshot;
mod tombs;

/// A task that is not finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub task: Task,
    pub place: Place,
    /// Hash of the task as first submitted: an identical resubmission is a no-op.
    pub hash: u64,
}

/// A finished task as the state remembers it: no task body, only what duplicate checks and a
/// redrive need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub status: Status,
    pub hash: u64,
    /// Held on a claim taken from a shared pool when it finished (see [`Tomb::pooled`]).
    pub pooled: bool,
}

/// How many former dispatch names are remembered at most, so that a file left behind under an old
/// name (a crash between a journal entry and its file move) is recognised and cleaned up. They are
/// also forgotten at each snapshot (every move before it is finished, and a restart replays only
/// what follows it), so they cost memory in proportion to recent work, not to history.
const RETIRED_NAMES: usize = 100_000;

#[derive(Debug, Default)]
pub struct State {
    live: HashMap<String, Live>,
    /// Finished tasks, compactly (see `tombs.rs`).
    tombs: Tombs,
    /// The most recent finished tasks, oldest first.
    recent_done: VecDeque<Task>,
    recent_limit: usize,
    /// The most tombs kept: beyond it the oldest are forgotten (`finished_keep_count`; 0: no
    /// limit).
    finished_limit: usize,
    /// Current dispatch name → task id (tasks that are Queued, Waiting or Held).
    by_name: HashMap<String, String>,
    /// The live tasks that are Held (the rest of `by_name` is Queued or Waiting): what a pass
    /// looks at for leases and presence, whatever the depth of the queues.
    held: BTreeSet<String>,
    /// Former dispatch names → task id.
    retired: HashMap<String, String>,
    retired_order: VecDeque<String>,
    /// Live PENDING tasks in the backlog, waiting to be dispatched.
    backlog: BTreeSet<String>,
    /// Dependency id → the live tasks that depend on it.
    dependents: HashMap<String, BTreeSet<String>>,
    /// Inbox messages already consumed → where they belong: `None` for `inbox/cur/` (nearly all
    /// of them: not spelt out, as there is one per message between two snapshots), else the
    /// quarantine path.
    consumed: BTreeMap<String, Option<String>>,
    /// Why each refused inbox message (of `consumed`) was refused, from its `Reject` record: a
    /// restart that must finish moving it to quarantine writes this reason beside it.
    refusals: BTreeMap<String, String>,
    /// Messages taken on the broker's socket since the last snapshot. Their names are carried
    /// through the next snapshot (and forgotten at the one after): the answer to such a message
    /// goes out after the pass, possibly after a compaction in it, and its client may deliver
    /// the same message as a file when no answer came; that file must be known as taken.
    socket_recent: BTreeSet<String>,
    /// When each agent was last seen in a record: a claim, a report, mail, a refused message.
    /// (Heartbeats touch claim files and are not journaled: presence adds their mtimes.)
    seen: HashMap<String, Timestamp>,
    /// Quarantine entries requeued since the last snapshot: their moves may be unfinished.
    requeues: BTreeMap<String, Requeued>,
    /// Each outbox sink's journaled position: every record up to it was handled.
    delivered: BTreeMap<String, u64>,
    /// Each maildir's ready tasks, filed and waiting, by dispatch name.
    windows: HashMap<String, Window>,
    /// How many live tasks are Waiting (in `by_name` without a file).
    waiting: usize,
    /// Tasks pulled from the cluster, not yet settled cluster-wide → the cluster-wide record's
    /// revision this node wrote.
    pulled: BTreeMap<String, u64>,
}

/// The ready tasks of one maildir (`queues/<pool>` or `mailboxes/<agent>`) in dispatch order:
/// those with a file in its `new/` and those waiting for room in its ready window. Names sort
/// in dispatch order (see `protocol::names::DispatchName`).
#[derive(Debug, Default)]
pub struct Window {
    filed: BTreeSet<String>,
    /// Dispatch name → task id.
    waiting: BTreeMap<String, String>,
}

impl Window {
    /// How many of its tasks have a file.
    pub fn filed(&self) -> usize {
        self.filed.len()
    }

    /// The name of the filed task that sorts last (the one a better task takes the place of).
    pub fn last_filed(&self) -> Option<&str> {
        self.filed.last().map(String::as_str)
    }

    /// The names of its tasks that have a file, in dispatch order.
    pub fn filed_in_order(&self) -> impl Iterator<Item = &str> {
        self.filed.iter().map(String::as_str)
    }

    /// How many wait for room.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The waiting tasks in dispatch order: (name, task id).
    pub fn waiting_in_order(&self) -> impl Iterator<Item = (&str, &str)> {
        self.waiting.iter().map(|(n, id)| (n.as_str(), id.as_str()))
    }
}

impl State {
    /// A state that keeps the `recent_limit` most recent finished tasks whole (the completed
    /// board) and remembers at most `finished_limit` of them (their tombs).
    pub fn new(recent_limit: usize, finished_limit: usize) -> Self {
        Self { recent_limit, finished_limit, ..Default::default() }
    }

    pub fn from_snapshot(snap: Snapshot, recent_limit: usize, finished_limit: usize) -> Self {
        let mut s = Self::new(recent_limit, finished_limit);
        // Tombs from files keep their ordinals (the files' lines); inline ones are numbered
        // from the front.
        s.tombs = Tombs::starting_at(snap.tombs_front);
        // Sized once: growing by doubling to a million tombs peaks at 1.5 tables during a rehash.
        s.tombs.reserve(snap.tombs.len());
        let mut ordinals = snap.tomb_ordinals.into_iter();
        for t in snap.tombs {
            let at = ordinals.next().unwrap_or(s.tombs.next());
            s.tombs.insert_at(
                at.max(s.tombs.next()),
                &t.id,
                Finished { status: t.status, hash: t.hash, pooled: t.pooled },
            );
        }
        s.tombs.skip_to(snap.tombs_next);
        s.recent_done = snap.recent_done.into();
        for st in snap.live {
            s.set_live(st.task, st.place, st.hash);
        }
        // After the live tasks: those a live task depends on are kept.
        s.forget_beyond_limit();
        s.consumed = snap
            .consumed
            .into_iter()
            .map(|(m, d)| (m.clone(), (d != consumed_path(&m)).then_some(d)))
            .collect();
        s.refusals = snap.socket_refusals;
        // The journal's next record is this snapshot's own marker, whose `apply` carries them
        // exactly as live operation did when it wrote the snapshot.
        s.socket_recent = s
            .consumed
            .iter()
            .filter(|(_, d)| d.as_deref() == Some(protocol::socket::SOCKET))
            .map(|(m, _)| m.clone())
            .collect();
        s.seen = snap.agents_seen.into_iter().collect();
        s.delivered = snap.delivered;
        s.pulled = snap.pulled;
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
            .map(|(id, f)| Tomb { id: id.to_string(), status: f.status, hash: f.hash, pooled: f.pooled })
            .collect();
        tombs.sort_by(|a, b| a.id.cmp(&b.id));
        // Moves of consumed messages are complete when a snapshot is taken, so the set restarts
        // with the names taken on the socket since the last one.
        let (consumed, socket_refusals) = self.socket_carried();
        Snapshot {
            seq,
            live,
            tombs,
            recent_done: self.recent_done.iter().cloned().collect(),
            consumed,
            socket_refusals,
            agents_seen: self.seen.iter().map(|(a, t)| (a.clone(), *t)).collect(),
            delivered: self.delivered.clone(),
            pulled: self.pulled.clone(),
            ..Snapshot::default()
        }
    }

    /// What a snapshot carries of the messages taken on the socket since the last one: their
    /// names (consumed at the socket) and the reasons of those refused.
    pub(crate) fn socket_carried(&self) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let names = self.socket_recent.iter();
        let consumed = names.clone().map(|m| (m.clone(), protocol::socket::SOCKET.to_string())).collect();
        let refusals = names.filter_map(|m| Some((m.clone(), self.refusals.get(m)?.clone()))).collect();
        (consumed, refusals)
    }

    // ------------------------------------------------------------------ reading

    /// A live (unfinished) task.
    pub fn live(&self, id: &str) -> Option<&Live> {
        self.live.get(id)
    }

    /// Every live task, in no particular order.
    pub fn lives(&self) -> impl Iterator<Item = &Live> {
        self.live.values()
    }

    /// The held tasks (claimed by an agent), in id order: as many as there are claims, however
    /// deep the queues are.
    pub fn held(&self) -> impl Iterator<Item = &Live> {
        self.held.iter().filter_map(|id| self.live.get(id))
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// A finished task.
    pub fn finished(&self, id: &str) -> Option<Finished> {
        self.tombs.get(id)
    }

    pub fn finished_count(&self) -> usize {
        self.tombs.len()
    }

    /// The memory the finished tasks' tombs hold.
    pub fn tombs_heap_bytes(&self) -> usize {
        self.tombs.heap_bytes()
    }

    /// The most recent finished tasks, oldest first (the completed board).
    pub fn recent_done(&self) -> impl DoubleEndedIterator<Item = &Task> + ExactSizeIterator {
        self.recent_done.iter()
    }

    pub fn status_of(&self, id: &str) -> Option<Status> {
        self.live.get(id).map(|l| l.task.status).or_else(|| self.tombs.get(id).map(|t| t.status))
    }

    pub fn hash_of(&self, id: &str) -> Option<u64> {
        self.live.get(id).map(|l| l.hash).or_else(|| self.tombs.get(id).map(|t| t.hash))
    }

    /// The task a current dispatch name (queued file or claim) belongs to.
    pub fn task_named(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    /// The task a former dispatch name belonged to.
    pub fn retired_name(&self, name: &str) -> Option<&str> {
        self.retired.get(name).map(String::as_str)
    }

    /// How many tasks wait as files in a queue or a mailbox (dispatched, not yet claimed).
    pub fn queued_count(&self) -> usize {
        self.by_name.len() - self.held.len() - self.waiting
    }

    /// The ready tasks of the maildir `dir`, if it has any.
    pub fn window(&self, dir: &str) -> Option<&Window> {
        self.windows.get(dir)
    }

    /// Every maildir with ready tasks, and its window (in no particular order).
    pub fn windows(&self) -> impl Iterator<Item = (&str, &Window)> {
        self.windows.iter().map(|(d, w)| (d.as_str(), w))
    }

    /// The maildirs with tasks waiting for room in their window.
    pub fn windows_waiting(&self) -> impl Iterator<Item = &str> {
        self.windows.iter().filter(|(_, w)| !w.waiting.is_empty()).map(|(d, _)| d.as_str())
    }

    /// The live tasks that depend on `id`, in id order.
    pub fn dependents(&self, id: &str) -> impl Iterator<Item = &str> {
        self.dependents.get(id).into_iter().flatten().map(String::as_str)
    }

    /// Live PENDING tasks without a file, in id order.
    pub fn backlog(&self) -> impl Iterator<Item = &str> {
        self.backlog.iter().map(String::as_str)
    }

    /// Where an inbox message consumed before belongs (`broker/inbox/cur/..` or a quarantine path).
    pub fn consumed(&self, msg: &str) -> Option<Cow<'_, str>> {
        self.consumed.get(msg).map(|d| match d {
            Some(p) => Cow::Borrowed(p.as_str()),
            None => Cow::Owned(consumed_path(msg)),
        })
    }

    /// When `agent` was last seen in a journal record.
    pub fn last_seen(&self, agent: &str) -> Option<Timestamp> {
        self.seen.get(agent).copied()
    }

    /// Requeues whose moves may be unfinished (since the last snapshot), by entry name.
    pub fn requeues(&self) -> impl Iterator<Item = &Requeued> {
        self.requeues.values()
    }

    /// Was this quarantine entry requeued since the last snapshot?
    pub fn requeued(&self, name: &str) -> bool {
        self.requeues.contains_key(name)
    }

    /// An outbox sink's journaled position (`None` for a sink never seen).
    pub fn delivered(&self, sink: &str) -> Option<u64> {
        self.delivered.get(sink).copied()
    }

    /// The cluster-wide revision of a task pulled from the cluster and not yet settled there.
    pub fn pulled(&self, id: &str) -> Option<u64> {
        self.pulled.get(id).copied()
    }

    /// Every task pulled from the cluster and not yet settled there, with its revision.
    pub fn pulled_tasks(&self) -> impl Iterator<Item = (&str, u64)> {
        self.pulled.iter().map(|(id, r)| (id.as_str(), *r))
    }

    /// Why a consumed inbox message was refused.
    pub fn refusal(&self, msg: &str) -> Option<&str> {
        self.refusals.get(msg).map(String::as_str)
    }

    // ------------------------------------------------------------------ applying records

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

    fn forget_place(&mut self, id: &str, old: &Place) {
        if let Some(n) = old.name() {
            self.by_name.remove(n);
            self.retire(n.to_string(), id.to_string());
        }
        if matches!(old, Place::Held { .. }) {
            self.held.remove(id);
        }
    }

    /// Takes a ready task out of its maildir's window index.
    fn unwindow(&mut self, old: &Place) {
        let (dir, name, filed) = match old {
            Place::Queued { dir, name } => (dir, name, true),
            Place::Waiting { dir, name } => (dir, name, false),
            _ => return,
        };
        if !filed {
            self.waiting -= 1;
        }
        if let Some(w) = self.windows.get_mut(dir) {
            if filed {
                w.filed.remove(name);
            } else {
                w.waiting.remove(name);
            }
            if w.filed.is_empty() && w.waiting.is_empty() {
                self.windows.remove(dir);
            }
        }
    }

    /// Puts a ready task into its maildir's window index.
    fn window_in(&mut self, id: &str, place: &Place) {
        match place {
            Place::Queued { dir, name } => {
                self.windows.entry(dir.clone()).or_default().filed.insert(name.clone());
            }
            Place::Waiting { dir, name } => {
                self.waiting += 1;
                self.windows.entry(dir.clone()).or_default().waiting.insert(name.clone(), id.to_string());
            }
            _ => {}
        }
    }

    fn set_live(&mut self, task: Task, place: Place, hash: u64) {
        let id = task.task_id.clone();
        if let Some(old) = self.live.remove(&id) {
            self.unwindow(&old.place);
            if old.place.name() == place.name() {
                // Same file, another stage (queued → held keeps the name): only the count moves.
                if matches!(old.place, Place::Held { .. }) {
                    self.held.remove(&id);
                }
            } else {
                self.forget_place(&id, &old.place);
            }
        }
        if let Some(n) = place.name() {
            self.by_name.insert(n.to_string(), id.clone());
        }
        if matches!(place, Place::Held { .. }) {
            self.held.insert(id.clone());
        }
        self.window_in(&id, &place);
        if place == Place::Backlog && task.status == Status::Pending {
            self.backlog.insert(id.clone());
        } else {
            self.backlog.remove(&id);
        }
        // A task's dependencies never change: recording them again changes nothing.
        for dep in &task.depends_on {
            self.dependents.entry(dep.clone()).or_default().insert(id.clone());
        }
        self.live.insert(id, Live { task, place, hash });
    }

    /// Applies one journal record. Live operation and replay both go through here.
    pub fn apply(&mut self, rec: &Record) {
        self.apply_with(rec, None);
    }

    /// [`State::apply`] for a record its caller is done with: the task it carries is moved into
    /// the state, not copied (a copy and a drop of the whole task per record, saved).
    pub fn apply_owned(&mut self, mut rec: Record) {
        let task = rec.entry.task_mut().map(|t| std::mem::replace(t, Task::new(String::new())));
        self.apply_with(&rec, task);
    }

    /// [`State::apply`], with `rec`'s task given apart when `owned` (what `rec` holds in its place
    /// is not looked at).
    fn apply_with(&mut self, rec: &Record, owned: Option<Task>) {
        if let Some(agent) = rec.entry.seen_agent() {
            let t = self.seen.entry(agent.to_string()).or_insert(rec.ts);
            *t = (*t).max(rec.ts);
        }
        // Any record caused by a message means the message was handled, not only its Consume
        // record: a power loss can keep a prefix of an unsynced batch (a torn append), and a
        // message whose effect survived without its Consume must not be handled a second time.
        if let Some(msg) = rec.entry.msg() {
            let dest = match &rec.entry {
                Entry::Consume { path, .. } => Some(path),
                Entry::Reject(r) => Some(&r.path),
                _ => None,
            };
            let dest = dest.filter(|p| **p != consumed_path(msg)).cloned();
            if dest.as_deref() == Some(protocol::socket::SOCKET) {
                self.socket_recent.insert(msg.to_string());
            }
            self.consumed.insert(msg.to_string(), dest);
            if let Entry::Reject(r) = &rec.entry {
                self.refusals.insert(msg.to_string(), r.reason.clone());
            }
        }
        match &rec.entry {
            Entry::Snapshot { .. } => {
                // Every move the records before the snapshot describe is finished, and a restart
                // rebuilds these from the records after it only: live operation forgets them too.
                // Except the names taken on the socket since the last snapshot, which the
                // snapshot carries (see `socket_recent`).
                let carried = std::mem::take(&mut self.socket_recent);
                self.consumed =
                    carried.iter().map(|m| (m.clone(), Some(protocol::socket::SOCKET.into()))).collect();
                let mut refusals = std::mem::take(&mut self.refusals);
                self.refusals = carried.iter().filter_map(|m| refusals.remove_entry(m)).collect();
                self.requeues.clear();
                self.retired = HashMap::new();
                self.retired_order = VecDeque::new();
                return;
            }
            Entry::Requeue(r) => {
                self.requeues.insert(r.name.clone(), r.clone());
                return;
            }
            Entry::Delivered { sink, through } => {
                self.delivered.insert(sink.clone(), *through);
                return;
            }
            Entry::Pull { task_id, revision, .. } | Entry::Revision { task_id, revision } => {
                self.pulled.insert(task_id.clone(), *revision);
            }
            Entry::Settled { task_id, .. } => {
                self.pulled.remove(task_id);
                return;
            }
            _ => {}
        }
        if let Some((id, place)) = rec.entry.relocation() {
            // In or out of a ready window: same task, same name, only whether it has a file.
            if let Some(mut live) = self.live.remove(id) {
                self.unwindow(&live.place);
                self.window_in(id, place);
                live.place = place.clone();
                self.live.insert(id.to_string(), live);
            }
            return;
        }
        let Some((in_rec, place)) = rec.entry.change() else { return };
        let task = owned.as_ref().unwrap_or(in_rec);
        let (id, status) = (task.task_id.clone(), task.status);
        let hash = match &rec.entry {
            Entry::Submit(a) | Entry::Import(a) => a.hash,
            _ => self.hash_of(&id).unwrap_or(0),
        };
        if *place == Place::Done {
            let mut pooled = false;
            if let Some(old) = self.live.remove(&id) {
                self.backlog.remove(&id);
                self.unwindow(&old.place);
                pooled = old.place.claimed_from_pool();
                self.forget_place(&id, &old.place);
                for dep in &old.task.depends_on {
                    if let Some(set) = self.dependents.get_mut(dep) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.dependents.remove(dep);
                        }
                    }
                }
            }
            self.tombs.insert(&id, Finished { status, hash, pooled });
            self.forget_beyond_limit();
            self.recent_done.push_back(owned.unwrap_or_else(|| in_rec.clone()));
            while self.recent_done.len() > self.recent_limit.max(1) {
                self.recent_done.pop_front();
            }
        } else {
            if self.tombs.remove(&id).is_some() {
                // Revived by a retry: it leaves the completed board.
                self.recent_done.retain(|t| t.task_id != id);
            }
            self.set_live(owned.unwrap_or_else(|| in_rec.clone()), place.clone(), hash);
        }
    }
}

impl State {
    /// Forgets the oldest finished tasks beyond the limit, but never one a live task depends on
    /// (its dependency must still be found finished). Replay forgets exactly what live operation
    /// forgot: the same records in the same order, under the same limit.
    fn forget_beyond_limit(&mut self) {
        let limit = self.finished_limit;
        if limit > 0 && self.tombs.len() > limit {
            let dependents = &self.dependents;
            self.tombs.forget_oldest(self.tombs.len() - limit, |id| dependents.contains_key(id));
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

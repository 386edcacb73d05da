//! Everything the power-loss suite (`powerloss.rs`) reads from the journal, in one place: the records of every
//! segment, the state rebuilt from them, and the questions the invariants ask of both. The rest of
//! the suite never touches a `Record`, an `Op`, a `Place` or `State`'s fields, so a change in the
//! journal's types is a change to this file alone.

use mailroom::journal::{self, Entry, Place, Record};
use mailroom::state::State;
use protocol::{Status, Task};
use runtime_layout::{Board, Fs, Layout};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// A task file the journal says exists.
pub struct ExpectedFile {
    pub task_id: String,
    pub path: PathBuf,
    /// In a `new/` (waiting to be claimed) rather than an agent's `cur/`.
    pub queued: bool,
}

/// The journal of a root as a crash left it, read the way a restarting broker reads it.
pub struct JournalView {
    /// Every record of every segment, archived ones included, each sequence number once (a crash
    /// during compaction may leave a segment both archived and not).
    records: Vec<Record>,
    state: State,
    layout: Layout,
}

impl JournalView {
    /// The rebuilt state only (what [`JournalView::expected_files`] needs; cheaper).
    pub fn state_only(fs: &dyn Fs, layout: &Layout) -> Self {
        Self { records: Vec::new(), state: rebuilt_state(fs, layout), layout: layout.clone() }
    }

    pub fn read(fs: &dyn Fs, layout: &Layout) -> Self {
        let mut by_seq = BTreeMap::new();
        for p in journal::all_segments(fs, &layout.journal_dir()).unwrap() {
            let mut notes = journal::Notes::default();
            journal::read_segment(
                fs,
                &p,
                |r, _, _| {
                    by_seq.insert(r.seq, r);
                },
                &mut notes,
            )
            .unwrap();
        }
        Self { records: by_seq.into_values().collect(), ..Self::state_only(fs, layout) }
    }

    /// Where each live task's file must be.
    pub fn expected_files(&self) -> Vec<ExpectedFile> {
        let comms = self.layout.comms();
        let mut out = Vec::new();
        for l in self.state.lives() {
            let (path, queued) = match &l.place {
                Place::Queued { dir, name } => (comms.join(dir).join("new").join(name), true),
                Place::Held { agent, name, .. } => (self.layout.mailbox(agent).cur().join(name), false),
                _ => continue,
            };
            out.push(ExpectedFile { task_id: l.task.task_id.clone(), path, queued });
        }
        out
    }

    pub fn status_of(&self, task_id: &str) -> Option<Status> {
        self.state.status_of(task_id)
    }

    /// `Submit` records per task id.
    pub fn submits(&self) -> BTreeMap<String, usize> {
        self.count(|e| matches!(e, Entry::Submit(_)))
    }

    /// `Complete` records per task id.
    pub fn completes(&self) -> BTreeMap<String, usize> {
        self.count(|e| matches!(e, Entry::Complete(_)))
    }

    fn count(&self, op: impl Fn(&Entry) -> bool) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.records.iter().filter(|r| op(&r.entry)) {
            *out.entry(r.entry.task_id().unwrap_or_default().to_string()).or_default() += 1;
        }
        out
    }

    /// A record of a task file the broker found and did not know, if any.
    pub fn stray(&self) -> Option<String> {
        self.records.iter().find(|r| matches!(r.entry, Entry::Stray { .. })).map(|r| format!("{r:?}"))
    }

    /// Was the report sent as inbox message `msg` accepted (completed, failed or released)?
    pub fn accepted(&self, msg: &str) -> bool {
        self.records.iter().any(
            |x| matches!(&x.entry, Entry::Complete(r) | Entry::Fail(r) | Entry::Release(r) if r.msg == msg),
        )
    }

    /// Was claim `claim` of task `task` legitimately taken back (lease expiry, or a cancel)?
    pub fn taken_back(&self, claim: &str, task: &str) -> bool {
        self.records.iter().any(|x| {
            matches!(&x.entry, Entry::Expire(t) if t.claim.ends_with(claim))
                || matches!(&x.entry, Entry::Cancel { task_id, .. } if task_id == task)
        })
    }

    /// Each refused message (as the record names it) and where its file went in quarantine.
    pub fn refusals(&self) -> Vec<(Option<String>, PathBuf)> {
        self.records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Reject(x) => Some((x.msg.clone(), self.layout.comms().join(&x.path))),
                _ => None,
            })
            .collect()
    }

    /// Every record naming inbox message `msg`, for failure messages.
    pub fn about(&self, msg: &str) -> Vec<String> {
        self.records.iter().filter(|x| x.entry.msg() == Some(msg)).map(|r| format!("{r:?}")).collect()
    }

    /// What each board must hold: every task on it, as JSON, by id.
    pub fn boards(&self) -> HashMap<Board, BTreeMap<String, Value>> {
        let mut want: HashMap<Board, BTreeMap<String, Value>> =
            Board::ALL.iter().map(|b| (*b, BTreeMap::new())).collect();
        let as_json = |t: &Task| (t.task_id.clone(), serde_json::to_value(t).unwrap());
        for l in self.state.lives() {
            let b = match l.place {
                Place::Backlog | Place::Done | Place::Outbound { .. } | Place::Forwarded { .. } => {
                    Board::Backlog
                }
                Place::Queued { .. } | Place::Waiting { .. } => Board::Ready,
                Place::Held { .. } => Board::Working,
            };
            want.get_mut(&b).unwrap().extend([as_json(&l.task)]);
        }
        want.insert(Board::Completed, self.state.recent_done().map(as_json).collect());
        want
    }
}

fn rebuilt_state(fs: &dyn Fs, layout: &Layout) -> State {
    let loaded = journal::load(fs, &layout.journal_dir()).unwrap();
    let mut s = match loaded.snapshot {
        Some(snap) => {
            State::from_snapshot(snap, 1000, mailroom::config::Config::default().broker.finished_keep_count)
        }
        None => State::new(1000, mailroom::config::Config::default().broker.finished_keep_count),
    };
    for r in &loaded.records {
        s.apply(r);
    }
    s
}

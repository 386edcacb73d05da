//! Writing a snapshot of the state without copying it: the same JSON as
//! [`Snapshot`](crate::journal::Snapshot) (which reads it back), serialised from borrowed
//! views of the live tasks, the tombs and the completed board, so that a compaction costs no
//! second copy of every finished task's tomb in memory (it was the broker's peak, and it grew
//! with history). Tombs come in the order they were made (the tombs' arena), which is the same
//! on every replay of the same journal.

use super::{State, Tombs};
use crate::journal::Place;
use protocol::{Status, Task, Timestamp};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use std::collections::{BTreeMap, VecDeque};

#[derive(Serialize)]
struct SnapshotView<'a> {
    seq: u64,
    live: Vec<SnapTaskView<'a>>,
    tombs: TombsView<'a>,
    recent_done: &'a VecDeque<Task>,
    /// Moves of consumed messages are complete when a snapshot is taken, so the set restarts.
    consumed: BTreeMap<String, String>,
    /// When each agent was last seen in a record.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    agents_seen: BTreeMap<&'a str, Timestamp>,
    /// Each outbox sink's journaled position.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    delivered: &'a BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct SnapTaskView<'a> {
    task: &'a Task,
    place: &'a Place,
    hash: u64,
}

struct TombsView<'a>(&'a Tombs);

#[derive(Serialize)]
struct TombView<'a> {
    id: &'a str,
    status: Status,
    hash: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pooled: bool,
}

impl Serialize for TombsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (id, f) in self.0.iter() {
            seq.serialize_element(&TombView { id, status: f.status, hash: f.hash, pooled: f.pooled })?;
        }
        seq.end()
    }
}

impl State {
    /// Writes the snapshot of everything up to `seq` as JSON into `w`.
    pub fn write_snapshot(&self, seq: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()> {
        let mut live: Vec<SnapTaskView> = self
            .live
            .values()
            .map(|l| SnapTaskView { task: &l.task, place: &l.place, hash: l.hash })
            .collect();
        live.sort_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
        let view = SnapshotView {
            seq,
            live,
            tombs: TombsView(&self.tombs),
            recent_done: &self.recent_done,
            consumed: BTreeMap::new(),
            agents_seen: self.seen.iter().map(|(a, t)| (a.as_str(), *t)).collect(),
            delivered: &self.delivered,
        };
        view.serialize(&mut serde_json::Serializer::new(w))
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::{Entry, Record, Snapshot};
    use crate::state::State;
    use protocol::{Task, Timestamp};

    /// The streamed snapshot reads back as the `Snapshot` the state makes by copying.
    #[test]
    fn the_streamed_snapshot_is_the_copied_one() {
        let mut s = State::new(3, 0);
        let mut seq = 0;
        let mut push = |s: &mut State, e: Entry| {
            seq += 1;
            s.apply(&Record { seq, ts: Timestamp::from_micros(seq as i64), entry: e });
        };
        for i in 0..6 {
            let mut t = Task::new(format!("T{i}"));
            let a = crate::journal::Admitted {
                task_id: t.task_id.clone(),
                task: t.clone(),
                place: crate::journal::Place::Backlog,
                msg: format!("m{i}"),
                hash: i,
                path: String::new(),
            };
            push(&mut s, Entry::Submit(a));
            if i % 2 == 0 {
                t.status = protocol::Status::Completed;
                push(
                    &mut s,
                    Entry::Cancel {
                        task_id: t.task_id.clone(),
                        task: t,
                        place: crate::journal::Place::Done,
                        msg: format!("c{i}"),
                    },
                );
            }
        }
        push(&mut s, Entry::Delivered { sink: "hook:a".into(), through: 4 });
        let mut bytes = Vec::new();
        s.write_snapshot(9, &mut bytes).unwrap();
        let mut streamed: Snapshot = serde_json::from_slice(&bytes).unwrap();
        let mut copied = s.snapshot(9);
        streamed.tombs.sort_by(|a, b| a.id.cmp(&b.id));
        copied.tombs.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(streamed, copied);
        assert_eq!((streamed.tombs.len(), streamed.live.len(), streamed.recent_done.len()), (3, 3, 3));
        assert_eq!(streamed.delivered.get("hook:a"), Some(&4));
    }
}

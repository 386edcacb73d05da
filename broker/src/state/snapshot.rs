//! Writing a snapshot of the state without copying it: the same JSON as
//! [`Snapshot`](crate::journal::Snapshot) (which reads it back), serialised from borrowed
//! views of the live tasks and the completed board, so that a compaction costs no second copy
//! of the state in memory. The finished tasks' tombs go to tomb files beside it
//! (`journal/tombfiles.rs`): the state is their [`TombSource`], a line per ordinal in finish
//! order, which is the same on every replay of the same journal.

use super::State;
use crate::journal::{Place, TombSource};
use protocol::{Status, Task, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

#[derive(Serialize)]
struct SnapshotView<'a> {
    seq: u64,
    live: Vec<SnapTaskView<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    tombs_front: u64,
    #[serde(skip_serializing_if = "is_zero")]
    tombs_next: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tombs_gone: Vec<u64>,
    recent_done: &'a VecDeque<Task>,
    /// Moves of consumed messages are complete when a snapshot is taken, so the set restarts,
    /// with the names taken on the broker's socket since the last snapshot.
    consumed: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    socket_refusals: BTreeMap<String, String>,
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

#[derive(Serialize)]
struct TombView<'a> {
    id: &'a str,
    status: Status,
    hash: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pooled: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TombSource for State {
    fn front(&self) -> u64 {
        self.tombs.front()
    }

    fn next(&self) -> u64 {
        self.tombs.next()
    }

    fn write_lines(&self, from: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()> {
        for tomb in self.tombs.ordinals_from(from) {
            match tomb {
                Some((id, f)) => serde_json::to_writer(
                    &mut *w,
                    &TombView { id, status: f.status, hash: f.hash, pooled: f.pooled },
                )?,
                None => w.write_all(b"null").map_err(serde_json::Error::io)?,
            }
            w.write_all(b"\n").map_err(serde_json::Error::io)?;
        }
        Ok(())
    }
}

impl State {
    /// Writes the snapshot of everything up to `seq` as JSON into `w`, its tombs being in tomb
    /// files whose lines from `fresh` on were just written (the dead ones before it are listed).
    pub fn write_snapshot(&self, seq: u64, fresh: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()> {
        let mut live: Vec<SnapTaskView> = self
            .live
            .values()
            .map(|l| SnapTaskView { task: &l.task, place: &l.place, hash: l.hash })
            .collect();
        live.sort_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
        let (consumed, socket_refusals) = self.socket_carried();
        let view = SnapshotView {
            seq,
            live,
            tombs_front: self.tombs.front(),
            tombs_next: self.tombs.next(),
            tombs_gone: self.tombs.dead_in(self.tombs.front(), fresh),
            recent_done: &self.recent_done,
            consumed,
            socket_refusals,
            agents_seen: self.seen.iter().map(|(a, t)| (a.as_str(), *t)).collect(),
            delivered: &self.delivered,
        };
        view.serialize(&mut serde_json::Serializer::new(w))
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::{Entry, Journal, Record, load};
    use crate::state::State;
    use protocol::{Task, Timestamp};
    use runtime_layout::{Durability, NameSource, RealFs};

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
        // Written through a journal (the tombs go to a tomb file), and read back.
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&RealFs, d.path(), seq + 1, Durability::Batch).unwrap();
        j.compact_with(&RealFs, seq, &NameSource::new(), &s, |w, fresh| s.write_snapshot(seq, fresh, w))
            .unwrap();
        let mut streamed = load(&RealFs, d.path()).unwrap().snapshot.unwrap();
        let mut copied = s.snapshot(seq);
        assert_eq!(streamed.tomb_ordinals, vec![0, 1, 2]);
        assert_eq!((streamed.tombs_front, streamed.tombs_next), (0, 3));
        streamed.tomb_ordinals.clear();
        (streamed.tombs_front, streamed.tombs_next) = (0, 0);
        streamed.tombs.sort_by(|a, b| a.id.cmp(&b.id));
        copied.tombs.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(streamed, copied);
        assert_eq!((streamed.tombs.len(), streamed.live.len(), streamed.recent_done.len()), (3, 3, 3));
        assert_eq!(streamed.delivered.get("hook:a"), Some(&4));
        // Read back into a state, it holds the same tombs at the same ordinals.
        let back = State::from_snapshot(load(&RealFs, d.path()).unwrap().snapshot.unwrap(), 3, 0);
        assert_eq!((back.tombs.front(), back.tombs.next()), (s.tombs.front(), s.tombs.next()));
        for o in 0..s.tombs.next() {
            assert_eq!(back.tombs.entry(o), s.tombs.entry(o));
        }
    }
}

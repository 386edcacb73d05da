//! What the journal holds: one typed [`Record`] per line, `{"seq":..,"ts":..,"op":"..",...}`.
//!
//! Each operation is one variant of [`Entry`] with exactly the fields it needs. Field names on
//! the wire are the ones earlier versions wrote (`actor`, `path`, `msg`, ...), so journals written
//! before the records were typed replay unchanged (their free-form `detail` is ignored: nothing
//! ever read it back).

use protocol::{Task, Timestamp};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

mod payload;

pub use super::place::{POOLS_DIR, Place, consumed_path};
pub use payload::{Admitted, BoardEdit, MailSent, RefusedClaim, Rejected, Report, Requeued, TakenBack};

/// One journal line: a sequence number, the time, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub entry: Entry,
}

/// What a record is about: one variant per operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// A task accepted from a message; it starts PENDING.
    Submit(Admitted),
    /// A task migrated from a legacy tree, in the state it had there.
    Import(Admitted),
    /// An identical resubmission of an existing task: accepted as a no-op.
    Duplicate { task_id: String, msg: String },
    /// The broker made the task claimable: its file is in a queue or a mailbox.
    Dispatch { task_id: String, task: Task, place: Place },
    /// A queued task rose a priority level for dispatch order (priority aging): the broker took
    /// its file out of the queue (`from`, its old name, retired now) and queued it again under
    /// `place`'s new name, which sorts earlier.
    Age { task_id: String, task: Task, place: Place, from: String, reason: String },
    /// A waiting task got its file (under its dispatch name): its maildir's ready window had
    /// room. `place` is `Queued`.
    Promote { task_id: String, place: Place },
    /// A queued task's file was removed from its full ready window to make room for one that
    /// sorts before it; it waits again under the same name. `place` is `Waiting`.
    Withdraw { task_id: String, place: Place },
    /// An agent renamed the task's file into its `cur/`.
    Claim {
        task_id: String,
        task: Task,
        place: Place,
        #[serde(rename = "actor")]
        agent: String,
    },
    /// The holder reported success.
    Complete(Report),
    /// The holder reported failure.
    Fail(Report),
    /// The holder gave the task back.
    Release(Report),
    /// The lease ran out; the task was taken back.
    Expire(TakenBack),
    /// The claimed file disappeared from the holder's `cur/`; the task was taken back.
    Vanish(TakenBack),
    /// An operator or producer cancelled the task.
    Cancel { task_id: String, task: Task, place: Place, msg: String },
    /// An operator redrove a FAILED, BLOCKED or CANCELLED task.
    Retry { task_id: String, task: Task, place: Place, msg: String },
    /// A dependency failed, was cancelled, is BLOCKED, or does not exist after
    /// `missing_dependency_secs`: the task is BLOCKED.
    Block { task_id: String, task: Task, place: Place, reason: String },
    /// The dependencies a waiting task names that do not exist changed (`reason` lists them, or
    /// says they all exist now).
    Wait { task_id: String, task: Task, place: Place, reason: String },
    /// What blocked a task on a dependency is fixed: it is PENDING again.
    Unblock { task_id: String, task: Task, place: Place, reason: String },
    /// An agent renamed a queued task into its `cur/` that it may not claim (it lacks a capability
    /// the task requires): the file goes back where it was, under the same name, and the task
    /// stays queued, unchanged.
    Refuse(RefusedClaim),
    /// A message, a file or a part of one that could not be accepted.
    Reject(Rejected),
    /// Mail delivered from one agent to another.
    Mail(MailSent),
    /// A message file was consumed: moved to `inbox/cur` or to quarantine.
    Consume {
        msg: String,
        /// Where the message file went (relative to `agent_comms/`).
        path: String,
        /// Set when the consumed file is an edited board: what was taken from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        board: Option<BoardEdit>,
    },
    /// A stray file (stale claim, unknown dispatch name) was moved to quarantine.
    Stray {
        reason: String,
        /// Where it went.
        path: String,
        /// Where it was.
        #[serde(default)]
        from: String,
    },
    /// A snapshot of everything up to `through` was written: every file move the records before
    /// it describe is finished, so what the state kept to finish them can be forgotten.
    Snapshot { through: u64 },
    /// An operator put a quarantined input back into the inbox.
    Requeue(Requeued),
    /// An outbox sink (a webhook or a hook) has handled every record up to `through`: after a
    /// restart it resumes after it (see `outbox`).
    Delivered { sink: String, through: u64 },
    /// A task bound for a shared pool is held for the cluster (`Place::Outbound`): the cluster
    /// link publishes it, as often as it takes, until `Forwarded` is journaled.
    Forward { task_id: String, task: Task, place: Place },
    /// The cluster's work queue has the task (`Place::Forwarded`).
    Forwarded { task_id: String, task: Task, place: Place },
    /// A task pulled from the cluster's work queue, queued here for local agents; `revision` is
    /// the cluster-wide record's revision this node wrote when it took the task.
    Pull { task_id: String, task: Task, place: Place, revision: u64 },
    /// The cluster-wide record of a task pulled here moved to `revision` (redelivered to this
    /// node while it still held the task).
    Revision { task_id: String, revision: u64 },
    /// The outcome of a pulled task was written to the cluster-wide record (`fenced`: refused,
    /// because another node took the task since: the record's revision was no longer ours).
    Settled {
        task_id: String,
        revision: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fenced: bool,
    },
}

impl Entry {
    /// The operation's name, as written in the `op` field.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Submit(_) => "submit",
            Self::Import(_) => "import",
            Self::Duplicate { .. } => "duplicate",
            Self::Dispatch { .. } => "dispatch",
            Self::Age { .. } => "age",
            Self::Promote { .. } => "promote",
            Self::Withdraw { .. } => "withdraw",
            Self::Claim { .. } => "claim",
            Self::Complete(_) => "complete",
            Self::Fail(_) => "fail",
            Self::Release(_) => "release",
            Self::Expire(_) => "expire",
            Self::Vanish(_) => "vanish",
            Self::Cancel { .. } => "cancel",
            Self::Retry { .. } => "retry",
            Self::Block { .. } => "block",
            Self::Wait { .. } => "wait",
            Self::Unblock { .. } => "unblock",
            Self::Refuse(_) => "refuse",
            Self::Reject(_) => "reject",
            Self::Mail(_) => "mail",
            Self::Consume { .. } => "consume",
            Self::Stray { .. } => "stray",
            Self::Snapshot { .. } => "snapshot",
            Self::Requeue(_) => "requeue",
            Self::Delivered { .. } => "delivered",
            Self::Forward { .. } => "forward",
            Self::Forwarded { .. } => "forwarded",
            Self::Pull { .. } => "pull",
            Self::Revision { .. } => "revision",
            Self::Settled { .. } => "settled",
        }
    }

    /// The task this record is about, if any.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            Self::Submit(a) | Self::Import(a) => Some(&a.task_id),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(&r.task_id),
            Self::Expire(t) | Self::Vanish(t) => Some(&t.task_id),
            Self::Duplicate { task_id, .. }
            | Self::Dispatch { task_id, .. }
            | Self::Age { task_id, .. }
            | Self::Promote { task_id, .. }
            | Self::Withdraw { task_id, .. }
            | Self::Claim { task_id, .. }
            | Self::Cancel { task_id, .. }
            | Self::Retry { task_id, .. }
            | Self::Block { task_id, .. }
            | Self::Wait { task_id, .. }
            | Self::Unblock { task_id, .. }
            | Self::Forward { task_id, .. }
            | Self::Forwarded { task_id, .. }
            | Self::Pull { task_id, .. }
            | Self::Revision { task_id, .. }
            | Self::Settled { task_id, .. } => Some(task_id),
            Self::Reject(r) => r.task_id.as_deref(),
            Self::Refuse(r) => Some(&r.task_id),
            Self::Requeue(r) => r.task_id.as_deref(),
            Self::Mail(_)
            | Self::Consume { .. }
            | Self::Stray { .. }
            | Self::Snapshot { .. }
            | Self::Delivered { .. } => None,
        }
    }

    /// For records that move a task without changing it (in and out of its ready window): the
    /// task and where it is now.
    pub fn relocation(&self) -> Option<(&str, &Place)> {
        match self {
            Self::Promote { task_id, place } | Self::Withdraw { task_id, place } => Some((task_id, place)),
            _ => None,
        }
    }

    /// The task after the operation and where it is (what replay sets), for records that change
    /// a task.
    pub fn change(&self) -> Option<(&Task, &Place)> {
        match self {
            Self::Submit(a) | Self::Import(a) => Some((&a.task, &a.place)),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some((&r.task, &r.place)),
            Self::Expire(t) | Self::Vanish(t) => Some((&t.task, &t.place)),
            Self::Dispatch { task, place, .. }
            | Self::Age { task, place, .. }
            | Self::Claim { task, place, .. }
            | Self::Cancel { task, place, .. }
            | Self::Retry { task, place, .. }
            | Self::Block { task, place, .. }
            | Self::Wait { task, place, .. }
            | Self::Unblock { task, place, .. }
            | Self::Forward { task, place, .. }
            | Self::Forwarded { task, place, .. }
            | Self::Pull { task, place, .. } => Some((task, place)),
            _ => None,
        }
    }

    /// The task of a record that changes one, to set aside while the rest of the record is
    /// written (`delta.rs`); the same variants as [`Entry::change`].
    pub(crate) fn task_mut(&mut self) -> Option<&mut Task> {
        match self {
            Self::Submit(a) | Self::Import(a) => Some(&mut a.task),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(&mut r.task),
            Self::Expire(t) | Self::Vanish(t) => Some(&mut t.task),
            Self::Dispatch { task, .. }
            | Self::Age { task, .. }
            | Self::Claim { task, .. }
            | Self::Cancel { task, .. }
            | Self::Retry { task, .. }
            | Self::Block { task, .. }
            | Self::Wait { task, .. }
            | Self::Unblock { task, .. }
            | Self::Forward { task, .. }
            | Self::Forwarded { task, .. }
            | Self::Pull { task, .. } => Some(task),
            _ => None,
        }
    }

    /// The inbox message that caused this record. Every record caused by a message names it, so
    /// replay knows the message was handled even if a crash kept the effect but not its Consume.
    pub fn msg(&self) -> Option<&str> {
        match self {
            Self::Submit(a) => Some(&a.msg),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(&r.msg),
            Self::Duplicate { msg, .. }
            | Self::Cancel { msg, .. }
            | Self::Retry { msg, .. }
            | Self::Consume { msg, .. } => Some(msg),
            Self::Reject(r) => r.msg.as_deref(),
            Self::Requeue(r) => Some(&r.msg),
            Self::Mail(m) if m.import.is_none() => Some(&m.msg),
            // An import's `msg` is its source file, not an inbox message.
            _ => None,
        }
    }

    /// Who did it (an agent, or a producer's `created_by`), when the record says.
    pub fn actor(&self) -> Option<&str> {
        match self {
            Self::Claim { agent, .. } => Some(agent),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(&r.agent),
            Self::Expire(t) | Self::Vanish(t) => Some(&t.agent),
            Self::Reject(r) => r.agent.as_deref(),
            Self::Refuse(r) => Some(&r.agent),
            Self::Mail(m) => Some(&m.from),
            _ => None,
        }
    }

    /// The agent this record shows alive, if any: it claimed, reported, sent mail or a message the
    /// broker refused. (A claim the broker took back, or mail migrated by an import, does not.)
    pub fn seen_agent(&self) -> Option<&str> {
        match self {
            Self::Claim { agent, .. } => Some(agent),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(&r.agent),
            Self::Refuse(r) => Some(&r.agent),
            Self::Reject(r) if r.msg.is_some() => r.agent.as_deref(),
            Self::Mail(m) if m.import.is_none() => Some(&m.from),
            _ => None,
        }
    }

    /// Why, for operators.
    pub fn reason(&self) -> Option<Cow<'_, str>> {
        match self {
            Self::Duplicate { .. } => Some(Cow::Borrowed("identical resubmission: nothing to do")),
            Self::Expire(t) | Self::Vanish(t) => Some(Cow::Borrowed(&t.reason)),
            Self::Block { reason, .. }
            | Self::Wait { reason, .. }
            | Self::Unblock { reason, .. }
            | Self::Stray { reason, .. }
            | Self::Age { reason, .. } => Some(Cow::Borrowed(reason)),
            Self::Reject(r) => Some(Cow::Borrowed(&r.reason)),
            Self::Refuse(r) => Some(Cow::Borrowed(&r.reason)),
            Self::Requeue(_) => Some(Cow::Borrowed("requeued from quarantine by an operator")),
            Self::Settled { fenced: true, .. } => Some(Cow::Borrowed(
                "fenced: another node took the task since; this outcome was refused cluster-wide",
            )),
            _ => None,
        }
    }

    /// The path (relative to `agent_comms/`) this record moved a file to or from, for operators.
    pub fn path(&self) -> Option<Cow<'_, str>> {
        match self {
            Self::Submit(a) | Self::Import(a) => Some(Cow::Borrowed(&a.path)),
            Self::Complete(r) | Self::Fail(r) | Self::Release(r) => Some(Cow::Borrowed(&r.claim)),
            Self::Expire(t) | Self::Vanish(t) => Some(Cow::Borrowed(&t.claim)),
            Self::Dispatch { place, .. }
            | Self::Claim { place, .. }
            | Self::Age { place, .. }
            | Self::Promote { place, .. }
            | Self::Pull { place, .. } => place.rel_path().map(Cow::Owned),
            // The file removed.
            Self::Withdraw { place: Place::Waiting { dir, name }, .. } => {
                Some(Cow::Owned(format!("{dir}/new/{name}")))
            }
            Self::Reject(r) => Some(Cow::Borrowed(&r.path)),
            Self::Consume { path, .. } | Self::Stray { path, .. } => Some(Cow::Borrowed(path)),
            Self::Refuse(r) => Some(Cow::Owned(Place::claim_path(&r.agent, &r.name))),
            Self::Requeue(r) => Some(Cow::Borrowed(&r.path)),
            _ => None,
        }
    }
}

/// A terminal task kept only as an id, its status and its submission hash (for duplicate checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tomb {
    pub id: String,
    pub status: protocol::Status,
    pub hash: u64,
    /// It finished while held on a claim taken from a shared pool: a redrive sends it back to
    /// the pool, not to the agent that held it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pooled: bool,
}

/// A live task as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapTask {
    pub task: Task,
    pub place: Place,
    pub hash: u64,
}

/// Everything needed to restart without replaying older segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub seq: u64,
    pub live: Vec<SnapTask>,
    /// Finished tasks carried inline (snapshots written before tomb files, and tools that write
    /// a whole history at once). The broker's own snapshots leave them to the tomb files below,
    /// and reading one fills this from them (see `journal/tombfiles.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombs: Vec<Tomb>,
    /// The tomb files hold the finished tasks with ordinals from `tombs_front` (every one before
    /// it forgotten) up to `tombs_next`, except those in `tombs_gone` (dead since their file was
    /// written).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombs_front: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombs_next: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombs_gone: Vec<u64>,
    /// The ordinal of each of `tombs` read from tomb files (empty when they were inline: 0, 1…).
    #[serde(skip)]
    pub tomb_ordinals: Vec<u64>,
    /// The most recent finished tasks, oldest first (the completed board).
    pub recent_done: Vec<Task>,
    /// Inbox messages consumed but possibly not yet moved: name → where they go. Also the
    /// messages taken on the broker's socket since the snapshot before (→ `broker/broker.sock`).
    #[serde(default)]
    pub consumed: std::collections::BTreeMap<String, String>,
    /// Why each of those messages taken on the socket that was refused was refused.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub socket_refusals: std::collections::BTreeMap<String, String>,
    /// When each agent was last seen in a record (see [`Entry::seen_agent`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agents_seen: std::collections::BTreeMap<String, Timestamp>,
    /// Each outbox sink's journaled position (`Entry::Delivered`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub delivered: std::collections::BTreeMap<String, u64>,
    /// Tasks pulled from the cluster whose outcome is not yet settled cluster-wide: id → the
    /// revision of the cluster-wide record this node wrote.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pulled: std::collections::BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        Task::new(id)
    }

    /// The relative paths the journal stores are the paths `Layout` builds.
    #[test]
    fn relative_paths_agree_with_the_layout() {
        let l = runtime_layout::Layout::new("/r");
        let queued = Place::Queued { dir: Place::pool_dir("p"), name: "n.json".into() };
        assert_eq!(queued.rel_path().unwrap(), l.rel(&l.queue("p").new_dir().join("n.json")));
        let seen_at = Timestamp::from_micros(0);
        let held = Place::Held { agent: "A".into(), name: "n.json".into(), seen_at, from: String::new() };
        assert_eq!(held.rel_path().unwrap(), l.rel(&l.mailbox("A").cur().join("n.json")));
        assert_eq!(Place::mailbox_dir("A"), l.rel(&l.mailbox("A").root));
        assert_eq!(Place::pool_dir("p"), l.rel(&l.queue("p").root));
        assert_eq!(consumed_path("m.json"), l.rel(&l.broker_inbox().cur().join("m.json")));
        assert_eq!(protocol::socket::SOCKET, l.rel(&l.socket_file()));
    }

    #[test]
    fn records_round_trip_with_the_op_beside_seq_and_ts() {
        let rec = Record {
            seq: 7,
            ts: Timestamp::from_micros(1_000_000),
            entry: Entry::Claim {
                task_id: "T".into(),
                task: task("T"),
                place: Place::Held {
                    agent: "A".into(),
                    name: "n.json".into(),
                    seen_at: Timestamp::from_micros(0),
                    from: "queues/p".into(),
                },
                agent: "A".into(),
            },
        };
        let line = serde_json::to_string(&rec).unwrap();
        assert!(line.starts_with(r#"{"seq":7,"ts":"1970-01-01T00:00:01.000000Z","op":"claim","#), "{line}");
        assert!(line.contains(r#""actor":"A""#), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), rec);
        assert!(rec.entry.change().unwrap().1.claimed_from_pool());
        assert_eq!(rec.entry.path().as_deref(), Some("mailboxes/A/cur/n.json"));
    }

    /// Lines as the broker wrote them before records were typed (one struct of optional fields
    /// with a free-form `detail`): a root written then must replay now.
    #[test]
    fn journals_written_before_typed_records_still_parse() {
        let t = r#""task":{"task_id":"T","status":"PENDING","max_attempts":3,"attempts":0}"#;
        let lines = [
            format!(
                r#"{{"seq":1,"ts":"2026-01-01T00:00:00Z","op":"submit","task_id":"T",{t},"place":{{"at":"backlog"}},"msg":"m1","path":"broker/inbox/new/m1","hash":5}}"#
            ),
            format!(
                r#"{{"seq":2,"ts":"2026-01-01T00:00:00Z","op":"dispatch","task_id":"T",{t},"place":{{"at":"queued","dir":"queues/default","name":"n"}},"path":"queues/default/new/n"}}"#
            ),
            r#"{"seq":3,"ts":"2026-01-01T00:00:00Z","op":"consume","msg":"m1","path":"broker/inbox/cur/m1"}"#.into(),
            r#"{"seq":4,"ts":"2026-01-01T00:00:00Z","op":"reject","msg":"m2","actor":"A","reason":"field `claim`: x","path":"broker/quarantine/x","detail":{"notice":"stale","field":"claim","rule":"x"}}"#.into(),
            r#"{"seq":5,"ts":"2026-01-01T00:00:00Z","op":"mail","msg":"m3","actor":"A","detail":{"to":"B"}}"#.into(),
            r#"{"seq":6,"ts":"2026-01-01T00:00:00Z","op":"stray","reason":"r","path":"broker/quarantine/s","detail":{"from":"queues/x/new/s"}}"#.into(),
            r#"{"seq":7,"ts":"2026-01-01T00:00:00Z","op":"duplicate","task_id":"T","msg":"m4","reason":"identical resubmission: nothing to do"}"#.into(),
        ];
        let ops: Vec<&str> =
            lines.iter().map(|l| serde_json::from_str::<Record>(l).unwrap().entry.op()).collect();
        assert_eq!(ops, ["submit", "dispatch", "consume", "reject", "mail", "stray", "duplicate"]);
        let r: Record = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(r.entry.msg(), Some("m2"));
        assert_eq!(r.entry.actor(), Some("A"));
    }
}

#[cfg(test)]
mod number_tests {
    use super::*;

    /// Numbers beyond 64 bits, and decimals written in any form, come back from the journal as
    /// they were written: what a producer put in a task is what every reader gets.
    #[test]
    fn big_and_odd_numbers_survive_the_journal() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"task_id":"N","params":{"big":123456789012345678901234567890,"neg":-98765432109876543210987,"e":1e5,"f":0.1000}}"#)
                .unwrap();
        let task = Task::from_value(v).unwrap();
        let rec = Record {
            seq: 1,
            ts: Timestamp::from_micros(0),
            entry: Entry::Dispatch { task_id: "N".into(), task: task.clone(), place: Place::Backlog },
        };
        let line = serde_json::to_string(&rec).unwrap();
        assert!(line.contains("123456789012345678901234567890") && line.contains("0.1000"), "{line}");
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec);
        assert_eq!(serde_json::to_string(&back).unwrap(), line);
    }
}

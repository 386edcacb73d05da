//! The payloads of the journal's larger [`Entry`](super::Entry) variants, one struct each: a task
//! admitted whole, an agent's report on its claim, a claim taken back or refused, refused input,
//! mail sent, a quarantine entry requeued, an absorbed board edit. Their field names on the wire
//! are the ones earlier journals wrote (`actor`, `path`, `msg`), so old journals replay unchanged.

use super::Place;
use protocol::Task;
use protocol::message::NoticeKind;
use serde::{Deserialize, Serialize};

/// A quarantine entry sent back to the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requeued {
    /// The entry's name in `broker/quarantine/`.
    pub name: String,
    /// Where it went: `broker/inbox/new/<fresh name>` (relative to `agent_comms/`).
    pub path: String,
    /// Where its reason went: `broker/quarantine/requeued/<name>.error.json`.
    pub reason_path: String,
    /// The message (or command) that asked for it.
    pub msg: String,
    /// The task the entry's reason named, if any (so `trace` shows the requeue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// A task entering the broker whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admitted {
    pub task_id: String,
    pub task: Task,
    pub place: Place,
    /// The inbox message it came in (for an import: the source file).
    pub msg: String,
    /// Hash of the task as submitted: an identical resubmission is a no-op.
    pub hash: u64,
    /// Where it came from (relative to `agent_comms/`, or the import's source path).
    pub path: String,
}

/// A complete, fail or release from the holder of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub task_id: String,
    pub task: Task,
    pub place: Place,
    pub msg: String,
    #[serde(rename = "actor")]
    pub agent: String,
    /// The claim's file (relative to `agent_comms/`).
    #[serde(rename = "path")]
    pub claim: String,
}

/// A claim the broker took back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakenBack {
    pub task_id: String,
    pub task: Task,
    pub place: Place,
    #[serde(rename = "actor")]
    pub agent: String,
    pub reason: String,
    /// The claim's file (relative to `agent_comms/`).
    #[serde(rename = "path")]
    pub claim: String,
}

/// A claim the broker refused and took back at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedClaim {
    pub task_id: String,
    #[serde(rename = "actor")]
    pub agent: String,
    /// The claimed file's name (the task's current dispatch name, which it keeps).
    pub name: String,
    /// The maildir it goes back to (`queues/<pool>`).
    pub from: String,
    /// The required capabilities the agent lacks.
    pub missing: Vec<String>,
    pub reason: String,
}

/// Refused input and where it went.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rejected {
    /// The inbox message (file name) refused as a whole. `None` for a part of a file (the file
    /// itself was consumed) and for an input that never was a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// The input outside the inbox that was refused (an import's source file, or the file a
    /// refused part came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The index of the refused task within a multi-task file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The agent the refusal was told to.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "actor")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<NoticeKind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// `field` and `rule` in one sentence.
    pub reason: String,
    /// The quarantine entry (relative to `agent_comms/`).
    pub path: String,
}

/// Mail delivered: to one agent, or (a broadcast, a group) to each of `fanout`, in one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailSent {
    pub msg: String,
    #[serde(rename = "actor")]
    pub from: String,
    /// The address: an agent, `ALL` or `@group`.
    #[serde(default)]
    pub to: String,
    /// For `ALL` and `@group`: every agent a copy was delivered to (the sender never is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fanout: Vec<String>,
    /// For `@group`: members that got no copy because they have no mailbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Delivered as read, into the recipients' `cur/` (legacy mail marked delivered or read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
    /// For migrated mail: the hash of its source and content, so a second import skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
    /// For migrated mail: the source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
}

impl MailSent {
    /// The agents the mail was delivered to: the fan-out, or the one agent it was addressed to.
    pub fn recipients(&self) -> Vec<&str> {
        if self.fanout.is_empty() && protocol::names::validate_agent(&self.to).is_ok() {
            vec![self.to.as_str()]
        } else {
            self.fanout.iter().map(String::as_str).collect()
        }
    }
}

/// What an absorbed board edit gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardEdit {
    pub board: String,
    pub taken: usize,
    pub refused: usize,
}

//! The cluster-wide record of a shared task: one key-value entry per task (key
//! [`names::key`](crate::names::key)), JSON, changed only by compare-and-set on the revision the
//! writer last saw, so two nodes never both believe their write won.
//!
//! Its life: the origin node creates it `PENDING` when it first publishes the task (`origin`,
//! `generation`); a node that pulls the task writes itself as `node` with `takes` + 1; the node
//! that finishes it writes the final status. A node whose revision is no longer the record's
//! (another node took the task since: the first one was thought dead) is fenced: its write fails.
//! An operator's cluster-wide retry puts a failed or cancelled task's record back to `PENDING`
//! (a new `generation`) and publishes the task again from the body the record keeps.

use protocol::{Status, Task};
use serde::{Deserialize, Serialize};

/// The canonical cluster-wide state of one shared task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub task_id: String,
    pub status: Status,
    pub pool: String,
    /// The node the task was submitted on.
    pub origin: String,
    /// Which forward of the task this is (the time the origin forwarded it, in microseconds).
    pub generation: String,
    /// The node holding it now (or that finished it); none while it waits in the work queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The agent that held it last, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How many times a node took it from the work queue.
    pub takes: u32,
    /// Attempts on the node holding it, as that node counts them.
    pub attempts: u32,
    /// When this record was written (RFC 3339).
    pub updated_at: String,
    /// The node an operator cancelled the task from, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// The node an operator last retried the task from, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_by: Option<String>,
    /// The task as its origin published it: what a cluster-wide retry publishes again, once the
    /// work queue has dropped the acknowledged message. Left out of the boards' rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<Task>>,
}

impl ClusterRecord {
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("a record serialises").into()
    }

    pub fn parse(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }
}

//! Cluster-wide operator verbs, by compare-and-set on a shared task's record
//! (`mailroom cancel --cluster ID`), from any node, whichever node holds the task.
//!
//! **Cancel** writes `CANCELLED` on the revision read, retrying if another writer got there
//! first, and refuses a task already finished cluster-wide. Whoever meets the task next obeys
//! the record: a node that pulls it from the work queue acks it without running it; the node
//! holding it sees the record moved when it next extends the task's deadline (every third of
//! `ack_wait`), cancels its local copy (the claim is revoked, the agent told) and acks it; an
//! outcome that node reports later fails its compare-and-set (fenced).

use crate::board::{BoardError, Row, bucket_error, open};
use crate::names;
use crate::record::ClusterRecord;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use mailroom::config::ClusterSettings;
use protocol::Status;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Cluster(#[from] BoardError),
    #[error("no task `{0}` in the cluster")]
    NotFound(String),
    #[error("task `{task_id}` is {status} cluster-wide already: nothing to cancel")]
    Finished { task_id: String, status: Status },
}

/// How many times a cancel reads and writes again when another writer changed the record
/// between its read and its write.
const ATTEMPTS: usize = 8;

/// Cancels `task_id` cluster-wide on behalf of node `by`; returns the record written.
pub async fn cancel(cfg: &ClusterSettings, task_id: &str, by: &str) -> Result<Row, ControlError> {
    let Some(kv) = open(cfg).await? else { return Err(ControlError::NotFound(task_id.to_string())) };
    let key = names::key(task_id);
    for _ in 0..ATTEMPTS {
        let entry = kv.entry(key.clone()).await.map_err(|e| bucket_error(cfg, &e))?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Err(ControlError::NotFound(task_id.to_string()));
        };
        let Some(mut rec) = ClusterRecord::parse(&entry.value).filter(|r| r.task_id == task_id) else {
            return Err(ControlError::NotFound(task_id.to_string()));
        };
        if rec.status.is_terminal() {
            return Err(ControlError::Finished { task_id: task_id.to_string(), status: rec.status });
        }
        rec.status = Status::Cancelled;
        rec.cancelled_by = Some(by.to_string());
        rec.updated_at = crate::link::now_text();
        match kv.update(&key, rec.to_bytes(), entry.revision).await {
            Ok(revision) => return Ok(Row { revision, record: rec }),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(bucket_error(cfg, &e).into()),
        }
    }
    Err(bucket_error(cfg, &format!("`{task_id}` changed under every one of {ATTEMPTS} attempts")).into())
}

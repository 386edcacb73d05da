//! Cluster-wide operator verbs, by compare-and-set on a shared task's record
//! (`mailroom cancel --cluster ID`, `mailroom retry --cluster ID`), from any node, whichever
//! node holds the task.
//!
//! **Cancel** writes `CANCELLED` on the revision read, retrying if another writer got there
//! first, and refuses a task already finished cluster-wide. Whoever meets the task next obeys
//! the record: a node that pulls it from the work queue acks it without running it; the node
//! holding it sees the record moved when it next extends the task's deadline (every third of
//! `ack_wait`), cancels its local copy (the claim is revoked, the agent told) and acks it; an
//! outcome that node reports later fails its compare-and-set (fenced).
//!
//! **Retry** takes a `FAILED` or `CANCELLED` record back to `PENDING` (no node, a new
//! `generation`, `retried_by`) by compare-and-set on the revision read, **then** publishes the
//! task again to its pool's work queue, from the body the record keeps: the work queue dropped
//! the message when its outcome was acked, and the origin node's journal is on a machine that
//! may be down, while the record is the very thing the compare-and-set read, stored with the
//! bucket's replicas. Of two retries racing, one compare-and-set wins; the other reads again,
//! finds the task `PENDING`, and is refused: the task goes back to the work queue once. If the
//! publication fails, the record is put back as it was (compare-and-set on the revision the
//! retry wrote), so the retry can be asked again.

use crate::board::{BoardError, Row, bucket, bucket_error, connect, open};
use crate::names;
use crate::record::ClusterRecord;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use mailroom::config::ClusterSettings;
use protocol::{HistoryEntry, Status, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Cluster(#[from] BoardError),
    #[error("no task `{0}` in the cluster")]
    NotFound(String),
    #[error("task `{task_id}` is {status} cluster-wide already: nothing to cancel")]
    Finished { task_id: String, status: Status },
    #[error("task `{task_id}` is {status} cluster-wide: only a FAILED or CANCELLED task is retried")]
    NotRetryable { task_id: String, status: Status },
    #[error("task `{0}`: its cluster-wide record keeps no task body to publish again")]
    NoBody(String),
    #[error("task `{task_id}`: publishing it again failed ({reason}); {state}")]
    Publish { task_id: String, reason: String, state: String },
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

/// Retries `task_id` cluster-wide on behalf of node `by`: its record back to `PENDING`, then
/// the task published again. Returns the record written.
pub async fn retry(cfg: &ClusterSettings, task_id: &str, by: &str) -> Result<Row, ControlError> {
    let js = connect(cfg).await?;
    let Some(kv) = bucket(&js, cfg).await? else { return Err(ControlError::NotFound(task_id.to_string())) };
    let key = names::key(task_id);
    for _ in 0..ATTEMPTS {
        let entry = kv.entry(key.clone()).await.map_err(|e| bucket_error(cfg, &e))?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Err(ControlError::NotFound(task_id.to_string()));
        };
        let Some(old) = ClusterRecord::parse(&entry.value).filter(|r| r.task_id == task_id) else {
            return Err(ControlError::NotFound(task_id.to_string()));
        };
        if !matches!(old.status, Status::Failed | Status::Cancelled) {
            return Err(ControlError::NotRetryable { task_id: task_id.to_string(), status: old.status });
        }
        let Some(mut task) = old.task.clone() else { return Err(ControlError::NoBody(task_id.to_string())) };
        let micros = now_micros();
        let generation = micros.to_string();
        let now = Timestamp::from_micros(micros);
        // The task as it is redriven: pending, from scratch, for whichever node pulls it.
        task.status = Status::Pending;
        task.attempts = 0;
        task.not_before = None;
        task.error = None;
        task.result = serde_json::Value::Null;
        task.assigned_to = None;
        task.updated_at = Some(now);
        task.history.push(HistoryEntry {
            timestamp: now,
            actor: "operator".into(),
            action: "retry".into(),
            from: Some(old.status),
            to: Some(Status::Pending),
            details: Some(serde_json::json!({"cluster": true, "node": by})),
        });
        let rec = ClusterRecord {
            status: Status::Pending,
            generation: generation.clone(),
            node: None,
            agent: None,
            attempts: 0,
            updated_at: crate::link::now_text(),
            cancelled_by: None,
            retried_by: Some(by.to_string()),
            task: Some(task.clone()),
            ..old.clone()
        };
        let revision = match kv.update(&key, rec.to_bytes(), entry.revision).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(bucket_error(cfg, &e).into()),
        };
        let msg_id = names::message_id(by, task_id, &generation);
        return match crate::link::send_task(&js, cfg, &old.pool, &task, &msg_id).await {
            Ok(_) => Ok(Row::shown(revision, rec)),
            Err(reason) => {
                // Not in the work queue: the record goes back to what it said, if no one wrote
                // it since, so that the retry can be asked again.
                let state = match kv.update(&key, old.to_bytes(), revision).await {
                    Ok(_) => format!("its record is {} again: retry again later", old.status),
                    Err(e) => format!(
                        "its record says PENDING but the task is not in the work queue ({e}): \
                         `cancel --cluster` it, then retry it again"
                    ),
                };
                Err(ControlError::Publish { task_id: task_id.to_string(), reason, state })
            }
        };
    }
    Err(bucket_error(cfg, &format!("`{task_id}` changed under every one of {ATTEMPTS} attempts")).into())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

//! The cluster-wide history of one shared task (`mailroom trace --cluster ID`): every revision
//! of its record the key-value bucket still keeps (the bucket keeps the last 8 per task), oldest
//! first. Each revision is one compare-and-set: published by its origin, taken by a node (again
//! after a node stopped answering), finished.

use crate::board::{BoardError, Row, bucket_error, open};
use crate::names;
use crate::record::ClusterRecord;
use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use mailroom::config::ClusterSettings;

/// The kept revisions of `task_id`'s cluster-wide record, oldest first (empty: no such task).
pub async fn history(cfg: &ClusterSettings, task_id: &str) -> Result<Vec<Row>, BoardError> {
    let Some(kv) = open(cfg).await? else { return Ok(Vec::new()) };
    let key = names::key(task_id);
    // Nothing under the key: no history to read (the history consumer would wait for one).
    if kv.entry(key.clone()).await.map_err(|e| bucket_error(cfg, &e))?.is_none() {
        return Ok(Vec::new());
    }
    let mut entries = kv.history(&key).await.map_err(|e| bucket_error(cfg, &e))?;
    let mut rows = Vec::new();
    while let Some(e) = entries.next().await {
        let e = e.map_err(|e| bucket_error(cfg, &e))?;
        if e.operation == Operation::Put
            && let Some(record) = ClusterRecord::parse(&e.value)
            && record.task_id == task_id
        {
            rows.push(Row::shown(e.revision, record));
        }
    }
    Ok(rows)
}

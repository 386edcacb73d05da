//! The cluster-wide board: every shared task's record, read from the key-value bucket
//! (`mailroom board --cluster`). Each node's own boards stay as they are for its agents.

use crate::names;
use crate::record::ClusterRecord;
use async_nats::jetstream::{self, kv, kv::Operation};
use futures_util::StreamExt;
use mailroom::config::ClusterSettings;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot reach NATS at {servers}: {reason}")]
    Unreachable { servers: String, reason: String },
    #[error("cannot read bucket `{bucket}`: {reason}")]
    Bucket { bucket: String, reason: String },
}

/// One row of the cluster-wide board: a record and its revision.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub revision: u64,
    #[serde(flatten)]
    pub record: ClusterRecord,
}

impl Row {
    /// A row to show: the record without the task body it keeps for a retry.
    pub fn shown(revision: u64, mut record: ClusterRecord) -> Self {
        record.task = None;
        Self { revision, record }
    }
}

/// A JetStream context on the configured servers.
pub(crate) async fn connect(cfg: &ClusterSettings) -> Result<jetstream::Context, BoardError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(cfg.nats.clone())
        .await
        .map_err(|e| BoardError::Unreachable { servers: cfg.nats.join(","), reason: e.to_string() })?;
    Ok(jetstream::new(client))
}

/// The cluster's key-value bucket, or `None` when no shared task was ever published.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    cfg: &ClusterSettings,
) -> Result<Option<kv::Store>, BoardError> {
    match js.get_key_value(&cfg.bucket).await {
        Ok(kv) => Ok(Some(kv)),
        Err(e) if e.to_string().contains("not found") => Ok(None),
        Err(e) => Err(bucket_error(cfg, &e)),
    }
}

/// [`connect`], then [`bucket`].
pub(crate) async fn open(cfg: &ClusterSettings) -> Result<Option<kv::Store>, BoardError> {
    bucket(&connect(cfg).await?, cfg).await
}

pub(crate) fn bucket_error(cfg: &ClusterSettings, e: &dyn std::fmt::Display) -> BoardError {
    BoardError::Bucket { bucket: cfg.bucket.clone(), reason: e.to_string() }
}

/// Every shared task's cluster-wide record, by task id.
pub async fn board(cfg: &ClusterSettings) -> Result<Vec<Row>, BoardError> {
    let bucket = |e: &dyn std::fmt::Display| bucket_error(cfg, e);
    // No shared task was ever published: an empty board.
    let Some(kv) = open(cfg).await? else { return Ok(Vec::new()) };
    let mut keys = kv.keys().await.map_err(|e| bucket(&e))?;
    let mut rows = Vec::new();
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| bucket(&e))?;
        if let Some(e) = kv.entry(k.clone()).await.map_err(|e| bucket(&e))?
            && e.operation == Operation::Put
            && let Some(record) = ClusterRecord::parse(&e.value)
            && names::key(&record.task_id) == k
        {
            rows.push(Row::shown(e.revision, record));
        }
    }
    rows.sort_by(|a, b| a.record.task_id.cmp(&b.record.task_id));
    Ok(rows)
}

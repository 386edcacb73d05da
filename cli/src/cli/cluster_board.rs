//! `mailroom board --cluster`: every shared task's cluster-wide record (status, the node and
//! agent that hold or finished it, how often a node took it, its revision), read from the
//! cluster's key-value bucket. Filters by status, pool and agent; `--json` prints one array.
//! `mailroom trace --cluster ID`: the kept revisions of one task's record, oldest first.
//! `mailroom cancel --cluster ID`: cancel a shared task cluster-wide (compare-and-set).
//! `mailroom retry --cluster ID`: put a failed or cancelled shared task back in the cluster's
//! work queue (compare-and-set, then publish).

use super::exit::{self, Failure};
use super::io::emit;
use mailroom::config::{ClusterSettings, Config};
use mailroom_cluster::board::Row;
use protocol::Status;
use runtime_layout::{Fs, Layout};

/// The `[cluster]` section, and a runtime to talk to the cluster with.
fn cluster(cfg: &Config) -> Result<(&ClusterSettings, tokio::runtime::Runtime), Failure> {
    let Some(cluster) = &cfg.cluster else {
        return Err(Failure::new(exit::NO_CLUSTER, "--cluster: mailroom.toml has no [cluster] section"));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    Ok((cluster, rt))
}

pub fn show(
    cfg: &Config,
    status: Option<Status>,
    pool: Option<String>,
    agent: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let (cluster, rt) = cluster(cfg)?;
    let mut rows =
        rt.block_on(mailroom_cluster::board(cluster)).map_err(|e| Failure::new(exit::NO_CLUSTER, e))?;
    rows.retain(|r| {
        status.is_none_or(|s| r.record.status == s)
            && pool.as_ref().is_none_or(|p| &r.record.pool == p)
            && agent.as_ref().is_none_or(|a| r.record.agent.as_ref() == Some(a))
    });
    if json {
        return print_json(&rows);
    }
    let mut out = table(&rows);
    out.push_str(&format!("{} shared task(s)\n", rows.len()));
    emit(&out)
}

/// `mailroom trace --cluster ID`: exit 3 when the cluster has no record of the task.
pub fn trace(fs: &dyn Fs, layout: &Layout, task_id: &str, json: bool) -> Result<(), Failure> {
    let cfg = Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let (cluster, rt) = cluster(&cfg)?;
    let rows = rt
        .block_on(mailroom_cluster::history(cluster, task_id))
        .map_err(|e| Failure::new(exit::NO_CLUSTER, e))?;
    if rows.is_empty() {
        return Err(Failure::new(exit::NOTHING, format!("no task `{task_id}` in the cluster")));
    }
    if json {
        return print_json(&rows);
    }
    let mut out = table(&rows);
    for r in &rows {
        out.push_str(&format!("rev {}: written {}\n", r.revision, r.record.updated_at));
    }
    emit(&out)
}

/// `mailroom cancel --cluster ID`: exit 3 when the cluster has no record of the task, 6 when it
/// is finished cluster-wide already, 11 when the cluster cannot be reached.
pub fn cancel(fs: &dyn Fs, layout: &Layout, task_id: &str) -> Result<(), Failure> {
    let cfg = Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let (cluster, rt) = cluster(&cfg)?;
    let done = rt.block_on(mailroom_cluster::control::cancel(cluster, task_id, &cluster.node));
    control_outcome("cancelled", task_id, done)
}

/// `mailroom retry --cluster ID`: exit 3 when the cluster has no record of the task, 6 when it
/// is not FAILED or CANCELLED cluster-wide (a retry racing this one won, say) or its record
/// keeps no task body, 11 when the cluster cannot be reached or the publication failed.
pub fn retry(fs: &dyn Fs, layout: &Layout, task_id: &str) -> Result<(), Failure> {
    let cfg = Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let (cluster, rt) = cluster(&cfg)?;
    let done = rt.block_on(mailroom_cluster::control::retry(cluster, task_id, &cluster.node));
    control_outcome("retried", task_id, done)
}

/// A cluster-wide change's line, or its exit code.
fn control_outcome(
    done: &str,
    task_id: &str,
    result: Result<Row, mailroom_cluster::control::ControlError>,
) -> Result<(), Failure> {
    use mailroom_cluster::control::ControlError;
    match result {
        Ok(row) => emit(&format!("{done} cluster-wide: {task_id} (revision {})\n", row.revision)),
        Err(e @ ControlError::NotFound(_)) => Err(Failure::new(exit::NOTHING, e)),
        Err(
            e @ (ControlError::Finished { .. } | ControlError::NotRetryable { .. } | ControlError::NoBody(_)),
        ) => Err(Failure::new(exit::INVALID, e)),
        Err(e @ (ControlError::Cluster(_) | ControlError::Publish { .. })) => {
            Err(Failure::new(exit::NO_CLUSTER, e))
        }
    }
}

/// One line per record, under a header.
fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<12} {:<8} {:<8} {:<14} {:>5} {:>5}\n",
        "TASK", "STATUS", "POOL", "ORIGIN", "NODE", "AGENT", "TAKES", "REV"
    );
    for r in rows {
        let rec = &r.record;
        out.push_str(&format!(
            "{:<24} {:<12} {:<12} {:<8} {:<8} {:<14} {:>5} {:>5}\n",
            rec.task_id,
            rec.status.as_str(),
            rec.pool,
            rec.origin,
            rec.node.as_deref().unwrap_or("-"),
            rec.agent.as_deref().unwrap_or("-"),
            rec.takes,
            r.revision
        ));
    }
    out
}

fn print_json(rows: &[Row]) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(rows).map_err(|e| Failure::new(exit::ERROR, e))?;
    emit(&format!("{text}\n"))
}

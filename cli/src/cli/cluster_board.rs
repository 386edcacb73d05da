//! `mailroom board --cluster`: every shared task's cluster-wide record (status, the node and
//! agent that hold or finished it, how often a node took it, its revision), read from the
//! cluster's key-value bucket. Filters by status, pool and agent; `--json` prints one array.

use super::exit::{self, Failure};
use super::io::emit;
use mailroom::config::Config;
use protocol::Status;

pub fn show(
    cfg: &Config,
    status: Option<Status>,
    pool: Option<String>,
    agent: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let Some(cluster) = &cfg.cluster else {
        return Err(Failure::new(exit::NO_CLUSTER, "--cluster: mailroom.toml has no [cluster] section"));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    let mut rows =
        rt.block_on(mailroom_cluster::board(cluster)).map_err(|e| Failure::new(exit::NO_CLUSTER, e))?;
    rows.retain(|r| {
        status.is_none_or(|s| r.record.status == s)
            && pool.as_ref().is_none_or(|p| &r.record.pool == p)
            && agent.as_ref().is_none_or(|a| r.record.agent.as_ref() == Some(a))
    });
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Failure::new(exit::ERROR, e))?;
        return emit(&format!("{text}\n"));
    }
    let mut out = format!(
        "{:<24} {:<12} {:<12} {:<8} {:<8} {:<14} {:>5} {:>5}\n",
        "TASK", "STATUS", "POOL", "ORIGIN", "NODE", "AGENT", "TAKES", "REV"
    );
    for r in &rows {
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
    out.push_str(&format!("{} shared task(s)\n", rows.len()));
    emit(&out)
}

//! The engine's side of the cluster (docs/CLUSTER.md): what a node journals about shared pools.
//! The cluster link (crate `mailroom-cluster`) does the network; it acts only through the command
//! channel, and every fact it learns becomes a journaled record applied by `State::apply`.
//!
//! - **Forward.** Dispatch of a task bound for a shared pool journals [`Entry::Forward`]: the
//!   task is held here (`Place::Outbound`, no file) until the link has published it, after which
//!   the link asks for [`Entry::Forwarded`]. A node that cannot reach the cluster keeps holding
//!   it: the journal is the outbox, nothing is lost across restarts.
//! - **Pull.** A task the link pulled from the cluster is queued here as a file in its pool like
//!   any dispatched task ([`Entry::Pull`], with the cluster-wide record's revision this node
//!   wrote), so local claims stay one rename.
//! - **Settle.** Once a pulled task's outcome is written cluster-wide (or refused there because
//!   another node took the task since: fenced), the link asks for [`Entry::Settled`]. A task
//!   cancelled cluster-wide is cancelled here as an operator would, then settled.

use super::BROKER;
use super::dispatch::queue_file_as;
use super::quarantine::Refusal;
use super::tx::Tx;
use crate::journal::{Entry, POOLS_DIR, Place};
use protocol::{HistoryEntry, Status, Task};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// A change the cluster link asks of the engine.
#[derive(Debug, Clone)]
pub enum ClusterOp {
    /// The task held for the cluster (`Place::Outbound`) is now in the cluster's work queue.
    Forwarded { task_id: String },
    /// Queue a task pulled from the cluster in `pool`; `revision` is the cluster-wide record's
    /// revision this node wrote when it took it.
    Pull { task: Box<Task>, pool: String, revision: u64 },
    /// The outcome of a pulled task was written cluster-wide (`fenced`: refused there).
    Settled { task_id: String, revision: u64, fenced: bool },
    /// A pulled task was cancelled cluster-wide (its record is `CANCELLED` at `revision`):
    /// cancel it here and settle it on that revision.
    Cancelled { task_id: String, revision: u64 },
}

/// What the cluster link needs from the engine, between two passes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// Tasks held for the cluster, waiting to be published, with their pool.
    pub outbound: Vec<(Task, String)>,
    /// Tasks pulled here and not settled cluster-wide yet.
    pub pulled: Vec<PulledView>,
    /// The shared pools this node serves (for `*`: every pool it has a directory for).
    pub pools: Vec<String>,
    /// Per shared pool: how many more tasks this node's agents could take now.
    pub window: BTreeMap<String, usize>,
}

/// A task pulled from the cluster, as the link needs it to settle it.
#[derive(Debug, Clone, Serialize)]
pub struct PulledView {
    pub task_id: String,
    pub revision: u64,
    /// The task's status here; `None` when this node no longer remembers it.
    pub status: Option<Status>,
    /// Whether it finished here (COMPLETED, FAILED or CANCELLED).
    pub finished: bool,
    /// Its pool and holder, when known.
    pub pool: Option<String>,
    pub agent: Option<String>,
    /// Its attempts here, when known.
    pub attempts: Option<u32>,
}

/// Dispatch of a task bound for a shared pool: held for the cluster.
pub(crate) fn forward(tx: &mut Tx, id: &str, mut task: Task, pool: String) {
    let now = tx.now();
    let node = tx.env.cfg.cluster.as_ref().map(|c| c.node.clone()).unwrap_or_default();
    task.updated_at = Some(now);
    task.history.push(HistoryEntry {
        timestamp: now,
        actor: BROKER.to_string(),
        action: "forward".into(),
        from: Some(task.status),
        to: Some(task.status),
        details: Some(json!({"pool": pool, "node": node})),
    });
    tx.push(Entry::Forward { task_id: id.to_string(), task, place: Place::Outbound { pool } });
}

pub(crate) fn apply(tx: &mut Tx, op: ClusterOp) -> Result<String, Refusal> {
    match op {
        ClusterOp::Forwarded { task_id } => {
            if let Some(l) = tx.state().live(&task_id)
                && let Place::Outbound { pool } = &l.place
            {
                let (task, place) = (l.task.clone(), Place::Forwarded { pool: pool.clone() });
                tx.push(Entry::Forwarded { task_id: task_id.clone(), task, place });
            }
            Ok(task_id)
        }
        ClusterOp::Pull { task, pool, revision } => pull(tx, *task, pool, revision),
        ClusterOp::Cancelled { task_id, revision } => {
            if tx.state().pulled(&task_id).is_some() {
                if tx.state().live(&task_id).is_some() {
                    super::operator::cancel(tx, &task_id, "cluster")?;
                }
                tx.push(Entry::Settled { task_id: task_id.clone(), revision, fenced: false });
            }
            Ok(task_id)
        }
        ClusterOp::Settled { task_id, revision, fenced } => {
            if tx.state().pulled(&task_id).is_some() {
                if fenced {
                    tracing::warn!(task = %task_id, "outcome fenced: another node took the task since");
                }
                tx.push(Entry::Settled { task_id: task_id.clone(), revision, fenced });
            }
            Ok(task_id)
        }
    }
}

fn pull(tx: &mut Tx, mut task: Task, pool: String, revision: u64) -> Result<String, Refusal> {
    let id = task.task_id.clone();
    protocol::names::validate_pool(&pool).map_err(|e| Refusal::rejected("pool", e.rule).task(&id))?;
    let state = tx.state();
    let ours = state.pulled(&id).is_some();
    match state.live(&id).map(|l| &l.place) {
        // New here, or one of ours coming back: queue it for local agents.
        None if state.finished(&id).is_none() => {}
        Some(Place::Outbound { .. } | Place::Forwarded { .. }) => {}
        // Redelivered while this node still holds it, or finished here and not settled yet.
        Some(_) | None if ours || state.live(&id).is_some() => {
            tx.push(Entry::Revision { task_id: id.clone(), revision });
            return Ok(id);
        }
        // Finished here and settled: the link took the cluster-wide record, which is not
        // finished (retried cluster-wide, or this node's outcome was fenced), so the task
        // runs here again, as a retry revives a finished task.
        _ => {}
    }
    let now = tx.now();
    let node = tx.env.cfg.cluster.as_ref().map(|c| c.node.clone()).unwrap_or_default();
    task.status = Status::Pending;
    task.history.push(HistoryEntry {
        timestamp: now,
        actor: BROKER.to_string(),
        action: "pull".into(),
        from: None,
        to: Some(Status::Pending),
        details: Some(json!({"pool": pool, "node": node, "revision": revision})),
    });
    let dir = Place::pool_dir(&pool);
    queue_file_as(tx, &id, task, dir, |task_id, task, place| Entry::Pull { task_id, task, place, revision });
    Ok(id)
}

/// The link's view: what to publish, what to settle, how much to pull.
pub(crate) fn view(tx: &Tx) -> ClusterView {
    let Some(cfg) = tx.env.cfg.cluster.as_ref() else { return ClusterView::default() };
    let state = tx.state();
    let mut v = ClusterView::default();
    let mut pools: Vec<String> = cfg.shared_pools.iter().filter(|p| *p != "*").cloned().collect();
    if cfg.shared_pools.iter().any(|p| p == "*") {
        for md in tx.env.all_maildirs().unwrap_or_default() {
            let rel = tx.env.rel(&md.root);
            if let Some(p) = rel.strip_prefix(POOLS_DIR)
                && !pools.iter().any(|q| q == p)
            {
                pools.push(p.to_string());
            }
        }
    }
    pools.sort();
    let mut queued: BTreeMap<&str, usize> = BTreeMap::new();
    let mut busy = std::collections::BTreeSet::new();
    for l in state.lives() {
        match &l.place {
            Place::Outbound { pool } => v.outbound.push((l.task.clone(), pool.clone())),
            // Ready in a pool: a queued file, or a task waiting for room in the pool's ready
            // window. Both are work this node's agents have yet to take.
            Place::Queued { .. } | Place::Waiting { .. } => {
                if let Some(p) = l.place.pool() {
                    *queued.entry(p).or_default() += 1;
                }
            }
            Place::Held { agent, .. } => {
                busy.insert(agent.as_str());
            }
            _ => {}
        }
    }
    v.outbound.sort_by(|a, b| a.0.task_id.cmp(&b.0.task_id));
    let agents = tx.env.agents().unwrap_or_default();
    let idle = agents.iter().filter(|a| !busy.contains(a.as_str())).count();
    let mut held_by_pool: BTreeMap<String, usize> = BTreeMap::new();
    for (id, revision) in state.pulled_tasks() {
        let live = state.live(id);
        let pool = live.and_then(|l| match &l.place {
            Place::Queued { .. } | Place::Waiting { .. } => l.place.pool().map(str::to_string),
            Place::Held { from, .. } => from.strip_prefix(POOLS_DIR).map(str::to_string),
            _ => None,
        });
        if let Some(p) = &pool {
            *held_by_pool.entry(p.clone()).or_default() += 1;
        }
        let status = state.status_of(id);
        // A finished task's body is in the completed board's memory, if still recent.
        let done = if live.is_none() { state.recent_done().rev().find(|t| t.task_id == id) } else { None };
        v.pulled.push(PulledView {
            task_id: id.to_string(),
            revision,
            finished: live.is_none() && status.is_some_and(|s| s.is_terminal()),
            status,
            pool,
            agent: live
                .and_then(|l| match &l.place {
                    Place::Held { agent, .. } => Some(agent.clone()),
                    _ => None,
                })
                .or_else(|| done.and_then(|t| t.assigned_to.clone())),
            attempts: live.map(|l| l.task.attempts).or_else(|| done.map(|t| t.attempts)),
        });
    }
    for p in &pools {
        let free = idle.saturating_sub(queued.get(p.as_str()).copied().unwrap_or(0));
        let cap = cfg.max_pull.saturating_sub(held_by_pool.get(p).copied().unwrap_or(0));
        v.window.insert(p.clone(), free.min(cap));
    }
    v.pools = pools;
    v
}

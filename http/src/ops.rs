//! The operations endpoints: pools (depth, oldest wait, rates, queue-wait percentiles, a depth
//! series), agents (claims with the lease left, last seen, completions and failures per minute),
//! and overall stats with the cumulative-flow series and the dependencies holding back the most
//! tasks. Quarantine is in `quarantine.rs`, the outbox's deliveries in `deliveries.rs`.

use crate::AppState;
use crate::routes::ApiError;
use axum::Json;
use axum::extract::State;
use mailroom::agents::presence;
use mailroom::engine::commands::{TaskView, View};
use mailroom::journal::Place;
use protocol::Status;
use runtime_layout::{FileKind, Fs, Layout};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

fn now_micros() -> i64 {
    runtime_layout::now().as_micros()
}

/// `GET /api/pools`: every pool (and every agent's own mailbox holding direct tasks).
pub async fn pools(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let view = state.handle.snapshot().await?;
    let now = now_micros();
    let mut flow = state.observer.pools(now);
    let held = state.observer.held_per_pool();
    let mut out = Vec::new();
    let mut names: Vec<String> =
        view.queues.iter().filter_map(|q| q.dir.strip_prefix("queues/").map(str::to_string)).collect();
    names.extend(flow.keys().cloned());
    // Pools that exist as directories, even empty and idle ones.
    let (fs, layout) = (state.fs.clone(), state.layout.clone());
    names.extend(blocking(move || list_dirs(fs.as_ref(), &layout.queues_dir())).await?);
    names.sort();
    names.dedup();
    for name in names {
        let depth = view.queues.iter().find(|q| q.dir == format!("queues/{name}")).map_or(0, |q| q.queued);
        let f = flow.remove(&name).unwrap_or_default();
        out.push(json!({
            "pool": name,
            "depth": depth,
            "in_progress": held.get(&name).copied().unwrap_or(0),
            "oldest_wait_secs": if depth == 0 { None } else { f.oldest_wait_secs },
            "in_per_min": f.in_per_min,
            "out_per_min": f.out_per_min,
            "wait_p50_secs": f.wait_p50_secs,
            "wait_p95_secs": f.wait_p95_secs,
            "waits_sampled": f.waits_sampled,
            "depth_series": f.depth_series,
        }));
    }
    let mailboxes: Vec<Value> = view
        .queues
        .iter()
        .filter_map(|q| q.dir.strip_prefix("mailboxes/").map(|a| json!({"agent": a, "depth": q.queued})))
        .collect();
    Ok(Json(json!({"pools": out, "mailboxes": mailboxes, "sample_secs": crate::observer::SAMPLE_SECS})))
}

pub(crate) async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(ApiError::internal)
}

fn list_dirs(fs: &dyn Fs, dir: &std::path::Path) -> Result<Vec<String>, runtime_layout::FsError> {
    if fs.stat(dir)?.is_none() {
        return Ok(Vec::new());
    }
    Ok(fs
        .list(dir)?
        .into_iter()
        .filter(|e| e.kind == FileKind::Dir)
        .filter_map(|e| {
            e.name_str().filter(|n| protocol::names::validate_pool(n).is_ok()).map(str::to_string)
        })
        .collect())
}

/// A claim's file and when its lease runs out, as the broker judges it: the later of the file's
/// mtime (heartbeats touch it) and when the broker first saw the claim, plus the lease.
fn lease_of(
    fs: &dyn Fs,
    layout: &Layout,
    t: &TaskView,
    default_lease: u64,
) -> Option<(String, String, i64, Option<i64>)> {
    let Place::Held { agent, name, seen_at, .. } = &t.place else { return None };
    let lease = t.task.lease_secs.unwrap_or(default_lease) as i64;
    let path = layout.mailbox(agent).cur().join(name);
    let mtime = fs.stat(&path).ok().flatten().map(|m| m.mtime.as_micros());
    let from = mtime.unwrap_or(0).max(seen_at.as_micros());
    Some((agent.clone(), name.clone(), from + lease * 1_000_000, mtime))
}

/// `GET /api/agents`.
pub async fn agents(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let view: View = state.handle.snapshot().await?;
    let now = now_micros();
    let flow = state.observer.agents(now);
    let default_lease = state.cfg.broker.lease_secs;
    let (fs, layout) = (state.fs.clone(), state.layout.clone());
    let held: Vec<TaskView> =
        view.tasks.iter().filter(|t| matches!(t.place, Place::Held { .. })).cloned().collect();
    let leases = blocking(move || {
        Ok::<_, std::convert::Infallible>(
            held.iter()
                .filter_map(|t| {
                    lease_of(fs.as_ref(), &layout, t, default_lease).map(|l| (t.task.task_id.clone(), l))
                })
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    let mut claims: HashMap<String, Vec<Value>> = HashMap::new();
    let mut heartbeat: HashMap<String, i64> = HashMap::new();
    for (task_id, (agent, name, expires, mtime)) in leases {
        if let Some(m) = mtime {
            let h = heartbeat.entry(agent.clone()).or_default();
            *h = (*h).max(m);
        }
        claims.entry(agent).or_default().push(json!({
            "task_id": task_id,
            "claim": name,
            "lease_expires_at": expires,
            "lease_left_secs": (expires - now) as f64 / 1e6,
        }));
    }
    let broker: HashMap<&str, &mailroom::agents::AgentStatus> =
        view.agents.iter().map(|a| (a.name.as_str(), a)).collect();
    let stale_secs = state.cfg.agents.stale_secs;
    let mut out = Vec::new();
    let mut names: Vec<String> = view.agents.iter().map(|a| a.name.clone()).collect();
    names.extend(flow.keys().cloned());
    names.sort();
    names.dedup();
    for name in names {
        let f = flow.get(&name).cloned().unwrap_or_default();
        let held = claims.remove(&name).unwrap_or_default();
        let known = broker.get(name.as_str());
        let last_seen = [
            f.last_seen,
            heartbeat.get(&name).copied(),
            known.and_then(|a| a.last_seen).map(|t| t.as_micros()),
        ]
        .into_iter()
        .flatten()
        .max();
        let least = held
            .iter()
            .filter_map(|c| c["lease_left_secs"].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
        // Stale: a lease ran out, or not seen for `[agents] stale_secs`.
        let seen = last_seen.map(protocol::Timestamp::from_micros);
        let state =
            match (least, presence(seen, held.len(), protocol::Timestamp::from_micros(now), stale_secs)) {
                (Some(l), _) if l <= 0.0 => "stale",
                (_, p) => p.as_str(),
            };
        out.push(json!({
            "agent": name,
            "state": state,
            "capabilities": known.map(|a| a.capabilities.clone()).unwrap_or_default(),
            "held": held,
            "min_lease_left_secs": least,
            "last_seen": last_seen,
            "completions_per_min": f.completions_per_min,
            "failures_per_min": f.failures_per_min,
        }));
    }
    Ok(Json(json!({"agents": out, "lease_secs": default_lease})))
}

/// The tasks that hold back the most others: dependencies of waiting tasks that are not done.
pub fn blockers(view: &View, top: usize) -> Vec<Value> {
    let status: HashMap<&str, Status> =
        view.tasks.iter().map(|t| (t.task.task_id.as_str(), t.task.status)).collect();
    let mut held_back: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &view.tasks {
        if t.place == Place::Backlog && matches!(t.task.status, Status::Pending | Status::Blocked) {
            for d in &t.task.depends_on {
                if status.get(d.as_str()) != Some(&Status::Completed) {
                    *held_back.entry(d).or_default() += 1;
                }
            }
        }
    }
    let mut v: Vec<(&str, usize)> = held_back.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(top)
        .map(|(id, n)| json!({"task_id": id, "status": status.get(id), "holds_back": n}))
        .collect()
}

/// `GET /api/stats`.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let view = state.handle.snapshot().await?;
    let engine = state.handle.stats().await?;
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for t in &view.tasks {
        *by_status.entry(t.task.status.as_str()).or_default() += 1;
        *by_type.entry(t.task.task_type.clone().unwrap_or_default()).or_default() += 1;
    }
    let (fs, layout) = (state.fs.clone(), state.layout.clone());
    let quarantined =
        blocking(move || crate::quarantine::entry_names(fs.as_ref(), &layout).map(|names| names.len()))
            .await?;
    let commit_mean = if engine.commits.count == 0 {
        None
    } else {
        Some(engine.commits.sum_secs / engine.commits.count as f64)
    };
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "root": state.layout.root().display().to_string(),
        "next_seq": view.next_seq,
        "tasks": view.tasks.len(),
        "finished_remembered": view.finished,
        "by_status": by_status,
        "by_type": by_type,
        "agents": view.agents.len(),
        "queues": view.queues.len(),
        "quarantined": quarantined,
        "inbox_waiting": engine.inbox_waiting,
        "engine": {
            "records": engine.records,
            "messages": engine.messages,
            "commits": engine.commits.count,
            "commit_mean_secs": commit_mean,
            "commit_secs": engine.commits.sum_secs,
            "passes": engine.passes.count,
            "pass_secs": engine.passes.sum_secs,
            "fs": engine.fs,
        },
        "uptime_secs": state.observer.started.elapsed().as_secs(),
        "blockers": blockers(&view, 10),
        "sample_secs": crate::observer::SAMPLE_SECS,
        "series": state.observer.samples(),
    })))
}

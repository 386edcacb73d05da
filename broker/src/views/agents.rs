//! `mailroom agent list`: every agent (a mailbox), the claims it holds with their leases, what
//! waits for it, and when it was last active.
//!
//! A lease is read as the agent sees it: from the claim file's mtime (the last claim or
//! heartbeat) and the task's `lease_secs` or the configured default. The broker counts from the
//! later of that and when it first saw the claim, so it may allow a little more, never less.
//! Last activity is the latest change in the agent's `cur/`: a claim, a heartbeat, a read of mail,
//! or the broker removing a claim it accepted a report for.

use super::{ViewError, files, named_dirs, require_root, secs_since, waiting};
use crate::config::Config;
use protocol::names::DispatchName;
use protocol::{Task, Timestamp};
use runtime_layout::{Fs, Layout};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HeldClaim {
    /// The claim (its file name in `cur/`).
    pub claim: String,
    /// The task id inside the file (the name carries only a path-safe fragment of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The claim file's mtime: the claim or the last heartbeat.
    pub heartbeat: Timestamp,
    pub lease_secs: u64,
    /// Seconds left on the lease, negative once it ran out (the broker takes it back).
    pub lease_left_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub agent: String,
    pub held: Vec<HeldClaim>,
    /// Tasks assigned to the agent, waiting in its `new/`.
    pub waiting: usize,
    /// Mail and notices not read yet.
    pub unread: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
}

/// Every agent at `now`, by name.
pub fn list(fs: &dyn Fs, layout: &Layout, cfg: &Config, now: Timestamp) -> Result<Vec<AgentView>, ViewError> {
    require_root(fs, layout)?;
    let mut out = Vec::new();
    for agent in named_dirs(fs, &layout.mailboxes_dir())? {
        let md = layout.mailbox(&agent);
        let mut last_activity = fs.stat(&md.cur())?.map(|m| m.mtime);
        let mut held = Vec::new();
        for claim in files(fs, &md.cur())?.into_iter().filter(|n| DispatchName::parse(n).is_some()) {
            let path = md.cur().join(&claim);
            let Some(meta) = fs.stat(&path)? else { continue };
            last_activity = Some(last_activity.map_or(meta.mtime, |l| l.max(meta.mtime)));
            let task = fs
                .read(&path, 16 << 20)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .and_then(|v| Task::from_value(v).ok());
            let lease_secs = task.as_ref().and_then(|t| t.lease_secs).unwrap_or(cfg.broker.lease_secs);
            held.push(HeldClaim {
                lease_left_secs: lease_secs as f64 - secs_since(now, meta.mtime),
                task_id: task.map(|t| t.task_id),
                heartbeat: meta.mtime,
                lease_secs,
                claim,
            });
        }
        let (waiting, _) = waiting(fs, &md)?;
        let unread = files(fs, &md.new_dir())?.len() - waiting;
        out.push(AgentView { agent, held, waiting, unread, last_activity });
    }
    Ok(out)
}

/// Agents as a table.
pub fn render(agents: &[AgentView], now: Timestamp) -> String {
    let mut out = format!(
        "{:<24} {:>4} {:>8} {:>7} {:>10}  {}\n",
        "AGENT", "HELD", "WAITING", "UNREAD", "ACTIVE", "CLAIMS (task, lease left)"
    );
    for a in agents {
        let active = a
            .last_activity
            .map_or_else(|| "-".into(), |t| format!("{} ago", super::status::age(secs_since(now, t))));
        let claims: Vec<String> = a
            .held
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.task_id.as_deref().unwrap_or(&c.claim),
                    super::status::age(c.lease_left_secs)
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<24} {:>4} {:>8} {:>7} {:>10}  {}\n",
            a.agent,
            a.held.len(),
            a.waiting,
            a.unread,
            active,
            claims.join(", ")
        ));
    }
    out
}

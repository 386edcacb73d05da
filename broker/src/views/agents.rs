//! `mailroom agent list`: every agent (a mailbox), the capabilities it declares, the claims it
//! holds with their leases, what waits for it, when it was last seen and its state (`busy`,
//! `idle`, or `stale` when not seen for `[agents] stale_secs`; see [`crate::agents`]).
//!
//! A lease is read as the agent sees it: from the claim file's mtime (the last claim or
//! heartbeat) and the task's `lease_secs` or the configured default. The broker counts from the
//! later of that and when it first saw the claim, so it may allow a little more, never less.
//! Last activity is the latest change in the agent's `cur/`: a claim, a heartbeat, a read of mail,
//! or the broker removing a claim it accepted a report for. Last seen, which the state is judged
//! by, is the latest claim or heartbeat and what only the broker knows (a report, mail sent, a
//! refused message: journaled acts), read from the presence board
//! it keeps (`central_task_boards/agents.json`); the state is judged from it when the view is
//! read, so it is right even while the broker is down.

use super::{ViewError, files, named_dirs, require_root, secs_since, waiting};
use crate::agents::{AgentStatus, Presence, capabilities, presence};
use crate::config::Config;
use protocol::names::DispatchName;
use protocol::{Task, Timestamp};
use runtime_layout::{Fs, Layout};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// What it declares it can do (`mailboxes/<agent>/agent.json`).
    pub capabilities: Vec<String>,
    pub state: Presence,
    pub held: Vec<HeldClaim>,
    /// Tasks assigned to the agent, waiting in its `new/`.
    pub waiting: usize,
    /// Mail and notices not read yet.
    pub unread: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
    /// The later of its last claim or heartbeat (a claim file's mtime) and the last journaled act
    /// the broker saw of it (a claim, a report, mail): what its state is judged by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
}

/// The presence board as the broker last wrote it (empty when missing or unreadable: it is
/// derived, and rewritten by the broker).
fn presence_board(fs: &dyn Fs, layout: &Layout) -> BTreeMap<String, Option<Timestamp>> {
    fs.read(&layout.agents_board(), 1 << 30)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<AgentStatus>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.name, a.last_seen))
        .collect()
}

/// Every agent at `now`, by name.
pub fn list(fs: &dyn Fs, layout: &Layout, cfg: &Config, now: Timestamp) -> Result<Vec<AgentView>, ViewError> {
    require_root(fs, layout)?;
    let board = presence_board(fs, layout);
    let mut out = Vec::new();
    for agent in named_dirs(fs, &layout.mailboxes_dir())? {
        let md = layout.mailbox(&agent);
        let mut last_activity = fs.stat(&md.cur())?.map(|m| m.mtime);
        let mut held = Vec::new();
        let mut heartbeat: Option<Timestamp> = None;
        for claim in files(fs, &md.cur())?.into_iter().filter(|n| DispatchName::parse(n).is_some()) {
            let path = md.cur().join(&claim);
            let Some(meta) = fs.stat(&path)? else { continue };
            last_activity = Some(last_activity.map_or(meta.mtime, |l| l.max(meta.mtime)));
            heartbeat = Some(heartbeat.map_or(meta.mtime, |l| l.max(meta.mtime)));
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
        let seen = board.get(&agent).copied().flatten();
        let last_seen = match (seen, heartbeat) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let state = presence(last_seen, held.len(), now, cfg.agents.stale_secs);
        let capabilities = capabilities(fs, layout, &agent);
        out.push(AgentView { agent, capabilities, state, held, waiting, unread, last_activity, last_seen });
    }
    Ok(out)
}

/// Agents as a table.
pub fn render(agents: &[AgentView], now: Timestamp) -> String {
    let mut out = format!(
        "{:<24} {:<6} {:>4} {:>8} {:>7} {:>10}  {:<20} {}\n",
        "AGENT", "STATE", "HELD", "WAITING", "UNREAD", "SEEN", "CAPABILITIES", "CLAIMS (task, lease left)"
    );
    for a in agents {
        let active = a
            .last_seen
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
        let capabilities = if a.capabilities.is_empty() { "-".into() } else { a.capabilities.join(", ") };
        out.push_str(&format!(
            "{:<24} {:<6} {:>4} {:>8} {:>7} {:>10}  {:<20} {}\n",
            a.agent,
            a.state.as_str(),
            a.held.len(),
            a.waiting,
            a.unread,
            active,
            capabilities,
            claims.join(", ")
        ));
    }
    out
}

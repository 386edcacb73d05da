//! Agents as the broker sees them: every registered agent (one with a mailbox), the capabilities
//! it declares (`agent.json`), the claims it holds, when it was last seen (a claim, a heartbeat, a
//! message) and its state: `busy` (it holds a claim), `idle`, or `stale` (not seen for
//! `[agents] stale_secs`). The broker writes them to `central_task_boards/agents.json` (and the
//! command channel's snapshot holds them); `mailroom agent list` (`crate::views::agents`) reads
//! that board and judges staleness at the time it is run, so it is right even while the broker
//! is down.

use protocol::Timestamp;
use protocol::names::validate_agent;
use runtime_layout::{FileKind, Fs, FsError, Layout, ProfileError, read_agent_profile};
use serde::{Deserialize, Serialize};

/// What an agent is doing, as far as the broker can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Seen within `stale_secs`, holding at least one claim.
    Busy,
    /// Seen within `stale_secs`, holding nothing.
    Idle,
    /// Not seen within `stale_secs` (or never).
    Stale,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Idle => "idle",
            Self::Stale => "stale",
        }
    }
}

/// The state of an agent last seen at `last_seen`, holding `held` claims, at `now`.
pub fn presence(last_seen: Option<Timestamp>, held: usize, now: Timestamp, stale_secs: u64) -> Presence {
    match last_seen {
        Some(t) if t.plus_secs(stale_secs) >= now => {
            if held > 0 {
                Presence::Busy
            } else {
                Presence::Idle
            }
        }
        _ => Presence::Stale,
    }
}

/// One agent, as the agents board and `mailroom agent list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub name: String,
    pub capabilities: Vec<String>,
    /// The claims it holds (file names in its `cur/`).
    pub held: Vec<String>,
    pub last_seen: Option<Timestamp>,
    pub state: Presence,
}

/// Every agent with a mailbox, sorted.
pub fn registered(fs: &dyn Fs, layout: &Layout) -> Result<Vec<String>, FsError> {
    let mut out: Vec<String> = fs
        .list(&layout.mailboxes_dir())?
        .into_iter()
        .filter(|e| e.kind == FileKind::Dir)
        .filter_map(|e| e.name_str().map(str::to_string))
        .filter(|n| validate_agent(n).is_ok())
        .collect();
    out.sort();
    Ok(out)
}

/// The capabilities `agent` declares (none without an `agent.json`).
pub fn read_capabilities(fs: &dyn Fs, layout: &Layout, agent: &str) -> Result<Vec<String>, ProfileError> {
    Ok(read_agent_profile(fs, layout, agent)?.unwrap_or_default().capabilities)
}

/// The capabilities `agent` declares; an `agent.json` that cannot be read declares nothing (the
/// broker treats it so too), with a warning.
pub fn capabilities(fs: &dyn Fs, layout: &Layout, agent: &str) -> Vec<String> {
    read_capabilities(fs, layout, agent).unwrap_or_else(|e| {
        tracing::warn!(%agent, error = %e, "an agent profile that cannot be read declares nothing");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let now = Timestamp::from_micros(1_000_000_000);
        let at = |s: u64| Some(Timestamp::from_micros(now.as_micros() - s as i64 * 1_000_000));
        assert_eq!(presence(at(10), 1, now, 60), Presence::Busy);
        assert_eq!(presence(at(10), 0, now, 60), Presence::Idle);
        assert_eq!(presence(at(60), 0, now, 60), Presence::Idle, "stale only after stale_secs");
        assert_eq!(presence(at(61), 2, now, 60), Presence::Stale, "a claim held by a silent agent");
        assert_eq!(presence(None, 0, now, 60), Presence::Stale);
    }
}

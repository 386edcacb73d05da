//! `mailroom status`: whether a broker runs, and what waits where — tasks per board and status,
//! per pool (files waiting in `queues/<pool>/new/` and the oldest one's age) and per agent (claims
//! held, direct tasks and mail waiting), the inbox's backlog, the quarantine's size, and how long
//! ago the journal was last written, and the root's footprint (files and bytes per area, the
//! filesystem's free space and inodes, with a warning when either runs low). Everything is read
//! from the files the broker writes; nothing is replayed, so it is cheap on any root (the
//! footprint stats every file once: the areas the broker keeps are bounded by its limits).

use super::liveness::{self, Liveness};
use super::{ViewError, files, named_dirs, require_root, secs_since, waiting};
use crate::board;
use crate::footprint::{self, Footprint, SpaceView};
use protocol::Timestamp;
use protocol::names::{DispatchName, REASON_SUFFIX};
use runtime_layout::{Fs, Layout};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub pool: String,
    /// Task files waiting to be claimed.
    pub waiting: usize,
    /// Age of the oldest one, in seconds (by its file's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentCounts {
    pub agent: String,
    /// Claims in its `cur/`.
    pub held: usize,
    /// Tasks assigned to it, waiting in its `new/`.
    pub waiting: usize,
    /// Mail and notices not read yet.
    pub unread: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalStatus {
    /// When the newest segment was last written (an append, or its creation at a start).
    pub last_write: Timestamp,
    pub age_secs: f64,
    pub segment: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub root: String,
    pub broker: Liveness,
    /// Tasks per board (`backlog`, `ready`, `working`, `completed`).
    pub boards: BTreeMap<&'static str, usize>,
    /// Tasks per status, over the four boards.
    pub statuses: BTreeMap<&'static str, usize>,
    pub pools: Vec<PoolStatus>,
    pub agents: Vec<AgentCounts>,
    /// Messages waiting in `broker/inbox/new/`.
    pub inbox: usize,
    /// Entries in `broker/quarantine/`.
    pub quarantine: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalStatus>,
    /// Files and bytes per area, and the filesystem's free space and inodes.
    pub footprint: Footprint,
    /// Free space or inodes below `[broker] low_space_percent` of the filesystem's.
    pub warnings: Vec<String>,
}

/// Reads the status of `layout`'s root at `now`.
pub fn read(fs: &dyn Fs, layout: &Layout, now: Timestamp) -> Result<Status, ViewError> {
    require_root(fs, layout)?;
    let broker = liveness::check(fs, layout)?;
    let mut boards: BTreeMap<&'static str, usize> =
        runtime_layout::Board::ALL.iter().map(|b| (board::board_name(*b), 0)).collect();
    let mut statuses = BTreeMap::new();
    for (b, t) in board::read(fs, layout, None)? {
        *boards.entry(board::board_name(b)).or_default() += 1;
        *statuses.entry(t.status.as_str()).or_default() += 1;
    }
    let mut pools = Vec::new();
    for pool in named_dirs(fs, &layout.queues_dir())? {
        let (n, oldest) = waiting(fs, &layout.queue(&pool))?;
        pools.push(PoolStatus { pool, waiting: n, oldest_secs: oldest.map(|o| secs_since(now, o)) });
    }
    let mut agents = Vec::new();
    for agent in named_dirs(fs, &layout.mailboxes_dir())? {
        let md = layout.mailbox(&agent);
        let held = files(fs, &md.cur())?.iter().filter(|n| DispatchName::parse(n).is_some()).count();
        let (waiting, _) = waiting(fs, &md)?;
        let unread = files(fs, &md.new_dir())?.len() - waiting;
        agents.push(AgentCounts { agent, held, waiting, unread });
    }
    let inbox = files(fs, &layout.broker_inbox().new_dir())?.len();
    let quarantine =
        files(fs, &layout.quarantine_dir())?.iter().filter(|n| !n.ends_with(REASON_SUFFIX)).count();
    let journal = newest_segment(fs, layout)?.map(|(segment, last_write)| JournalStatus {
        age_secs: secs_since(now, last_write),
        last_write,
        segment,
    });
    let footprint = footprint::measure(fs, layout)?;
    // A configuration that does not load is reported by `mailroom run`; here the default
    // threshold still gives the warning.
    let pct = crate::config::Config::load(fs, layout)
        .map_or(crate::config::BrokerSettings::default().low_space_percent, |c| c.broker.low_space_percent);
    let warnings = footprint.space.map(|s| low_space(s, pct)).unwrap_or_default();
    Ok(Status {
        root: layout.root().display().to_string(),
        broker,
        boards,
        statuses,
        pools,
        agents,
        inbox,
        quarantine,
        journal,
        footprint,
        warnings,
    })
}

/// A warning for free space and one for free inodes below `pct` percent.
fn low_space(s: SpaceView, pct: u64) -> Vec<String> {
    let mut out = Vec::new();
    let low = |free: u64, total: u64| total > 0 && free.saturating_mul(100) < total.saturating_mul(pct);
    if low(s.free_bytes, s.total_bytes) {
        out.push(format!(
            "low space: {} of {} bytes free (below {pct}%); see `mailroom gc` and the retention limits",
            s.free_bytes, s.total_bytes
        ));
    }
    if low(s.free_inodes, s.total_inodes) {
        out.push(format!(
            "low inodes: {} of {} free (below {pct}%); see `mailroom gc` and `inbox_keep_count`",
            s.free_inodes, s.total_inodes
        ));
    }
    out
}

/// The segment being appended to (the highest-numbered) and its mtime.
fn newest_segment(fs: &dyn Fs, layout: &Layout) -> Result<Option<(String, Timestamp)>, ViewError> {
    let dir = layout.journal_dir();
    let Some(name) = files(fs, &dir)?.into_iter().filter(|n| n.starts_with("segment-")).max() else {
        return Ok(None);
    };
    Ok(fs.stat(&dir.join(&name))?.map(|m| (name, m.mtime)))
}

impl Status {
    /// The status as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let b = &self.broker;
        let who = match (b.pid, &b.host) {
            (Some(p), Some(h)) => format!(" as pid {p} on {h}"),
            (Some(p), None) => format!(" as pid {p}"),
            _ => String::new(),
        };
        let state = match (b.running, b.judged_by) {
            (true, "pid") => format!("running{who} (judged by its pid: no lock table here)"),
            (true, _) => format!("running{who}"),
            (false, "never") => "not running (never ran here)".to_string(),
            (false, "other-host") => format!("unknown: the lock was last held from another host{who}"),
            (false, _) => format!("not running (last ran{who})"),
        };
        out.push_str(&format!("broker      {state}\n"));
        match &self.journal {
            Some(j) => {
                out.push_str(&format!("journal     last written {} ago ({})\n", age(j.age_secs), j.segment))
            }
            None => out.push_str("journal     empty\n"),
        }
        let boards: Vec<String> = self.boards.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("boards      {}\n", boards.join("  ")));
        let statuses: Vec<String> = self.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !statuses.is_empty() {
            out.push_str(&format!("statuses    {}\n", statuses.join("  ")));
        }
        out.push_str(&format!("inbox       {} waiting\n", self.inbox));
        out.push_str(&format!("quarantine  {} entries\n", self.quarantine));
        if !self.pools.is_empty() {
            out.push_str(&format!("\n{:<24} {:>8} {:>10}\n", "POOL", "WAITING", "OLDEST"));
            for p in &self.pools {
                let oldest = p.oldest_secs.map_or_else(|| "-".to_string(), age);
                out.push_str(&format!("{:<24} {:>8} {:>10}\n", p.pool, p.waiting, oldest));
            }
        }
        if !self.agents.is_empty() {
            out.push_str(&format!("\n{:<24} {:>6} {:>8} {:>7}\n", "AGENT", "HELD", "WAITING", "UNREAD"));
            for a in &self.agents {
                out.push_str(&format!("{:<24} {:>6} {:>8} {:>7}\n", a.agent, a.held, a.waiting, a.unread));
            }
        }
        out.push_str("\nFOOTPRINT\n");
        out.push_str(&self.footprint.render());
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// `42s`, `3m05s`, `2h10m`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(free: u64, free_inodes: u64) -> SpaceView {
        SpaceView { free_bytes: free, total_bytes: 1000, free_inodes, total_inodes: 100 }
    }

    #[test]
    fn low_space_and_inodes_are_told_apart() {
        assert!(low_space(space(500, 50), 10).is_empty());
        let w = low_space(space(99, 50), 10);
        assert!(w.len() == 1 && w[0].starts_with("low space: 99 of 1000"), "{w:?}");
        let w = low_space(space(500, 9), 10);
        assert!(w.len() == 1 && w[0].starts_with("low inodes: 9 of 100"), "{w:?}");
        assert_eq!(low_space(space(0, 0), 10).len(), 2);
        // A filesystem that reports no inodes (some do) never warns about them.
        assert!(low_space(SpaceView { total_inodes: 0, ..space(500, 0) }, 10).is_empty());
    }
}

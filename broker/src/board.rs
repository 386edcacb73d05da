//! `mailroom board`: the central boards as the broker last wrote them, as a table or JSON, and
//! the filters of `--status`, `--pool`, `--agent` and `--type` ([`Filter`]).

use crate::config::Config;
use protocol::{Status, Task};
use runtime_layout::{Board, Fs, FsError, Layout};

/// Tasks from every board, each with the board it is on, optionally filtered by status.
pub fn read(fs: &dyn Fs, layout: &Layout, status: Option<Status>) -> Result<Vec<(Board, Task)>, FsError> {
    let mut out = Vec::new();
    for board in Board::ALL {
        let path = layout.board(board);
        if fs.stat(&path)?.is_none() {
            continue;
        }
        let bytes = fs.read(&path, 1 << 32)?;
        let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap_or_default();
        for v in values {
            if let Ok(t) = Task::from_value(v)
                && status.is_none_or(|s| s == t.status)
            {
                out.push((board, t));
            }
        }
    }
    Ok(out)
}

/// Which tasks to show; every field left `None` matches every task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub status: Option<Status>,
    /// The pool the task's type routes to ([`Config::pool_of`]).
    pub pool: Option<String>,
    /// The agent the task is assigned to (a direct task, or the holder of its claim).
    pub agent: Option<String>,
    pub task_type: Option<String>,
}

impl Filter {
    pub fn matches(&self, task: &Task, cfg: &Config) -> bool {
        self.status.is_none_or(|s| s == task.status)
            && self.agent.as_ref().is_none_or(|a| task.assigned_to.as_ref() == Some(a))
            && self.task_type.as_ref().is_none_or(|t| task.task_type.as_ref() == Some(t))
            && self.pool.as_ref().is_none_or(|p| cfg.pool_of(task).as_ref() == Some(p))
    }
}

/// [`read`], keeping the tasks `filter` matches.
pub fn read_filtered(
    fs: &dyn Fs,
    layout: &Layout,
    filter: &Filter,
    cfg: &Config,
) -> Result<Vec<(Board, Task)>, FsError> {
    let mut rows = read(fs, layout, filter.status)?;
    rows.retain(|(_, t)| filter.matches(t, cfg));
    Ok(rows)
}

pub fn board_name(b: Board) -> &'static str {
    match b {
        Board::Backlog => "backlog",
        Board::Ready => "ready",
        Board::Working => "working",
        Board::Completed => "completed",
    }
}

/// What an operator should know about a task that waits or is blocked: "waiting for unknown
/// task X" for a PENDING task whose dependencies do not all exist, the reason for a BLOCKED one.
pub fn note(task: &Task) -> Option<String> {
    match task.status {
        Status::Pending => crate::engine::dependencies::waiting_note(task),
        Status::Blocked => {
            Some(format!("blocked: {}", task.error.as_deref().unwrap_or("by an operator or an import")))
        }
        _ => None,
    }
}

pub fn render(rows: &[(Board, Task)]) -> String {
    let mut out =
        format!("{:<10} {:<12} {:<9} {:<14} {}\n", "BOARD", "STATUS", "PRIORITY", "ASSIGNED", "TASK");
    for (b, t) in rows {
        out.push_str(&format!(
            "{:<10} {:<12} {:<9} {:<14} {}{}\n",
            board_name(*b),
            t.status.as_str(),
            t.priority.as_str(),
            t.assigned_to.as_deref().unwrap_or("-"),
            t.task_id,
            t.name.as_deref().map(|n| format!("  {n}")).unwrap_or_default()
        ));
        if let Some(n) = note(t) {
            out.push_str(&format!("{:<10} {n}\n", ""));
        }
    }
    out
}

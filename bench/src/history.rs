//! Builds a runtime root that already holds `n` finished tasks (W4/W5): what a broker leaves
//! behind after compacting such a history, written directly rather than through the pipeline
//! (that would take hours at 1,000,000 tasks). Every file goes through the `Fs` seam, and the
//! journal is written by the broker's own journal code (`journal_watch::HistoryWriter`).

use crate::error::BenchError;
use crate::journal_watch::HistoryWriter;
use crate::procs::now_us;
use protocol::{HistoryEntry, Status, Task, Timestamp};
use runtime_layout::{Fs, Layout};
use serde_json::{Value, json};
use std::path::Path;

/// The id of the `i`th finished task of a history (`H-00000000` is the oldest).
pub fn history_id(i: usize) -> String {
    format!("H-{i:08}")
}

/// The `i`th task of a history starting at `t0` (µs): submitted, dispatched, claimed by Agent-1
/// and completed, 40 µs apart, with a body of about `body_bytes`.
fn finished_task(i: usize, t0: i64, body_bytes: usize) -> Task {
    let ts = |k: i64| Timestamp::from_micros(t0 + i as i64 * 1000 + k);
    let entry =
        |k: i64, actor: &str, action: &str, from: Option<Status>, to: Status, details: Option<Value>| {
            HistoryEntry {
                timestamp: ts(k),
                actor: actor.into(),
                action: action.into(),
                from,
                to: Some(to),
                details,
            }
        };
    let name = format!("1-{}-{:012}-{}.json", ts(0).compact(), i * 6 + 2, history_id(i));
    let v = json!({
        "task_id": history_id(i),
        "name": format!("history task {i}"),
        "task_type": "bench",
        "created_by": "bench",
        "params": {"pad": "h".repeat(body_bytes.saturating_sub(200))},
    });
    let mut t = Task::from_value(v).expect("a valid task");
    t.status = Status::Completed;
    t.created_at = Some(ts(0));
    t.updated_at = Some(ts(40));
    t.attempts = 1;
    t.result = json!({"ok": true});
    t.history = vec![
        entry(0, "bench", "submit", None, Status::Pending, None),
        entry(
            10,
            "mailroom",
            "dispatch",
            Some(Status::Pending),
            Status::Pending,
            Some(json!({"to": format!("queues/bench/new/{name}")})),
        ),
        entry(
            20,
            "Agent-1",
            "claim",
            Some(Status::Pending),
            Status::InProgress,
            Some(json!({"claim": name})),
        ),
        entry(
            40,
            "Agent-1",
            "complete",
            Some(Status::InProgress),
            Status::Completed,
            Some(json!({"claim": name})),
        ),
    ];
    t
}

/// Initialises the tree at `root` and writes the journal of `n` finished tasks into it. Archived
/// records carry a short body (about 300 bytes); the last `completed_board` tasks, which the
/// snapshot keeps for the completed board, carry `body_bytes`.
pub fn build(
    fs: &dyn Fs,
    root: &Path,
    n: usize,
    body_bytes: usize,
    completed_board: usize,
) -> Result<(), BenchError> {
    Layout::new(root).create(fs)?;
    if n == 0 {
        return Ok(());
    }
    // The history ends an hour ago, a millisecond per task.
    let t0 = now_us() - n as i64 * 1000 - 3_600_000_000;
    let mut w = HistoryWriter::open(fs, root)?;
    for i in 0..n {
        let on_board = i + completed_board >= n;
        w.finished(finished_task(i, t0, if on_board { body_bytes } else { 300 }), i as u64, on_board)?;
    }
    Ok(w.finish()?)
}

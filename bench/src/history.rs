//! Builds a runtime root that already holds `n` finished tasks, in the broker's own journal
//! format: a snapshot (`journal/snapshot-<seq>.json`) whose tombs are the finished tasks and whose
//! `recent_done` fills the completed board, and archived segments holding one `complete` record
//! per task (what `mailroom trace` reads). This is what a broker leaves behind after compaction,
//! written directly rather than through the pipeline (that would take hours at 1,000,000 tasks).

use mailroom::journal::{Op, Place, Record, Snapshot, Tomb};
use protocol::{HistoryEntry, Status, Task, Timestamp};
use runtime_layout::{Layout, RealFs};
use serde_json::{Value, json};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Records per archived segment file.
const PER_SEGMENT: usize = 250_000;

pub fn history_id(i: usize) -> String {
    format!("H-{i:08}")
}

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

/// Writes the journal of `n` finished tasks into `root` (initialising the tree). Archived records
/// carry a short body (about 300 bytes); the last `completed_board` tasks, which the snapshot
/// keeps for the completed board, carry `body_bytes`.
pub fn build(root: &Path, n: usize, body_bytes: usize, completed_board: usize) -> Result<(), String> {
    let layout = Layout::new(root);
    layout.create(&RealFs).map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(());
    }
    let dir = layout.journal_dir();
    let archive = dir.join("archive");
    std::fs::create_dir_all(&archive).map_err(|e| e.to_string())?;
    let t0 = crate::procs::now_us() - n as i64 * 1000 - 3_600_000_000;
    let err = |e: std::io::Error| e.to_string();
    let mut seq = 0u64;
    let mut tombs = Vec::with_capacity(n);
    let mut recent = Vec::new();
    let mut w: Option<BufWriter<std::fs::File>> = None;
    for i in 0..n {
        if i % PER_SEGMENT == 0 {
            if let Some(mut old) = w.take() {
                old.flush().map_err(err)?;
            }
            let p = archive.join(format!("segment-{:016}.jsonl", seq + 1));
            w = Some(BufWriter::with_capacity(1 << 20, std::fs::File::create(p).map_err(err)?));
        }
        // Archived records are smaller than live ones (a short body): the board keeps the full ones.
        let full = i + completed_board >= n;
        let t = finished_task(i, t0, if full { body_bytes } else { 300 });
        seq += 1;
        let mut rec = Record::new(Op::Complete, t.updated_at.unwrap_or(Timestamp::from_micros(t0)));
        rec.seq = seq;
        rec.task_id = Some(t.task_id.clone());
        rec.place = Some(Place::Done);
        rec.actor = Some("Agent-1".into());
        rec.task = Some(t.clone());
        let out = w.as_mut().expect("segment open");
        serde_json::to_writer(&mut *out, &rec).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(err)?;
        tombs.push(Tomb { id: t.task_id.clone(), status: Status::Completed, hash: i as u64 });
        if full {
            recent.push(t);
        }
    }
    if let Some(mut old) = w.take() {
        old.flush().map_err(err)?;
    }
    let snap = Snapshot { seq, live: Vec::new(), tombs, recent_done: recent, consumed: Default::default() };
    let path = dir.join(format!("snapshot-{seq:016}.json"));
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).map_err(err)?);
    serde_json::to_writer(&mut f, &snap).map_err(|e| e.to_string())?;
    f.flush().map_err(err)?;
    Ok(())
}

//! W3, the filesystem floor: per task, the file operations the pipeline performs, in one tight
//! loop with no broker logic, no JSON parsing and no processes. What the producer, the broker and
//! the agent do to files for one task:
//!
//! - producer: deliver the submit message (create in `inbox/tmp`, write, fsync as the SDK's
//!   durability says, rename into `inbox/new`, fsync `inbox/new` under `always`);
//! - broker: read it, buffer journal records, deliver the task file into the pool (no file fsync
//!   unless `always`), move the message to `inbox/cur`;
//! - agent: rename the task file into its `cur/`, touch it, read it, deliver a complete message;
//! - broker: read it, buffer journal records, unlink the claim, move the message to `inbox/cur`;
//! - every `batch` tasks: append the buffered records and fsync the journal, fsync the
//!   directories touched (unless durability is `never`).
//!
//! The loop runs in as many threads as the pipeline has producer and agent processes, each on its
//! own directories, because the pipeline's fsyncs overlap too (a sequential loop would measure
//! the disk's fsync latency, not what it allows).

use runtime_layout::{Durability, Fs, Maildir, NameSource, RealFs, deliver};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Floor {
    pub tasks: usize,
    pub threads: usize,
    pub elapsed: Duration,
}

impl Floor {
    pub fn tasks_per_s(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn run(
    dir: &Path,
    threads: usize,
    tasks: usize,
    body_bytes: usize,
    batch: usize,
    broker: Durability,
    client: Durability,
) -> Result<Floor, String> {
    let threads = threads.max(1);
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = tasks / threads + usize::from(t < tasks % threads);
                let d = dir.join(format!("t{t}"));
                s.spawn(move || one(&d, n, body_bytes, batch, broker, client))
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err("floor thread panicked".into())))
    })?;
    Ok(Floor { tasks, threads, elapsed: start.elapsed() })
}

fn one(
    dir: &Path,
    tasks: usize,
    body_bytes: usize,
    batch: usize,
    broker: Durability,
    client: Durability,
) -> Result<(), String> {
    let fs = RealFs;
    let e = |e: runtime_layout::FsError| e.to_string();
    let inbox = Maildir::new(dir.join("inbox"));
    let pool = Maildir::new(dir.join("pool"));
    let agent = Maildir::new(dir.join("agent"));
    for m in [&inbox, &pool, &agent] {
        m.create(&fs, true).map_err(e)?;
    }
    std::fs::create_dir_all(dir.join("journal")).map_err(|e| e.to_string())?;
    let mut journal = fs.open_append(&dir.join("journal/segment.jsonl")).map_err(e)?;
    let names = NameSource::new();
    let message = vec![b'm'; body_bytes + 200];
    let task_file = vec![b't'; body_bytes + 600];
    // Submit, dispatch, consume, claim, complete, consume: about what the broker journals.
    let records = vec![b'r'; 4 * (body_bytes + 400)];
    let mut buf: Vec<u8> = Vec::new();
    let file_sync = if broker == Durability::Always { Durability::Batch } else { Durability::Never };
    for i in 0..tasks {
        // Producer: submit.
        let msg = names.next("msg");
        let p = deliver(&fs, &inbox, &msg, &message, client).map_err(e)?;
        // Broker: consume the submit, dispatch.
        let _ = fs.read(&p, 1 << 20).map_err(e)?;
        buf.extend_from_slice(&records[..records.len() / 2]);
        let task = format!("2-20260101T000000000000-{i:012}-B-{i:08}.json");
        deliver(&fs, &pool, &task, &task_file, file_sync).map_err(e)?;
        fs.rename(&p, &inbox.cur().join(&msg)).map_err(e)?;
        // Agent: claim, read, complete.
        let held = agent.cur().join(&task);
        fs.rename_noreplace(&pool.new_dir().join(&task), &held).map_err(e)?;
        fs.touch(&held).map_err(e)?;
        let _ = fs.read(&held, 1 << 20).map_err(e)?;
        let done = names.next("msg");
        let q = deliver(&fs, &inbox, &done, &message[..200], client).map_err(e)?;
        // Broker: consume the complete.
        let _ = fs.read(&q, 1 << 20).map_err(e)?;
        buf.extend_from_slice(&records[records.len() / 2..]);
        fs.remove_file(&held).map_err(e)?;
        fs.rename(&q, &inbox.cur().join(&done)).map_err(e)?;
        if (i + 1) % batch.max(1) == 0 || i + 1 == tasks {
            journal.append(&buf).map_err(e)?;
            buf.clear();
            if broker.sync_files() {
                journal.sync().map_err(e)?;
                for d in [inbox.new_dir(), inbox.cur(), pool.new_dir(), agent.cur()] {
                    fs.sync_dir(&d).map_err(e)?;
                }
            }
        }
    }
    Ok(())
}

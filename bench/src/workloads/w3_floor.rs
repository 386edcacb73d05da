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
//! the disk's fsync latency, not what it allows). It runs before every other workload, on a disk
//! their file churn has not yet touched. W1 / W3 is how close mailroom gets to what the disk allows.

use super::Workload;
use super::w1_pipeline::W1Report;
use crate::error::BenchError;
use crate::report::{Section, find, round};
use crate::run::{Ctx, log};
use runtime_layout::{Durability, Fs, Maildir, NameSource, deliver};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::time::Instant;

pub struct W3;

#[derive(Debug, Clone, Serialize)]
pub struct W3Report {
    pub tasks: usize,
    pub threads: usize,
    #[serde(serialize_with = "round::r3")]
    pub secs: f64,
    #[serde(serialize_with = "round::r0")]
    pub tasks_per_s: f64,
    pub journal_fsync_every: usize,
    /// W1's tasks/s over the floor's (`null` without W1).
    #[serde(serialize_with = "round::r3_opt")]
    pub w1_fraction: Option<f64>,
}

impl Workload for W3 {
    fn names(&self) -> &'static [&'static str] {
        &["w3"]
    }

    fn runs_first(&self) -> bool {
        true
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        log("W3 filesystem floor");
        let d = cx.fresh("floor")?;
        let p = &cx.plan;
        let (threads, tasks, batch) = ((p.producers + p.agents).max(1), p.tasks, p.floor_batch);
        let (body, client) = (p.body_bytes, p.client_durability()?);
        let fs = cx.fs();
        let start = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let n = tasks / threads + usize::from(t < tasks % threads);
                    let d = d.join(format!("t{t}"));
                    s.spawn(move || one(fs, &d, n, body, batch, Durability::Batch, client))
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| Err(BenchError::process("W3 floor thread", "panicked")))
            })
        })?;
        let secs = start.elapsed().as_secs_f64();
        Ok(Box::new(W3Report {
            tasks,
            threads,
            secs,
            tasks_per_s: tasks as f64 / secs.max(1e-9),
            journal_fsync_every: batch,
            w1_fraction: None,
        }))
    }
}

/// One thread's share: `tasks` tasks' file operations in `dir`.
fn one(
    fs: &dyn Fs,
    dir: &Path,
    tasks: usize,
    body_bytes: usize,
    batch: usize,
    broker: Durability,
    client: Durability,
) -> Result<(), BenchError> {
    let inbox = Maildir::new(dir.join("inbox"));
    let pool = Maildir::new(dir.join("pool"));
    let agent = Maildir::new(dir.join("agent"));
    for m in [&inbox, &pool, &agent] {
        m.create(fs, true)?;
    }
    fs.create_dir_all(&dir.join("journal"))?;
    let mut journal = fs.create_append(&dir.join("journal/segment.jsonl"))?;
    let names = NameSource::new();
    let message = vec![b'm'; body_bytes + 200];
    let task_file = vec![b't'; body_bytes + 600];
    // Submit, dispatch, consume, claim, complete, consume: about what the broker journals.
    let records = vec![b'r'; 4 * (body_bytes + 400)];
    let mut buf: Vec<u8> = Vec::new();
    let mut room = 0u64;
    let file_sync = if broker == Durability::Always { Durability::Batch } else { Durability::Never };
    for i in 0..tasks {
        // Producer: submit.
        let msg = names.next("msg");
        let p = deliver(fs, &inbox, &msg, &message, client)?;
        // Broker: consume the submit, dispatch.
        let _ = fs.read(&p, 1 << 20)?;
        buf.extend_from_slice(&records[..records.len() / 2]);
        let task = format!("2-20260101T000000000000-{i:012}-B-{i:08}.json");
        deliver(fs, &pool, &task, &task_file, file_sync)?;
        fs.rename(&p, &inbox.cur().join(&msg))?;
        // Agent: claim, read, complete.
        let held = agent.cur().join(&task);
        fs.rename_noreplace(&pool.new_dir().join(&task), &held)?;
        fs.touch(&held)?;
        let _ = fs.read(&held, 1 << 20)?;
        let done = names.next("msg");
        let q = deliver(fs, &inbox, &done, &message[..200], client)?;
        // Broker: consume the complete.
        let _ = fs.read(&q, 1 << 20)?;
        buf.extend_from_slice(&records[records.len() / 2..]);
        fs.remove_file(&held)?;
        fs.rename(&q, &inbox.cur().join(&done))?;
        if (i + 1) % batch.max(1) == 0 || i + 1 == tasks {
            // Into zeros written ahead, as the broker's journal appends.
            if broker.sync_files() && room < buf.len() as u64 {
                journal.reserve(buf.len() as u64 + mailroom::journal::RESERVE)?;
                room = buf.len() as u64 + mailroom::journal::RESERVE;
            }
            room = room.saturating_sub(buf.len() as u64);
            journal.append(&buf)?;
            buf.clear();
            if broker.sync_files() {
                journal.sync()?;
                for d in [inbox.new_dir(), inbox.cur(), pool.new_dir(), agent.cur()] {
                    fs.sync_dir(&d)?;
                }
            }
        }
    }
    Ok(())
}

impl Section for W3Report {
    fn key(&self) -> &'static str {
        "w3_floor"
    }

    fn headline(&self) -> Option<String> {
        Some(match self.w1_fraction {
            Some(x) => format!("W3 {:.0}/s (W1 {:.0}%)", self.tasks_per_s, x * 100.0),
            None => format!("W3 {:.0}/s", self.tasks_per_s),
        })
    }

    fn relate(&mut self, others: &[Box<dyn Section>]) {
        self.w1_fraction = find::<W1Report>(others).map(|w1| w1.run.tasks_per_s / self.tasks_per_s.max(1e-9));
    }
}

impl fmt::Display for W3Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "W3 floor        {:>8.0} tasks/s (same file operations in {} threads, no broker, journal fsync every {} tasks){}",
            self.tasks_per_s,
            self.threads,
            self.journal_fsync_every,
            self.w1_fraction.map(|x| format!("; W1 = {:.0}% of floor", x * 100.0)).unwrap_or_default()
        )
    }
}

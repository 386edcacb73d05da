//! The ledger: the journal and the state it derives, kept together so they cannot drift. A
//! record goes in through [`Ledger::push`], which numbers it, buffers it for the next group
//! commit and applies it to the state; nothing else changes the state. Committed records are
//! also published to subscribers (the command channel's event stream).

use super::EngineError;
use super::commands::{Batch, Records};
use super::env::Env;
use super::stats::Histogram;
use crate::journal::{self, Entry, Journal, JournalError, Record};
use crate::state::State;
use protocol::Timestamp;
use runtime_layout::Fs;
use std::sync::Arc;
use tokio::sync::broadcast;

/// A commit at least this slow is logged as a warning (a disk that stalls, busy writing back
/// something else, shows in the broker's log rather than only as clients' timeouts).
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct Ledger {
    journal: Journal,
    /// The filesystem the journal's segments are created on (at their first commit).
    fs: Arc<dyn Fs>,
    state: State,
    /// Records pushed since the engine opened.
    records: usize,
    /// The tasks pushed records changed since the boards last looked (they need rewriting).
    changed: Vec<String>,
    events: broadcast::Sender<Batch>,
    /// Records pushed but not yet committed, kept only while someone subscribes.
    unpublished: Vec<Arc<Record>>,
    /// How long commits that wrote something took (for metrics).
    commits: Histogram,
}

impl Ledger {
    /// Replays the journal into a state and opens a new segment (none when `read_only`).
    pub fn open(env: &Env, read_only: bool) -> Result<Self, EngineError> {
        let dir = env.layout.journal_dir();
        // Records are applied as they are read: a restart never holds them all in memory.
        let limit = env.cfg.broker.completed_board_limit;
        let finished = env.cfg.broker.finished_keep_count;
        let rebuilt = std::cell::RefCell::new((State::new(limit, finished), 1u64));
        let tombs_next = std::cell::Cell::new(0);
        let loaded = journal::replay(
            env.fs(),
            &dir,
            |snap| {
                if let Some(s) = snap {
                    let next = s.seq + 1;
                    tombs_next.set(s.tombs_next);
                    *rebuilt.borrow_mut() = (State::from_snapshot(s, limit, finished), next);
                }
            },
            |rec| {
                let mut r = rebuilt.borrow_mut();
                r.1 = rec.seq + 1;
                r.0.apply_owned(rec);
            },
        )?;
        let (state, next_seq) = rebuilt.into_inner();
        for t in &loaded.notes.torn {
            tracing::warn!(torn = %t, "ignored an incomplete journal entry left by a crash");
        }
        for s in &loaded.notes.set_aside {
            tracing::error!(record = %s, "set aside a journal record that cannot be read; serving the rest");
        }
        let journal = if read_only {
            Journal::read_only(&dir, next_seq)
        } else {
            let mut j = Journal::open(env.fs(), &dir, next_seq, env.durability)?
                .with_reserve(env.cfg.journal.reserve_bytes);
            j.settle_tombs(tombs_next.get());
            j
        };
        tracing::info!(
            live = state.live_count(),
            finished = state.finished_count(),
            replayed = loaded.records,
            "state rebuilt from the journal"
        );
        Ok(Self {
            journal,
            fs: env.fs.clone(),
            state,
            records: 0,
            changed: Vec::new(),
            events: broadcast::channel(Records::BACKLOG).0,
            unpublished: Vec::new(),
            commits: Histogram::default(),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.journal.next_seq()
    }

    /// Bytes of records written to the journal since the engine opened.
    pub fn journal_written(&self) -> u64 {
        self.journal.written()
    }

    /// Records pushed since the engine opened.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Journals `entry` (durable at the next commit) and applies it. Returns its sequence number.
    pub fn push(&mut self, ts: Timestamp, entry: Entry) -> u64 {
        // The task as its last record left it: a record about it carries only what changed.
        let prev = entry.change().and_then(|(t, _)| self.state.live(&t.task_id)).map(|l| &l.task);
        let rec = self.journal.push_change(ts, entry, prev);
        self.records += 1;
        let changed = match (rec.entry.change(), rec.entry.relocation()) {
            (Some((t, _)), _) => Some(t.task_id.as_str()),
            (None, Some((id, _))) => Some(id),
            (None, None) => None,
        };
        if let Some(id) = changed {
            self.changed.push(id.to_string());
        }
        let seq = rec.seq;
        // The record is kept only for subscribers; otherwise its task moves into the state.
        if self.events.receiver_count() > 0 {
            self.state.apply(&rec);
            self.unpublished.push(Arc::new(rec));
        } else {
            self.state.apply_owned(rec);
        }
        seq
    }

    /// The ids of the tasks records changed since the last call, in record order (an id once per
    /// record that changed it).
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed)
    }

    /// Whether records were pushed that no commit has made durable yet.
    pub fn has_uncommitted(&self) -> bool {
        self.journal.has_pending()
    }

    /// Makes every pushed record durable, then publishes them to subscribers.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        let started = self.journal.has_pending().then(std::time::Instant::now);
        self.journal.commit(self.fs.as_ref())?;
        if let Some(t) = started {
            let took = t.elapsed();
            self.commits.observe(took);
            if took >= SLOW_COMMIT {
                // Every client waiting for an answer waited as long: say so where operators look.
                tracing::warn!(
                    took_ms = took.as_millis() as u64,
                    "a journal commit (its write and fsync) was slow: the disk is the wait"
                );
            }
        }
        if !self.unpublished.is_empty() {
            let mut rest = std::mem::take(&mut self.unpublished);
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(Records::BATCH));
                // No subscriber left is not an error: the records are in the journal.
                let _ = self.events.send(Arc::new(std::mem::replace(&mut rest, tail)));
            }
        }
        Ok(())
    }

    /// Cuts the journal's reserve of zeros off, leaving its segment as its records alone (at a
    /// clean stop).
    pub fn trim(&mut self) {
        self.journal.trim();
    }

    /// How long the commits that wrote records took.
    pub fn commit_latency(&self) -> &Histogram {
        &self.commits
    }

    /// Every record committed from now on.
    pub fn subscribe(&self) -> Records {
        Records::new(self.events.subscribe())
    }

    /// Whether enough records, or bytes of records, have accumulated for a snapshot: the live
    /// journal holds twice the newest snapshot's bytes (and at least `compact_min_bytes`), or
    /// reached `compact_after_records` or `compact_after_bytes`. The first rule keeps the live
    /// journal in proportion to the state: small where little is live, and never rewriting a
    /// large snapshot for a little journal (at most one snapshot byte per two journal bytes).
    pub fn compaction_due(&self, env: &Env) -> bool {
        let b = &env.cfg.broker;
        let bytes = self.journal.bytes_since_snapshot();
        self.journal.records_since_snapshot() >= b.compact_after_records
            || bytes >= b.compact_after_bytes
            || (bytes >= b.compact_min_bytes && bytes >= 2 * self.journal.snapshot_bytes())
    }

    /// Writes a snapshot (streamed from the state, never a copy of it) and archives the segments
    /// it covers. Call only with every effect carried out and the directories it touched fsynced
    /// (after a commit and `Effects::sync_touched`).
    pub fn compact(&mut self, env: &Env) -> Result<(), EngineError> {
        let seq = self.journal.next_seq() - 1;
        let state = &self.state;
        self.journal
            .compact_with(env.fs(), seq, &env.names, state, |w, fresh| state.write_snapshot(seq, fresh, w))?;
        // Journaled, so that replay forgets exactly what live operation forgets.
        self.push(env.now(), Entry::Snapshot { through: seq });
        self.commit()?;
        tracing::info!(seq, live = self.state.live_count(), "journal compacted");
        Ok(())
    }
}

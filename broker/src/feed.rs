//! A reader's view of the journal: every committed record after a position, in order and without
//! a gap. Records come live from the broker's subscription when they can, and from the journal's
//! files for whatever the subscription cannot give: records committed before it started (an
//! outbox sink resumes from its journaled position), or missed because the reader fell more than
//! the subscription's backlog behind (a webhook endpoint was down). Journal reads run on the
//! blocking pool, never on the thread of the broker's loop, and the loop does no work for a
//! reader that fell behind.
//!
//! Used by the outbox's sinks (`crate::outbox`); the HTTP event stream reads the journal the same
//! way on its own.

use crate::engine::commands::{Records, Subscription};
use crate::journal::{self, JournalError, Record};
use runtime_layout::Fs;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Why the feed could not go on (it stays where it was: the caller waits and asks again).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("reading the journal failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Records read from the journal at a time. Each read resolves its segment from the start (a
/// delta needs the records before it), so a gap of `n` records in one segment costs about
/// `n / READ_AHEAD` passes over it: large enough to keep that small, small enough to bound memory.
const READ_AHEAD: usize = 8192;

pub struct Feed {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    live: Records,
    /// The sequence number of the next record to hand out.
    next: u64,
    /// Every record numbered below this is committed, so the journal has it.
    committed_end: u64,
    /// Records read from the journal, not handed out yet.
    ahead: VecDeque<Arc<Record>>,
    /// A live record that came with a gap before it: handed out once the gap is read.
    held: Option<Arc<Record>>,
}

impl Feed {
    /// The records after `after`, given the subscription taken at the position's read.
    pub fn new(fs: Arc<dyn Fs>, dir: PathBuf, sub: Subscription, after: u64) -> Self {
        Self {
            fs,
            dir,
            live: sub.records,
            next: after + 1,
            committed_end: sub.from_seq,
            ahead: VecDeque::new(),
            held: None,
        }
    }

    /// The next record; `Ok(None)` once the broker stopped publishing. An error (a journal that
    /// cannot be read) leaves the feed where it was: call again.
    pub async fn next(&mut self) -> Result<Option<Arc<Record>>, FeedError> {
        loop {
            if let Some(r) = self.ahead.pop_front() {
                if r.seq < self.next {
                    continue;
                }
                self.next = r.seq + 1;
                return Ok(Some(r));
            }
            if self.next < self.committed_end {
                self.read_gap().await?;
                continue;
            }
            if let Some(r) = self.held.take() {
                if r.seq < self.next {
                    continue;
                }
                self.next = r.seq + 1;
                return Ok(Some(r));
            }
            match self.live.recv().await {
                Ok(r) if r.seq < self.next => {}
                Ok(r) if r.seq == self.next => {
                    self.next += 1;
                    return Ok(Some(r));
                }
                Ok(r) => {
                    self.committed_end = r.seq;
                    self.held = Some(r);
                }
                // The next record received shows how much was missed; the journal has it.
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "outbox fell behind: reading the journal")
                }
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }

    async fn read_gap(&mut self) -> Result<(), FeedError> {
        let (fs, dir, from, to) = (self.fs.clone(), self.dir.clone(), self.next, self.committed_end);
        let read =
            tokio::task::spawn_blocking(move || journal::read_range(fs.as_ref(), &dir, from, to, READ_AHEAD))
                .await??;
        match read.first() {
            None => {
                // Nothing there: segments removed by hand. Say so and go on after them.
                tracing::error!(from, to, "journal records missing: the outbox skips them");
                self.next = to;
            }
            Some(first) if first.seq > from => {
                tracing::error!(from, to = first.seq, "journal records missing: the outbox skips them");
            }
            Some(_) => {}
        }
        self.ahead.extend(read.into_iter().map(Arc::new));
        Ok(())
    }
}

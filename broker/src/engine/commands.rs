//! The command channel into the running broker. In-process front ends (the HTTP API, a cluster
//! link) hold a [`Handle`]; they never write a file of the tree and never hold the engine. Each
//! [`Command`] is answered between passes by the broker's own loop: reads from its state, and
//! submit, cancel, retry and requeue through the same handlers, journal and state machine as
//! messages in the inbox. A verdict that accepts is sent only once its records are durable.
//!
//! Besides the state ([`View`]) a front end may ask for the loop's own figures ([`Stats`]: commit
//! and pass durations, inbox backlog), which the loop only counts; and for a scoped bulk retry
//! ([`RetryScope`]), each task of it redriven through the same handler as a single retry.
//!
//! The cluster link uses [`Command::ClusterView`] and [`Command::Cluster`] (see
//! `engine::cluster`).
//!
//! The outbox (`crate::outbox`) uses the same channel: [`Command::Position`] and
//! [`Command::Delivered`] read and journal a sink's position, and [`Command::Deliveries`] hands
//! out the shared [`Deliveries`] handle through which a front end reads what the webhooks and
//! hooks did (answered by `run::serve`, which owns the outbox).

pub use super::cluster::{ClusterOp, ClusterView, PulledView};
use super::quarantine::Refusal;
pub use super::stats::{Histogram, LATENCY_BOUNDS_SECS, Stats};
use crate::journal::{Place, Record};
use crate::outbox::Deliveries;
use protocol::{Status, Task};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::sync::{mpsc, oneshot};

/// A request to the running broker.
#[derive(Debug)]
pub enum Command {
    /// What the broker holds now.
    Snapshot(oneshot::Sender<View>),
    /// Every live task in brief (no body): what a front end that only counts needs.
    Census(oneshot::Sender<Census>),
    /// Submit a task (a JSON task object, validated as a `submit` message's task is).
    Submit {
        task: Value,
        reply: oneshot::Sender<Verdict>,
    },
    Cancel {
        task_id: String,
        reply: oneshot::Sender<Verdict>,
    },
    Retry {
        task_id: String,
        reply: oneshot::Sender<Verdict>,
    },
    /// Redrive every task the scope selects (each as a [`Command::Retry`] would).
    RetryWhere {
        scope: RetryScope,
        reply: oneshot::Sender<BulkVerdict>,
    },
    /// Every record committed from now on. Answered after the commit that ends the batch, so
    /// every record before `from_seq` is in the journal when the answer arrives.
    Subscribe(oneshot::Sender<Subscription>),
    /// The loop's own figures.
    Stats(oneshot::Sender<Stats>),
    /// A protocol message from the broker's socket (`protocol::socket`), handled as the same
    /// message read from `broker/inbox/new/` under `name` is, and answered once durable. A name
    /// the broker took already (a client sending again after a lost answer) is accepted again,
    /// not handled twice.
    Message {
        name: String,
        msg: protocol::Message,
        reply: oneshot::Sender<Verdict>,
        /// Whether a file of that name waited in `broker/inbox/new/` when the message arrived,
        /// as the front end found it on its own thread (the engine's loop then makes no lookup
        /// of its own); `None`: the engine looks when it handles the message.
        file_waits: Option<bool>,
    },
    /// An agent waiting for work: answered with the next task file it may claim from its own
    /// mailbox and `pools` (every pool when empty) once one is on disk, or with nothing at
    /// `deadline` (see `engine::offers`). With `claim` the broker claims the file for the agent
    /// (and journals the claim); without, it only names it and nothing is journaled. With
    /// `after`, the agent's report is handled first, as [`Command::Message`] would handle it;
    /// the wait begins once it is journaled, and a refused report is the answer.
    Await {
        agent: String,
        pools: Vec<String>,
        deadline: std::time::Instant,
        claim: bool,
        after: Option<Report>,
        reply: oneshot::Sender<Offer>,
    },
    /// Put a quarantine entry (`name`, a file of `broker/quarantine/`) back into the inbox.
    Requeue {
        name: String,
        reply: oneshot::Sender<Verdict>,
    },
    /// An outbox sink's journaled position (`None`: never journaled).
    Position {
        sink: String,
        reply: oneshot::Sender<Option<u64>>,
    },
    /// Journal that an outbox sink has handled every record up to `through`.
    Delivered {
        sink: String,
        through: u64,
        reply: oneshot::Sender<Verdict>,
    },
    /// The handle on what the webhooks and hooks did (empty when none is configured).
    Deliveries(oneshot::Sender<Deliveries>),
    /// What the cluster link needs: tasks to publish, pulled tasks to settle, ready windows.
    ClusterView(oneshot::Sender<ClusterView>),
    /// A change the cluster link learned from the cluster, journaled like any other.
    Cluster {
        op: ClusterOp,
        reply: oneshot::Sender<Verdict>,
    },
}

impl Command {
    /// A read of the state, answered at once (from committed state: see `Engine::take`).
    pub(crate) fn reads_state(&self) -> bool {
        matches!(self, Self::Snapshot(_) | Self::Census(_) | Self::Position { .. } | Self::ClusterView(_))
    }
}

/// The report an agent's [`Command::Await`] carries: a message under `name`, handled as a
/// [`Command::Message`] is (`file_waits` likewise).
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub msg: protocol::Message,
    pub file_waits: Option<bool>,
}

/// The answer to a [`Command::Await`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// The task file `name` is in `maildir`'s `new/` (`maildir` relative to `agent_comms/`).
    Offered { maildir: String, name: String },
    /// The task file `name` was moved from `maildir`'s `new/` into the agent's `cur/`: the
    /// agent holds the claim `name`.
    Claimed { maildir: String, name: String },
    /// None came before the deadline.
    Nothing,
    /// The await's report was refused (nothing was awaited): why, as [`Verdict::Refused`] says.
    Refused { field: String, rule: String, reason: String },
}

/// Which tasks a bulk retry redrives: those the broker holds (live, and the finished ones on the
/// completed board) whose status is one of `statuses` and that match every filter given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryScope {
    /// FAILED, BLOCKED or CANCELLED (the statuses a retry leaves).
    pub statuses: Vec<Status>,
    /// The pool the task was queued in or would be routed to.
    pub pool: Option<String>,
    pub task_type: Option<String>,
    /// Most tasks redriven by one request.
    pub limit: usize,
}

/// The broker's answer to a bulk retry: how many tasks matched, which were redriven (durably),
/// and which were refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkVerdict {
    pub matched: usize,
    pub retried: Vec<String>,
    pub refused: Vec<Refused>,
    /// The journal sequence of the last record the redrives caused (0 if none).
    pub seq: u64,
}

/// A task of a bulk request that was not changed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub task_id: String,
    pub reason: String,
}

/// The broker's answer to a submit, cancel or retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Journaled durably; `seq` is the journal sequence of the last record it caused.
    Accepted { task_id: String, seq: u64 },
    /// Refused: nothing changed. `reason` is `field` and `rule` in one sentence.
    Refused {
        #[serde(skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        field: String,
        rule: String,
        reason: String,
    },
}

impl Verdict {
    pub(crate) fn refused(r: Refusal) -> Self {
        Self::Refused { reason: r.to_string(), task_id: r.task_id, field: r.field, rule: r.rule }
    }
}

/// A live stream of committed records, and the sequence number it starts at (a reader that
/// needs older records reads them from the journal).
#[derive(Debug)]
pub struct Subscription {
    pub from_seq: u64,
    pub records: Records,
}

/// The records one commit published, in order (at most [`Records::BATCH`] of them: a larger
/// commit is published as several).
pub type Batch = Arc<Vec<Arc<Record>>>;

/// The receiving end of a subscription: committed records one at a time, in order.
///
/// The broker publishes a commit's records as one batch, so a subscriber falls behind only when
/// it is slower than the broker over [`Records::BACKLOG`] commits, not when one pass commits
/// thousands of records at once. A subscriber that does fall behind is told how many batches it
/// missed ([`RecvError::Lagged`]); the journal holds their records.
#[derive(Debug)]
pub struct Records {
    rx: broadcast::Receiver<Batch>,
    batch: Option<Batch>,
    next: usize,
}

impl Records {
    /// Most records published in one batch.
    pub const BATCH: usize = 256;
    /// Batches a subscriber may fall behind before it misses some. Together with [`Self::BATCH`]
    /// this bounds the records held for a slow subscriber (16,384: a few megabytes).
    pub const BACKLOG: usize = 64;

    pub(crate) fn new(rx: broadcast::Receiver<Batch>) -> Self {
        Self { rx, batch: None, next: 0 }
    }

    /// The next committed record; `Lagged` when batches were missed, `Closed` once the engine
    /// that published them is gone.
    pub async fn recv(&mut self) -> Result<Arc<Record>, RecvError> {
        loop {
            if let Some(r) = self.buffered() {
                return Ok(r);
            }
            self.batch = Some(self.rx.recv().await?);
            self.next = 0;
        }
    }

    /// The next committed record if one was published already, without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Record>, TryRecvError> {
        loop {
            if let Some(r) = self.buffered() {
                return Ok(r);
            }
            self.batch = Some(self.rx.try_recv()?);
            self.next = 0;
        }
    }

    fn buffered(&mut self) -> Option<Arc<Record>> {
        let r = self.batch.as_ref()?.get(self.next).cloned();
        match r {
            Some(_) => self.next += 1,
            None => self.batch = None,
        }
        r
    }
}

/// Every live task in brief; the records before `next_seq` are in it.
#[derive(Debug, Clone, Serialize)]
pub struct Census {
    pub next_seq: u64,
    pub tasks: Vec<Brief>,
}

/// A live task in brief: what counting it by status and pool needs.
#[derive(Debug, Clone, Serialize)]
pub struct Brief {
    pub task_id: String,
    pub status: Status,
    /// As in [`TaskView::pool`].
    pub pool: Option<String>,
    /// In a pool (as a file, or waiting behind the ready window).
    pub queued: bool,
    /// Claimed by an agent.
    pub held: bool,
    pub updated_at: Option<protocol::Timestamp>,
}

/// A task as the broker holds it, where its file is, and what an operator should know about a
/// task that waits or is blocked ("waiting for unknown task X", see [`crate::board::note`]).
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub task: Task,
    pub place: Place,
    /// The pool it waits in, was claimed from, or is routed to; `None` for a task addressed to
    /// an agent's own mailbox.
    pub pool: Option<String>,
    /// Why it waits, when it waits on something that may never come (`board::note`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TaskView {
    pub fn new(task: Task, place: Place, pool: Option<String>) -> Self {
        let note = crate::board::note(&task);
        Self { task, place, pool, note }
    }
}

/// A pool (or an agent's own mailbox) and how many tasks wait in it as files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueView {
    /// `queues/<pool>` or `mailboxes/<agent>`.
    pub dir: String,
    pub queued: usize,
}

/// An agent: its capabilities, the claims it holds, when it was last seen and its state.
pub type AgentView = crate::agents::AgentStatus;

/// A consistent view of the broker's state between two passes.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The sequence number the next record will get.
    pub next_seq: u64,
    /// Live tasks, then the most recent finished ones (oldest first), each once.
    pub tasks: Vec<TaskView>,
    pub queues: Vec<QueueView>,
    pub agents: Vec<AgentView>,
    /// Finished tasks the broker remembers (beyond those listed in `tasks`).
    pub finished: usize,
}

/// The broker stopped: it answers no more commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the broker is not running")]
pub struct Stopped;

/// How a front end talks to the running broker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
}

/// The broker's end of the channel.
pub type Commands = mpsc::Receiver<Command>;

/// A command channel: the [`Handle`] for front ends, the [`Commands`] for [`crate::run::serve`].
/// `depth` bounds the requests waiting for the loop (a sender waits when it is full).
pub fn channel(depth: usize) -> (Handle, Commands) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (Handle { tx }, rx)
}

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    pub async fn snapshot(&self) -> Result<View, Stopped> {
        self.ask(Command::Snapshot).await
    }

    pub async fn census(&self) -> Result<Census, Stopped> {
        self.ask(Command::Census).await
    }

    pub async fn submit(&self, task: Value) -> Result<Verdict, Stopped> {
        self.ask(|reply| Command::Submit { task, reply }).await
    }

    pub async fn cancel(&self, task_id: &str) -> Result<Verdict, Stopped> {
        let task_id = task_id.to_string();
        self.ask(|reply| Command::Cancel { task_id, reply }).await
    }

    pub async fn retry(&self, task_id: &str) -> Result<Verdict, Stopped> {
        let task_id = task_id.to_string();
        self.ask(|reply| Command::Retry { task_id, reply }).await
    }

    pub async fn retry_where(&self, scope: RetryScope) -> Result<BulkVerdict, Stopped> {
        self.ask(|reply| Command::RetryWhere { scope, reply }).await
    }

    pub async fn subscribe(&self) -> Result<Subscription, Stopped> {
        self.ask(Command::Subscribe).await
    }

    pub async fn stats(&self) -> Result<Stats, Stopped> {
        self.ask(Command::Stats).await
    }

    /// Completes once the broker's loop is gone (its end of the channel dropped).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// A protocol message under its file name (see [`Command::Message`]).
    /// `file_waits`: see [`Command::Message`].
    pub async fn message(
        &self,
        name: &str,
        msg: protocol::Message,
        file_waits: Option<bool>,
    ) -> Result<Verdict, Stopped> {
        let name = name.to_string();
        self.ask(|reply| Command::Message { name, msg, reply, file_waits }).await
    }

    /// Waits up to `wait` for a task file `agent` may claim, claimed for it when `claim` says
    /// so, once its report `after` (if any) is journaled (see [`Command::Await`]).
    pub async fn await_offer(
        &self,
        agent: &str,
        pools: Vec<String>,
        wait: std::time::Duration,
        claim: bool,
        after: Option<Report>,
    ) -> Result<Offer, Stopped> {
        let (agent, deadline) = (agent.to_string(), std::time::Instant::now() + wait);
        self.ask(|reply| Command::Await { agent, pools, deadline, claim, after, reply }).await
    }

    /// Requeues a quarantine entry: accepted once the requeue is journaled and the entry is back
    /// in the inbox (refused for an unknown name, a reason file, or a name that is not one file
    /// inside `broker/quarantine/`).
    pub async fn requeue(&self, name: &str) -> Result<Verdict, Stopped> {
        let name = name.to_string();
        self.ask(|reply| Command::Requeue { name, reply }).await
    }

    pub async fn position(&self, sink: &str) -> Result<Option<u64>, Stopped> {
        let sink = sink.to_string();
        self.ask(|reply| Command::Position { sink, reply }).await
    }

    pub async fn delivered(&self, sink: &str, through: u64) -> Result<Verdict, Stopped> {
        let sink = sink.to_string();
        self.ask(|reply| Command::Delivered { sink, through, reply }).await
    }

    pub async fn cluster_view(&self) -> Result<ClusterView, Stopped> {
        self.ask(Command::ClusterView).await
    }

    /// Journals what the cluster link learned (accepted once durable).
    pub async fn cluster(&self, op: ClusterOp) -> Result<Verdict, Stopped> {
        self.ask(|reply| Command::Cluster { op, reply }).await
    }

    /// The shared, cheap-to-read record of recent deliveries and failures of every webhook and
    /// hook (see [`Deliveries`]). Ask once and keep it: it stays current.
    pub async fn deliveries(&self) -> Result<Deliveries, Stopped> {
        self.ask(Command::Deliveries).await
    }
}

//! The link's loop. Every round (a tick, or sooner when the broker commits records) it asks the
//! broker for a [`ClusterView`] and does, in order:
//!
//! 1. **Publish** each task held for the cluster (at most 64 a round): create (or, for a
//!    redrive, compare-and-set) its cluster-wide record, keeping the task body in it, publish it
//!    to the work queue with an idempotent message id, wait for JetStream's acknowledgement,
//!    then journal `Forwarded` (the round's together, in one broker pass). Failing anywhere,
//!    the task stays held and the next round tries again: nothing is acknowledged to the
//!    cluster before it is stored.
//! 2. **Settle** each pulled task that finished here: compare-and-set its record to the final
//!    status on the revision this node wrote when it took it, then ack the work-queue message,
//!    then journal `Settled` (the round's together). A failed compare-and-set means another
//!    node took the task since: the outcome is fenced (journaled as such, not acked), unless the
//!    record already holds this node's own outcome (written before a restart).
//! 3. **Keep alive** every pulled task still in hand, every third of `ack_wait`: if its record
//!    was cancelled cluster-wide meanwhile, cancel it here (journaled, the claim revoked) and
//!    ack it; else an in-progress ack, so the cluster redelivers a task only when its node
//!    stops answering.
//! 4. **Pull** from each shared pool's durable consumer at most the pool's ready window (idle
//!    local agents minus tasks already waiting here, capped by `max_pull`): take its record
//!    (compare-and-set, `node` = this node), then journal `Pull`, which queues the file.
//!
//! Within a step the tasks are independent (each its own record and message), so their network
//! round trips run at once and their journal records go to the broker together: a round costs
//! a few round trips and one broker pass per step, not one per task.
//!
//! While NATS is unreachable every step fails fast and the round ends; local pools are served
//! by the broker as always, and held tasks wait in the journal.

use crate::names;
use crate::record::ClusterRecord;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Message, stream};
use futures_util::StreamExt;
use futures_util::future::join_all;
use mailroom::config::ClusterSettings;
use mailroom::engine::commands::{ClusterOp, Handle, PulledView, Stopped, Verdict};
use protocol::{Status, Task, Timestamp};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("nats: {0}")]
    Nats(String),
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

fn nats(e: impl std::fmt::Display) -> LinkError {
    LinkError::Nats(e.to_string())
}

/// How long one NATS request may take before the round gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Most held tasks one round publishes.
const PUBLISH_PER_ROUND: usize = 64;
/// The longest a round waits for a reason to run.
const TICK: Duration = Duration::from_millis(100);

/// A work-queue message this node holds, for its in-progress acks and its final ack.
struct Held {
    msg: Message,
}

/// What the link keeps between rounds (only caches: the journal and the cluster are the truth).
struct Link {
    cfg: ClusterSettings,
    ack_wait: Duration,
    handle: Handle,
    js: jetstream::Context,
    ready: Option<Ready>,
    held: HashMap<String, Held>,
    /// When each pulled task still in hand last had its record looked at (for a cluster-wide
    /// cancel) and its deadline extended.
    checked: HashMap<String, Instant>,
}

/// The stream, bucket and consumers, once they exist.
struct Ready {
    kv: kv::Store,
    stream: stream::Stream,
    consumers: HashMap<String, PullConsumer>,
}

pub(crate) fn now_text() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    Timestamp::from_micros(micros).to_string()
}

/// Publishes `task` to `pool`'s subject of the work queue with the idempotent message id
/// `msg_id`, and waits for JetStream's acknowledgement that the stream stored it.
pub(crate) async fn send_task(
    js: &jetstream::Context,
    cfg: &ClusterSettings,
    pool: &str,
    task: &Task,
    msg_id: &str,
) -> Result<jetstream::publish::PublishAck, String> {
    let body = serde_json::to_vec(task).expect("a task serialises");
    let msg = PublishMessage::build().payload(body.into()).message_id(msg_id).header("Mailroom-Pool", pool);
    let ack = js.send_publish(names::subject(cfg, pool), msg).await.map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())
}

/// Runs the link until the broker stops. `lease_secs` is the broker's lease, the default
/// `ack_wait`.
pub async fn run(cfg: ClusterSettings, lease_secs: u64, handle: Handle) {
    let ack_wait = Duration::from_secs(cfg.ack_wait(lease_secs));
    let client = match async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(REQUEST_TIMEOUT)
        .name(format!("mailroom-{}", cfg.node))
        .connect(cfg.nats.clone())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot set up the NATS client; shared pools are held");
            return;
        }
    };
    let mut js = jetstream::new(client);
    js.set_timeout(REQUEST_TIMEOUT);
    let mut link =
        Link { cfg, ack_wait, handle, js, ready: None, held: HashMap::new(), checked: HashMap::new() };
    let mut records = match link.handle.subscribe().await {
        Ok(s) => s.records,
        Err(Stopped) => return,
    };
    let mut down_since: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        match link.round().await {
            Ok(()) => {
                if let Some(t) = down_since.take() {
                    tracing::info!(after_ms = t.elapsed().as_millis() as u64, "cluster: reachable again");
                }
            }
            Err(LinkError::Stopped(_)) => return,
            Err(LinkError::Nats(e)) => {
                if down_since.is_none() {
                    tracing::warn!(error = %e, "cluster: unreachable; local pools go on, shared tasks are held");
                    down_since = Some(Instant::now());
                    last_error = e;
                } else if e != last_error {
                    // Still failing, for another reason: said once per reason.
                    tracing::warn!(error = %e, "cluster: still unreachable");
                    last_error = e;
                }
                link.ready = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Woken by a committed record (something to publish or settle), or the tick. Every
        // record already published wakes this one round: a round per record made a task cost
        // about six rounds (six views of the broker's state) where one does.
        tokio::select! {
            r = records.recv() => {
                if let Err(RecvError::Closed) = r {
                    return;
                }
                loop {
                    match records.try_recv() {
                        Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    }
                }
            }
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

impl Link {
    async fn setup(&self) -> Result<Ready, LinkError> {
        let replicas = self.cfg.replicas;
        let stream = self
            .js
            .get_or_create_stream(stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![names::subjects(&self.cfg)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        self.note_replicas("stream", &stream);
        // The bucket's stream is made here, as the client library would make it, because its own
        // `create_key_value` first reads the account's API level, whose answer a 2.9 server
        // words in a way the library does not parse.
        let bucket = self
            .js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{}", self.cfg.bucket),
                subjects: vec![format!("$KV.{}.>", self.cfg.bucket)],
                max_messages_per_subject: 8,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        self.note_replicas("bucket", &bucket);
        let kv = self.js.get_key_value(&self.cfg.bucket).await.map_err(nats)?;
        Ok(Ready { kv, stream, consumers: HashMap::new() })
    }

    /// An existing stream or bucket is used as it is: says so when its replicas are not the
    /// configured ones (changing them is the operator's decision, with the `nats` tool).
    fn note_replicas(&self, what: &str, s: &stream::Stream) {
        let config = &s.cached_info().config;
        // A server reports 0 for a stream made without saying (which means 1).
        let has = config.num_replicas.max(1);
        if has != self.cfg.replicas {
            tracing::warn!(
                name = %config.name,
                replicas = has,
                configured = self.cfg.replicas,
                "cluster: the {what} exists with other replicas than cluster.replicas; used as it is"
            );
        }
    }

    async fn round(&mut self) -> Result<(), LinkError> {
        if self.ready.is_none() {
            self.ready = Some(self.setup().await?);
            tracing::info!(node = %self.cfg.node, "cluster: stream and bucket ready");
        }
        let view = self.handle.cluster_view().await?;
        // A round's publications run at once (each its own record and message); those that
        // went through are journaled `Forwarded` together (one broker pass), also when another
        // failed. A burst is published over several rounds, so in-progress acks and pulls keep
        // their pace.
        let batch: Vec<&(Task, String)> = view.outbound.iter().take(PUBLISH_PER_ROUND).collect();
        let results = join_all(batch.iter().map(|(task, pool)| self.publish(task, pool))).await;
        let mut forwarded = Vec::new();
        let mut failed = None;
        for ((task, _), r) in batch.iter().zip(results) {
            match r {
                Ok(()) => forwarded.push(ClusterOp::Forwarded { task_id: task.task_id.clone() }),
                Err(e) => failed = Some(e),
            }
        }
        self.journal_all(forwarded).await?;
        if let Some(e) = failed.take() {
            return Err(e);
        }
        // Likewise the outcomes: written cluster-wide at once, then acked, then journaled.
        let finished: Vec<&PulledView> = view.pulled.iter().filter(|p| p.finished).collect();
        let results = join_all(finished.iter().map(|p| self.settle(p))).await;
        let mut settled = Vec::new();
        for (p, r) in finished.into_iter().zip(results) {
            match r {
                Ok(fenced) => settled.push(self.settled(p, fenced).await),
                Err(e) => failed = Some(e),
            }
        }
        self.journal_all(settled).await?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.keep_alive(&view.pulled).await?;
        for (pool, window) in &view.window {
            if *window > 0 {
                self.pull(pool, *window).await?;
            }
        }
        Ok(())
    }

    fn kv(&self) -> &kv::Store {
        &self.ready.as_ref().expect("set up before use").kv
    }

    /// Publishes one held task (the caller journals it as forwarded).
    async fn publish(&self, task: &Task, pool: &str) -> Result<(), LinkError> {
        let id = &task.task_id;
        let key = names::key(id);
        let generation = task.updated_at.map(|t| t.as_micros()).unwrap_or(0).to_string();
        let rec = ClusterRecord {
            task_id: id.clone(),
            status: Status::Pending,
            pool: pool.to_string(),
            origin: self.cfg.node.clone(),
            generation: generation.clone(),
            node: None,
            agent: None,
            takes: 0,
            attempts: task.attempts,
            updated_at: now_text(),
            cancelled_by: None,
            retried_by: None,
            task: Some(Box::new(task.clone())),
        };
        match self.kv().entry(key.clone()).await.map_err(nats)? {
            Some(e) if e.operation == Operation::Put => {
                let old = ClusterRecord::parse(&e.value);
                // The same forward published again (a crash before `Forwarded` was journaled):
                // its record stands, whatever happened to it since.
                if !old.as_ref().is_some_and(|o| o.origin == rec.origin && o.generation == generation) {
                    let rec = ClusterRecord { takes: old.map_or(0, |o| o.takes), ..rec };
                    self.kv().update(&key, rec.to_bytes(), e.revision).await.map_err(nats)?;
                }
            }
            _ => match self.kv().create(&key, rec.to_bytes()).await {
                // Written meanwhile (by this forward's earlier attempt, or a node that pulled
                // it): the record stands.
                Ok(_) => {}
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(nats(e)),
            },
        }
        let msg_id = names::message_id(&self.cfg.node, id, &generation);
        let ack = send_task(&self.js, &self.cfg, pool, task, &msg_id).await.map_err(nats)?;
        tracing::debug!(task = %id, stream_seq = ack.sequence, duplicate = ack.duplicate, "cluster: published");
        Ok(())
    }

    /// Writes a finished pulled task's outcome cluster-wide by compare-and-set; returns whether
    /// it was fenced (the caller acks and journals it, see [`Link::settled`]).
    async fn settle(&self, p: &PulledView) -> Result<bool, LinkError> {
        let key = names::key(&p.task_id);
        let old = self.kv().entry(key.clone()).await.map_err(nats)?;
        let Some(old) = old.filter(|e| e.operation == Operation::Put) else {
            tracing::warn!(task = %p.task_id, "cluster: no cluster-wide record to settle; fenced");
            return Ok(true);
        };
        let Some(mut rec) = ClusterRecord::parse(&old.value) else {
            tracing::warn!(task = %p.task_id, "cluster: unreadable cluster-wide record; fenced");
            return Ok(true);
        };
        rec.status = p.status.unwrap_or(Status::Completed);
        rec.node = Some(self.cfg.node.clone());
        rec.agent = p.agent.clone().or(rec.agent);
        rec.attempts = p.attempts.unwrap_or(rec.attempts);
        rec.updated_at = now_text();
        match self.kv().update(&key, rec.to_bytes(), p.revision).await {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                Ok(!self.wrote_it(&key, &rec).await?)
            }
            Err(e) => Err(nats(e)),
        }
    }

    /// Whether the record already holds this very outcome, written by this node: its
    /// compare-and-set went through before the node stopped, and `settled` was not journaled
    /// yet. Only this node writes itself as a finished task's node, so that is no fence.
    async fn wrote_it(&self, key: &str, ours: &ClusterRecord) -> Result<bool, LinkError> {
        let now = self.kv().entry(key.to_string()).await.map_err(nats)?;
        let rec = now.filter(|e| e.operation == Operation::Put).and_then(|e| ClusterRecord::parse(&e.value));
        Ok(rec.is_some_and(|r| {
            r.status.is_terminal()
                && r.status == ours.status
                && r.node == ours.node
                && r.generation == ours.generation
                && (ours.agent.is_none() || r.agent == ours.agent)
        }))
    }

    /// After [`Link::settle`]: acks the message unless fenced (once the record says the task
    /// is done, a redelivery is acked by whoever pulls it), and returns the `Settled` to journal.
    async fn settled(&mut self, p: &PulledView, fenced: bool) -> ClusterOp {
        if let Some(h) = self.held.remove(&p.task_id)
            && !fenced
            && let Err(e) = h.msg.ack().await
        {
            tracing::warn!(task = %p.task_id, error = %e, "cluster: ack failed after the record was settled");
        }
        ClusterOp::Settled { task_id: p.task_id.clone(), revision: p.revision, fenced }
    }

    /// Every third of `ack_wait`, for every pulled task still in hand: obey a cluster-wide
    /// cancel if its record says so, else send an in-progress ack.
    async fn keep_alive(&mut self, pulled: &[PulledView]) -> Result<(), LinkError> {
        let every = self.ack_wait / 3;
        self.checked.retain(|id, _| pulled.iter().any(|p| !p.finished && &p.task_id == id));
        for p in pulled.iter().filter(|p| !p.finished) {
            if self.checked.get(&p.task_id).is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            self.checked.insert(p.task_id.clone(), Instant::now());
            if self.cancelled_cluster_wide(p).await? {
                continue;
            }
            if let Some(h) = self.held.get_mut(&p.task_id)
                && let Err(e) = h.msg.ack_with(AckKind::Progress).await
            {
                tracing::warn!(task = %p.task_id, error = %e, "cluster: in-progress ack failed")
            }
        }
        Ok(())
    }

    /// Whether the task's record was cancelled cluster-wide since this node took it; if so the
    /// local copy is cancelled and settled on the record's revision, and the message acked.
    async fn cancelled_cluster_wide(&mut self, p: &PulledView) -> Result<bool, LinkError> {
        let entry = self.kv().entry(names::key(&p.task_id)).await.map_err(nats)?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put && e.revision != p.revision) else {
            return Ok(false);
        };
        if !ClusterRecord::parse(&entry.value).is_some_and(|r| r.status == Status::Cancelled) {
            return Ok(false);
        }
        tracing::info!(task = %p.task_id, "cluster: cancelled cluster-wide; cancelling here");
        self.journal(ClusterOp::Cancelled { task_id: p.task_id.clone(), revision: entry.revision }).await?;
        if let Some(h) = self.held.remove(&p.task_id) {
            let _ = h.msg.ack().await;
        }
        self.checked.remove(&p.task_id);
        Ok(true)
    }

    async fn consumer(&mut self, pool: &str) -> Result<PullConsumer, LinkError> {
        let ready = self.ready.as_mut().expect("set up before use");
        if let Some(c) = ready.consumers.get(pool) {
            return Ok(c.clone());
        }
        let name = names::consumer(pool);
        let c: PullConsumer = ready
            .stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: names::subject(&self.cfg, pool),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        ready.consumers.insert(pool.to_string(), c.clone());
        Ok(c)
    }

    /// Pulls at most `window` tasks of `pool`, takes their records at once, and queues those
    /// taken here (journaled together, one broker pass).
    async fn pull(&mut self, pool: &str, window: usize) -> Result<(), LinkError> {
        let consumer = self.consumer(pool).await?;
        let unanswered = || LinkError::Nats(format!("a pull from `{pool}` was not answered"));
        let fetch = consumer.fetch().max_messages(window).messages();
        let mut batch =
            tokio::time::timeout(REQUEST_TIMEOUT, fetch).await.map_err(|_| unanswered())?.map_err(nats)?;
        let mut msgs = Vec::new();
        let mut failed = None;
        // A pull request can go unanswered (a consumer without a leader yet, or changing
        // leader): the round does not wait for it forever. Messages that come later are not
        // lost: unacked, they are offered again after `ack_wait`.
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, batch.next()).await {
                Ok(Some(Ok(m))) => msgs.push(m),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    failed = Some(nats(e));
                    break;
                }
                Err(_) => {
                    failed = Some(unanswered());
                    break;
                }
            }
        }
        let results = join_all(msgs.into_iter().map(|m| self.take(pool, m))).await;
        let mut taken = Vec::new();
        for r in results {
            match r {
                Ok(Some(t)) => taken.push(t),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        let verdicts = join_all(taken.iter().map(|(op, _)| self.handle.cluster(op.clone()))).await;
        for ((op, msg), verdict) in taken.into_iter().zip(verdicts) {
            let ClusterOp::Pull { task, revision, .. } = op else { unreachable!("only pulls are taken") };
            let id = task.task_id;
            match verdict? {
                Verdict::Accepted { .. } => {
                    tracing::debug!(task = %id, revision, "cluster: pulled");
                    self.checked.insert(id.clone(), Instant::now());
                    self.held.insert(id, Held { msg });
                }
                Verdict::Refused { reason, .. } => {
                    tracing::warn!(task = %id, %reason, "cluster: pulled task refused here; offered again");
                    let _ = msg.ack_with(AckKind::Nak(Some(self.ack_wait))).await;
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Takes a pulled message's cluster-wide record (this node as its holder, compare-and-set);
    /// returns the `Pull` to journal with the message, or `None` when there is nothing to run
    /// (not a task, finished cluster-wide, or written by another node meanwhile).
    async fn take(&self, pool: &str, msg: Message) -> Result<Option<(ClusterOp, Message)>, LinkError> {
        let task = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .ok()
            .and_then(|v| Task::from_value(v).ok());
        let Some(task) = task else {
            tracing::error!(subject = %msg.subject, "cluster: a message that is not a task; terminated");
            let _ = msg.ack_with(AckKind::Term).await;
            return Ok(None);
        };
        let id = task.task_id.clone();
        let key = names::key(&id);
        let entry = self.kv().entry(key.clone()).await.map_err(nats)?;
        let old = entry.as_ref().filter(|e| e.operation == Operation::Put);
        let rec = old.and_then(|e| ClusterRecord::parse(&e.value));
        if rec.as_ref().is_some_and(|r| r.status.is_terminal()) {
            // Finished cluster-wide already (its ack was lost): nothing to run again.
            tracing::info!(task = %id, "cluster: redelivered after it finished; acked");
            let _ = msg.ack().await;
            return Ok(None);
        }
        let mut rec = rec.unwrap_or_else(|| ClusterRecord {
            task_id: id.clone(),
            status: Status::Pending,
            pool: pool.to_string(),
            origin: String::new(),
            generation: String::new(),
            node: None,
            agent: None,
            takes: 0,
            attempts: task.attempts,
            updated_at: String::new(),
            cancelled_by: None,
            retried_by: None,
            task: Some(Box::new(task.clone())),
        });
        rec.node = Some(self.cfg.node.clone());
        rec.agent = None;
        rec.takes += 1;
        // A record written before records kept the body gets it now, for a later retry.
        rec.task.get_or_insert_with(|| Box::new(task.clone()));
        rec.updated_at = now_text();
        let written = match old {
            Some(e) => self.kv().update(&key, rec.to_bytes(), e.revision).await.map_err(|e| e.kind()),
            None => self.kv().create(&key, rec.to_bytes()).await.map_err(|e| match e.kind() {
                CreateErrorKind::AlreadyExists => UpdateErrorKind::WrongLastRevision,
                _ => UpdateErrorKind::Other,
            }),
        };
        let revision = match written {
            Ok(r) => r,
            Err(UpdateErrorKind::WrongLastRevision) => {
                // Someone wrote the record meanwhile: look again soon.
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_millis(200)))).await;
                return Ok(None);
            }
            Err(k) => return Err(LinkError::Nats(format!("taking `{id}`: {k}"))),
        };
        Ok(Some((ClusterOp::Pull { task: Box::new(task), pool: pool.to_string(), revision }, msg)))
    }

    /// Asks for several records at once: the broker serves commands waiting together in one
    /// pass (one journal write).
    async fn journal_all(&self, ops: Vec<ClusterOp>) -> Result<(), LinkError> {
        let results = join_all(ops.into_iter().map(|op| self.journal(op))).await;
        results.into_iter().collect()
    }

    async fn journal(&self, op: ClusterOp) -> Result<(), LinkError> {
        match self.handle.cluster(op).await? {
            Verdict::Accepted { .. } => Ok(()),
            Verdict::Refused { reason, .. } => {
                tracing::error!(%reason, "cluster: the broker refused a cluster record");
                Ok(())
            }
        }
    }
}

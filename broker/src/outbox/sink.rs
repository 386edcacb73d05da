//! One deliverer per sink, a task of its own on the broker's runtime. It resumes after its
//! journaled position, takes the records in order from its [`Feed`], delivers the ones it wants
//! one at a time (retrying with backoff, so a record is never skipped unless `max_attempts` gives
//! it up), and journals its position through the command channel: after every
//! `delivery_journal_every` deliveries, at least once a second while it has delivered something
//! since, and after long runs of records it does not want. It waits for each position's commit
//! before delivering more, so a crash makes it deliver again at most `delivery_journal_every`
//! records: at-least-once, with a bounded repeat.

use super::event::{self, Event};
use super::hook::Hook;
use super::status::{Attempt, Deliveries};
use super::webhook::Webhook;
use crate::config::{Config, Events, Retry};
use crate::engine::commands::{Handle, Verdict};
use crate::feed::Feed;
use protocol::Timestamp;
use runtime_layout::Fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records not wanted after which the position is journaled anyway, so that a restart does not
/// read them all again.
const IDLE_GAP: u64 = 10_000;
/// How long a delivered record may stay unjournaled when nothing else arrives.
const JOURNAL_AFTER: Duration = Duration::from_secs(1);

pub(crate) enum Target {
    Webhook(Webhook),
    Hook(Hook),
}

pub(crate) struct Sink {
    pub id: String,
    pub target: Target,
    pub events: Events,
    pub retry: Retry,
}

/// What every deliverer shares.
#[derive(Clone)]
pub(crate) struct Context {
    pub handle: Handle,
    pub fs: Arc<dyn Fs>,
    pub journal_dir: PathBuf,
    pub cfg: Arc<Config>,
    pub deliveries: Deliveries,
    pub journal_every: u64,
    /// Where a sink without a journaled position starts (see `Outbox::start`).
    pub new_after: u64,
}

impl Sink {
    /// Runs until the broker stops answering.
    pub async fn run(self, cx: Context) {
        let Some((mut feed, mut journaled)) = self.resume(&cx).await else { return };
        let mut through = journaled;
        let mut unjournaled: u64 = 0;
        let mut since: Option<Instant> = None;
        loop {
            let deadline = tokio::time::Instant::from_std(since.unwrap_or_else(Instant::now) + JOURNAL_AFTER);
            let next = tokio::select! {
                r = feed.next() => r,
                _ = tokio::time::sleep_until(deadline), if since.is_some() => {
                    if self.journal(&cx, through, &mut journaled).await.is_none() {
                        return;
                    }
                    (unjournaled, since) = (0, None);
                    continue;
                }
            };
            let rec = match next {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(sink = %self.id, error = %e, "outbox cannot read the journal; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Some(ev) = event::matching(&rec, &self.events, &cx.cfg) {
                self.deliver(&cx, &ev).await;
                unjournaled += 1;
                since.get_or_insert_with(Instant::now);
            }
            through = rec.seq;
            cx.deliveries.update(&self.id, |s| s.through = through);
            if unjournaled >= cx.journal_every || through - journaled >= IDLE_GAP {
                if self.journal(&cx, through, &mut journaled).await.is_none() {
                    return;
                }
                (unjournaled, since) = (0, None);
            }
        }
    }

    /// The feed after the journaled position. A sink never seen starts where this broker
    /// started (journaled at once): a new webhook is not flooded with history.
    async fn resume(&self, cx: &Context) -> Option<(Feed, u64)> {
        let position = cx.handle.position(&self.id).await.ok()?;
        let sub = cx.handle.subscribe().await.ok()?;
        let after = match position {
            Some(p) => p,
            None => {
                let p = cx.new_after.min(sub.from_seq.saturating_sub(1));
                self.commit(cx, p).await?;
                p
            }
        };
        cx.deliveries.update(&self.id, |s| (s.through, s.journaled) = (after, after));
        tracing::info!(sink = %self.id, after, "outbox sink resumes");
        Some((Feed::new(cx.fs.clone(), cx.journal_dir.clone(), sub, after), after))
    }

    /// Journals `through` unless it is journaled already.
    async fn journal(&self, cx: &Context, through: u64, journaled: &mut u64) -> Option<()> {
        if through > *journaled {
            self.commit(cx, through).await?;
            *journaled = through;
        }
        Some(())
    }

    /// Journals `through` and waits for its commit. `None`: the broker stopped.
    async fn commit(&self, cx: &Context, through: u64) -> Option<()> {
        match cx.handle.delivered(&self.id, through).await.ok()? {
            Verdict::Accepted { .. } => {}
            Verdict::Refused { reason, .. } => {
                tracing::error!(sink = %self.id, through, %reason, "outbox position not journaled");
            }
        }
        cx.deliveries.update(&self.id, |s| s.journaled = through);
        Some(())
    }

    /// Delivers `ev`, retrying with backoff until it succeeds or `max_attempts` gives it up.
    async fn deliver(&self, cx: &Context, ev: &Event) {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = match &self.target {
                Target::Webhook(w) => w.post(ev).await,
                Target::Hook(h) => h.run(ev, &self.id).await,
            };
            let ok = result.is_ok();
            let detail = result.unwrap_or_else(|e| e);
            let at = runtime_layout::now();
            let a = Attempt {
                seq: ev.seq,
                event: ev.name.clone(),
                task_id: ev.task_id.clone(),
                at,
                attempt,
                ok,
                detail: detail.clone(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            cx.deliveries.update(&self.id, |s| s.record(a));
            if ok {
                tracing::debug!(sink = %self.id, delivery = ev.seq, event = %ev.name, "delivered");
                return;
            }
            if self.retry.max_attempts > 0 && attempt >= self.retry.max_attempts {
                tracing::error!(sink = %self.id, delivery = ev.seq, attempts = attempt, error = %detail,
                    "delivery given up after max_attempts");
                cx.deliveries.update(&self.id, |s| {
                    s.given_up += 1;
                    (s.failing_since, s.next_retry_at) = (None, None);
                });
                return;
            }
            let wait = self.retry.backoff(attempt);
            tracing::warn!(sink = %self.id, delivery = ev.seq, attempt, retry_in_ms = wait.as_millis() as u64,
                error = %detail, "delivery failed");
            let micros = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
            let retry_at = Timestamp::from_micros(at.as_micros().saturating_add(micros));
            cx.deliveries.update(&self.id, |s| s.next_retry_at = Some(retry_at));
            tokio::time::sleep(wait).await;
        }
    }
}

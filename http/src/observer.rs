//! The observer: what the dashboard and the metrics say about flow — arrival and departure rates
//! per pool, queue waits (p50/p95), agents' completions and failures per minute, when each agent
//! was last seen, and series sampled every few seconds (pool depth, tasks by status) for the
//! sparklines and the cumulative flow diagram.
//!
//! It is computed here, from the committed-record stream (`Handle::subscribe`), seeded at start
//! by a census (the state, `Handle::census`) and by the journal's recent records (the windows): the broker's pass
//! does none of this work. Everything it keeps is bounded: windows of [`WINDOW_SECS`], at most
//! [`MAX_WAITS`] waits per pool, [`SAMPLES`] samples, and one small entry per live task. Rates
//! are counts per second of the window (a [`Rate`]), not a timestamp per event: at a thousand
//! tasks a second, fifteen minutes of timestamps were tens of megabytes that grew with the load.

use mailroom::config::{Config, Route};
use mailroom::engine::commands::{Census, Handle};
use mailroom::journal::{self, Entry, Place, Record};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use protocol::Status;
use runtime_layout::{Fs, Layout};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast::error::RecvError;

/// How far back rates and percentiles look.
pub const WINDOW_SECS: i64 = 15 * 60;
/// Rates are per minute over this last stretch of the window.
pub const RATE_SECS: i64 = 5 * 60;
/// Most queue waits kept per pool for percentiles.
pub const MAX_WAITS: usize = 20_000;
/// Seconds between two samples of the series.
pub const SAMPLE_SECS: u64 = 5;
/// Samples kept (an hour).
pub const SAMPLES: usize = 720;

/// Label sets of the counters.
pub type Labels2 = [(&'static str, String); 2];
pub type Labels1 = [(&'static str, String); 1];

/// Counters and histograms fed by the record stream (exposed by [`crate::metrics`]).
#[derive(Debug, Clone)]
pub struct Counters {
    /// `op`, `pool`.
    pub transitions: Family<Labels2, Counter>,
    /// `pool`.
    pub lease_expiries: Family<Labels1, Counter>,
    /// `kind` (rejected, stale, stray, ...), `field`.
    pub quarantines: Family<Labels2, Counter>,
    pub submit_to_claim: Histogram,
    pub claim_to_finish: Histogram,
}

fn seconds_buckets() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0])
}

/// What the observer remembers of a live task.
#[derive(Debug, Clone)]
struct Tracked {
    status: Status,
    pool: Option<String>,
    queued: bool,
    held: bool,
}

/// Events per second over the window: at most [`WINDOW_SECS`] buckets whatever the rate.
#[derive(Debug, Default)]
struct Rate {
    /// (second since the epoch, events in it), oldest first.
    buckets: VecDeque<(i64, u64)>,
}

impl Rate {
    fn add(&mut self, ts_micros: i64) {
        let sec = ts_micros.div_euclid(1_000_000);
        // Records come in order; one a little older than the newest second goes where it belongs.
        let at = self.buckets.iter().rposition(|(s, _)| *s <= sec);
        match at {
            Some(i) if self.buckets[i].0 == sec => self.buckets[i].1 += 1,
            Some(i) => self.buckets.insert(i + 1, (sec, 1)),
            None => self.buckets.push_front((sec, 1)),
        }
    }

    /// Forgets the seconds before `since` (micros).
    fn prune(&mut self, since: i64) {
        let since = since.div_euclid(1_000_000);
        while self.buckets.front().is_some_and(|(s, _)| *s < since) {
            self.buckets.pop_front();
        }
    }

    /// Events per minute over the seconds from `since` (micros) on.
    fn per_min(&self, since: i64) -> f64 {
        let since = since.div_euclid(1_000_000);
        let n: u64 = self.buckets.iter().rev().take_while(|(s, _)| *s >= since).map(|(_, n)| n).sum();
        n as f64 * 60.0 / RATE_SECS as f64
    }
}

#[derive(Debug, Default)]
struct PoolWindow {
    arrivals: Rate,
    departures: Rate,
    /// (when claimed, seconds waited).
    waits: VecDeque<(i64, f64)>,
}

#[derive(Debug, Default)]
struct AgentWindow {
    completions: Rate,
    failures: Rate,
    last_seen: Option<i64>,
}

/// One sample of the series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Microseconds since the epoch.
    pub at: i64,
    /// Queued tasks per pool.
    pub depth: BTreeMap<String, i64>,
    /// Live tasks by status.
    pub live: BTreeMap<String, i64>,
    /// Tasks finished since the observer started, by terminal status (cumulative).
    pub finished: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, Tracked>,
    /// When each task was last queued and last claimed (micros), for waits and service times.
    queued_at: HashMap<String, i64>,
    claimed_at: HashMap<String, i64>,
    depth: BTreeMap<String, i64>,
    live: BTreeMap<String, i64>,
    finished: BTreeMap<String, u64>,
    pools: BTreeMap<String, PoolWindow>,
    agents: BTreeMap<String, AgentWindow>,
    samples: VecDeque<Sample>,
    /// Records below this are already in the state (the seeding snapshot).
    state_from: u64,
    last_seq: u64,
}

/// The observer, shared by the handlers.
#[derive(Debug)]
pub struct Observer {
    inner: Mutex<Inner>,
    pub counters: Counters,
    routes: Config,
    pub started: std::time::Instant,
}

/// A pool as `GET /api/pools` reports its flow.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PoolFlow {
    pub in_per_min: f64,
    pub out_per_min: f64,
    pub wait_p50_secs: Option<f64>,
    pub wait_p95_secs: Option<f64>,
    pub waits_sampled: usize,
    /// Seconds the oldest queued task has waited (since it was queued, as far as known).
    pub oldest_wait_secs: Option<f64>,
    /// Depth at each sample, oldest first.
    pub depth_series: Vec<i64>,
}

/// An agent's flow.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AgentFlow {
    pub completions_per_min: f64,
    pub failures_per_min: f64,
    /// Last journaled act (claim, report), microseconds since the epoch.
    pub last_seen: Option<i64>,
}

fn micros(ts: protocol::Timestamp) -> i64 {
    ts.as_micros()
}

fn pool_of_dir(dir: &str) -> Option<String> {
    dir.strip_prefix("queues/").map(str::to_string)
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding it leaves figures, not invariants: keep serving them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `q`-quantile of unsorted values (nearest rank).
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

impl Observer {
    /// An observer with nothing observed yet (tests, and before the stream starts).
    pub fn new(cfg: Config) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            counters: Counters {
                transitions: Family::default(),
                lease_expiries: Family::default(),
                quarantines: Family::default(),
                submit_to_claim: seconds_buckets(),
                claim_to_finish: seconds_buckets(),
            },
            routes: cfg,
            started: std::time::Instant::now(),
        }
    }

    /// Subscribes, seeds the state from a census and the windows from the journal's recent
    /// records, then follows the stream (and samples the series) until the broker stops.
    ///
    /// One that falls behind the stream (the broker committed more than the subscription's
    /// backlog while this task waited for a core) seeds its state again from a census, which
    /// copies each live task's id, status and pool, never its body: a deep queue costs the
    /// broker's loop a few milliseconds, and the windows miss the records it skipped.
    pub async fn start(handle: Handle, fs: Arc<dyn Fs>, layout: Layout, cfg: Config) -> Arc<Self> {
        let me = Arc::new(Self::new(cfg));
        let Ok(mut sub) = handle.subscribe().await else { return me };
        let Ok(census) = handle.census().await else { return me };
        me.seed(&census);
        let (history, from) = (me.clone(), sub.from_seq);
        let read = tokio::task::spawn_blocking(move || history.read_history(fs.as_ref(), &layout, from));
        let follower = me.clone();
        tokio::spawn(async move {
            // History first, so that waits are measured from dispatches it holds.
            match read.await {
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "observer: journal history unreadable; figures start now")
                }
                Err(e) => tracing::warn!(error = %e, "observer: journal history reader failed"),
                Ok(Ok(())) => {}
            }
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(SAMPLE_SECS));
            loop {
                tokio::select! {
                    r = sub.records.recv() => match r {
                        Ok(rec) => follower.observe(&rec, true),
                        Err(RecvError::Lagged(n)) => {
                            tracing::debug!(missed_batches = n, "observer fell behind the record stream; counting again");
                            match handle.census().await {
                                Ok(c) => follower.seed(&c),
                                Err(_) => return,
                            }
                        }
                        Err(RecvError::Closed) => {
                            // The broker reopened its engine: follow the new stream from a fresh
                            // census (the windows miss what came in between).
                            let (Ok(again), Ok(c)) = (handle.subscribe().await, handle.census().await) else { return };
                            sub = again;
                            follower.seed(&c);
                        }
                    },
                    _ = tick.tick() => follower.sample(micros(runtime_layout::now())),
                }
            }
        });
        me
    }

    /// Resets the live state to `census` (records before `census.next_seq` are in it).
    pub fn seed(&self, census: &Census) {
        let mut g = lock(&self.inner);
        g.tasks.clear();
        g.depth.clear();
        g.live.clear();
        for t in &census.tasks {
            let tracked = Tracked { status: t.status, pool: t.pool.clone(), queued: t.queued, held: t.held };
            if t.queued && !g.queued_at.contains_key(&t.task_id) {
                let since = t.updated_at.map_or_else(|| micros(runtime_layout::now()), micros);
                g.queued_at.insert(t.task_id.clone(), since);
            }
            Self::count(&mut g, &tracked, 1);
            g.tasks.insert(t.task_id.clone(), tracked);
        }
        g.state_from = census.next_seq;
    }

    fn count(g: &mut Inner, t: &Tracked, by: i64) {
        *g.live.entry(t.status.as_str().to_string()).or_default() += by;
        if t.queued
            && let Some(p) = &t.pool
        {
            *g.depth.entry(p.clone()).or_default() += by;
        }
    }

    /// Feeds the windows with the records of the segments before `before` whose time is within
    /// the window, newest segments first, stopping at the first segment older than that. A
    /// segment last written before the window (its mtime, which compression keeps) is not read
    /// at all: segments are read whole, and an archived one can be hundreds of megabytes.
    fn read_history(&self, fs: &dyn Fs, layout: &Layout, before: u64) -> Result<(), journal::JournalError> {
        let since = micros(runtime_layout::now()) - WINDOW_SECS * 1_000_000;
        let mut batches: Vec<Vec<Record>> = Vec::new();
        for seg in journal::all_segments(fs, &layout.journal_dir())?.into_iter().rev() {
            match fs.stat(&seg)? {
                Some(m) if micros(m.mtime) < since => break,
                // Compressed (read below in that form) or removed since it was listed: the
                // history is a courtesy for the windows, never worth failing over.
                None => {}
                Some(_) => {}
            }
            let mut recs = Vec::new();
            let mut notes = journal::Notes::default();
            let read = journal::read_segment(
                fs,
                &seg,
                |r, _, _| {
                    if r.seq < before && micros(r.ts) >= since {
                        recs.push(r)
                    }
                },
                &mut notes,
            );
            match read {
                Err(journal::JournalError::Fs(e)) if e.is_not_found() => continue,
                read => read?,
            }
            let older = recs.is_empty() || recs.first().is_some_and(|r| r.seq > 1 && micros(r.ts) <= since);
            batches.push(recs);
            if older && batches.len() > 1 {
                break;
            }
        }
        for r in batches.into_iter().rev().flatten() {
            self.observe(&r, false);
        }
        Ok(())
    }

    fn pool_for(&self, task: &protocol::Task, place: &Place, known: Option<&Tracked>) -> Option<String> {
        match place {
            Place::Queued { dir, .. } | Place::Waiting { dir, .. } => pool_of_dir(dir),
            Place::Held { from, .. } => pool_of_dir(from),
            _ => match known {
                Some(k) => k.pool.clone(),
                None if task.assigned_to.is_some() => None,
                None => match self.routes.route_of(task) {
                    Route::Pool(p) => Some(p),
                    Route::Agent(_) => None,
                },
            },
        }
    }

    /// Takes one committed record into account. `live` records count for the metrics too; the
    /// history read at start only fills the windows.
    pub fn observe(&self, rec: &Record, live: bool) {
        let mut g = lock(&self.inner);
        let ts = micros(rec.ts);
        let id = rec.entry.task_id().map(str::to_string);
        let known = id.as_ref().and_then(|i| g.tasks.get(i).cloned());
        let pool = rec.entry.change().and_then(|(t, p)| self.pool_for(t, p, known.as_ref()));
        if live {
            let label = pool.clone().unwrap_or_default();
            self.counters
                .transitions
                .get_or_create(&[("op", rec.entry.op().to_string()), ("pool", label.clone())])
                .inc();
            match &rec.entry {
                Entry::Expire(_) => {
                    self.counters.lease_expiries.get_or_create(&[("pool", label)]).inc();
                }
                Entry::Reject(r) => {
                    let kind = r.notice.map_or("rejected".to_string(), |n| format!("{n:?}").to_lowercase());
                    let field: String = r.field.chars().take(48).collect();
                    self.counters.quarantines.get_or_create(&[("kind", kind), ("field", field)]).inc();
                }
                Entry::Stray { .. } => {
                    self.counters
                        .quarantines
                        .get_or_create(&[("kind", "stray".into()), ("field", String::new())])
                        .inc();
                }
                _ => {}
            }
        }
        let window = |g: &mut Inner, p: &Option<String>| -> Option<String> {
            p.clone().inspect(|p| {
                g.pools.entry(p.clone()).or_default();
            })
        };
        match &rec.entry {
            Entry::Dispatch { task_id, place: Place::Queued { .. } | Place::Waiting { .. }, .. } => {
                g.queued_at.insert(task_id.clone(), ts);
                if let Some(p) = window(&mut g, &pool) {
                    g.pools.entry(p).or_default().arrivals.add(ts);
                }
            }
            Entry::Claim { task_id, agent, .. } => {
                g.agents.entry(agent.clone()).or_default().last_seen = Some(ts);
                g.claimed_at.insert(task_id.clone(), ts);
                let waited = g.queued_at.remove(task_id).map(|q| (ts - q).max(0) as f64 / 1e6);
                if let Some(w) = waited
                    && live
                {
                    self.counters.submit_to_claim.observe(w);
                }
                if let Some(p) = window(&mut g, &pool) {
                    let pw = g.pools.entry(p).or_default();
                    pw.departures.add(ts);
                    if let Some(w) = waited {
                        pw.waits.push_back((ts, w));
                        if pw.waits.len() > MAX_WAITS {
                            pw.waits.pop_front();
                        }
                    }
                }
            }
            Entry::Complete(r) | Entry::Fail(r) | Entry::Release(r) => {
                let a = g.agents.entry(r.agent.clone()).or_default();
                a.last_seen = Some(ts);
                match &rec.entry {
                    Entry::Complete(_) => a.completions.add(ts),
                    Entry::Fail(_) => a.failures.add(ts),
                    _ => {}
                }
                if let Some(c) = g.claimed_at.remove(&r.task_id)
                    && live
                    && !matches!(rec.entry, Entry::Release(_))
                {
                    self.counters.claim_to_finish.observe((ts - c).max(0) as f64 / 1e6);
                }
            }
            _ => {}
        }
        if let (Some(id), Some((task, place))) = (id, rec.entry.change())
            && rec.seq >= g.state_from
        {
            if let Some(old) = g.tasks.remove(&id) {
                Self::count(&mut g, &old, -1);
            }
            if *place == Place::Done {
                *g.finished.entry(task.status.as_str().to_string()).or_default() += 1;
                g.queued_at.remove(&id);
                g.claimed_at.remove(&id);
            } else {
                let t = Tracked {
                    status: task.status,
                    pool,
                    queued: matches!(place, Place::Queued { .. } | Place::Waiting { .. }),
                    held: matches!(place, Place::Held { .. }),
                };
                Self::count(&mut g, &t, 1);
                g.tasks.insert(id, t);
            }
        }
        g.last_seq = g.last_seq.max(rec.seq);
        Self::prune(&mut g, ts);
    }

    fn prune(g: &mut Inner, now: i64) {
        let since = now - WINDOW_SECS * 1_000_000;
        for p in g.pools.values_mut() {
            p.arrivals.prune(since);
            p.departures.prune(since);
            while p.waits.front().is_some_and(|(t, _)| *t < since) {
                p.waits.pop_front();
            }
        }
        for a in g.agents.values_mut() {
            a.completions.prune(since);
            a.failures.prune(since);
        }
    }

    /// Adds a sample of the series (the observer's own clock tick).
    pub fn sample(&self, now: i64) {
        let mut g = lock(&self.inner);
        let s =
            Sample { at: now, depth: g.depth.clone(), live: g.live.clone(), finished: g.finished.clone() };
        g.samples.push_back(s);
        while g.samples.len() > SAMPLES {
            g.samples.pop_front();
        }
        Self::prune(&mut g, now);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.inner).samples.iter().cloned().collect()
    }

    /// The flow of every pool the observer has seen.
    pub fn pools(&self, now: i64) -> BTreeMap<String, PoolFlow> {
        let g = lock(&self.inner);
        let since = now - RATE_SECS * 1_000_000;
        let per_min = |r: &Rate| r.per_min(since);
        let mut out: BTreeMap<String, PoolFlow> = BTreeMap::new();
        for (name, p) in &g.pools {
            let mut waits: Vec<f64> = p.waits.iter().map(|(_, w)| *w).collect();
            out.insert(
                name.clone(),
                PoolFlow {
                    in_per_min: per_min(&p.arrivals),
                    out_per_min: per_min(&p.departures),
                    wait_p50_secs: quantile(&mut waits, 0.50),
                    wait_p95_secs: quantile(&mut waits, 0.95),
                    waits_sampled: waits.len(),
                    ..Default::default()
                },
            );
        }
        for (id, t) in &g.tasks {
            if let (true, Some(p), Some(q)) = (t.queued, &t.pool, g.queued_at.get(id)) {
                let age = (now - q).max(0) as f64 / 1e6;
                let f = out.entry(p.clone()).or_default();
                f.oldest_wait_secs = Some(f.oldest_wait_secs.map_or(age, |o: f64| o.max(age)));
            }
        }
        for (name, f) in out.iter_mut() {
            f.depth_series = g.samples.iter().map(|s| s.depth.get(name).copied().unwrap_or(0)).collect();
        }
        out
    }

    /// Tasks in progress per pool they were claimed from.
    pub fn held_per_pool(&self) -> BTreeMap<String, i64> {
        let g = lock(&self.inner);
        let mut out = BTreeMap::new();
        for t in g.tasks.values() {
            if let (true, Some(p)) = (t.held, &t.pool) {
                *out.entry(p.clone()).or_default() += 1;
            }
        }
        out
    }

    /// The flow of every agent the observer has seen act.
    pub fn agents(&self, now: i64) -> BTreeMap<String, AgentFlow> {
        let g = lock(&self.inner);
        let since = now - RATE_SECS * 1_000_000;
        let per_min = |r: &Rate| r.per_min(since);
        g.agents
            .iter()
            .map(|(n, a)| {
                let f = AgentFlow {
                    completions_per_min: per_min(&a.completions),
                    failures_per_min: per_min(&a.failures),
                    last_seen: a.last_seen,
                };
                (n.clone(), f)
            })
            .collect()
    }

    /// The last record observed.
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner).last_seq
    }
}

#[cfg(test)]
mod tests;

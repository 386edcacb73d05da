//! What the outbox's sinks did, for operators and front ends: [`Deliveries`], a cheap shared
//! handle (an `Arc` around a mutex held only to copy or update a few fields) that every deliverer
//! updates and any reader — the HTTP API, the dashboard — reads at any time without going through
//! the broker's loop. Get it with `commands::Handle::deliveries()`.
//!
//! Per sink it keeps the position reached and the one journaled, counters since the broker
//! started, the current failure streak, and the last [`RECENT`] attempts (a bounded log).

use protocol::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many attempts each sink's log keeps.
pub const RECENT: usize = 50;

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The journal sequence of the record delivered (also `X-Mailroom-Delivery`).
    pub seq: u64,
    /// The event (a status such as `COMPLETED`, or an operation such as `reject`).
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub at: Timestamp,
    /// 1 for the first try of this record.
    pub attempt: u32,
    pub ok: bool,
    /// `HTTP 200`, `exit 0`, or what went wrong (`connection refused`, `timed out after 30 s`).
    pub detail: String,
    pub duration_ms: u64,
}

/// One sink as the outbox sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// The id its position is journaled under (`webhook:<name>`, `hook:<name>`).
    pub sink: String,
    /// `webhook` or `hook`.
    pub kind: &'static str,
    /// The URL without credentials or query, or the program.
    pub target: String,
    pub events: Vec<String>,
    pub pools: Vec<String>,
    /// Every record up to this sequence number has been handled (delivered, or not wanted).
    pub through: u64,
    /// The position last journaled: a restart resumes after it.
    pub journaled: u64,
    /// Deliveries that succeeded since the broker started.
    pub delivered: u64,
    /// Attempts that failed since the broker started.
    pub failures: u64,
    /// Records given up after `max_attempts` since the broker started.
    pub given_up: u64,
    /// Set while the record at the head is failing: since when, and the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<Timestamp>,
    /// The last attempts, oldest first.
    pub recent: VecDeque<Attempt>,
}

impl SinkStatus {
    pub(crate) fn new(sink: String, kind: &'static str, target: String, events: Vec<String>) -> Self {
        Self {
            sink,
            kind,
            target,
            events,
            pools: Vec::new(),
            through: 0,
            journaled: 0,
            delivered: 0,
            failures: 0,
            given_up: 0,
            failing_since: None,
            last_error: None,
            next_retry_at: None,
            recent: VecDeque::new(),
        }
    }

    pub(crate) fn record(&mut self, a: Attempt) {
        if a.ok {
            self.delivered += 1;
            self.failing_since = None;
            self.last_error = None;
            self.next_retry_at = None;
        } else {
            self.failures += 1;
            self.failing_since.get_or_insert(a.at);
            self.last_error = Some(a.detail.clone());
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(a);
    }
}

/// The shared record of every sink. Cheap to clone; reading copies what it returns.
#[derive(Debug, Clone, Default)]
pub struct Deliveries(Arc<Mutex<BTreeMap<String, SinkStatus>>>);

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SinkStatus>> {
        // A deliverer that panicked mid-update leaves counters, never a broken invariant.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every sink, in id order.
    pub fn sinks(&self) -> Vec<SinkStatus> {
        self.lock().values().cloned().collect()
    }

    /// One sink.
    pub fn sink(&self, id: &str) -> Option<SinkStatus> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn insert(&self, s: SinkStatus) {
        self.lock().insert(s.sink.clone(), s);
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut SinkStatus)) {
        if let Some(s) = self.lock().get_mut(id) {
            f(s);
        }
    }

    /// Sinks whose position moved past the one journaled: `(sink, through)`.
    pub(crate) fn unjournaled(&self) -> Vec<(String, u64)> {
        self.lock()
            .values()
            .filter(|s| s.through > s.journaled)
            .map(|s| (s.sink.clone(), s.through))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(seq: u64, ok: bool) -> Attempt {
        Attempt {
            seq,
            event: "COMPLETED".into(),
            task_id: Some("T".into()),
            at: Timestamp::from_micros(seq as i64),
            attempt: 1,
            ok,
            detail: if ok { "HTTP 200".into() } else { "HTTP 503".into() },
            duration_ms: 1,
        }
    }

    #[test]
    fn the_log_is_bounded_and_a_success_ends_a_failure_streak() {
        let d = Deliveries::default();
        d.insert(SinkStatus::new("webhook:x".into(), "webhook", "http://h".into(), vec![]));
        d.update("webhook:x", |s| s.record(attempt(1, false)));
        let s = d.sink("webhook:x").unwrap();
        assert_eq!(
            (s.failures, s.failing_since, s.last_error.as_deref()),
            (1, Some(Timestamp::from_micros(1)), Some("HTTP 503"))
        );
        for seq in 2..200 {
            d.update("webhook:x", |s| s.record(attempt(seq, true)));
        }
        let s = d.sink("webhook:x").unwrap();
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.recent.back().map(|a| a.seq), Some(199));
        assert_eq!((s.delivered, s.failing_since), (198, None));
        d.update("webhook:x", |s| s.through = 7);
        assert_eq!(d.unjournaled(), [("webhook:x".to_string(), 7)]);
    }
}

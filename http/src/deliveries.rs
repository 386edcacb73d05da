//! `GET /api/deliveries`: what the outbox's webhooks and transition hooks did, read from the
//! shared [`Deliveries`] the broker's outbox keeps current (obtained once, when the surface
//! starts, through the command channel; reading it never goes through the broker's loop).
//!
//! Per sink: where it is in the journal (`through`) and what is journaled (`journaled`, where a
//! restart resumes), counters since the broker started, the current failure streak with the last
//! error and the next retry, and the last attempts. `recent` merges every sink's attempts, newest
//! first, for a single "what happened lately" list; `failing` names the sinks in a failure streak.

use crate::AppState;
use crate::routes::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use mailroom::outbox::{Attempt, Deliveries, SinkStatus};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most merged attempts answered by default (each sink keeps `mailroom::outbox::RECENT`).
const DEFAULT_RECENT: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this sink (`webhook:<name>` or `hook:<name>`).
    pub sink: Option<String>,
    /// Only failed attempts in `recent`.
    pub failed: Option<bool>,
    /// Most attempts in `recent`.
    pub limit: Option<usize>,
}

/// The answer, from the sinks as they are now.
pub fn report(sinks: Vec<SinkStatus>, q: &DeliveriesQuery) -> Value {
    let sinks: Vec<SinkStatus> =
        sinks.into_iter().filter(|s| q.sink.as_ref().is_none_or(|id| &s.sink == id)).collect();
    let mut attempts: Vec<(&str, &Attempt)> = sinks
        .iter()
        .flat_map(|s| s.recent.iter().map(move |a| (s.sink.as_str(), a)))
        .filter(|(_, a)| !q.failed.unwrap_or(false) || !a.ok)
        .collect();
    // Newest first: by time, then by journal sequence.
    attempts.sort_by_key(|(_, a)| std::cmp::Reverse((a.at, a.seq)));
    let mut recent: Vec<Value> = attempts
        .into_iter()
        .map(|(sink, a)| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["sink"] = Value::String(sink.to_string());
            v
        })
        .collect();
    recent.truncate(q.limit.unwrap_or(DEFAULT_RECENT).clamp(1, 10 * DEFAULT_RECENT));
    let failing: Vec<&str> =
        sinks.iter().filter(|s| s.failing_since.is_some()).map(|s| s.sink.as_str()).collect();
    json!({
        "sinks": sinks,
        "failing": failing,
        "delivered": sinks.iter().map(|s| s.delivered).sum::<u64>(),
        "failures": sinks.iter().map(|s| s.failures).sum::<u64>(),
        "given_up": sinks.iter().map(|s| s.given_up).sum::<u64>(),
        "recent": recent,
    })
}

/// `GET /api/deliveries`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(id) = &q.sink
        && state.deliveries.sink(id).is_none()
    {
        return Err(ApiError::not_found(format!("no webhook or hook `{id}`")));
    }
    Ok(Json(report(state.deliveries.sinks(), &q)))
}

/// The handle a surface reads: the broker's, or an empty one if it stopped before answering.
pub async fn handle_of(handle: &mailroom::engine::commands::Handle) -> Deliveries {
    handle.deliveries().await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Timestamp;

    fn sink(id: &str, attempts: &[(u64, i64, bool)]) -> SinkStatus {
        SinkStatus {
            sink: id.to_string(),
            kind: "webhook",
            target: "http://127.0.0.1:9/".into(),
            events: vec!["COMPLETED".into()],
            pools: vec![],
            through: 0,
            journaled: 0,
            delivered: attempts.iter().filter(|a| a.2).count() as u64,
            failures: attempts.iter().filter(|a| !a.2).count() as u64,
            given_up: 0,
            failing_since: attempts.last().filter(|a| !a.2).map(|a| Timestamp::from_micros(a.1)),
            last_error: None,
            next_retry_at: None,
            recent: attempts
                .iter()
                .map(|&(seq, at, ok)| Attempt {
                    seq,
                    event: "COMPLETED".into(),
                    task_id: Some(format!("T-{seq}")),
                    at: Timestamp::from_micros(at),
                    attempt: 1,
                    ok,
                    detail: if ok { "HTTP 200".into() } else { "connection refused".into() },
                    duration_ms: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn attempts_of_every_sink_are_merged_newest_first_and_filtered() {
        let sinks = vec![
            sink("hook:log", &[(3, 30, true), (9, 90, true)]),
            sink("webhook:ops", &[(4, 40, true), (7, 70, false), (8, 95, false)]),
        ];
        let all = report(sinks.clone(), &DeliveriesQuery::default());
        let order: Vec<(&str, u64)> = all["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["sink"].as_str().unwrap(), a["seq"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            order,
            [("webhook:ops", 8), ("hook:log", 9), ("webhook:ops", 7), ("webhook:ops", 4), ("hook:log", 3)]
        );
        assert_eq!(all["failing"], json!(["webhook:ops"]));
        assert_eq!((all["delivered"].as_u64(), all["failures"].as_u64()), (Some(3), Some(2)));

        let q = DeliveriesQuery { failed: Some(true), limit: Some(1), ..Default::default() };
        let failed = report(sinks.clone(), &q);
        assert_eq!(failed["recent"].as_array().unwrap().len(), 1);
        assert_eq!(failed["recent"][0]["ok"], false);

        let q = DeliveriesQuery { sink: Some("hook:log".into()), ..Default::default() };
        let one = report(sinks, &q);
        assert_eq!(one["sinks"].as_array().unwrap().len(), 1);
        assert_eq!(one["failing"], json!([]));
    }
}

//! The task endpoints: list with filters and a cursor, one task with its whole trace and its
//! path on disk, submit (the broker's verdict: accepted, or refused with the field and rule),
//! cancel, retry, and a scoped bulk retry. Every change is a command to the broker's loop.

use crate::AppState;
use crate::routes::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mailroom::engine::commands::{RetryScope, TaskView, Verdict};
use mailroom::journal::Place;
use protocol::Status;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most tasks one page lists.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// The filters of `GET /api/tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// One status or several, comma-separated.
    pub status: Option<String>,
    pub pool: Option<String>,
    /// Held by, or addressed to, this agent.
    pub agent: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    /// A piece of the id or the name, any case.
    pub q: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskOut {
    pub task: protocol::Task,
    pub place: Place,
    pub pool: Option<String>,
    /// The task file's path (absolute), if it has one now.
    pub path: Option<String>,
    /// Why it waits when that may never come ("waiting for unknown task X"), or why it is
    /// BLOCKED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn task_out(state: &AppState, t: TaskView) -> TaskOut {
    let path = t.place.rel_path().map(|r| state.layout.comms().join(r).display().to_string());
    TaskOut { task: t.task, place: t.place, pool: t.pool, path, note: t.note }
}

/// Statuses from `PENDING,FAILED` (any case).
pub fn parse_statuses(s: &str) -> Result<Vec<Status>, ApiError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            serde_json::from_value::<Status>(Value::String(p.trim().to_uppercase()))
                .map_err(|_| ApiError::bad_request(format!("status `{p}`: not a task status")))
        })
        .collect()
}

/// The agent a task is held by, or else addressed to.
fn agent_of(t: &TaskView) -> Option<&str> {
    match &t.place {
        Place::Held { agent, .. } => Some(agent),
        _ => t.task.assigned_to.as_deref(),
    }
}

/// Whether `t` passes every filter of `q`.
pub fn matches(q: &TaskQuery, statuses: &[Status], t: &TaskView) -> bool {
    let needle = q.q.as_ref().map(|s| s.to_lowercase());
    (statuses.is_empty() || statuses.contains(&t.task.status))
        && q.pool.as_ref().is_none_or(|p| t.pool.as_ref() == Some(p))
        && q.agent.as_deref().is_none_or(|a| agent_of(t) == Some(a))
        && q.task_type.as_ref().is_none_or(|ty| t.task.task_type.as_ref() == Some(ty))
        && needle.is_none_or(|n| {
            t.task.task_id.to_lowercase().contains(&n)
                || t.task.name.as_ref().is_some_and(|name| name.to_lowercase().contains(&n))
        })
}

/// A cursor names the last id of the previous page; opaque to clients (hex of the id).
pub fn encode_cursor(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_cursor(c: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("cursor: not one this server gave out");
    if !c.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> =
        (0..c.len()).step_by(2).map(|i| u8::from_str_radix(&c[i..i + 2], 16)).collect();
    String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())
}

/// `GET /api/tasks`: the tasks the broker holds (live, and the recently finished), by id.
pub async fn list(State(state): State<AppState>, q: Query<TaskQuery>) -> Result<Json<Value>, ApiError> {
    let q = q.0;
    let statuses = q.status.as_deref().map(parse_statuses).transpose()?.unwrap_or_default();
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let view = state.handle.snapshot().await?;
    let next_seq = view.next_seq;
    let mut found: Vec<TaskView> = view.tasks.into_iter().filter(|t| matches(&q, &statuses, t)).collect();
    found.sort_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
    let total = found.len();
    let start = after.map_or(0, |a| found.partition_point(|t| t.task.task_id <= a));
    let page: Vec<TaskOut> = found.into_iter().skip(start).take(limit).map(|t| task_out(&state, t)).collect();
    let next =
        (start + page.len() < total).then(|| page.last().map(|t| encode_cursor(&t.task.task_id))).flatten();
    // `next_seq`: follow `/api/events?after=<next_seq - 1>` to see every change after this page.
    Ok(Json(json!({"tasks": page, "total": total, "next_cursor": next, "next_seq": next_seq})))
}

/// `GET /api/tasks/{id}`: the task, its whole trace from the journal, its file's path.
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = state.handle.snapshot().await?;
    let held = view.tasks.into_iter().find(|t| t.task.task_id == id).map(|t| task_out(&state, t));
    let (fs, layout, tid) = (state.fs.clone(), state.layout.clone(), id.clone());
    let trace = tokio::task::spawn_blocking(move || mailroom::trace::trace(fs.as_ref(), &layout, &tid))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if held.is_none() && trace.is_none() {
        return Err(ApiError::not_found(format!("no task `{id}`")));
    }
    let root = state.layout.comms().display().to_string();
    Ok(Json(json!({"task_id": id, "current": held, "trace": trace, "root": root})))
}

/// A verdict as a response: `ok` when accepted, else 422 with the field and the rule.
fn verdict(v: Verdict, ok: StatusCode, refused: StatusCode) -> Response {
    let status = if matches!(v, Verdict::Accepted { .. }) { ok } else { refused };
    (status, Json(v)).into_response()
}

/// `POST /api/tasks`: a task object, or a `{"kind":"submit","task":{...}}` message.
pub async fn submit(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let refused = Verdict::Refused {
                task_id: None,
                field: String::new(),
                rule: format!("the body is not JSON: {e}"),
                reason: format!("the body is not JSON: {e}"),
            };
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(refused)).into_response());
        }
    };
    let task = match v {
        Value::Object(mut m) if m.get("kind").and_then(Value::as_str) == Some("submit") => {
            m.remove("task").unwrap_or(Value::Null)
        }
        other => other,
    };
    let v = state.handle.submit(task).await?;
    Ok(verdict(v, StatusCode::CREATED, StatusCode::UNPROCESSABLE_ENTITY))
}

/// `POST /api/tasks/{id}/cancel`. A body, if any, is read (within the limit) and ignored, so the
/// connection stays reusable.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiError> {
    Ok(verdict(state.handle.cancel(&id).await?, StatusCode::OK, StatusCode::CONFLICT))
}

/// `POST /api/tasks/{id}/retry` (a body is ignored, as for cancel).
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiError> {
    Ok(verdict(state.handle.retry(&id).await?, StatusCode::OK, StatusCode::CONFLICT))
}

/// The body of `POST /api/retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRetry {
    /// Default `["FAILED"]`.
    #[serde(default)]
    pub status: Vec<String>,
    pub pool: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    pub limit: Option<usize>,
}

/// `POST /api/retry`: redrive every task the filters select; answers how many.
pub async fn retry_where(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: BulkRetry = if body.is_empty() {
        BulkRetry { status: Vec::new(), pool: None, task_type: None, limit: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?
    };
    let mut statuses = parse_statuses(&b.status.join(","))?;
    if statuses.is_empty() {
        statuses.push(Status::Failed);
    }
    if let Some(s) =
        statuses.iter().find(|s| !matches!(s, Status::Failed | Status::Blocked | Status::Cancelled))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            format!("status {s}: a retry redrives FAILED, BLOCKED or CANCELLED tasks only"),
        ));
    }
    let scope = RetryScope {
        statuses,
        pool: b.pool,
        task_type: b.task_type,
        limit: b.limit.unwrap_or(MAX_PAGE).clamp(1, 10 * MAX_PAGE),
    };
    let v = state.handle.retry_where(scope).await?;
    let count = v.retried.len();
    Ok((StatusCode::OK, Json(json!({"count": count, "matched": v.matched, "retried": v.retried, "refused": v.refused, "seq": v.seq}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for id in ["T-1", "é/ü", ""] {
            assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        }
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor("abc").is_err());
    }

    #[test]
    fn statuses_parse_in_any_case_and_unknown_ones_are_refused() {
        assert_eq!(parse_statuses("failed, BLOCKED").unwrap(), [Status::Failed, Status::Blocked]);
        assert!(parse_statuses("DONE").is_err());
        assert!(parse_statuses("").unwrap().is_empty());
    }

    #[test]
    fn filters_combine() {
        let mut task = protocol::Task::new("LEAD-7");
        task.name = Some("Analyse the Lead".into());
        task.task_type = Some("leads".into());
        task.status = Status::Failed;
        let t = TaskView::new(task, Place::Done, Some("leads".into()));
        let q = |f: fn(&mut TaskQuery)| {
            let mut q = TaskQuery::default();
            f(&mut q);
            q
        };
        assert!(matches(&q(|_| {}), &[], &t));
        assert!(matches(&q(|q| q.q = Some("the lead".into())), &[], &t));
        assert!(matches(&q(|q| q.q = Some("lead-7".into())), &[Status::Failed], &t));
        assert!(!matches(&q(|_| {}), &[Status::Pending], &t));
        assert!(!matches(&q(|q| q.pool = Some("other".into())), &[], &t));
        assert!(!matches(&q(|q| q.task_type = Some("docs".into())), &[], &t));
        assert!(!matches(&q(|q| q.agent = Some("Agent-1".into())), &[], &t));
    }
}

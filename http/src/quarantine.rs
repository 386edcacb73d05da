//! The quarantine endpoints: every refused input of `broker/quarantine/` (newest first) with the
//! reason the broker wrote beside it, one entry with the start of its content, and the requeue of
//! an entry. Listing and reading are plain reads of the tree, off the runtime thread; the requeue
//! is a command to the broker's loop, which journals it and moves the entry back into the inbox
//! (this side moves no file). A requeued input goes through admission again, as if it had just
//! arrived: the verdict here is about the requeue, not about what the broker then makes of it.

use crate::AppState;
use crate::ops::blocking;
use crate::routes::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mailroom::engine::commands::Verdict;
use protocol::names::{REASON_SUFFIX, validate_quarantine_entry};
use runtime_layout::{FileKind, Fs, Layout};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most entries `GET /api/quarantine` lists, newest first.
const QUARANTINE_PAGE: usize = 500;
/// Largest reason file or preview read.
const READ_LIMIT: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    pub limit: Option<usize>,
}

/// The names of the entries: regular files directly in `broker/quarantine/`, neither a reason
/// (`<entry>.error.json`) nor hidden. (`requeued/`, the reasons of requeued entries, is a
/// directory and not listed.)
pub fn entry_names(fs: &dyn Fs, layout: &Layout) -> Result<Vec<String>, runtime_layout::FsError> {
    let dir = layout.quarantine_dir();
    let entries = match fs.list(&dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(entries
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .filter_map(|e| e.name_str().map(str::to_string))
        .filter(|n| !n.ends_with(REASON_SUFFIX) && !protocol::names::is_hidden(n))
        .collect())
}

/// Every quarantined input (newest first: names start with the refusal's journal sequence) with
/// the reason written beside it; at most `limit` read, and the total.
pub fn list_quarantine(
    fs: &dyn Fs,
    layout: &Layout,
    limit: usize,
) -> Result<(usize, Vec<Value>), runtime_layout::FsError> {
    let mut names = entry_names(fs, layout)?;
    names.sort_unstable_by(|a, b| b.cmp(a));
    let total = names.len();
    let mut out = Vec::new();
    for name in names.into_iter().take(limit) {
        out.push(entry(fs, layout, &name)?);
    }
    Ok((total, out))
}

fn entry(fs: &dyn Fs, layout: &Layout, name: &str) -> Result<Value, runtime_layout::FsError> {
    let dir = layout.quarantine_dir();
    let size = fs.stat(&dir.join(name))?.map(|m| m.len);
    let reason = match fs.read(&dir.join(format!("{name}{REASON_SUFFIX}")), READ_LIMIT) {
        Ok(b) => serde_json::from_slice::<Value>(&b)
            .unwrap_or_else(|e| json!({"reason": format!("unreadable reason file: {e}")})),
        Err(e) if e.is_not_found() => json!({"reason": "no reason file beside it"}),
        Err(e) => json!({"reason": format!("reason file: {e}")}),
    };
    Ok(json!({
        "name": name,
        "path": dir.join(name).display().to_string(),
        "size": size,
        "reason": reason.get("reason").cloned().unwrap_or(Value::Null),
        "field": reason.get("field").cloned().unwrap_or(Value::Null),
        "rule": reason.get("rule").cloned().unwrap_or(Value::Null),
        "file": reason.get("file").cloned().unwrap_or(Value::Null),
        "kind": reason.get("kind").cloned().unwrap_or(Value::Null),
        "task_id": reason.get("task_id").cloned().unwrap_or(Value::Null),
        "quarantined_at": reason.get("quarantined_at").cloned().unwrap_or(Value::Null),
    }))
}

/// `GET /api/quarantine`.
pub async fn quarantine(
    State(state): State<AppState>,
    Query(q): Query<QuarantineQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(QUARANTINE_PAGE).clamp(1, 10 * QUARANTINE_PAGE);
    let (fs, layout) = (state.fs.clone(), state.layout.clone());
    let (total, entries) = blocking(move || list_quarantine(fs.as_ref(), &layout, limit)).await?;
    Ok(Json(json!({"total": total, "entries": entries})))
}

/// `GET /api/quarantine/{name}`: one entry, its reason and the start of its content.
pub async fn quarantined(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    let (fs, layout, n) = (state.fs.clone(), state.layout.clone(), name.clone());
    let found = blocking(move || {
        let path = layout.quarantine_dir().join(&n);
        match fs.stat(&path)? {
            Some(m) if m.kind == FileKind::File => {}
            _ => return Ok(None),
        }
        let mut e = entry(fs.as_ref(), &layout, &n)?;
        e["content"] = match fs.read(&path, READ_LIMIT) {
            Ok(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
            Err(err) => Value::String(format!("(not shown: {err})")),
        };
        Ok::<_, runtime_layout::FsError>(Some(e))
    })
    .await?;
    found.map(Json).ok_or_else(|| ApiError::not_found(format!("no quarantine entry `{name}`")))
}

/// A name that can only be one file directly inside `broker/quarantine/`.
fn check_name(name: &str) -> Result<(), ApiError> {
    validate_quarantine_entry(name).map_err(ApiError::bad_request)
}

/// `POST /api/quarantine/{name}/requeue`: the broker puts the entry back into its inbox (the
/// move is journaled first, the entry's reason is kept under `quarantine/requeued/`). `200` with
/// the verdict when it is done and durable; `404` for no such entry; `409` when the broker
/// refuses (a reason file, an entry requeued already, not a file). A body, if any, is read
/// (within the limit) and ignored, so the connection stays reusable whatever the answer.
pub async fn requeue(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let (fs, layout, n) = (state.fs.clone(), state.layout.clone(), name.clone());
    let exists = blocking(move || {
        Ok::<_, runtime_layout::FsError>(fs.stat(&layout.quarantine_dir().join(&n))?.is_some())
    })
    .await?;
    if !exists {
        return Err(ApiError::not_found(format!("no quarantine entry `{name}`")));
    }
    let v = state.handle.requeue(&name).await?;
    let status = if matches!(v, Verdict::Accepted { .. }) { StatusCode::OK } else { StatusCode::CONFLICT };
    Ok((status, Json(v)).into_response())
}

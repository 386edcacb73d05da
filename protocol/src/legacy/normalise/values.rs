//! Fields whose values only need a type: text, lists, timestamps, counters and the history. A
//! value of the wrong JSON type is converted when that loses nothing, and set aside under
//! `legacy` otherwise.

use super::ctx::Ctx;
use crate::legacy::ChangeKind;
use crate::legacy::board::ID_FIELDS;
use crate::legacy::time::{TimeOutcome, normalise_timestamp};
use crate::task::HistoryEntry;
use crate::time::Timestamp;
use serde_json::{Value, json};

/// Is a field named `name` a timestamp? Canonical time fields, and names that end in `_at`,
/// `_utc`, `_time`, `_timestamp` or `_date`, start with `timestamp`, or are `timestamp`,
/// `deadline`, `due`; durations and estimates (`estimated_time`, `*duration*`) are not.
pub fn is_time_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if ["estimat", "duration", "elapsed", "actual", "timeout", "window", "format", "zone", "interval"]
        .iter()
        .any(|w| n.contains(w))
    {
        return false;
    }
    matches!(n.as_str(), "timestamp" | "deadline" | "due" | "not_before")
        || n.starts_with("timestamp")
        || ["_at", "_utc", "_time", "_timestamp", "_date"].iter().any(|s| n.ends_with(s))
}

pub(super) fn text_field(cx: &mut Ctx, f: &str) {
    match cx.m.get(f) {
        None | Some(Value::String(_)) => {}
        Some(Value::Null) => {
            cx.m.remove(f);
        }
        Some(v @ (Value::Number(_) | Value::Bool(_))) => {
            let from = v.clone();
            let s = json!(v.to_string());
            cx.m.insert(f.into(), s.clone());
            cx.change(f, ChangeKind::ValueCoerced, Some(from), Some(s), false);
        }
        Some(_) if f == "error" => {
            let from = cx.m.remove(f).unwrap_or(Value::Null);
            let s = json!(from.to_string());
            cx.m.insert(f.into(), s.clone());
            cx.change(f, ChangeKind::ValueCoerced, Some(from), Some(s), false);
        }
        Some(_) => cx.move_to_legacy(f, ChangeKind::ValueMovedToLegacy, true),
    }
}

pub(super) fn list_field(cx: &mut Ctx, f: &str) {
    let Some(raw) = cx.m.get(f).cloned() else { return };
    let items: Option<Vec<String>> = match &raw {
        Value::Null => {
            cx.m.remove(f);
            return;
        }
        Value::String(s) => {
            Some(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
        Value::Array(a) if a.iter().all(Value::is_string) => return,
        Value::Array(a) => a
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                // A dependency written as a task reference: `{"task_id": "X"}`.
                Value::Object(o) if f == "depends_on" => ID_FIELDS.iter().find_map(|k| match o.get(*k) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                }),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    match items {
        Some(items) => {
            let to = json!(items);
            cx.m.insert(f.into(), to.clone());
            cx.change(f, ChangeKind::ValueCoerced, Some(raw), Some(to), false);
        }
        None => cx.move_to_legacy(f, ChangeKind::ValueMovedToLegacy, true),
    }
}

pub(super) fn time_field(cx: &mut Ctx, f: &str, now: Timestamp) {
    let Some(raw) = cx.m.get(f).cloned() else { return };
    if raw.is_null() {
        if matches!(f, "created_at" | "updated_at" | "not_before") {
            cx.m.remove(f);
        }
        return;
    }
    let canonical = matches!(f, "created_at" | "updated_at" | "not_before");
    if !(canonical || raw.is_string() || raw.is_number()) {
        // An object or list under a time-like name (`timestamps: {...}`) is not a timestamp.
        return;
    }
    let out = normalise_timestamp(&raw, now);
    let (kind, warning) = match out {
        TimeOutcome::Canonical(_) => return,
        TimeOutcome::Reformatted(_) => (ChangeKind::TimestampReformatted, false),
        TimeOutcome::AssumedUtc(_) => (ChangeKind::TimestampAssumedUtc, false),
        TimeOutcome::Placeholder(_) => (ChangeKind::PlaceholderReplaced, false),
        TimeOutcome::Unparseable => return cx.move_to_legacy(f, ChangeKind::TimestampUnparseable, true),
    };
    let to = json!(out.timestamp().map(|t| t.to_string()));
    cx.m.insert(f.into(), to.clone());
    cx.change(f, kind, Some(raw), Some(to), warning);
}

pub(super) fn counter(cx: &mut Ctx, f: &str, min: u64, max: u64) {
    let Some(raw) = cx.m.get(f).cloned() else { return };
    let n = match &raw {
        Value::Null => {
            cx.m.remove(f);
            return;
        }
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n.filter(|n| (min..=max).contains(n)) {
        Some(n) if raw.is_number() => {
            let _ = n;
        }
        Some(n) => {
            cx.m.insert(f.into(), json!(n));
            cx.change(f, ChangeKind::ValueCoerced, Some(raw), Some(json!(n)), false);
        }
        None => cx.move_to_legacy(f, ChangeKind::ValueMovedToLegacy, true),
    }
}

pub(super) fn history(cx: &mut Ctx) {
    let Some(raw) = cx.m.get("history") else { return };
    if raw.is_null() {
        cx.m.remove("history");
        return;
    }
    if serde_json::from_value::<Vec<HistoryEntry>>(raw.clone()).is_err() {
        cx.move_to_legacy("history", ChangeKind::ValueMovedToLegacy, false);
    }
}

//! `normalise_task`: one legacy task object to a canonical [`Task`], every change recorded.
//!
//! The driver is here; the steps are one idea per file: [`renames`] (legacy field names),
//! [`vocab`] (status, priority and assignee through their tables), [`values`] (types of text,
//! list, time and counter fields), all working on one [`Ctx`].

mod ctx;
mod renames;
mod values;
mod vocab;

use super::board::ID_FIELDS;
use super::time::is_placeholder;
use super::{Change, ChangeKind, LEGACY_KEY, NORMALISE_ACTION, NORMALISE_ACTOR};
use crate::error::ValidationError;
use crate::task::{HistoryEntry, Task, validate_task_id};
use crate::time::Timestamp;
use ctx::Ctx;
use renames::renames;
use serde_json::{Map, Value, json};
use values::{counter, history, list_field, text_field, time_field};
use vocab::{assignee, priority, status};

pub use renames::{NESTED_CONTAINERS, RENAMES};
pub use values::is_time_field;

/// A canonical task and what normalisation changed to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub task: Task,
    pub changes: Vec<Change>,
}

impl Normalised {
    /// The changes an operator should look at (guesses, values set aside).
    pub fn warnings(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.warning)
    }
}

/// From any legacy task object to a canonical task. `Err` only when the value is not an object
/// or has no usable id; the error names the field and the rule. The rules are listed in
/// `docs/NORMALISATION.md`; every change is returned and, when there is any, recorded in the
/// task's history as one entry by `mailroom` with action `normalise`. Normalising a canonical
/// task changes nothing.
pub fn normalise_task(v: &Value, now: Timestamp) -> Result<Normalised, ValidationError> {
    let Value::Object(src) = v else {
        return Err(ValidationError::new("", "a task must be a JSON object"));
    };
    let mut cx = Ctx { m: src.clone(), legacy: Map::new(), changes: Vec::new() };
    match cx.m.remove(LEGACY_KEY) {
        None => {}
        Some(Value::Object(o)) => cx.legacy = o,
        Some(other) => {
            cx.legacy.insert("value".into(), other.clone());
            cx.change(LEGACY_KEY, ChangeKind::ValueMovedToLegacy, Some(other), None, false);
        }
    }

    let task_id = take_id(&mut cx)?;
    // Repeat until nothing changes: a canonical field moved aside under `legacy` lets a legacy
    // spelling of it be renamed in the next round (and then checked), so a second
    // normalisation of the result finds nothing left to do.
    for _ in 0..16 {
        let before = cx.changes.len();
        renames(&mut cx);
        status(&mut cx);
        priority(&mut cx);
        assignee(&mut cx);
        for f in ["name", "description", "task_type", "created_by", "error"] {
            text_field(&mut cx, f);
        }
        for f in ["depends_on", "tags", "required_capabilities"] {
            list_field(&mut cx, f);
        }
        let time_fields: Vec<String> = cx.m.keys().filter(|k| is_time_field(k)).cloned().collect();
        for f in time_fields {
            time_field(&mut cx, &f, now);
        }
        counter(&mut cx, "max_attempts", 1, 1000);
        counter(&mut cx, "attempts", 0, u64::from(u32::MAX));
        counter(&mut cx, "lease_secs", 1, u64::MAX);
        history(&mut cx);
        if cx.changes.len() == before {
            break;
        }
    }

    cx.m.insert("task_id".into(), Value::String(task_id));
    let mut task = loop {
        let mut m = cx.m.clone();
        if !cx.legacy.is_empty() {
            m.insert(LEGACY_KEY.into(), Value::Object(cx.legacy.clone()));
        }
        match Task::from_value(Value::Object(m)) {
            Ok(t) => break t,
            Err(e) => {
                // A value the steps above let through but the canonical reader refuses: keep
                // it under `legacy` rather than lose the task.
                let top = e.field.split(['.', '[']).next().unwrap_or("").to_string();
                if top.is_empty() || top == "task_id" || !cx.m.contains_key(&top) {
                    return Err(e);
                }
                cx.move_to_legacy(&top, ChangeKind::ValueMovedToLegacy, true);
            }
        }
    };
    if !cx.changes.is_empty() {
        let details = json!({ "changes": cx.changes });
        task.history.push(HistoryEntry {
            timestamp: now,
            actor: NORMALISE_ACTOR.into(),
            action: NORMALISE_ACTION.into(),
            from: None,
            to: None,
            details: Some(details),
        });
    }
    Ok(Normalised { task, changes: cx.changes })
}

fn take_id(cx: &mut Ctx) -> Result<String, ValidationError> {
    let Some(field) = ID_FIELDS.iter().copied().find(|k| cx.m.get(*k).is_some_and(|v| !v.is_null())) else {
        return Err(ValidationError::new(
            "task_id",
            format!("is required (looked for {})", ID_FIELDS.join(", ")),
        ));
    };
    let raw = cx.m.remove(field).unwrap_or(Value::Null);
    if field != "task_id" {
        cx.change("task_id", ChangeKind::FieldRenamed, Some(json!(field)), Some(json!("task_id")), false);
    }
    let id = match &raw {
        Value::String(s) => {
            if is_whole_placeholder(s) {
                return Err(ValidationError::new(
                    field,
                    format!("`{s}` is an unrendered template placeholder, not an id"),
                ));
            }
            s.clone()
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let s = n.to_string();
            cx.change("task_id", ChangeKind::IdStringified, Some(raw.clone()), Some(json!(s)), false);
            s
        }
        _ => return Err(ValidationError::new(field, "must be a string or an integer")),
    };
    validate_task_id(&id).map_err(|e| ValidationError::new(field, e.rule))?;
    Ok(id)
}

/// A placeholder that is the whole id (`{{uuid()}}`, `[AUTO_UUID]`). An id with a placeholder
/// inside a meaningful prefix (`AGENT2-CLEANUP-{{uuid()}}`) is still a usable id.
fn is_whole_placeholder(s: &str) -> bool {
    let t = s.trim();
    is_placeholder(t) && (!t.contains("{{") || (t.starts_with("{{") && t.ends_with("}}")))
}

#[cfg(test)]
mod tests;

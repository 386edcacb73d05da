//! Field renames: the legacy spellings of each canonical field, in the order they are looked
//! for, and the lifting of a missing field out of a `metadata` or `meta` object.

use super::ctx::Ctx;
use crate::legacy::ChangeKind;
use serde_json::{Value, json};

/// What a renamed value must look like for the rename to apply.
#[derive(Clone, Copy)]
enum Fit {
    Text,
    Any,
    TextOrList,
    Time,
}

impl Fit {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Fit::Text => v.is_string() || v.is_number(),
            Fit::Any => !v.is_null(),
            Fit::TextOrList => v.is_string() || v.is_array(),
            Fit::Time => v.is_string() || v.is_number(),
        }
    }
}

/// Canonical field, the value shape a legacy spelling must have, and the legacy spellings in
/// the order they are looked for. The first present (non-null, fitting) spelling is renamed;
/// the others stay as they are among the extra fields.
pub const RENAMES: &[(&str, &[&str])] = &[
    ("name", &["title", "task_name", "task_title", "task"]),
    ("description", &["desc", "task_description", "details"]),
    ("task_type", &["type", "category"]),
    ("status", &["state", "task_status"]),
    ("priority", &["prio", "priority_level"]),
    (
        "assigned_to",
        &[
            "assigned_agent",
            "assigned_agent_id",
            "assignee",
            "agent_assigned",
            "owner",
            "target_agent",
            "agent_id",
            "claimed_by",
        ],
    ),
    ("created_by", &["creator", "author", "injected_by"]),
    (
        "created_at",
        &[
            "created",
            "timestamp_created",
            "timestamp_created_utc",
            "created_timestamp",
            "creation_time",
            "created_date",
            "date_created",
            "created_on",
            "createdAt",
            "created_utc",
        ],
    ),
    (
        "updated_at",
        &[
            "updated",
            "timestamp_updated",
            "timestamp_updated_utc",
            "last_updated",
            "last_updated_timestamp",
            "updated_timestamp",
            "last_updated_utc",
            "last_modified",
            "modified_at",
            "updatedAt",
        ],
    ),
    ("depends_on", &["dependencies", "deps", "depends", "prerequisites", "blocked_by"]),
    ("tags", &["labels"]),
    ("params", &["parameters"]),
    ("error", &["error_message"]),
];

fn fit_of(canonical: &str) -> Fit {
    match canonical {
        "name" | "description" | "task_type" | "assigned_to" | "created_by" | "error" => Fit::Text,
        "status" | "priority" | "params" => Fit::Any,
        "depends_on" | "tags" => Fit::TextOrList,
        _ => Fit::Time,
    }
}

/// Objects some schemas keep canonical fields in (`metadata.priority`, `meta.owner`): a field
/// missing at the top level is lifted out of them.
pub const NESTED_CONTAINERS: &[&str] = &["metadata", "meta"];

/// A value the canonical task does not write back (null, an empty list) or that carries nothing
/// (a blank string): a legacy spelling may take its place.
fn absent_like(v: Option<&Value>) -> bool {
    v.is_none_or(|v| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    })
}

pub(super) fn renames(cx: &mut Ctx) {
    for (canonical, spellings) in RENAMES {
        if !absent_like(cx.m.get(*canonical)) {
            continue;
        }
        let fit = fit_of(canonical);
        if let Some(legacy) = spellings.iter().find(|k| cx.m.get(**k).is_some_and(|v| fit.accepts(v))) {
            let v = cx.m.remove(*legacy).unwrap_or(Value::Null);
            cx.m.insert((*canonical).to_string(), v);
            cx.change(
                canonical,
                ChangeKind::FieldRenamed,
                Some(json!(legacy)),
                Some(json!(canonical)),
                false,
            );
            continue;
        }
        // Lift from a nested container: the canonical name first, then the legacy spellings.
        for container in NESTED_CONTAINERS {
            let Some(Value::Object(inner)) = cx.m.get_mut(*container) else { continue };
            let found = std::iter::once(canonical)
                .chain(spellings.iter())
                .find(|k| inner.get(**k).is_some_and(|v| fit.accepts(v)))
                .copied();
            if let Some(k) = found {
                let v = inner.remove(k).unwrap_or(Value::Null);
                cx.m.insert((*canonical).to_string(), v);
                let from = format!("{container}.{k}");
                cx.change(
                    canonical,
                    ChangeKind::FieldRenamed,
                    Some(json!(from)),
                    Some(json!(canonical)),
                    false,
                );
                break;
            }
        }
    }
}

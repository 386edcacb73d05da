//! `normalise_task`: one legacy task object to a canonical [`Task`], every change recorded.

use super::agent::normalise_agent;
use super::board::ID_FIELDS;
use super::priority::{PriorityMatch, map_priority};
use super::status::{StatusMatch, map_status};
use super::time::{TimeOutcome, is_placeholder, normalise_timestamp};
use super::{Change, ChangeKind, LEGACY_KEY, NORMALISE_ACTION, NORMALISE_ACTOR};
use crate::error::ValidationError;
use crate::task::{HistoryEntry, Task, validate_task_id};
use crate::time::Timestamp;
use serde_json::{Map, Value, json};

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

struct Ctx {
    m: Map<String, Value>,
    legacy: Map<String, Value>,
    changes: Vec<Change>,
}

impl Ctx {
    fn change(
        &mut self,
        field: &str,
        kind: ChangeKind,
        from: Option<Value>,
        to: Option<Value>,
        warning: bool,
    ) {
        self.changes.push(Change::new(field, kind, from, to, warning));
    }

    /// Moves the value of `field` under `legacy.<field>`.
    fn move_to_legacy(&mut self, field: &str, kind: ChangeKind, warning: bool) {
        if let Some(v) = self.m.remove(field) {
            self.keep_legacy(field, v.clone());
            self.change(field, kind, Some(v), None, warning);
        }
    }

    /// Keeps `v` under `legacy.<field>`; a second value for the same field (a legacy spelling
    /// renamed after the first was set aside) goes to `legacy.<field>#2`, and so on.
    fn keep_legacy(&mut self, field: &str, v: Value) {
        let mut key = field.to_string();
        let mut n = 1;
        while self.legacy.contains_key(&key) {
            n += 1;
            key = format!("{field}#{n}");
        }
        self.legacy.insert(key, v);
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
        for f in ["depends_on", "tags"] {
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

fn renames(cx: &mut Ctx) {
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

fn status(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("status") else { return };
    // A status object (`{"state": "working", "progress": 0.5}`): its state is the status.
    let (spelling, whole_kept) = match &raw {
        Value::Null => return,
        Value::String(s) => (Some(s.clone()), false),
        Value::Object(o) => (
            ["state", "status", "value", "name"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_string),
            true,
        ),
        _ => (None, false),
    };
    let found = spelling.as_deref().map_or(StatusMatch::Unmapped, map_status);
    let s = found.status();
    cx.m.insert("status".into(), json!(s.as_str()));
    let to = Some(json!(s.as_str()));
    match found {
        StatusMatch::Canonical(_) if !whole_kept => {}
        StatusMatch::Canonical(_) | StatusMatch::Mapped(_) => {
            if whole_kept {
                cx.keep_legacy("status", raw.clone());
            }
            cx.change("status", ChangeKind::StatusMapped, Some(raw), to, whole_kept);
        }
        StatusMatch::Qualified(_) => {
            cx.keep_legacy("status", raw.clone());
            cx.change("status", ChangeKind::StatusMapped, Some(raw), to, true);
        }
        StatusMatch::Unmapped => {
            cx.keep_legacy("status", raw.clone());
            cx.change("status", ChangeKind::StatusUnmapped, Some(raw), to, true);
        }
    }
}

fn priority(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("priority") else { return };
    if raw.is_null() {
        return;
    }
    let found = map_priority(&raw);
    let p = found.priority();
    cx.m.insert("priority".into(), json!(p.as_str()));
    let to = Some(json!(p.as_str()));
    match found {
        PriorityMatch::Canonical(_) => {}
        PriorityMatch::Mapped(_) => cx.change("priority", ChangeKind::PriorityMapped, Some(raw), to, false),
        PriorityMatch::Qualified(_) => {
            cx.keep_legacy("priority", raw.clone());
            cx.change("priority", ChangeKind::PriorityMapped, Some(raw), to, true);
        }
        PriorityMatch::Unmapped => {
            cx.keep_legacy("priority", raw.clone());
            cx.change("priority", ChangeKind::PriorityUnmapped, Some(raw), to, true);
        }
    }
}

fn assignee(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("assigned_to") else { return };
    match &raw {
        Value::Null => {}
        Value::String(s) if s.trim().is_empty() => {
            cx.change("assigned_to", ChangeKind::ValueCoerced, Some(raw.clone()), None, false);
        }
        Value::String(s) => match normalise_agent(s) {
            Some(a) if a == *s => {
                cx.m.insert("assigned_to".into(), raw);
            }
            Some(a) => {
                cx.m.insert("assigned_to".into(), json!(a));
                cx.change("assigned_to", ChangeKind::AgentNormalised, Some(raw), Some(json!(a)), false);
            }
            None => {
                cx.keep_legacy("assigned_to", raw.clone());
                cx.change("assigned_to", ChangeKind::AgentUnrecognised, Some(raw), None, true);
            }
        },
        _ => {
            cx.keep_legacy("assigned_to", raw.clone());
            cx.change("assigned_to", ChangeKind::AgentUnrecognised, Some(raw), None, true);
        }
    }
}

fn text_field(cx: &mut Ctx, f: &str) {
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

fn list_field(cx: &mut Ctx, f: &str) {
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

fn time_field(cx: &mut Ctx, f: &str, now: Timestamp) {
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

fn counter(cx: &mut Ctx, f: &str, min: u64, max: u64) {
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

fn history(cx: &mut Ctx) {
    let Some(raw) = cx.m.get("history") else { return };
    if raw.is_null() {
        cx.m.remove("history");
        return;
    }
    if serde_json::from_value::<Vec<HistoryEntry>>(raw.clone()).is_err() {
        cx.move_to_legacy("history", ChangeKind::ValueMovedToLegacy, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Priority, Status};

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn norm(v: Value) -> Normalised {
        normalise_task(&v, now()).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn kinds(n: &Normalised) -> Vec<(String, ChangeKind)> {
        n.changes.iter().map(|c| (c.field.clone(), c.kind)).collect()
    }

    #[test]
    fn canonical_task_is_untouched() {
        let v = json!({"task_id": "T1", "name": "n", "priority": "HIGH", "status": "PENDING", "assigned_to": "Agent-2",
            "created_at": "2025-05-01T10:00:00.000000Z", "depends_on": ["A"], "tags": ["x"], "lead_data": {"k": 1}});
        let n = norm(v.clone());
        assert!(n.changes.is_empty(), "{:?}", n.changes);
        assert!(n.task.history.is_empty());
        assert_eq!(n.task, Task::from_value(v).unwrap());
    }

    #[test]
    fn renames_are_recorded() {
        let n = norm(
            json!({"id": "T1", "title": "t", "dependencies": ["A"], "assigned_agent": "Agent-3", "timestamp_created": "2025-05-01T10:00:00.000000Z", "timestamp_updated": "2025-05-01T10:00:00.000000Z", "injected_by": "captain", "desc": "d"}),
        );
        let t = &n.task;
        assert_eq!(
            (t.task_id.as_str(), t.name.as_deref(), t.description.as_deref()),
            ("T1", Some("t"), Some("d"))
        );
        assert_eq!(t.depends_on, vec!["A"]);
        assert_eq!(t.assigned_to.as_deref(), Some("Agent-3"));
        assert_eq!(t.created_by.as_deref(), Some("captain"));
        assert!(t.created_at.is_some() && t.updated_at.is_some());
        let renamed: Vec<_> = n
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::FieldRenamed)
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(
            renamed,
            [
                "task_id",
                "name",
                "description",
                "assigned_to",
                "created_by",
                "created_at",
                "updated_at",
                "depends_on"
            ]
        );
    }

    #[test]
    fn fields_are_lifted_out_of_metadata() {
        let n = norm(json!({"task_id": "T", "status": {"state": "working", "progress": 0.5},
            "metadata": {"created_by": "x", "created_at": "2025-05-01T10:00:00+00:00", "priority": 2, "points": 3}}));
        assert_eq!(n.task.priority, Priority::High);
        assert_eq!(n.task.created_by.as_deref(), Some("x"));
        assert!(n.task.created_at.is_some());
        assert_eq!(n.task.extra["metadata"], json!({"points": 3}));
        let n = norm(json!({"id": "t", "state": "ready", "meta": {"owner": "agent-2", "prio": "P1"}}));
        assert_eq!(n.task.assigned_to.as_deref(), Some("Agent-2"));
        assert_eq!(n.task.priority, Priority::High);
        assert!(n.changes.iter().any(|c| c.from == Some(json!("meta.owner"))));
    }

    #[test]
    fn an_empty_canonical_field_gives_way_to_a_legacy_spelling() {
        let n = norm(
            json!({"task_id": "T", "depends_on": [], "dependencies": ["A"], "assigned_to": "", "assignee": "agent_4"}),
        );
        assert_eq!(n.task.depends_on, vec!["A"]);
        assert_eq!(n.task.assigned_to.as_deref(), Some("Agent-4"));
        assert!(!n.task.extra.contains_key("dependencies"));
    }

    #[test]
    fn both_spellings_keep_the_canonical_one() {
        let n = norm(json!({"task_id": "T1", "id": "other", "dependencies": ["X"], "depends_on": ["Y"]}));
        assert_eq!(n.task.task_id, "T1");
        assert_eq!(n.task.depends_on, vec!["Y"]);
        assert_eq!(n.task.extra["id"], "other");
        assert_eq!(n.task.extra["dependencies"], json!(["X"]));
    }

    #[test]
    fn ids_with_a_placeholder_inside_are_kept() {
        assert_eq!(
            norm(json!({"task_id": "AGENT2-CLEANUP-{{uuid()}}"})).task.task_id,
            "AGENT2-CLEANUP-{{uuid()}}"
        );
    }

    #[test]
    fn integer_ids_are_stringified() {
        let n = norm(json!({"id": 3, "description": "x"}));
        assert_eq!(n.task.task_id, "3");
        assert!(kinds(&n).contains(&("task_id".into(), ChangeKind::IdStringified)));
    }

    #[test]
    fn unusable_ids_are_errors_naming_the_field() {
        for (v, field) in [
            (json!({"name": "x"}), "task_id"),
            (json!({"id": 1.5}), "id"),
            (json!({"task_id": ""}), "task_id"),
            (json!({"task_id": "{{uuid()}}"}), "task_id"),
            (json!({"id": "[AUTO_UUID]", "status": "x"}), "id"),
            (json!({"id": "a\nb"}), "id"),
            (json!({"task_id": ["x"]}), "task_id"),
        ] {
            let e = normalise_task(&v, now()).unwrap_err();
            assert_eq!(e.field, field, "{v}");
        }
        assert!(normalise_task(&json!([1]), now()).is_err());
    }

    #[test]
    fn unmapped_status_is_pending_with_the_original_kept() {
        let n = norm(json!({"task_id": "T", "status": "DOCUMENTED_WORKAROUND_FOUND"}));
        assert_eq!(n.task.status, Status::Pending);
        assert_eq!(n.task.extra["legacy"]["status"], "DOCUMENTED_WORKAROUND_FOUND");
        assert!(n.changes.iter().any(|c| c.kind == ChangeKind::StatusUnmapped && c.warning));
        assert_eq!(n.warnings().count(), 1);
        let n = norm(json!({"task_id": "T", "status": "done"}));
        assert_eq!(n.task.status, Status::Completed);
        assert!(!n.task.extra.contains_key("legacy"));
        let n = norm(json!({"task_id": "T", "status": {"state": "working", "progress": 0.5}}));
        assert_eq!(n.task.status, Status::InProgress);
        assert_eq!(n.task.extra["legacy"]["status"]["progress"], 0.5);
    }

    #[test]
    fn unmapped_priority_is_medium_with_the_original_kept() {
        let n = norm(json!({"task_id": "T", "priority": "COMPLETE"}));
        assert_eq!(n.task.priority, Priority::Medium);
        assert_eq!(n.task.extra["legacy"]["priority"], "COMPLETE");
        assert!(n.changes.iter().any(|c| c.kind == ChangeKind::PriorityUnmapped && c.warning));
        let n = norm(json!({"task_id": "T", "priority": 2}));
        assert_eq!(n.task.priority, Priority::High);
    }

    #[test]
    fn timestamps_of_every_field() {
        let n = norm(
            json!({"task_id": "T", "created_at": "2025-05-01T10:00:00", "timestamp_claimed_utc": "{{iso_timestamp_utc()}}",
            "completed_at": "2025-05-01T10:00:00+00:00Z", "completion_time": "Ongoing", "estimated_time": "2 hours"}),
        );
        assert_eq!(n.task.created_at, Timestamp::parse_rfc3339("2025-05-01T10:00:00Z"));
        assert_eq!(n.task.extra["timestamp_claimed_utc"], json!(now().to_string()));
        assert_eq!(n.task.extra["completed_at"], "2025-05-01T10:00:00.000000Z");
        assert!(!n.task.extra.contains_key("completion_time"));
        assert_eq!(n.task.extra["legacy"]["completion_time"], "Ongoing");
        assert_eq!(n.task.extra["estimated_time"], "2 hours");
        let k = kinds(&n);
        for want in [
            ("created_at", ChangeKind::TimestampAssumedUtc),
            ("timestamp_claimed_utc", ChangeKind::PlaceholderReplaced),
            ("completed_at", ChangeKind::TimestampReformatted),
            ("completion_time", ChangeKind::TimestampUnparseable),
        ] {
            assert!(k.contains(&(want.0.into(), want.1)), "{want:?} in {k:?}");
        }
        let n = norm(json!({"task_id": "T", "created": "not a time"}));
        assert_eq!(n.task.created_at, None);
        assert_eq!(n.task.extra["legacy"]["created_at"], "not a time");
    }

    #[test]
    fn assignees() {
        let n = norm(json!({"task_id": "T", "assigned_agent": "Agent-8 (Captain)"}));
        assert_eq!(n.task.assigned_to.as_deref(), Some("Agent-8"));
        assert!(kinds(&n).contains(&("assigned_to".into(), ChangeKind::AgentNormalised)));
        let n = norm(json!({"task_id": "T", "assignee": "yall"}));
        assert_eq!(n.task.assigned_to, None);
        assert_eq!(n.task.extra["legacy"]["assigned_to"], "yall");
        assert!(n.changes.iter().any(|c| c.kind == ChangeKind::AgentUnrecognised && c.warning));
    }

    #[test]
    fn wrong_types_are_coerced_or_kept_under_legacy() {
        let n = norm(
            json!({"task_id": "T", "tags": "a, b", "depends_on": [1, {"task_id": "X"}], "name": 5, "description": {"x": 1}, "max_attempts": "4", "attempts": -1, "error": {"code": 1}}),
        );
        let t = &n.task;
        assert_eq!(t.tags, vec!["a", "b"]);
        assert_eq!(t.depends_on, vec!["1", "X"]);
        assert_eq!(t.name.as_deref(), Some("5"));
        assert_eq!(t.description, None);
        assert_eq!(t.extra["legacy"]["description"], json!({"x": 1}));
        assert_eq!(t.max_attempts, 4);
        assert_eq!(t.extra["legacy"]["attempts"], -1);
        assert_eq!(t.error.as_deref(), Some("{\"code\":1}"));
    }

    #[test]
    fn legacy_history_is_kept_aside_and_one_entry_is_appended() {
        let n = norm(
            json!({"task_id": "T", "status": "todo", "history": [{"timestamp": "2025-01-01T00:00:00", "agent": "A", "action": "CREATED"}]}),
        );
        assert_eq!(n.task.extra["legacy"]["history"][0]["agent"], "A");
        assert_eq!(n.task.history.len(), 1);
        let h = &n.task.history[0];
        assert_eq!((h.actor.as_str(), h.action.as_str(), h.timestamp), ("mailroom", "normalise", now()));
        assert_eq!(h.details.as_ref().unwrap()["changes"].as_array().unwrap().len(), n.changes.len());
        let canonical = json!({"task_id": "T", "history": [{"timestamp": "2025-01-01T00:00:00Z", "actor": "a", "action": "claim"}]});
        let n = norm(canonical);
        assert!(n.changes.is_empty());
        assert_eq!(n.task.history.len(), 1);
    }

    #[test]
    fn normalising_twice_changes_nothing_the_second_time() {
        let legacy = json!({"id": 12, "title": "x", "status": "weird", "priority": "P1", "assignee": "i", "created": "2025-05-01 10:00:00",
            "timestamp_claimed_utc": "[NOW_UTC_ISO]", "deadline": "soon", "legacy": "odd", "history": "free text"});
        let once = norm(legacy);
        let twice = norm(once.task.to_value());
        assert!(twice.changes.is_empty(), "{:?}", twice.changes);
        assert_eq!(twice.task, once.task);
    }
}

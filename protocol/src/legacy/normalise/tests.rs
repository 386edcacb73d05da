//! Tests of `normalise_task`, rule by rule.

use super::*;
use crate::task::{Priority, Status};
use serde_json::json;

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
    let renamed: Vec<_> =
        n.changes.iter().filter(|c| c.kind == ChangeKind::FieldRenamed).map(|c| c.field.as_str()).collect();
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

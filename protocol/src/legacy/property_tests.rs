//! Property tests for the lenient front door: arbitrary bytes and values never make any entry
//! point panic, canonical tasks are left alone and normalisation is idempotent; and every table
//! spelling is documented. Legacy files end to end (the fixtures of this repository and the
//! reference corpus) are walked by `protocol/tests/legacy_files/`.

use super::*;
use crate::task::{HistoryEntry, Priority, Status, Task};
use crate::time::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::path::Path;

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

#[test]
fn docs_list_every_table_spelling() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/NORMALISATION.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, _) in STATUS_TABLE {
        assert!(doc.contains(&format!("`{k}`")), "status spelling `{k}` missing from the docs");
    }
    for (k, _) in PRIORITY_TABLE {
        assert!(doc.contains(&format!("`{k}`")), "priority spelling `{k}` missing from the docs");
    }
    for w in NON_AGENT_WORDS.iter().filter(|w| w.len() > 3) {
        let spaced = w.replace('_', "-");
        assert!(doc.contains(*w) || doc.contains(&spaced), "non-agent word `{w}` missing from the docs");
    }
    for k in ChangeKind::ALL {
        assert!(doc.contains(&format!("`{}`", k.as_str())), "change kind {k} missing from the docs");
    }
}

// ---- property tests -------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "task_id",
    "id",
    "taskId",
    "title",
    "name",
    "description",
    "desc",
    "details",
    "type",
    "task_type",
    "status",
    "state",
    "priority",
    "prio",
    "assigned_to",
    "assigned_agent",
    "assignee",
    "owner",
    "claimed_by",
    "created_by",
    "injected_by",
    "created_at",
    "created",
    "timestamp_created",
    "updated_at",
    "last_updated",
    "not_before",
    "deadline",
    "completed_at",
    "timestamp_claimed_utc",
    "estimated_time",
    "depends_on",
    "dependencies",
    "tags",
    "params",
    "result",
    "error",
    "error_message",
    "history",
    "max_attempts",
    "attempts",
    "lease_secs",
    "legacy",
    "sender",
    "recipient",
    "from",
    "to",
    "message",
    "payload",
    "body",
    "tasks",
    "future_tasks",
    "notes",
];

const STRINGS: &[&str] = &[
    "PENDING",
    "todo",
    "Done",
    "TaskStatus.PENDING",
    "BLOCKED_BY_X",
    "weird",
    "HIGH",
    "p1",
    "3",
    "URGENT",
    "Agent-2",
    "agent2",
    "Agent 8 (Captain)",
    "yall",
    "i",
    "ALL",
    "",
    " ",
    "2025-05-01T10:00:00Z",
    "2025-05-01 10:00:00",
    "2025-05-02T19:40:41.9375000-05:00",
    "2025-04-28T22:40:57.123+00:00Z",
    "{{iso_timestamp_utc()}}",
    "[NOW_UTC_ISO]",
    "Ongoing",
    "1747203155.1359084",
    "T-1",
    "x\ny",
    "../etc",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (0i64..6).prop_map(|i| json!(i)),
        (-1000i32..1000).prop_map(|i| json!(f64::from(i) / 4.0)),
        prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS).prop_map(str::to_string), inner.clone()), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            prop::collection::vec(("\\PC{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object shaped like a legacy task: known keys with values from the spelling pools.
fn legacy_task() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("T-1")), (0i64..1000).prop_map(|i| json!(i)), Just(json!("LEAD-X"))],
        prop::sample::select(&["task_id", "id", "taskId"][..]),
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..12),
    )
        .prop_map(|(id, id_key, kv)| {
            let mut m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            for k in ["sender", "recipient", "from", "to", "message"] {
                m.remove(k);
            }
            m.insert(id_key.to_string(), id);
            Value::Object(m)
        })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (946_684_800_000_000i64..4_102_444_800_000_000).prop_map(Timestamp::from_micros)
}

fn canonical_task() -> impl Strategy<Value = Task> {
    let agent = prop_oneof![(1u32..20).prop_map(|n| format!("Agent-{n}")), "Worker-[0-9]{1,3}"];
    (
        (
            "[A-Za-z0-9_-]{1,20}",
            prop::option::of("\\PC{0,20}"),
            prop::option::of("\\PC{0,20}"),
            prop::option::of("[a-z_/]{1,10}"),
        ),
        (
            prop::sample::select(&Priority::ALL[..]),
            prop::sample::select(&Status::ALL[..]),
            prop::option::of(agent),
            prop::option::of("[a-z]{1,8}"),
        ),
        (prop::option::of(timestamp()), prop::option::of(timestamp()), prop::option::of(timestamp())),
        (prop::collection::vec("[A-Z0-9-]{1,8}", 0..3), prop::collection::vec("[a-z]{1,6}", 0..3)),
        (1u32..=1000, any::<u32>(), prop::option::of(1u64..100_000), prop::option::of("\\PC{0,10}")),
        (
            prop::collection::vec((timestamp(), "[a-z]{1,6}", "[a-z]{1,6}"), 0..3),
            prop::collection::btree_map("k[0-9]{1,3}", "\\PC{0,8}", 0..3),
        ),
    )
        .prop_map(
            |(
                (id, name, desc, ty),
                (priority, status, assigned, by),
                (c, u, nb),
                (deps, tags),
                (max, att, lease, err),
                (hist, extra),
            )| {
                let mut t = Task::new(id);
                t.name = name;
                t.description = desc;
                t.task_type = ty;
                t.priority = priority;
                t.status = status;
                t.assigned_to = assigned;
                t.created_by = by;
                t.created_at = c;
                t.updated_at = u;
                t.not_before = nb;
                t.depends_on = deps;
                t.tags = tags;
                t.max_attempts = max;
                t.attempts = att;
                t.lease_secs = lease;
                t.error = err;
                t.params = json!({"p": 1});
                t.history = hist
                    .into_iter()
                    .map(|(timestamp, actor, action)| HistoryEntry {
                        timestamp,
                        actor,
                        action,
                        from: None,
                        to: Some(Status::Pending),
                        details: None,
                    })
                    .collect();
                t.extra = extra.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                t
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_lenient_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_lenient(&bytes);
    }

    #[test]
    fn parse_lenient_never_panics_on_jsonish_text(s in "[\\[\\]{}\"',:#/*a-zTFN_0-9 \\n\\t<>=|.$()\\\\-]{0,300}") {
        if let Err(e) = parse_lenient(s.as_bytes()) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(!e.rule.is_empty());
        }
    }

    #[test]
    fn strict_json_is_read_unchanged(v in value()) {
        let text = serde_json::to_string_pretty(&v).unwrap();
        let l = parse_lenient(text.as_bytes()).unwrap();
        prop_assert_eq!(l.value, v);
        prop_assert!(l.repairs.is_empty());
    }

    #[test]
    fn entry_points_never_panic_on_values(v in value()) {
        let _ = normalise_task(&v, now());
        let _ = normalise_mail(&v, now());
        if let Ok(ex) = extract_tasks(&v) {
            for t in &ex.tasks {
                let _ = normalise_task(t, now());
            }
        }
    }

    #[test]
    fn canonical_tasks_are_left_alone(t in canonical_task()) {
        let n = normalise_task(&t.to_value(), now()).unwrap();
        prop_assert!(n.changes.is_empty(), "{:?}", n.changes);
        prop_assert_eq!(n.task, t);
    }

    #[test]
    fn normalisation_is_idempotent(v in legacy_task()) {
        if let Ok(once) = normalise_task(&v, now()) {
            let later = now().plus_secs(60);
            let twice = normalise_task(&once.task.to_value(), later).unwrap();
            prop_assert!(twice.changes.is_empty(), "{:?}", twice.changes);
            prop_assert_eq!(twice.task, once.task);
        }
    }
}

//! Corpus and property tests for the lenient front door: the real legacy corpus (when present)
//! is walked end to end, and arbitrary bytes and values never make any entry point panic.

use super::*;
use crate::task::{HistoryEntry, Priority, Status, Task};
use crate::time::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST")) {
            out.push(p);
        }
    }
}

/// A reason, without the details that differ from file to file, for grouping.
fn group(reason: &str) -> String {
    let cut = reason.find(" (").unwrap_or(reason.len());
    reason[..cut].to_string()
}

#[derive(Default)]
struct Figures {
    files: usize,
    files_with_tasks: usize,
    tasks_seen: usize,
    tasks_accepted: usize,
    tasks_with_warnings: usize,
    messages_accepted: usize,
    changes: BTreeMap<&'static str, usize>,
    warnings: BTreeMap<&'static str, usize>,
    warning_values: BTreeMap<String, usize>,
    repairs: BTreeMap<String, usize>,
    shapes: BTreeMap<String, usize>,
    file_reasons: BTreeMap<String, usize>,
    task_failures: BTreeMap<String, usize>,
}

/// Runs one file through the front door; returns (tasks accepted, reason when none).
fn account(bytes: &[u8], f: &mut Figures) -> (usize, Option<String>) {
    let parsed = match parse_lenient(bytes) {
        Ok(p) => p,
        Err(e) => return (0, Some(format!("unreadable: {}", e.rule))),
    };
    for r in &parsed.repairs {
        let key = r.split([':', '(']).next().unwrap_or(r).trim().to_string();
        *f.repairs.entry(key).or_default() += 1;
    }
    match extract_tasks(&parsed.value) {
        Ok(ex) => {
            let shape = match &ex.shape {
                Shape::Wrapper(p) => format!("wrapper `{p}`"),
                other => format!("{other:?}"),
            };
            *f.shapes.entry(group(&shape)).or_default() += 1;
            let mut accepted = 0;
            let mut last_err = None;
            for t in &ex.tasks {
                f.tasks_seen += 1;
                match normalise_task(t, now()) {
                    Ok(n) => {
                        accepted += 1;
                        let again = normalise_task(&n.task.to_value(), now()).unwrap();
                        assert!(
                            again.changes.is_empty(),
                            "not idempotent on {}: {:?}",
                            n.task.task_id,
                            again.changes
                        );
                        if n.changes.iter().any(|c| c.warning) {
                            f.tasks_with_warnings += 1;
                        }
                        for c in &n.changes {
                            *f.changes.entry(c.kind.as_str()).or_default() += 1;
                            if c.kind == ChangeKind::ValueMovedToLegacy {
                                *f.warning_values
                                    .entry(format!("(moved aside, by field) {}", c.field))
                                    .or_default() += 1;
                            }
                            if c.warning {
                                *f.warnings.entry(c.kind.as_str()).or_default() += 1;
                                let from = c.from.as_ref().map(|v| v.to_string()).unwrap_or_default();
                                let from: String = from.chars().take(60).collect();
                                *f.warning_values
                                    .entry(format!("{} {}: {from}", c.kind.as_str(), c.field))
                                    .or_default() += 1;
                            }
                        }
                    }
                    Err(e) => {
                        let why = format!("task refused: `{}` {}", e.field, group(&e.rule));
                        *f.task_failures.entry(why.clone()).or_default() += 1;
                        last_err = Some(why);
                    }
                }
            }
            f.tasks_accepted += accepted;
            if accepted > 0 {
                (accepted, None)
            } else if let Some(e) = last_err {
                (0, Some(e))
            } else {
                (0, Some(format!("empty task collection ({shape})")))
            }
        }
        Err(why) => {
            let messages: Vec<&Value> = match &parsed.value {
                Value::Array(items) if items.iter().all(is_message_like) => items.iter().collect(),
                v if is_message_like(v) => vec![v],
                _ => vec![],
            };
            if messages.is_empty() {
                return (0, Some(why));
            }
            let mut refused = None;
            for m in messages {
                match normalise_mail(m, now()) {
                    Ok(_) => f.messages_accepted += 1,
                    Err(e) => refused = Some(format!("message refused: `{}` {}", e.field, group(&e.rule))),
                }
            }
            (0, Some(refused.unwrap_or_else(|| "mailbox message (normalised as mail)".to_string())))
        }
    }
}

#[test]
fn corpus_every_file_is_accounted_for() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dreamos");
    if !dir.is_dir() {
        println!("corpus not found at {}: skipped", dir.display());
        return;
    }
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut f = Figures::default();
    for p in &files {
        let bytes = std::fs::read(p).unwrap();
        f.files += 1;
        let (tasks, reason) = account(&bytes, &mut f);
        let rel = p.strip_prefix(&dir).unwrap_or(p).display().to_string();
        match (tasks, reason) {
            (n, None) if n > 0 => f.files_with_tasks += 1,
            (_, Some(r)) => {
                assert!(!r.trim().is_empty(), "{rel}: empty reason");
                *f.file_reasons.entry(group(&r)).or_default() += 1;
                println!("  no tasks  {rel}: {r}");
            }
            (_, None) => panic!("{rel}: neither tasks nor a reason"),
        }
    }
    println!(
        "\ncorpus: {} files; {} with tasks; {} task objects seen, {} accepted ({} with warnings); {} mailbox messages normalised",
        f.files,
        f.files_with_tasks,
        f.tasks_seen,
        f.tasks_accepted,
        f.tasks_with_warnings,
        f.messages_accepted
    );
    println!("shapes:");
    f.shapes.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("repairs:");
    f.repairs.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("changes by kind (warnings):");
    for (k, v) in &f.changes {
        println!("  {v:5}  {k} ({})", f.warnings.get(k).copied().unwrap_or(0));
    }
    println!("warnings, by value:");
    f.warning_values.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("files without tasks, by reason:");
    f.file_reasons.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("tasks refused, by reason:");
    f.task_failures.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    assert_eq!(f.files_with_tasks + f.file_reasons.values().sum::<usize>(), f.files);
    assert!(f.tasks_accepted > 0);
}

#[test]
fn docs_list_every_table_spelling() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/NORMALISATION.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        println!("{} not found: skipped", path.display());
        return;
    };
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

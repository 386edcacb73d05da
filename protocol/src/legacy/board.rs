//! Board shapes: where the task objects are in a parsed legacy file, or why it holds none.

use super::mail::{FROM_FIELDS, TO_FIELDS};
use serde_json::{Map, Value};

/// Legacy spellings of a task's id, in the order they are looked for.
pub(crate) const ID_FIELDS: &[&str] = &["task_id", "taskId", "id", "contract_id"];

/// Fields that say "this object is a piece of work" (an `id` alone does not).
const TASK_EVIDENCE: &[&str] = &[
    "status",
    "state",
    "task_status",
    "description",
    "desc",
    "title",
    "action",
    "task_type",
    "dependencies",
    "depends_on",
    "deps",
    "assigned_to",
    "assigned_agent",
    "assigned_agent_id",
    "assignee",
    "agent_assigned",
];

/// How deep [`extract_tasks`] looks for task collections inside wrapper objects.
const MAX_DEPTH: usize = 3;

/// What shape a parsed legacy file has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The file is one task object.
    SingleTask,
    /// The file is a JSON list of tasks (a PBM board).
    List,
    /// An object keyed by task id, each value a task (`{"T-1": {...}, "T-2": {...}}`).
    DictById,
    /// An object holding task collections under one or more key paths, comma-separated in file
    /// order: `tasks`, `future_tasks`, `current_task, completed_tasks`, `agents.Agent-1.tasks`.
    Wrapper(String),
}

/// The task objects found in a file, ready for [`super::normalise_task`].
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub shape: Shape,
    /// For dict-by-id collections, the key is injected as `task_id` when the value has no id.
    pub tasks: Vec<Value>,
    /// Entries of a task collection that are not tasks: (where, why).
    pub skipped: Vec<(String, String)>,
}

fn has_any(o: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
}

fn has_id(o: &Map<String, Value>) -> bool {
    has_any(o, ID_FIELDS)
}

/// A mailbox message: it names a sender or a recipient, or carries a `message_id`, or wraps
/// such an object under `message`.
pub fn is_message_like(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    has_any(o, FROM_FIELDS)
        || has_any(o, TO_FIELDS)
        || o.contains_key("message_id")
        || o.get("message")
            .and_then(Value::as_object)
            .is_some_and(|m| has_any(m, FROM_FIELDS) || has_any(m, TO_FIELDS))
}

/// A task object: it has `task_id`, or another id spelling together with a field that only
/// work items have (status, description, assignee...), and it is not a mailbox message.
pub fn is_task_like(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    if is_message_like(v) {
        return false;
    }
    has_any(o, &ID_FIELDS[..2]) || (has_id(o) && has_any(o, TASK_EVIDENCE))
}

/// A task object that lacks only its id (a value of a dict keyed by id).
fn is_task_without_id(v: &Value) -> bool {
    v.as_object().is_some_and(|o| has_any(o, TASK_EVIDENCE) && !holds_collection(o)) && !is_message_like(v)
}

/// Does this object itself hold task collections (then it is a container, not a task)?
fn holds_collection(o: &Map<String, Value>) -> bool {
    o.iter().any(|(k, v)| {
        k.to_ascii_lowercase().contains("task")
            && match v {
                Value::Array(a) => a.iter().any(Value::is_object),
                Value::Object(m) => m.values().any(Value::is_object),
                _ => false,
            }
    })
}

/// Is this object a dict keyed by task id? Every value is an object and most are tasks.
fn is_dict_by_id(o: &Map<String, Value>) -> bool {
    if o.is_empty() || !o.values().all(Value::is_object) {
        return false;
    }
    let tasks = o.values().filter(|v| is_task_like(v) || is_task_without_id(v)).count();
    tasks * 2 > o.len()
}

/// A list under a task-ish key is a task collection when it is empty or holds objects (a list of
/// strings under `task_categories` is not).
fn is_collection_list(k: &str, items: &[Value]) -> bool {
    looks_like_collection_key(k)
        && (items.is_empty() || items.iter().any(Value::is_object))
        && !items.iter().any(is_message_like)
}

fn looks_like_collection_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("task") || k.contains("contract") || k == "items" || k == "backlog" || k == "queue"
}

struct Found {
    paths: Vec<String>,
    tasks: Vec<Value>,
    skipped: Vec<(String, String)>,
    messages: usize,
}

fn with_id(key: &str, v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut()
        && !has_id(o)
    {
        o.insert("task_id".into(), Value::String(key.to_string()));
    }
    v
}

fn why_not_task(v: &Value) -> String {
    match v {
        Value::Object(_) if is_message_like(v) => "a mailbox message, not a task".to_string(),
        Value::Object(o) if !has_id(o) => "an object with no task id (task_id or id)".to_string(),
        Value::Object(_) => "an object with an id but no task fields (status, description, ...)".to_string(),
        other => format!("a {} where a task object belongs", kind(other)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn collect_list(path: &str, items: &[Value], found: &mut Found) {
    for (i, item) in items.iter().enumerate() {
        if is_task_like(item) {
            found.tasks.push(item.clone());
        } else {
            if is_message_like(item) {
                found.messages += 1;
            }
            found.skipped.push((format!("{path}[{i}]"), why_not_task(item)));
        }
    }
}

fn collect_dict(path: &str, o: &Map<String, Value>, found: &mut Found) {
    for (k, v) in o {
        if is_task_like(v) || is_task_without_id(v) {
            found.tasks.push(with_id(k, v));
        } else {
            found.skipped.push((join(path, k), why_not_task(v)));
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }
}

fn search(path: &str, o: &Map<String, Value>, depth: usize, found: &mut Found) {
    for (k, v) in o {
        let p = join(path, k);
        match v {
            Value::Array(items) if items.iter().any(is_task_like) || is_collection_list(k, items) => {
                found.paths.push(p.clone());
                collect_list(&p, items, found);
            }
            Value::Array(items) => {
                found.messages += items.iter().filter(|i| is_message_like(i)).count();
            }
            Value::Object(_) if is_task_like(v) => {
                found.paths.push(p);
                found.tasks.push(v.clone());
            }
            Value::Object(_) if is_message_like(v) => found.messages += 1,
            Value::Object(m) if is_dict_by_id(m) => {
                found.paths.push(p.clone());
                collect_dict(&p, m, found);
            }
            Value::Object(m) if m.is_empty() && looks_like_collection_key(k) => {
                found.paths.push(p);
            }
            Value::Object(m) if depth < MAX_DEPTH => search(&p, m, depth + 1, found),
            _ => {}
        }
    }
}

/// Finds the task objects in a parsed legacy file. `Err` says why the file is not a task file
/// (a mailbox message, a JSON Schema, a list of messages, an object with no tasks), so that an
/// importer can quarantine it with that reason. An empty list is an empty board: `Ok` with no
/// tasks.
pub fn extract_tasks(v: &Value) -> Result<Extracted, String> {
    let not = |why: String| Err(format!("not a task file: {why}"));
    match v {
        Value::Array(items) => {
            let mut found = Found { paths: vec![], tasks: vec![], skipped: vec![], messages: 0 };
            collect_list("", items, &mut found);
            if found.tasks.is_empty() && !items.is_empty() {
                if found.messages == items.len() {
                    return not(format!("a list of {} mailbox messages", items.len()));
                }
                return not(format!(
                    "a list of {} items, none of them a task (first: {})",
                    items.len(),
                    why_not_task(&items[0])
                ));
            }
            Ok(Extracted { shape: Shape::List, tasks: found.tasks, skipped: found.skipped })
        }
        Value::Object(o) => {
            if o.contains_key("$schema")
                || (o.get("type") == Some(&Value::String("object".into())) && o.contains_key("properties"))
            {
                return not("a JSON Schema document".into());
            }
            if is_task_like(v) {
                return Ok(Extracted { shape: Shape::SingleTask, tasks: vec![v.clone()], skipped: vec![] });
            }
            if is_message_like(v) {
                let key = FROM_FIELDS
                    .iter()
                    .chain(TO_FIELDS)
                    .find(|k| o.contains_key(**k))
                    .copied()
                    .unwrap_or("message_id");
                return not(format!("a mailbox message (has `{key}`)"));
            }
            if is_dict_by_id(o) {
                let mut found = Found { paths: vec![], tasks: vec![], skipped: vec![], messages: 0 };
                collect_dict("", o, &mut found);
                return Ok(Extracted { shape: Shape::DictById, tasks: found.tasks, skipped: found.skipped });
            }
            let mut found = Found { paths: vec![], tasks: vec![], skipped: vec![], messages: 0 };
            search("", o, 1, &mut found);
            if !found.paths.is_empty() {
                return Ok(Extracted {
                    shape: Shape::Wrapper(found.paths.join(", ")),
                    tasks: found.tasks,
                    skipped: found.skipped,
                });
            }
            if found.messages > 0 {
                let s = if found.messages == 1 { "" } else { "s" };
                return not(format!("holds {} mailbox message{s} and no tasks", found.messages));
            }
            if has_any(o, TASK_EVIDENCE) {
                return not("an object with task fields but no task id (task_id or id)".into());
            }
            if has_id(o) {
                return not(
                    "an object with an id but no task fields (status, description, assignee, ...)".into()
                );
            }
            let keys: Vec<&str> = o.keys().take(6).map(String::as_str).collect();
            let more = if o.len() > 6 { ", ..." } else { "" };
            not(format!("no task id and no task collection (keys: {}{more})", keys.join(", ")))
        }
        other => not(format!("the document is a {}, not an object or a list", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Extracted {
        extract_tasks(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    #[test]
    fn single_task() {
        let e = ok(json!({"task_id": "T1", "name": "x"}));
        assert_eq!(e.shape, Shape::SingleTask);
        assert_eq!(e.tasks.len(), 1);
        let e = ok(json!({"id": 7, "desc": "x"}));
        assert_eq!(e.shape, Shape::SingleTask);
    }

    #[test]
    fn list_board_skips_non_tasks_with_reasons() {
        let e = ok(json!([{"task_id": "A"}, {"task_id": "B", "status": "todo"}, "junk", {"note": 1}]));
        assert_eq!(e.shape, Shape::List);
        assert_eq!(e.tasks.len(), 2);
        assert_eq!(e.skipped.len(), 2);
        assert_eq!(e.skipped[0].0, "[2]");
        assert!(e.skipped[0].1.contains("string"));
        assert!(e.skipped[1].1.contains("no task id"));
    }

    #[test]
    fn empty_list_is_an_empty_board() {
        let e = ok(json!([]));
        assert_eq!((e.shape, e.tasks.len()), (Shape::List, 0));
    }

    #[test]
    fn dict_keyed_by_id_injects_the_key() {
        let e = ok(
            json!({"T-1": {"name": "a", "status": "PENDING"}, "T-2": {"task_id": "T-2", "status": "done"}}),
        );
        assert_eq!(e.shape, Shape::DictById);
        assert_eq!(e.tasks[0]["task_id"], "T-1");
        assert_eq!(e.tasks[1]["task_id"], "T-2");
    }

    #[test]
    fn wrappers() {
        let e = ok(json!({"tasks": [{"task_id": "A"}], "last_updated": "2025-01-01"}));
        assert_eq!(e.shape, Shape::Wrapper("tasks".into()));
        let e = ok(json!({"agent_id": "Agent-1", "future_tasks": [{"task_id": "A", "title": "t"}]}));
        assert_eq!(e.shape, Shape::Wrapper("future_tasks".into()));
        let e = ok(
            json!({"agent_id": "Agent-1", "current_task": {"task_id": "C", "status": "x"}, "completed_tasks": [{"task_id": "D"}]}),
        );
        assert_eq!(e.shape, Shape::Wrapper("current_task, completed_tasks".into()));
        assert_eq!(e.tasks.len(), 2);
        let e = ok(json!({"Agent-7": [{"id": "Y-8", "desc": "d"}], "Agent-8": [{"id": "P-9", "desc": "d"}]}));
        assert_eq!(e.shape, Shape::Wrapper("Agent-7, Agent-8".into()));
        let e = ok(
            json!({"agents": {"Agent-1": {"status": "ok", "tasks": {"T1": {"description": "x", "status": "done"}}}}}),
        );
        assert_eq!(e.shape, Shape::Wrapper("agents.Agent-1.tasks".into()));
        assert_eq!(e.tasks[0]["task_id"], "T1");
        let e = ok(json!({"tasks": [], "last_updated": "2025-07-02T07:36:55Z"}));
        assert_eq!((e.shape, e.tasks.len()), (Shape::Wrapper("tasks".into()), 0));
    }

    #[test]
    fn not_task_files_say_why() {
        let cases = [
            (json!({"sender": "Agent-1", "recipient": "Agent-2", "body": "hi"}), "mailbox message"),
            (json!({"from": "a", "to": "b", "task_id": "T"}), "mailbox message"),
            (json!({"$schema": "x", "properties": {}}), "JSON Schema"),
            (
                json!([{"sender": "a", "recipient": "b"}, {"sender": "a", "to": "c"}]),
                "list of 2 mailbox messages",
            ),
            (
                json!({"status": "x", "messages": [{"message_id": "m", "sender": "a"}]}),
                "holds 1 mailbox message and",
            ),
            (json!({"agent_id": "Agent-2", "claimed_by": "p", "status": "ACTIVE"}), "no task id"),
            (json!({"pid": 1, "operation": "x"}), "keys: pid, operation"),
            (json!({"id": "1747.1", "content": "x", "priority": 0}), "an id but no task fields"),
            (json!({"task_categories": ["a", "b"], "n": 1}), "no task collection"),
            (json!({"Agent-1": {"id": "Agent-1", "capabilities": []}}), "no task collection"),
            (json!("text"), "string"),
            (json!([1, 2]), "none of them a task"),
        ];
        for (v, why) in cases {
            let e = extract_tasks(&v).unwrap_err();
            assert!(e.starts_with("not a task file: "), "{e}");
            assert!(e.contains(why), "{v}: {e}");
        }
    }
}

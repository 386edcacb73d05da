//! JSON Schemas of the canonical task and of every message kind (printed by `mailroom schema`).

use serde_json::{Value, json};

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time", "description": "RFC 3339, UTC"})
}

fn agent() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "description": "agent name (case-sensitive, no `..`)"})
}

/// The canonical task.
pub fn task() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mailroom task",
        "type": "object",
        "required": ["task_id"],
        "additionalProperties": true,
        "properties": {
            "task_id": {"type": ["string", "integer"], "minLength": 1, "maxLength": crate::task::MAX_TASK_ID_LEN},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "task_type": {"type": "string"},
            "priority": {"enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"], "default": "MEDIUM"},
            "status": {"enum": ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "BLOCKED", "CANCELLED"], "default": "PENDING"},
            "assigned_to": agent(),
            "created_by": {"type": "string"},
            "created_at": timestamp(),
            "updated_at": timestamp(),
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "params": {},
            "not_before": timestamp(),
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 3},
            "attempts": {"type": "integer", "minimum": 0},
            "lease_secs": {"type": "integer", "minimum": 1, "description": "default 300"},
            "result": {},
            "error": {"type": "string"},
            "history": {"type": "array", "items": {
                "type": "object",
                "required": ["timestamp", "actor", "action"],
                "properties": {
                    "timestamp": timestamp(), "actor": {"type": "string"}, "action": {"type": "string"},
                    "from": {"type": "string"}, "to": {"type": "string"}, "details": {}
                }
            }}
        }
    })
}

fn kind(name: &str, required: &[&str], props: Value) -> Value {
    let mut req = vec![json!("kind")];
    req.extend(required.iter().map(|r| json!(r)));
    let mut props = props;
    props["kind"] = json!({"const": name});
    json!({"title": format!("{name} message"), "type": "object", "required": req, "properties": props})
}

/// Every message kind, keyed by kind, plus the notices and mail the broker delivers.
pub fn messages() -> Value {
    json!({
        "submit": kind("submit", &["task"], json!({"task": task()})),
        "complete": kind("complete", &["agent", "claim"], json!({"agent": agent(), "claim": {"type": "string"}, "result": {}})),
        "fail": kind("fail", &["agent", "claim"], json!({"agent": agent(), "claim": {"type": "string"}, "error": {"type": "string"}, "retryable": {"type": "boolean", "default": true}})),
        "release": kind("release", &["agent", "claim"], json!({"agent": agent(), "claim": {"type": "string"}})),
        "cancel": kind("cancel", &["task_id"], json!({"task_id": {"type": ["string", "integer"]}})),
        "retry": kind("retry", &["task_id"], json!({"task_id": {"type": ["string", "integer"]}})),
        "send": kind("send", &["from", "to"], json!({"from": agent(), "to": agent(), "subject": {"type": "string"}, "body": {}})),
        "notice": kind("notice", &["notice", "timestamp", "reason"], json!({
            "notice": {"enum": ["rejected", "stale", "cancelled", "lease_expired"]},
            "timestamp": timestamp(), "task_id": {"type": "string"}, "claim": {"type": "string"},
            "reason": {"type": "string"}, "message": {}
        })),
        "mail": kind("mail", &["from", "to", "body", "sent_at"], json!({"from": agent(), "to": agent(), "subject": {"type": "string"}, "body": {}, "sent_at": timestamp()})),
    })
}

/// Both schemas in one document.
pub fn all() -> Value {
    json!({"task": task(), "messages": messages()})
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_lists_every_canonical_field_and_message_kind() {
        let all = super::all();
        for f in crate::task::CANONICAL_FIELDS {
            assert!(all["task"]["properties"].get(*f).is_some(), "{f} missing from schema");
        }
        for k in ["submit", "complete", "fail", "release", "cancel", "retry", "send"] {
            assert_eq!(all["messages"][k]["properties"]["kind"]["const"], k);
        }
    }
}

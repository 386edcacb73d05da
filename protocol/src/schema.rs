//! JSON Schemas of the canonical task and of every message kind (printed by `mailroom schema`),
//! derived with `schemars` from the types themselves: [`Task`], [`Message`] (one schema per
//! variant), [`Notice`] and [`Mail`]. Nothing here lists fields or kinds by hand.

use crate::message::{Mail, Message, Notice};
use crate::names::{AGENT_PATTERN, RECIPIENT_PATTERN};
use crate::task::{MAX_TASK_ID_LEN, Task};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

/// The schema of an agent name (the rules are [`crate::names::validate_agent`]). A type only so
/// that fields holding agent names can say `#[schemars(with = "AgentName")]`.
#[derive(JsonSchema)]
#[schemars(inline, description = "agent name (case-sensitive, no `..`)")]
#[allow(dead_code, reason = "never built: only its schema is used")]
pub(crate) struct AgentName(#[schemars(pattern(AGENT_PATTERN))] String);

/// The schema of a mail address: an agent name, `ALL` or `@group` (the rules are
/// [`crate::names::Recipient::parse`]).
#[derive(JsonSchema)]
#[schemars(
    inline,
    description = "an agent name, `ALL` (every agent but the sender) or `@group` (a `[groups]` entry of mailroom.toml)"
)]
#[allow(dead_code, reason = "never built: only its schema is used")]
pub(crate) struct Address(#[schemars(pattern(RECIPIENT_PATTERN))] String);

/// The schema of a task id where one is read: a string, or an integer that becomes its decimal
/// string (see [`crate::task::validate_task_id`]).
pub(crate) fn task_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "integer"],
        "minLength": 1,
        "maxLength": MAX_TASK_ID_LEN,
        "description": "an integer is accepted and becomes its decimal string; no control characters",
    })
}

/// Turns the `oneOf` of documented string constants that schemars derives for a unit enum whose
/// variants have doc comments into a plain `enum`, the same shape as the undocumented enums
/// (priority, status): the variants' docs move into the description.
pub(crate) fn described_enum(schema: &mut Schema) {
    let Some(Value::Array(variants)) = schema.remove("oneOf") else { return };
    let mut values = Vec::new();
    let mut notes = Vec::new();
    for v in variants {
        let Some(value) = v.get("const").cloned() else { continue };
        if let Some(doc) = v.get("description").and_then(Value::as_str) {
            notes.push(format!("`{}`: {doc}", value.as_str().unwrap_or_default()));
        }
        values.push(value);
    }
    let head = schema.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
    let description = [head, notes.join(" ")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    schema.insert("type".into(), "string".into());
    schema.insert("enum".into(), values.into());
    if !description.is_empty() {
        schema.insert("description".into(), description.join(" ").into());
    }
}

/// Every subschema written in place, so that each schema printed stands on its own.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator()
}

/// The same object with its `$schema`, `title` and `description` first, for a human reader.
fn headed(v: Value) -> Value {
    let Value::Object(mut rest) = v else { return v };
    let mut out = Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(x) = rest.shift_remove(key) {
            out.insert(key.into(), x);
        }
    }
    out.extend(rest);
    Value::Object(out)
}

/// The canonical task.
pub fn task() -> Value {
    headed(generator().into_root_schema_for::<Task>().to_value())
}

/// The schema of each variant of [`Message`], keyed by its kind, in declaration order.
fn message_kinds() -> Map<String, Value> {
    let mut all = generator().into_root_schema_for::<Message>().to_value();
    let variants = match all.get_mut("oneOf").map(Value::take) {
        Some(Value::Array(variants)) => variants,
        _ => Vec::new(),
    };
    variants
        .into_iter()
        .filter_map(|mut v| {
            let kind = v["properties"]["kind"]["const"].as_str()?.to_string();
            v["title"] = format!("{kind} message").into();
            Some((kind, headed(v)))
        })
        .collect()
}

/// A delivered object's schema (notice, mail), titled like the messages.
fn delivered<T: JsonSchema>(kind: &str) -> Value {
    let mut v = generator().into_root_schema_for::<T>().to_value();
    if let Value::Object(m) = &mut v {
        m.remove("$schema");
        m.insert("title".into(), format!("{kind} message").into());
    }
    headed(v)
}

/// Every message kind, keyed by kind, plus the notices and mail the broker delivers.
pub fn messages() -> Value {
    let mut kinds = message_kinds();
    kinds.insert("notice".into(), delivered::<Notice>("notice"));
    kinds.insert("mail".into(), delivered::<Mail>("mail"));
    Value::Object(kinds)
}

/// Both schemas in one document.
pub fn all() -> Value {
    serde_json::json!({"task": task(), "messages": messages()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::samples;
    use crate::task::{CANONICAL_FIELDS, Priority, Status};

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    }

    #[test]
    fn schema_lists_every_canonical_field_and_message_kind() {
        let all = super::all();
        let props = all["task"]["properties"].as_object().unwrap();
        for f in CANONICAL_FIELDS {
            assert!(props.get(*f).is_some(), "{f} missing from schema");
        }
        for f in props.keys() {
            assert!(CANONICAL_FIELDS.contains(&f.as_str()), "{f} is in the schema but not CANONICAL_FIELDS");
        }
        for k in Message::kinds() {
            assert_eq!(all["messages"][k]["properties"]["kind"]["const"], *k);
            assert_eq!(all["messages"][k]["title"], format!("{k} message"));
        }
        let mut listed: Vec<&str> = all["messages"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(listed.split_off(Message::kinds().len()), ["notice", "mail"]);
        assert_eq!(listed, Message::kinds());
        assert_eq!(all["messages"]["notice"]["properties"]["kind"]["const"], "notice");
        assert_eq!(all["messages"]["mail"]["properties"]["kind"]["const"], "mail");
    }

    /// A field is in a kind's `required` exactly when the parser refuses the message without it.
    #[test]
    fn required_fields_are_the_ones_the_parser_requires() {
        let messages = messages();
        for kind in Message::kinds() {
            let schema = &messages[kind];
            let required = strings(&schema["required"]);
            assert_eq!(required.first(), Some(&"kind"), "{kind}");
            let Value::Object(full) = samples::of(kind).to_value() else { panic!("{kind}") };
            for field in schema["properties"].as_object().unwrap().keys().filter(|f| *f != "kind") {
                let mut without = full.clone();
                without.shift_remove(field);
                let refused = Message::from_value(Value::Object(without)).err();
                assert_eq!(
                    refused.as_ref().map(|e| (e.field.as_str(), e.rule.starts_with("is required"))),
                    required.contains(&field.as_str()).then_some((field.as_str(), true)),
                    "{kind}.{field}"
                );
            }
        }
    }

    #[test]
    fn what_a_reader_relies_on_is_there() {
        let all = super::all();
        let task = &all["task"];
        let p = &task["properties"];
        assert_eq!(task["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(strings(&task["required"]), ["task_id"]);
        assert_eq!(task["additionalProperties"], true);
        assert_eq!(strings(&p["priority"]["enum"]), Priority::ALL.map(Priority::as_str));
        assert_eq!(p["priority"]["default"], "MEDIUM");
        assert_eq!(strings(&p["status"]["enum"]), Status::ALL.map(Status::as_str));
        assert_eq!(p["max_attempts"]["minimum"], 1);
        assert_eq!(p["max_attempts"]["maximum"], 1000);
        assert_eq!(p["max_attempts"]["default"], 3);
        assert_eq!(p["lease_secs"]["minimum"], 1);
        assert_eq!(p["assigned_to"]["pattern"], AGENT_PATTERN);
        for t in ["created_at", "updated_at", "not_before"] {
            assert_eq!(p[t]["format"], "date-time", "{t}");
        }
        assert_eq!(p["history"]["items"]["properties"]["timestamp"]["format"], "date-time");
        assert_eq!(strings(&p["history"]["items"]["required"]), ["timestamp", "actor", "action"]);
        let m = &all["messages"];
        for id in [&p["task_id"], &m["cancel"]["properties"]["task_id"], &m["retry"]["properties"]["task_id"]]
        {
            assert_eq!(strings(&id["type"]), ["string", "integer"]);
            assert_eq!(id["maxLength"], crate::task::MAX_TASK_ID_LEN);
        }
        assert_eq!(m["submit"]["properties"]["task"]["properties"], *p);
        for (kind, field) in
            [("complete", "agent"), ("fail", "agent"), ("release", "agent"), ("send", "from")]
                .into_iter()
                .chain([("mail", "from"), ("mail", "to")])
        {
            assert_eq!(m[kind]["properties"][field]["pattern"], AGENT_PATTERN, "{kind}.{field}");
        }
        assert_eq!(m["send"]["properties"]["to"]["pattern"], RECIPIENT_PATTERN);
        assert_eq!(m["fail"]["properties"]["retryable"]["default"], true);
        assert_eq!(m["fail"]["properties"]["error"]["default"], "failed");
        let notice = &m["notice"]["properties"];
        assert_eq!(
            strings(&notice["notice"]["enum"]),
            ["rejected", "stale", "cancelled", "lease_expired", "refused"]
        );
        assert_eq!(notice["timestamp"]["format"], "date-time");
        assert_eq!(m["mail"]["properties"]["sent_at"]["format"], "date-time");
        assert_eq!(strings(&m["notice"]["required"]), ["kind", "notice", "timestamp", "reason"]);
        assert_eq!(strings(&m["mail"]["required"]), ["kind", "from", "to", "body", "sent_at"]);
    }

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::options().should_validate_formats(true).build(schema).expect("a usable schema")
    }

    fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
        v.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
    }

    #[test]
    fn every_schema_is_a_valid_draft_2020_12_schema() {
        let all = super::all();
        jsonschema::meta::validate(&all["task"]).unwrap();
        for (kind, schema) in all["messages"].as_object().unwrap() {
            jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn what_mailroom_writes_fits_its_schema() {
        let all = super::all();
        for kind in Message::kinds() {
            let v = validator(&all["messages"][kind]);
            let m = samples::of(kind).to_value();
            assert_eq!(errors(&v, &m), Vec::<String>::new(), "{kind}: {m}");
            let mut wrong = m.clone();
            wrong["kind"] = "explode".into();
            assert!(!v.is_valid(&wrong), "{kind} accepts another kind");
        }

        let now = crate::Timestamp::from_micros(1_764_000_000_000_000);
        let mut task = Task::from_value(serde_json::json!({
            "task_id": "T-1", "name": "n", "description": "d", "task_type": "build", "priority": "HIGH",
            "status": "IN_PROGRESS", "assigned_to": "Agent-1", "created_by": "cron", "depends_on": ["T-0"],
            "tags": ["x"], "params": {"a": [1]}, "max_attempts": 5, "attempts": 1, "lease_secs": 60,
            "result": null, "error": "boom", "lead_data": {"kept": true},
        }))
        .unwrap();
        (task.created_at, task.updated_at, task.not_before) = (Some(now), Some(now), Some(now));
        task.history.push(crate::HistoryEntry {
            timestamp: now,
            actor: "broker".into(),
            action: "claim".into(),
            from: Some(crate::Status::Pending),
            to: Some(crate::Status::InProgress),
            details: Some(serde_json::json!({"claim": "c"})),
        });
        let task_schema = validator(&all["task"]);
        assert_eq!(errors(&task_schema, &task.to_value()), Vec::<String>::new());
        for (field, bad) in [
            ("priority", serde_json::json!("URGENT")),
            ("status", serde_json::json!("DONE")),
            ("max_attempts", serde_json::json!(0)),
            ("max_attempts", serde_json::json!(1001)),
            ("lease_secs", serde_json::json!(0)),
            ("assigned_to", serde_json::json!("../x")),
            ("created_at", serde_json::json!("yesterday")),
            ("task_id", serde_json::json!("")),
        ] {
            let mut t = task.to_value();
            t[field] = bad.clone();
            assert!(!task_schema.is_valid(&t), "{field}: {bad} accepted");
            // The broker checks `assigned_to` when it routes the task, not `Task::from_value`.
            if field != "assigned_to" {
                assert!(Task::from_value(t).is_err(), "{field}: {bad} accepted by Task::from_value");
            }
        }

        let mut notice =
            crate::Notice::new(crate::NoticeKind::LeaseExpired, now, "the lease ran out after 300 s");
        notice.task_id = Some("T-1".into());
        notice.message = Some(samples::of("complete").to_value());
        let mail = Mail {
            kind: "mail".into(),
            from: "A".into(),
            to: "B".into(),
            sent_to: Some("ALL".into()),
            subject: None,
            body: serde_json::json!({"any": "json"}),
            sent_at: now,
        };
        for (kind, value) in
            [("notice", serde_json::to_value(notice).unwrap()), ("mail", serde_json::to_value(mail).unwrap())]
        {
            assert_eq!(errors(&validator(&all["messages"][kind]), &value), Vec::<String>::new(), "{kind}");
        }
    }

    /// The pattern accepts exactly the names `validate_agent` accepts, but for `..` and the
    /// reserved `ALL` (which a regular expression without look-ahead cannot refuse; the
    /// description says it).
    #[test]
    fn the_agent_pattern_agrees_with_the_name_rules() {
        let v = validator(&messages()["send"]["properties"]["from"]);
        let to = validator(&messages()["send"]["properties"]["to"]);
        let long = "x".repeat(64);
        let too_long = "x".repeat(65);
        for name in [
            "Agent-1", "a", "0", "A.b_c-d", &long, &too_long, "", "-a", ".a", "_a", "a/b", "a b", "é",
            "a\nb", "a..b", "ALL", "all", "@g", "@-g", "@",
        ] {
            let fits = v.is_valid(&Value::from(name));
            let valid = crate::names::validate_agent(name).is_ok();
            let lookahead = name.contains("..") || name.eq_ignore_ascii_case("all");
            assert_eq!(fits, valid || lookahead, "{name:?}");
            let address = crate::names::Recipient::parse(name).is_ok();
            assert_eq!(to.is_valid(&Value::from(name)), address || lookahead, "to: {name:?}");
        }
    }
}

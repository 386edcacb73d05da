//! Legacy mailbox messages: the sender, recipient, subject, body and time under any spelling.

use super::agent::{is_broadcast, normalise_agent};
use super::time::{TimeOutcome, normalise_timestamp};
use super::vocab_key;
use super::{Change, ChangeKind};
use crate::error::ValidationError;
use crate::names::BROADCAST;
use crate::time::Timestamp;
use serde_json::{Map, Value, json};

/// Spellings of the sender, in the order they are looked for.
pub const FROM_FIELDS: &[&str] = &[
    "from",
    "sender",
    "sender_agent_id",
    "from_agent",
    "from_agent_id",
    "sender_id",
    "sender_agent",
    "source_agent_id",
];
/// Spellings of the recipient, in the order they are looked for.
pub const TO_FIELDS: &[&str] = &[
    "to",
    "recipient",
    "recipient_agent_id",
    "to_agent",
    "to_agent_id",
    "recipient_id",
    "target",
    "target_agent_id",
];
const SUBJECT_FIELDS: &[&str] = &["subject", "title", "topic"];
const BODY_FIELDS: &[&str] = &["body", "content", "message", "text"];
const SENT_AT_FIELDS: &[&str] = &[
    "sent_at",
    "timestamp_utc",
    "timestamp",
    "timestamp_utc_iso",
    "timestamp_created",
    "created_at",
    "timestamp_dispatched",
    "date",
    "ts",
];

/// Fields that say a message was read when they are `true`.
pub const READ_FLAGS: &[&str] = &["read_status", "read", "is_read", "seen"];
/// Fields that say a message was delivered or read when they hold a time.
pub const READ_TIMES: &[&str] = &["read_at", "delivered_at", "acknowledged_at", "processed_at"];
/// Fields that hold a message's delivery status, and the statuses (compared like status
/// spellings) that say it was delivered or read already.
pub const STATUS_FIELDS: &[&str] = &["status", "message_status", "delivery_status", "read_state"];
pub const READ_STATUSES: &[&str] = &[
    "read",
    "delivered",
    "processed",
    "completed",
    "complete",
    "done",
    "acknowledged",
    "archived",
    "handled",
];

/// A legacy mailbox message in canonical terms. Build a [`crate::Mail`] from it by supplying
/// `sent_at` (or `now` when it is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyMail {
    pub from: String,
    /// An agent name, or [`crate::names::BROADCAST`] for a message to every agent.
    pub to: String,
    pub subject: Option<String>,
    pub body: Value,
    pub sent_at: Option<Timestamp>,
    /// The message is marked delivered or read already: it is not new to its recipient.
    pub read: bool,
    pub changes: Vec<Change>,
}

fn first<'a>(objs: &[&'a Map<String, Value>], keys: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    for o in objs {
        for k in keys {
            if let Some(v) = o.get(*k).filter(|v| !v.is_null()) {
                return Some((k, v));
            }
        }
    }
    None
}

fn agent_field(
    objs: &[&Map<String, Value>],
    canonical: &str,
    keys: &[&'static str],
    changes: &mut Vec<Change>,
) -> Result<String, ValidationError> {
    let Some((key, v)) = first(objs, keys) else {
        return Err(ValidationError::new(canonical, format!("is required (looked for {})", keys.join(", "))));
    };
    let Value::String(raw) = v else {
        return Err(ValidationError::new(key, "must be a string naming one agent"));
    };
    let broadcast = (canonical == "to" && is_broadcast(raw)).then(|| BROADCAST.to_string());
    let Some(agent) = broadcast.or_else(|| normalise_agent(raw)) else {
        return Err(ValidationError::new(
            key,
            format!(
                "`{}` is not an agent: pronouns, placeholders and words for nobody in particular name no agent",
                raw.escape_debug()
            ),
        ));
    };
    if key != canonical {
        changes.push(Change::new(
            canonical,
            ChangeKind::FieldRenamed,
            Some(json!(key)),
            Some(json!(canonical)),
            false,
        ));
    }
    if agent != *raw {
        changes.push(Change::new(
            canonical,
            ChangeKind::AgentNormalised,
            Some(json!(raw)),
            Some(json!(agent)),
            false,
        ));
    }
    Ok(agent)
}

/// Does this message object name its recipient under any known spelling?
pub fn mail_recipient_named(m: &Map<String, Value>) -> bool {
    TO_FIELDS.iter().any(|k| m.contains_key(*k))
}

/// Is the message marked delivered or read already? A `true` flag, a time in a read or delivery
/// field, or a status that says so, in the envelope or the message. Returns the field that says
/// it, and its value.
fn read_mark(objs: &[&Map<String, Value>]) -> Option<(String, Value)> {
    for o in objs {
        for k in READ_FLAGS {
            if o.get(*k) == Some(&Value::Bool(true)) {
                return Some(((*k).to_string(), Value::Bool(true)));
            }
        }
        for k in READ_TIMES {
            if let Some(v @ (Value::String(_) | Value::Number(_))) = o.get(*k)
                && v.as_str().is_none_or(|s| !s.trim().is_empty())
            {
                return Some(((*k).to_string(), v.clone()));
            }
        }
        for k in STATUS_FIELDS {
            if let Some(Value::String(s)) = o.get(*k)
                && READ_STATUSES.contains(&vocab_key(s).as_str())
            {
                return Some(((*k).to_string(), Value::String(s.clone())));
            }
        }
    }
    None
}

/// Normalises one legacy mailbox message. Looks inside a `message` envelope (queue entries) and
/// a `payload` object (supervisor messages). A recipient that addresses everyone (`ALL_AGENTS`,
/// `BROADCAST`, see [`super::BROADCAST_WORDS`]) becomes `ALL`. `Err` when the value is not an
/// object, or the sender or recipient is missing or names no agent (`yall`, `i`, a placeholder):
/// the error names the field as it was spelled and the rule.
pub fn normalise_mail(v: &Value, now: Timestamp) -> Result<LegacyMail, ValidationError> {
    let Value::Object(outer) = v else {
        return Err(ValidationError::new("", "a message must be a JSON object"));
    };
    let mut objs: Vec<&Map<String, Value>> = Vec::new();
    let mut envelope = false;
    if let Some(Value::Object(inner)) = outer.get("message")
        && (first(&[inner], FROM_FIELDS).is_some() || first(&[inner], TO_FIELDS).is_some())
    {
        objs.push(inner);
        envelope = true;
    }
    objs.push(outer);
    if let Some(Value::Object(p)) = outer.get("payload") {
        objs.push(p);
    }
    let mut changes = Vec::new();
    let from = agent_field(&objs, "from", FROM_FIELDS, &mut changes)?;
    let to = agent_field(&objs, "to", TO_FIELDS, &mut changes)?;

    let subject = first(&objs, SUBJECT_FIELDS).map(|(k, s)| {
        if k != "subject" {
            changes.push(Change::new(
                "subject",
                ChangeKind::FieldRenamed,
                Some(json!(k)),
                Some(json!("subject")),
                false,
            ));
        }
        match s {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    });
    // The body: the first body spelling, skipping the envelope already looked inside; a
    // `payload` object without a body spelling is the body itself.
    let mut body = None;
    'search: for o in &objs {
        for k in BODY_FIELDS {
            if envelope && *k == "message" && std::ptr::eq(*o, outer) {
                continue;
            }
            if let Some(v) = o.get(*k).filter(|v| !v.is_null()) {
                body = Some((*k, v.clone()));
                break 'search;
            }
        }
    }
    let body = match body.or_else(|| outer.get("payload").map(|p| ("payload", p.clone()))) {
        Some((k, v)) => {
            if k != "body" {
                changes.push(Change::new(
                    "body",
                    ChangeKind::FieldRenamed,
                    Some(json!(k)),
                    Some(json!("body")),
                    false,
                ));
            }
            v
        }
        None => Value::Null,
    };

    let sent_at = first(&objs, SENT_AT_FIELDS).and_then(|(k, raw)| {
        if k != "sent_at" {
            changes.push(Change::new(
                "sent_at",
                ChangeKind::FieldRenamed,
                Some(json!(k)),
                Some(json!("sent_at")),
                false,
            ));
        }
        let out = normalise_timestamp(raw, now);
        let kind = match out {
            TimeOutcome::Canonical(_) => None,
            TimeOutcome::Reformatted(_) => Some((ChangeKind::TimestampReformatted, false)),
            TimeOutcome::AssumedUtc(_) => Some((ChangeKind::TimestampAssumedUtc, false)),
            TimeOutcome::Placeholder(_) => Some((ChangeKind::PlaceholderReplaced, false)),
            TimeOutcome::Unparseable => Some((ChangeKind::TimestampUnparseable, true)),
        };
        if let Some((kind, warning)) = kind {
            let to = out.timestamp().map(|t| json!(t.to_string()));
            changes.push(Change::new("sent_at", kind, Some(raw.clone()), to, warning));
        }
        out.timestamp()
    });
    let read = read_mark(&objs).map(|(field, value)| {
        changes.push(Change::new(
            "read",
            ChangeKind::StatusMapped,
            Some(json!({ field: value })),
            Some(json!(true)),
            false,
        ));
    });
    Ok(LegacyMail { from, to, subject, body, sent_at, read: read.is_some(), changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn mail(v: Value) -> LegacyMail {
        normalise_mail(&v, now()).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    #[test]
    fn sender_recipient_spellings() {
        let pairs = [
            ("from", "to"),
            ("sender", "recipient"),
            ("sender_agent_id", "recipient_agent_id"),
            ("from_agent", "to_agent"),
            ("sender_id", "recipient_id"),
            ("sender", "target"),
        ];
        for (f, t) in pairs {
            let m = mail(json!({f: "Agent-1", t: "Agent2", "body": "hi"}));
            assert_eq!((m.from.as_str(), m.to.as_str()), ("Agent-1", "Agent-2"), "{f}/{t}");
            assert_eq!(m.body, json!("hi"));
            let renamed = m.changes.iter().filter(|c| c.kind == ChangeKind::FieldRenamed).count();
            assert_eq!(renamed, usize::from(f != "from") + usize::from(t != "to"), "{f}/{t}");
            assert!(m.changes.iter().any(|c| c.kind == ChangeKind::AgentNormalised));
        }
    }

    #[test]
    fn subject_body_and_time() {
        let m = mail(
            json!({"sender": "Agent-8", "recipient": "Captain-Agent-5", "subject": "RE: x", "timestamp": "2023-11-16T11:30:00Z", "body": {"text": "ok"}}),
        );
        assert_eq!(m.subject.as_deref(), Some("RE: x"));
        assert_eq!(m.body, json!({"text": "ok"}));
        assert_eq!(m.sent_at, Timestamp::parse_rfc3339("2023-11-16T11:30:00Z"));
        let m = mail(
            json!({"from": "Agent-5", "to": "Agent-1", "content": "c", "timestamp_utc": "{{NOW_ISO}}", "topic": "t"}),
        );
        assert_eq!((m.body, m.sent_at, m.subject.as_deref()), (json!("c"), Some(now()), Some("t")));
        assert!(m.changes.iter().any(|c| c.kind == ChangeKind::PlaceholderReplaced));
        let m = mail(json!({"from": "a", "to": "b", "timestamp": "Ongoing"}));
        assert_eq!(m.sent_at, None);
        assert!(m.changes.iter().any(|c| c.kind == ChangeKind::TimestampUnparseable && c.warning));
    }

    #[test]
    fn envelopes_and_payloads() {
        let m = mail(
            json!({"message": {"sender": "Agent-4", "recipient": "Agent-7", "content": "go"}, "queue_id": "q", "created_at": "2025-12-20T18:04:18.1"}),
        );
        assert_eq!((m.from.as_str(), m.to.as_str(), m.body.clone()), ("Agent-4", "Agent-7", json!("go")));
        assert!(m.sent_at.is_some());
        let m = mail(
            json!({"sender": "Supervisor1", "target": "Agent1", "payload": {"subject": "s", "body": "b"}}),
        );
        assert_eq!((m.to.as_str(), m.subject.as_deref()), ("Agent-1", Some("s")));
        assert_eq!(m.body, json!("b"));
        let m = mail(json!({"sender": "S", "target": "A", "payload": {"x": 1}}));
        assert_eq!(m.body, json!({"x": 1}));
    }

    #[test]
    fn unrecognised_recipients_are_errors_naming_the_field() {
        for (field, who) in [("to", "yall"), ("recipient", "i"), ("to", "{{agent}}"), ("to", "anyone")] {
            let e = normalise_mail(&json!({"from": "Agent-1", field: who}), now()).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.rule.contains("not an agent"), "{e}");
        }
        let e = normalise_mail(&json!({"from": "Agent-1"}), now()).unwrap_err();
        assert_eq!(e.field, "to");
        assert!(e.rule.starts_with("is required"));
        let e = normalise_mail(&json!({"to": "Agent-1", "from": 3}), now()).unwrap_err();
        assert_eq!(e.field, "from");
        assert!(normalise_mail(&json!([1]), now()).is_err());
        let e = normalise_mail(&json!({"from": "ALL_AGENTS", "to": "Agent-1"}), now()).unwrap_err();
        assert_eq!(e.field, "from", "a broadcast has one sender");
    }

    #[test]
    fn broadcast_recipients_become_all() {
        for (field, who) in [
            ("recipient_agent_id", "ALL_ACTIVE_AGENTS"),
            ("recipient_agent_id", "ALL_AGENTS"),
            ("to", "BROADCAST"),
            ("recipient", "broadcast"),
            ("to", "ALL"),
            ("to", "All Agents"),
        ] {
            let m = mail(json!({"from": "Agent-1", field: who, "body": "hear ye"}));
            assert_eq!(m.to, "ALL", "{who}");
            let normalised =
                m.changes.iter().any(|c| c.kind == ChangeKind::AgentNormalised && c.field == "to");
            assert_eq!(normalised, who != "ALL", "{who}: {:?}", m.changes);
        }
    }

    #[test]
    fn mail_marked_delivered_or_read_is_read() {
        for marked in [
            json!({"from": "A", "to": "B", "read_status": true}),
            json!({"from": "A", "to": "B", "status": "read"}),
            json!({"from": "A", "to": "B", "delivered_at": "2025-01-01T00:00:00Z"}),
            json!({"message": {"sender": "A", "recipient": "B"}, "status": "DELIVERED"}),
            json!({"from": "A", "to": "B", "status": "completed"}),
        ] {
            let m = mail(marked.clone());
            assert!(m.read, "{marked}");
            assert!(m.changes.iter().any(|c| c.field == "read"), "{marked}");
        }
        for unread in [
            json!({"from": "A", "to": "B", "read_status": false}),
            json!({"from": "A", "to": "B", "status": "pending", "read_at": null}),
            json!({"message": {"sender": "A", "recipient": "B"}, "status": "PENDING", "delivered_at": ""}),
            json!({"from": "A", "to": "B"}),
        ] {
            assert!(!mail(unread.clone()).read, "{unread}");
        }
    }
}

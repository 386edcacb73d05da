//! Legacy mailbox messages: the sender, recipient, subject, body and time under any spelling.

use super::agent::normalise_agent;
use super::time::{TimeOutcome, normalise_timestamp};
use super::{Change, ChangeKind};
use crate::error::ValidationError;
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

/// A legacy mailbox message in canonical terms. Build a [`crate::Mail`] from it by supplying
/// `sent_at` (or `now` when it is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyMail {
    pub from: String,
    pub to: String,
    pub subject: Option<String>,
    pub body: Value,
    pub sent_at: Option<Timestamp>,
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
    let Some(agent) = normalise_agent(raw) else {
        return Err(ValidationError::new(
            key,
            format!(
                "`{}` is not an agent: pronouns, broadcast targets and placeholders name no single agent",
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

/// Normalises one legacy mailbox message. Looks inside a `message` envelope (queue entries) and
/// a `payload` object (supervisor messages). `Err` when the value is not an object, or the
/// sender or recipient is missing or names no agent (`yall`, `i`, `ALL`): the error names the
/// field as it was spelled and the rule.
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
    Ok(LegacyMail { from, to, subject, body, sent_at, changes })
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
        for (field, who) in [
            ("to", "yall"),
            ("recipient", "i"),
            ("recipient_agent_id", "ALL_ACTIVE_AGENTS"),
            ("to", "BROADCAST"),
            ("to", "{{agent}}"),
        ] {
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
    }
}

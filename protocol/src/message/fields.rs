//! Field-level deserializers for [`Message`](super::Message): the lenient rules of the wire format
//! (an integer `task_id`, a non-string `error`, a null `retryable`) and the checks whose errors name
//! the field and the rule.
//!
//! Each helper reads the field's JSON value and applies a rule. A broken rule leaves as a serde
//! error whose text is the [`ValidationError`] (`field `claim`: must not be empty`):
//! `serde_json::Error` keeps nothing but text, and [`from_serde`] reads the field and the rule back.

use crate::error::ValidationError;
use crate::names::{Recipient, validate_agent};
use crate::task::validate_task_id;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn check<'de, D, T>(d: D, field: &str, rule: impl FnOnce(Value) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let value = Value::deserialize(d)?;
    rule(value).map_err(|rule| D::Error::custom(ValidationError::new(field, rule)))
}

fn non_empty_string(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::String(_) => Err("must not be empty".into()),
        _ => Err("must be a string".into()),
    }
}

fn agent_name(v: Value) -> Result<String, String> {
    let name = non_empty_string(v)?;
    validate_agent(&name).map_err(|e| e.rule)?;
    Ok(name)
}

pub(super) fn agent<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "agent", agent_name)
}

pub(super) fn from<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "from", agent_name)
}

/// An address: an agent, `ALL` (a broadcast) or `@group`; kept as it is written.
pub(super) fn to<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "to", |v| {
        let address = non_empty_string(v)?;
        Recipient::parse(&address).map_err(|e| e.rule)?;
        Ok(address)
    })
}

pub(super) fn claim<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "claim", non_empty_string)
}

/// A submit's task must be an object; the broker validates (and normalises) its fields.
pub(super) fn task<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    check(d, "task", |v| match v {
        Value::Object(_) => Ok(v),
        _ => Err("must be a JSON object".into()),
    })
}

/// An integer id becomes its decimal string, as in a task.
pub(super) fn task_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "task_id", |v| {
        let id = match v {
            Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
            other => non_empty_string(other)?,
        };
        validate_task_id(&id).map_err(|e| e.rule)?;
        Ok(id)
    })
}

/// A quarantine entry's name: one file name, never a path or an entry's reason file.
pub(super) fn quarantine_entry<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "name", |v| {
        let name = non_empty_string(v)?;
        crate::names::validate_quarantine_entry(&name).map_err(|e| e.rule)?;
        Ok(name)
    })
}

/// The default of a missing `error`.
pub(super) fn failed() -> String {
    "failed".into()
}

/// A null `error` is the default; any other non-string is kept as its JSON text.
pub(super) fn error<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check(d, "error", |v| {
        Ok(match v {
            Value::String(s) => s,
            Value::Null => failed(),
            other => other.to_string(),
        })
    })
}

/// The default of a missing `retryable`.
pub(super) fn yes() -> bool {
    true
}

pub(super) fn retryable<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    check(d, "retryable", |v| match v {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(yes()),
        _ => Err("must be true or false".into()),
    })
}

pub(super) fn subject<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    check(d, "subject", |v| match v {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        _ => Err("must be a string".into()),
    })
}

/// The [`ValidationError`] behind a failed derived deserialization of a `kind` message: the one a
/// helper above raised, or `is required` for a missing field (a submit's `task` says which kind
/// requires it, as it always has).
pub(super) fn from_serde(e: &serde_json::Error, kind: &str) -> ValidationError {
    // Deserialized from a `Value`, the error carries no position: its text is the message alone.
    let text = e.to_string();
    if let Some(field) = text.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        let rule = if kind == "submit" && field == "task" {
            format!("is required for kind `{kind}`")
        } else {
            "is required".to_string()
        };
        return ValidationError::new(field, rule);
    }
    // `field `NAME`: RULE`, the `Display` of a `ValidationError`; no field name contains a backtick.
    if let Some((field, rule)) = text.strip_prefix("field `").and_then(|r| r.split_once("`: ")) {
        return ValidationError::new(field, rule);
    }
    ValidationError::new("", text)
}

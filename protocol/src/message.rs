//! Messages: what agents and scripts drop into the broker's inbox, and what the broker delivers
//! back into agents' mailboxes (notices and mail). Every message is a JSON object with a `kind`.

use crate::error::ValidationError;
use crate::names::validate_agent;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest message the broker reads by default, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1 << 20;

/// A message to the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"kind":"submit","task":{...}}`, or a bare task object with no `kind`. The task is kept as
    /// raw JSON here; the broker validates (and, for legacy input, normalises) it.
    Submit {
        task: Value,
    },
    Complete {
        agent: String,
        claim: String,
        result: Value,
    },
    Fail {
        agent: String,
        claim: String,
        error: String,
        retryable: bool,
    },
    Release {
        agent: String,
        claim: String,
    },
    Cancel {
        task_id: String,
    },
    Retry {
        task_id: String,
    },
    Send {
        from: String,
        to: String,
        subject: Option<String>,
        body: Value,
    },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Submit { .. } => "submit",
            Self::Complete { .. } => "complete",
            Self::Fail { .. } => "fail",
            Self::Release { .. } => "release",
            Self::Cancel { .. } => "cancel",
            Self::Retry { .. } => "retry",
            Self::Send { .. } => "send",
        }
    }

    /// The agent a reply (notice) should go to, if the message names one.
    pub fn sender(&self) -> Option<&str> {
        match self {
            Self::Complete { agent, .. } | Self::Fail { agent, .. } | Self::Release { agent, .. } => {
                Some(agent)
            }
            Self::Send { from, .. } => Some(from),
            _ => None,
        }
    }

    /// Parses raw bytes: UTF-8, JSON, an object, a known `kind` with its fields.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ValidationError::new("", format!("must be UTF-8 (invalid byte at offset {})", e.valid_up_to()))
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ValidationError::new("", format!("must be JSON: {e} (line {}, column {})", e.line(), e.column()))
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut map) = value else {
            return Err(ValidationError::new("", "a message must be a JSON object"));
        };
        let kind = match map.remove("kind") {
            None => {
                return Ok(Self::Submit { task: Value::Object(map) });
            }
            Some(Value::String(k)) => k,
            Some(_) => return Err(ValidationError::new("kind", "must be a string")),
        };
        let msg = match kind.as_str() {
            "submit" => match map.remove("task") {
                Some(task @ Value::Object(_)) => Self::Submit { task },
                Some(_) => return Err(ValidationError::new("task", "must be a JSON object")),
                None => {
                    return Err(ValidationError::new("task", "is required for kind `submit`"));
                }
            },
            "complete" => Self::Complete {
                agent: agent(&mut map, "agent")?,
                claim: string(&mut map, "claim")?,
                result: map.remove("result").unwrap_or(Value::Null),
            },
            "fail" => Self::Fail {
                agent: agent(&mut map, "agent")?,
                claim: string(&mut map, "claim")?,
                error: match map.remove("error") {
                    Some(Value::String(s)) => s,
                    None | Some(Value::Null) => "failed".to_string(),
                    Some(other) => other.to_string(),
                },
                retryable: match map.remove("retryable") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => b,
                    Some(_) => {
                        return Err(ValidationError::new("retryable", "must be true or false"));
                    }
                },
            },
            "release" => {
                Self::Release { agent: agent(&mut map, "agent")?, claim: string(&mut map, "claim")? }
            }
            "cancel" => Self::Cancel { task_id: task_id(&mut map)? },
            "retry" => Self::Retry { task_id: task_id(&mut map)? },
            "send" => Self::Send {
                from: agent(&mut map, "from")?,
                to: agent(&mut map, "to")?,
                subject: match map.remove("subject") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(_) => return Err(ValidationError::new("subject", "must be a string")),
                },
                body: map.remove("body").unwrap_or(Value::Null),
            },
            other => {
                return Err(ValidationError::new(
                    "kind",
                    format!(
                        "unknown kind `{other}` (expected submit, complete, fail, release, cancel, retry or send)"
                    ),
                ));
            }
        };
        Ok(msg)
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), self.kind().into());
        match self {
            Self::Submit { task } => {
                m.insert("task".into(), task.clone());
            }
            Self::Complete { agent, claim, result } => {
                m.insert("agent".into(), agent.as_str().into());
                m.insert("claim".into(), claim.as_str().into());
                m.insert("result".into(), result.clone());
            }
            Self::Fail { agent, claim, error, retryable } => {
                m.insert("agent".into(), agent.as_str().into());
                m.insert("claim".into(), claim.as_str().into());
                m.insert("error".into(), error.as_str().into());
                m.insert("retryable".into(), (*retryable).into());
            }
            Self::Release { agent, claim } => {
                m.insert("agent".into(), agent.as_str().into());
                m.insert("claim".into(), claim.as_str().into());
            }
            Self::Cancel { task_id } | Self::Retry { task_id } => {
                m.insert("task_id".into(), task_id.as_str().into());
            }
            Self::Send { from, to, subject, body } => {
                m.insert("from".into(), from.as_str().into());
                m.insert("to".into(), to.as_str().into());
                if let Some(s) = subject {
                    m.insert("subject".into(), s.as_str().into());
                }
                m.insert("body".into(), body.clone());
            }
        }
        Value::Object(m)
    }
}

fn string(map: &mut Map<String, Value>, field: &str) -> Result<String, ValidationError> {
    match map.remove(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(ValidationError::new(field, "must not be empty")),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
        None => Err(ValidationError::new(field, "is required")),
    }
}

fn agent(map: &mut Map<String, Value>, field: &str) -> Result<String, ValidationError> {
    let s = string(map, field)?;
    validate_agent(&s).map_err(|e| ValidationError::new(field, e.rule))?;
    Ok(s)
}

fn task_id(map: &mut Map<String, Value>) -> Result<String, ValidationError> {
    let id = match map.remove("task_id") {
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(other) => {
            map.insert("task_id".into(), other);
            string(map, "task_id")?
        }
        None => return Err(ValidationError::new("task_id", "is required")),
    };
    crate::task::validate_task_id(&id)?;
    Ok(id)
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A message from this agent was refused (invalid, not allowed in the task's state).
    Rejected,
    /// A complete/fail/release named a claim the agent no longer holds (taken back, or never held).
    Stale,
    /// A task the agent held was cancelled; its claim is revoked.
    Cancelled,
    /// The lease on a claim ran out and the task was taken back.
    LeaseExpired,
}

/// A notice the broker delivers into `mailboxes/<agent>/new/`, as `{"kind":"notice",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: String,
    pub notice: NoticeKind,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    pub reason: String,
    /// The message that caused the notice, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
}

impl Notice {
    pub fn new(notice: NoticeKind, timestamp: Timestamp, reason: impl Into<String>) -> Self {
        Self {
            kind: "notice".into(),
            notice,
            timestamp,
            task_id: None,
            claim: None,
            reason: reason.into(),
            message: None,
        }
    }
}

/// Mail between agents, delivered by the broker as `{"kind":"mail",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    pub kind: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: Value,
    pub sent_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bare_task_is_a_submit() {
        let m = Message::parse(br#"{"task_id":"T1","name":"x"}"#).unwrap();
        assert_eq!(m, Message::Submit { task: json!({"task_id":"T1","name":"x"}) });
    }

    #[test]
    fn every_kind_round_trips() {
        let msgs = [
            Message::Submit { task: json!({"task_id": "a"}) },
            Message::Complete { agent: "Agent-1".into(), claim: "c".into(), result: json!([1]) },
            Message::Fail { agent: "Agent-1".into(), claim: "c".into(), error: "e".into(), retryable: false },
            Message::Release { agent: "Agent-1".into(), claim: "c".into() },
            Message::Cancel { task_id: "a".into() },
            Message::Retry { task_id: "a".into() },
            Message::Send { from: "A".into(), to: "B".into(), subject: Some("s".into()), body: json!("hi") },
        ];
        for m in msgs {
            let bytes = serde_json::to_vec(&m.to_value()).unwrap();
            assert_eq!(Message::parse(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn errors_name_field_and_rule() {
        let e = Message::parse(br#"{"kind":"complete","agent":"../x","claim":"c"}"#).unwrap_err();
        assert_eq!(e.field, "agent");
        let e = Message::parse(br#"{"kind":"complete","agent":"A"}"#).unwrap_err();
        assert_eq!((e.field.as_str(), e.rule.as_str()), ("claim", "is required"));
        let e = Message::parse(br#"{"kind":"explode"}"#).unwrap_err();
        assert_eq!(e.field, "kind");
        assert!(Message::parse(b"[1,2]").is_err());
        assert!(Message::parse(b"\xff\xfe").unwrap_err().rule.contains("UTF-8"));
        assert!(Message::parse(b"{\"a\":").unwrap_err().rule.contains("line 1"));
        assert_eq!(
            Message::parse(br#"{"kind":"cancel","task_id":12}"#).unwrap(),
            Message::Cancel { task_id: "12".into() }
        );
    }
}

//! Messages: what agents and scripts drop into the broker's inbox, and what the broker delivers
//! back into agents' mailboxes (notices and mail). Every message is a JSON object with a `kind`.
//!
//! [`Message`] derives its wire format: serde's internally tagged enum (`{"kind":"complete",...}`),
//! with field-level helpers (`fields`) for the lenient rules and for errors that name the field
//! and the rule. Adding a kind is adding a variant (and its handler in the broker): the parser,
//! [`Message::kinds`], the schema (`crate::schema`) and the error for an unknown kind follow.

mod fields;

use crate::error::ValidationError;
use crate::schema::{Address, AgentName};
use crate::task::Task;
use crate::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Largest message the broker reads by default, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1 << 20;

/// A message to the broker.
///
/// The derived `Deserialize` reads the tagged form only; [`Message::parse`] and
/// [`Message::from_value`] add the rest of the protocol (a bare task is a submit, errors are
/// [`ValidationError`]s) and are what readers of the inbox use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// `{"kind":"submit","task":{...}}`, or a bare task object with no `kind`. The task is kept as
    /// raw JSON here; the broker validates (and, for legacy input, normalises) it.
    Submit {
        #[serde(deserialize_with = "fields::task")]
        #[schemars(with = "Task")]
        task: Value,
    },
    /// The claim's work is done.
    Complete {
        #[serde(deserialize_with = "fields::agent")]
        #[schemars(with = "AgentName")]
        agent: String,
        #[serde(deserialize_with = "fields::claim")]
        #[schemars(length(min = 1))]
        claim: String,
        #[serde(default)]
        result: Value,
    },
    /// The claim's work failed; `retryable` false dead-letters the task at once.
    Fail {
        #[serde(deserialize_with = "fields::agent")]
        #[schemars(with = "AgentName")]
        agent: String,
        #[serde(deserialize_with = "fields::claim")]
        #[schemars(length(min = 1))]
        claim: String,
        #[serde(default = "fields::failed", deserialize_with = "fields::error")]
        error: String,
        #[serde(default = "fields::yes", deserialize_with = "fields::retryable")]
        retryable: bool,
    },
    /// The claim is given back untouched.
    Release {
        #[serde(deserialize_with = "fields::agent")]
        #[schemars(with = "AgentName")]
        agent: String,
        #[serde(deserialize_with = "fields::claim")]
        #[schemars(length(min = 1))]
        claim: String,
    },
    /// Operator verb: PENDING or IN_PROGRESS to CANCELLED.
    Cancel {
        #[serde(deserialize_with = "fields::task_id")]
        #[schemars(schema_with = "crate::schema::task_id")]
        task_id: String,
    },
    /// Operator verb: FAILED, BLOCKED or CANCELLED to PENDING.
    Retry {
        #[serde(deserialize_with = "fields::task_id")]
        #[schemars(schema_with = "crate::schema::task_id")]
        task_id: String,
    },
    /// Mail from one agent to another, to every agent (`to` is `ALL`) or to a group (`@name`),
    /// delivered by the broker as `mail` to each recipient.
    Send {
        #[serde(deserialize_with = "fields::from")]
        #[schemars(with = "AgentName")]
        from: String,
        #[serde(deserialize_with = "fields::to")]
        #[schemars(with = "Address")]
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "fields::subject")]
        subject: Option<String>,
        #[serde(default)]
        body: Value,
    },
    /// Operator verb: put a quarantined input (`name`, an entry of `broker/quarantine/`) back into
    /// the broker's inbox under a fresh name, to be handled again from the start.
    Requeue {
        #[serde(deserialize_with = "fields::quarantine_entry")]
        #[schemars(length(min = 1, max = 255), pattern(r"^[^./][^/]*$"))]
        name: String,
    },
}

impl Message {
    /// The `kind` of this message, as it is written on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Submit { .. } => "submit",
            Self::Complete { .. } => "complete",
            Self::Fail { .. } => "fail",
            Self::Release { .. } => "release",
            Self::Cancel { .. } => "cancel",
            Self::Retry { .. } => "retry",
            Self::Send { .. } => "send",
            Self::Requeue { .. } => "requeue",
        }
    }

    /// Every kind, in declaration order, exactly as the derived `Deserialize` accepts them.
    ///
    /// The list is serde's own: its derive hands the variant names to
    /// [`serde::de::Error::unknown_variant`], so we offer it a tag no variant has and keep the list
    /// it answers with. A new variant is listed without anyone writing its name twice.
    pub fn kinds() -> &'static [&'static str] {
        #[derive(Debug)]
        struct Expected(&'static [&'static str]);
        impl fmt::Display for Expected {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "expected one of {:?}", self.0)
            }
        }
        impl std::error::Error for Expected {}
        impl serde::de::Error for Expected {
            fn custom<T: fmt::Display>(_: T) -> Self {
                Expected(&[])
            }
            fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
                Expected(expected)
            }
        }
        let probe = serde::de::value::MapDeserializer::<_, Expected>::new(std::iter::once(("kind", "")));
        match Message::deserialize(probe) {
            Err(Expected(kinds)) => kinds,
            Ok(_) => &[],
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
        // The common case in one reading: an object whose known `kind` and fields all read.
        // Whatever does not (no `kind`: a bare task; an unknown one; a field that does not read;
        // a key written twice, which the typed reading refuses and a JSON value keeps the last
        // of) goes the long way below, which reads it as before and words the error. Only an
        // object is tried: serde would also read a tagged enum from an array.
        if text.trim_start().starts_with('{')
            && let Ok(m) = serde_json::from_str::<Self>(text)
        {
            return Ok(m);
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ValidationError::new("", format!("must be JSON: {e} (line {}, column {})", e.line(), e.column()))
        })?;
        Self::from_value(value)
    }

    /// Reads a JSON value: an object with a known `kind` and its fields, or a bare task (an object
    /// with no `kind`), which is a submit of that whole object.
    pub fn from_value(value: Value) -> Result<Self, ValidationError> {
        let Value::Object(map) = value else {
            return Err(ValidationError::new("", "a message must be a JSON object"));
        };
        let kind = match map.get("kind") {
            None => return Ok(Self::Submit { task: Value::Object(map) }),
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(ValidationError::new("kind", "must be a string")),
        };
        if !Self::kinds().contains(&kind.as_str()) {
            return Err(ValidationError::new(
                "kind",
                format!("unknown kind `{kind}` (expected {})", or_list(Self::kinds())),
            ));
        }
        // Through bytes, not `from_value`: serde buffers a tagged enum's fields before it knows
        // the variant, and only the JSON reader's form of a number survives that buffering
        // with every digit (numbers beyond 64 bits in `task`, `result` or `body` are kept
        // exactly as written).
        let bytes = serde_json::to_vec(&map).expect("a JSON object serialises");
        serde_json::from_slice(&bytes).map_err(|e| fields::from_serde(&e, &kind))
    }

    /// The message as it is written on the wire: `kind` first, then the fields in order.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a message is strings and JSON values: it always serialises")
    }
}

/// `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::described_enum)]
pub enum NoticeKind {
    /// A message from this agent was refused (invalid, not allowed in the task's state).
    Rejected,
    /// A complete/fail/release named a claim the agent no longer holds (taken back, or never held).
    Stale,
    /// A task the agent held was cancelled; its claim is revoked.
    Cancelled,
    /// The lease on a claim ran out and the task was taken back.
    LeaseExpired,
    /// A claim the agent may not hold (it lacks a capability the task requires) was taken back;
    /// the task stays available to the agents that may.
    Refused,
}

/// A notice the broker delivers into `mailboxes/<agent>/new/`, as `{"kind":"notice",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notice {
    /// Always `notice`.
    #[schemars(extend("const" = "notice"))]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Mail {
    /// Always `mail`.
    #[schemars(extend("const" = "mail"))]
    pub kind: String,
    #[schemars(with = "AgentName")]
    pub from: String,
    /// The recipient who reads this copy.
    #[schemars(with = "AgentName")]
    pub to: String,
    /// The address it was sent to when that was not `to` alone: `ALL` or `@group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Address>")]
    pub sent_to: Option<String>,
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
            Message::Requeue { name: "000000000042-msg-1.json".into() },
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

    /// Fails for a kind that has no sample: add one when adding a variant.
    #[test]
    fn kinds_lists_every_variant_once_as_it_is_written() {
        let kinds = Message::kinds();
        assert!(kinds.starts_with(&["submit", "complete", "fail", "release", "cancel", "retry", "send"]));
        for (i, kind) in kinds.iter().enumerate() {
            assert!(!kinds[..i].contains(kind), "{kind} listed twice");
            let m = samples::of(kind);
            assert_eq!(m.kind(), *kind);
            let v = m.to_value();
            assert_eq!(v["kind"], *kind, "the tag serde writes is kind()");
            assert_eq!(v.as_object().and_then(|o| o.keys().next()).map(String::as_str), Some("kind"));
            assert_eq!(Message::from_value(v).unwrap(), m);
        }
    }

    #[test]
    fn unknown_kind_names_every_kind() {
        let e = Message::parse(br#"{"kind":"explode"}"#).unwrap_err();
        assert_eq!(e.field, "kind");
        assert!(
            e.rule.starts_with("unknown kind `explode` (expected submit, complete, fail, "),
            "{}",
            e.rule
        );
        for kind in Message::kinds() {
            assert!(e.rule.contains(&format!(" {kind}")), "{kind} missing from {}", e.rule);
        }
        assert_eq!(or_list(&["a"]), "a");
        assert_eq!(or_list(&[]), "");
    }

    #[test]
    fn serde_errors_become_field_and_rule() {
        let e = |text: &str| serde_json::Error::io(std::io::Error::other(text.to_string()));
        let data = |text: &str| <serde_json::Error as serde::de::Error>::custom(text);
        let v = fields::from_serde(&data("missing field `claim`"), "complete");
        assert_eq!((v.field.as_str(), v.rule.as_str()), ("claim", "is required"));
        let v = fields::from_serde(&data("missing field `task`"), "submit");
        assert_eq!((v.field.as_str(), v.rule.as_str()), ("task", "is required for kind `submit`"));
        let v = fields::from_serde(&data(&ValidationError::new("to", "`a: b` is odd").to_string()), "send");
        assert_eq!((v.field.as_str(), v.rule.as_str()), ("to", "`a: b` is odd"));
        let v = fields::from_serde(&e("disk on fire"), "send");
        assert_eq!((v.field.as_str(), v.rule.as_str()), ("", "disk on fire"));
    }

    #[test]
    fn wire_format_is_unchanged() {
        let wire = |m: &Message| serde_json::to_string(&m.to_value()).unwrap();
        assert_eq!(
            wire(&samples::of("fail")),
            r#"{"kind":"fail","agent":"Agent-1","claim":"c","error":"e","retryable":false}"#
        );
        let mut send = samples::of("send");
        assert_eq!(wire(&send), r#"{"kind":"send","from":"A","to":"B","subject":"s","body":"hi"}"#);
        if let Message::Send { subject, .. } = &mut send {
            *subject = None;
        }
        assert_eq!(wire(&send), r#"{"kind":"send","from":"A","to":"B","body":"hi"}"#);
        let complete = Message::Complete { agent: "A".into(), claim: "c".into(), result: Value::Null };
        assert_eq!(wire(&complete), r#"{"kind":"complete","agent":"A","claim":"c","result":null}"#);
    }
}

/// One message of every kind, for tests that must cover each kind (here and in `schema`).
#[cfg(test)]
pub(crate) mod samples {
    use super::Message;
    use serde_json::json;

    /// A valid message of `kind`; panics for a kind without a sample, so that a new variant
    /// makes the tests that iterate [`Message::kinds`] fail until it has one.
    pub(crate) fn of(kind: &str) -> Message {
        match kind {
            "submit" => Message::Submit { task: json!({"task_id": "a"}) },
            "complete" => {
                Message::Complete { agent: "Agent-1".into(), claim: "c".into(), result: json!([1]) }
            }
            "fail" => Message::Fail {
                agent: "Agent-1".into(),
                claim: "c".into(),
                error: "e".into(),
                retryable: false,
            },
            "release" => Message::Release { agent: "Agent-1".into(), claim: "c".into() },
            "cancel" => Message::Cancel { task_id: "a".into() },
            "retry" => Message::Retry { task_id: "a".into() },
            "send" => Message::Send {
                from: "A".into(),
                to: "B".into(),
                subject: Some("s".into()),
                body: json!("hi"),
            },
            "requeue" => Message::Requeue { name: "000000000042-msg-1.json".into() },
            other => panic!("no sample message of kind `{other}`: add one to message::samples"),
        }
    }
}

//! The canonical task: the one schema mailroom stores, whatever spelling it was submitted in.

use crate::error::ValidationError;
use crate::schema::AgentName;
use crate::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Longest task id accepted, in bytes.
pub const MAX_TASK_ID_LEN: usize = 200;
/// Default number of attempts before a failing task is dead-lettered (`FAILED`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Dispatch priority. Declared from most to least urgent, so `Ord` sorts urgent first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
#[schemars(description = "dispatch priority, most urgent first")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "CRITICAL",
            Self::High => "HIGH",
            Self::Medium => "MEDIUM",
            Self::Low => "LOW",
        }
    }

    /// The digit that leads a dispatch name: `0` for CRITICAL up to `3` for LOW.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }

    /// The priority a task of this priority has for dispatch order once it has waited
    /// `waited_secs` to be claimed (priority aging): one level higher per full `aging_secs`
    /// waited, never above CRITICAL. `aging_secs` 0 turns aging off.
    pub fn aged(self, waited_secs: u64, aging_secs: u64) -> Self {
        if aging_secs == 0 {
            return self;
        }
        let levels = (waited_secs / aging_secs).min(u64::from(self.rank()));
        Self::from_rank(self.rank() - levels as u8).unwrap_or(Self::Critical)
    }
}

impl FromStr for Priority {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ValidationError::new("priority", "must be one of CRITICAL, HIGH, MEDIUM, LOW"))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle state of a task. See [`crate::machine`] for the transitions between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schemars(description = "a task's state")]
pub enum Status {
    #[default]
    Pending,
    InProgress,
    Completed,
    Failed,
    Blocked,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Self::Pending, Self::InProgress, Self::Completed, Self::Failed, Self::Blocked, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Blocked => "BLOCKED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Terminal states leave the working set; only an operator `retry` revives FAILED/CANCELLED.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl FromStr for Status {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            ValidationError::new(
                "status",
                "must be one of PENDING, IN_PROGRESS, COMPLETED, FAILED, BLOCKED, CANCELLED",
            )
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a task's history: who did what, and which state it moved between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEntry {
    pub timestamp: Timestamp,
    pub actor: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// The canonical stored task. Every field the protocol does not know is kept in `extra` and
/// written back untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "mailroom task",
    description = "The canonical task. Fields not listed here are preserved untouched."
)]
pub struct Task {
    #[schemars(schema_with = "crate::schema::task_id")]
    pub task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    /// Set by the broker.
    #[serde(default)]
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<AgentName>")]
    pub assigned_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Capabilities an agent must hold (all of them) to claim the task from a shared pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 64)))]
    pub required_capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_attempts: u32,
    #[serde(default)]
    pub attempts: u32,
    /// The lease of a claim, in seconds (default 300, or the broker's `mailroom.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lease_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Appended by the broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Fields mailroom does not know, preserved as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// Field names the canonical schema owns; everything else lands in [`Task::extra`].
pub const CANONICAL_FIELDS: &[&str] = &[
    "task_id",
    "name",
    "description",
    "task_type",
    "priority",
    "status",
    "assigned_to",
    "created_by",
    "created_at",
    "updated_at",
    "depends_on",
    "tags",
    "required_capabilities",
    "params",
    "not_before",
    "max_attempts",
    "attempts",
    "lease_secs",
    "result",
    "error",
    "history",
];

impl Task {
    /// A fresh PENDING task with only an id.
    pub fn new(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            name: None,
            description: None,
            task_type: None,
            priority: Priority::default(),
            status: Status::default(),
            assigned_to: None,
            created_by: None,
            created_at: None,
            updated_at: None,
            depends_on: Vec::new(),
            tags: Vec::new(),
            required_capabilities: Vec::new(),
            params: Value::Null,
            not_before: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            attempts: 0,
            lease_secs: None,
            result: Value::Null,
            error: None,
            history: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Reads a task in the canonical schema, checking every known field. An integer `task_id`
    /// is stringified; enum values are accepted in any case. Errors name the field and the rule.
    pub fn from_value(value: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut map) = value else {
            return Err(ValidationError::new("", "a task must be a JSON object"));
        };
        let task_id = match map.shift_remove("task_id") {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(_) => {
                return Err(ValidationError::new("task_id", "must be a string or an integer"));
            }
            None => return Err(ValidationError::new("task_id", "is required")),
        };
        validate_task_id(&task_id)?;
        let mut task = Task::new(task_id);
        task.name = take_opt_string(&mut map, "name")?;
        task.description = take_opt_string(&mut map, "description")?;
        task.task_type = take_opt_string(&mut map, "task_type")?;
        if let Some(p) = take_opt_string(&mut map, "priority")? {
            task.priority = p.parse()?;
        }
        if let Some(s) = take_opt_string(&mut map, "status")? {
            task.status = s.parse()?;
        }
        task.assigned_to = take_opt_string(&mut map, "assigned_to")?;
        task.created_by = take_opt_string(&mut map, "created_by")?;
        task.created_at = take_opt_time(&mut map, "created_at")?;
        task.updated_at = take_opt_time(&mut map, "updated_at")?;
        task.not_before = take_opt_time(&mut map, "not_before")?;
        task.depends_on = take_string_list(&mut map, "depends_on")?;
        task.tags = take_string_list(&mut map, "tags")?;
        task.required_capabilities = take_string_list(&mut map, "required_capabilities")?;
        for (i, c) in task.required_capabilities.iter().enumerate() {
            crate::capability::validate_capability(c)
                .map_err(|e| ValidationError::new(format!("required_capabilities[{i}]"), e.rule))?;
        }
        task.params = map.shift_remove("params").unwrap_or(Value::Null);
        task.result = map.shift_remove("result").unwrap_or(Value::Null);
        if let Some(n) = take_opt_u64(&mut map, "max_attempts")? {
            if n == 0 || n > 1000 {
                return Err(ValidationError::new("max_attempts", "must be between 1 and 1000"));
            }
            task.max_attempts = n as u32;
        }
        if let Some(n) = take_opt_u64(&mut map, "attempts")? {
            task.attempts =
                u32::try_from(n).map_err(|_| ValidationError::new("attempts", "must fit in 32 bits"))?;
        }
        if let Some(n) = take_opt_u64(&mut map, "lease_secs")? {
            if n == 0 {
                return Err(ValidationError::new("lease_secs", "must be at least 1 second"));
            }
            task.lease_secs = Some(n);
        }
        task.error = match map.shift_remove("error") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        if let Some(h) = map.shift_remove("history") {
            task.history = serde_json::from_value(h).map_err(|e| {
                ValidationError::new(
                    "history",
                    format!("must be a list of {{timestamp, actor, action, from, to, details}} ({e})"),
                )
            })?;
        }
        task.extra = map;
        Ok(task)
    }

    /// The task as a JSON object.
    ///
    /// # Panics
    ///
    /// Never in practice: every field serialises (strings, enums, timestamps written as text,
    /// JSON values, maps keyed by strings). A `null` in its place would be written out as an
    /// empty task file, so an impossible failure is loud rather than silent.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a Task always serialises to a JSON object")
    }

    /// The lease granted to a claim of this task, given the broker's default.
    pub fn lease(&self, default_secs: u64) -> u64 {
        self.lease_secs.unwrap_or(default_secs)
    }
}

/// A task id must be non-empty, at most [`MAX_TASK_ID_LEN`] bytes and free of control characters.
/// Ids are never used as paths verbatim (see [`crate::names`]), so `/` and `..` are allowed.
pub fn validate_task_id(id: &str) -> Result<(), ValidationError> {
    if id.trim().is_empty() {
        return Err(ValidationError::new("task_id", "must not be empty"));
    }
    if id.len() > MAX_TASK_ID_LEN {
        return Err(ValidationError::new("task_id", format!("must be at most {MAX_TASK_ID_LEN} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(ValidationError::new("task_id", "must not contain control characters"));
    }
    Ok(())
}

fn take_opt_string(map: &mut Map<String, Value>, field: &str) -> Result<Option<String>, ValidationError> {
    match map.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

fn take_opt_time(map: &mut Map<String, Value>, field: &str) -> Result<Option<Timestamp>, ValidationError> {
    match take_opt_string(map, field)? {
        None => Ok(None),
        Some(s) => Timestamp::parse(&s).map(Some).map_err(|e| ValidationError::new(field, e.to_string())),
    }
}

fn take_opt_u64(map: &mut Map<String, Value>, field: &str) -> Result<Option<u64>, ValidationError> {
    match map.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_u64().map(Some).ok_or_else(|| ValidationError::new(field, "must be a non-negative integer"))
        }
        Some(_) => Err(ValidationError::new(field, "must be a non-negative integer")),
    }
}

fn take_string_list(map: &mut Map<String, Value>, field: &str) -> Result<Vec<String>, ValidationError> {
    match map.shift_remove(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(ValidationError::new(format!("{field}[{i}]"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(ValidationError::new(field, "must be a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_keep_their_order() {
        let v = serde_json::json!({"zeta": 1, "task_id": "T", "alpha": 2, "priority": "LOW", "mid": 3});
        let t = Task::from_value(v).unwrap();
        let keys: Vec<&String> = t.extra.keys().collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
    }
    use serde_json::json;

    #[test]
    fn integer_id_is_stringified_and_unknown_fields_are_kept() {
        let t = Task::from_value(json!({"task_id": 7, "priority": "high", "lead_data": {"x": 1}})).unwrap();
        assert_eq!(t.task_id, "7");
        assert_eq!(t.priority, Priority::High);
        assert_eq!(t.extra["lead_data"], json!({"x": 1}));
        let back = t.to_value();
        assert_eq!(back["lead_data"], json!({"x": 1}));
        assert_eq!(back["priority"], json!("HIGH"));
        assert_eq!(Task::from_value(back).unwrap(), t);
    }

    #[test]
    fn errors_name_field_and_rule() {
        let e = Task::from_value(json!({"task_id": "a", "priority": "URGENTISH"})).unwrap_err();
        assert_eq!(e.field, "priority");
        assert!(e.rule.contains("CRITICAL"));
        let e = Task::from_value(json!({"task_id": "a", "created_at": "yesterday"})).unwrap_err();
        assert_eq!(e.field, "created_at");
        let e = Task::from_value(json!({"task_id": "a", "tags": ["x", {}]})).unwrap_err();
        assert_eq!(e.field, "tags[1]");
        let e = Task::from_value(json!({"name": "no id"})).unwrap_err();
        assert_eq!((e.field.as_str(), e.rule.as_str()), ("task_id", "is required"));
        let e = Task::from_value(json!({"task_id": "x\ny"})).unwrap_err();
        assert_eq!(e.field, "task_id");
    }

    #[test]
    fn aging_rises_a_level_per_period_and_stops_at_critical() {
        use Priority::*;
        assert_eq!(Low.aged(1_000_000, 0), Low, "0 turns aging off");
        let steps: Vec<Priority> =
            [0, 9, 10, 19, 20, 30, 40, 10_000].iter().map(|w| Low.aged(*w, 10)).collect();
        assert_eq!(steps, [Low, Low, Medium, Medium, High, Critical, Critical, Critical]);
        assert_eq!(High.aged(25, 10), Critical);
        assert_eq!(Critical.aged(u64::MAX, 1), Critical);
    }

    #[test]
    fn priority_ranks_sort_urgent_first() {
        assert!(Priority::Critical < Priority::Low);
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
    }
}

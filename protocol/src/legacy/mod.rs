//! The lenient front door: turns the many task and message spellings found in legacy
//! (Dream.OS-style) files into mailroom's canonical forms, recording every change it makes.
//!
//! Everything here is pure: no I/O, no clock (callers pass `now`). The pieces:
//!
//! - [`parse_lenient`]: bytes that may not be strict JSON (comments, template wrappers, merge
//!   markers, trailing garbage, simple YAML) to a JSON value, naming each repair.
//! - [`extract_tasks`]: which shape a parsed file has (one task, a list, a dict keyed by id,
//!   a wrapper object) and the task objects in it, or why it is not a task file.
//! - [`normalise_task`]: one legacy task object to a canonical [`crate::Task`].
//! - [`normalise_mail`]: one legacy mailbox message to sender, recipient, subject and body.
//! - the vocabulary tables: [`map_status`], [`map_priority`], [`normalise_timestamp`],
//!   [`normalise_agent`], and [`status_rank`] for merging duplicates.
//!
//! `docs/NORMALISATION.md` lists every table and rule.

mod agent;
mod board;
mod lenient;
mod mail;
mod normalise;
mod priority;
mod status;
mod time;
mod yaml;

#[cfg(test)]
mod property_tests;

pub use agent::{BROADCAST_WORDS, NON_AGENT_WORDS, is_broadcast, normalise_agent};
pub use board::{Extracted, Shape, extract_tasks, is_message_like, is_task_like};
pub use lenient::{Lenient, ParseFailure, parse_lenient, repair};
pub use mail::{
    FROM_FIELDS, LegacyMail, READ_FLAGS, READ_STATUSES, READ_TIMES, STATUS_FIELDS, TO_FIELDS,
    mail_recipient_named, normalise_mail,
};
pub use normalise::{NESTED_CONTAINERS, Normalised, RENAMES, is_time_field, normalise_task};
pub use priority::{PRIORITY_TABLE, PriorityMatch, map_priority};
pub use status::{STATUS_TABLE, StatusMatch, map_status, status_rank};
pub use time::{TimeOutcome, is_placeholder, normalise_timestamp};

use serde::Serialize;
use serde_json::Value;

/// The actor recorded in the history entry a normalisation appends.
pub const NORMALISE_ACTOR: &str = "mailroom";
/// The action recorded in the history entry a normalisation appends.
pub const NORMALISE_ACTION: &str = "normalise";
/// The key of the object (in a task's extra fields) that keeps original values that could not
/// be carried into the canonical schema.
pub const LEGACY_KEY: &str = "legacy";

/// One thing normalisation changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The canonical field concerned (for a rename, the new name).
    pub field: String,
    pub kind: ChangeKind,
    pub from: Option<Value>,
    pub to: Option<Value>,
    /// True when information may have been lost or guessed and an operator should look.
    pub warning: bool,
}

impl Change {
    pub fn new(
        field: impl Into<String>,
        kind: ChangeKind,
        from: Option<Value>,
        to: Option<Value>,
        warning: bool,
    ) -> Self {
        Self { field: field.into(), kind, from, to, warning }
    }
}

/// What kind of change normalisation made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A legacy field name was replaced by the canonical one.
    FieldRenamed,
    /// A status spelling was mapped onto a canonical status.
    StatusMapped,
    /// A status could not be mapped; the task is PENDING and the original kept.
    StatusUnmapped,
    /// A priority spelling was mapped onto a canonical priority.
    PriorityMapped,
    /// A priority could not be mapped; the task is MEDIUM and the original kept.
    PriorityUnmapped,
    /// A timestamp without an offset was taken to be UTC.
    TimestampAssumedUtc,
    /// A timestamp was rewritten in canonical RFC 3339 UTC form.
    TimestampReformatted,
    /// A template placeholder stood where a timestamp belongs; `now` was used.
    PlaceholderReplaced,
    /// A timestamp could not be read; the original was kept under `legacy`.
    TimestampUnparseable,
    /// An integer id was turned into a string.
    IdStringified,
    /// An agent id was rewritten into its canonical spelling.
    AgentNormalised,
    /// An assignee is not an agent name; the original was kept under `legacy`.
    AgentUnrecognised,
    /// A value of the wrong JSON type was converted (a string to a list, a number to a string).
    ValueCoerced,
    /// A value that does not fit the canonical schema was moved under `legacy`.
    ValueMovedToLegacy,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 14] = [
        Self::FieldRenamed,
        Self::StatusMapped,
        Self::StatusUnmapped,
        Self::PriorityMapped,
        Self::PriorityUnmapped,
        Self::TimestampAssumedUtc,
        Self::TimestampReformatted,
        Self::PlaceholderReplaced,
        Self::TimestampUnparseable,
        Self::IdStringified,
        Self::AgentNormalised,
        Self::AgentUnrecognised,
        Self::ValueCoerced,
        Self::ValueMovedToLegacy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FieldRenamed => "field_renamed",
            Self::StatusMapped => "status_mapped",
            Self::StatusUnmapped => "status_unmapped",
            Self::PriorityMapped => "priority_mapped",
            Self::PriorityUnmapped => "priority_unmapped",
            Self::TimestampAssumedUtc => "timestamp_assumed_utc",
            Self::TimestampReformatted => "timestamp_reformatted",
            Self::PlaceholderReplaced => "placeholder_replaced",
            Self::TimestampUnparseable => "timestamp_unparseable",
            Self::IdStringified => "id_stringified",
            Self::AgentNormalised => "agent_normalised",
            Self::AgentUnrecognised => "agent_unrecognised",
            Self::ValueCoerced => "value_coerced",
            Self::ValueMovedToLegacy => "value_moved_to_legacy",
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lower-cases, trims, and turns runs of spaces, hyphens, slashes and dots into one `_`, after
/// removing a leaked enum prefix (`TaskStatus.`, `<Priority.HIGH: 2>`). Shared by the status
/// and priority tables.
pub(crate) fn vocab_key(raw: &str) -> String {
    let mut s = raw.trim();
    // `<TaskStatus.PENDING: 'pending'>`: Python's repr of an enum member.
    if let Some(inner) = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
        s = inner.split(':').next().unwrap_or(inner).trim();
    }
    // `TaskStatus.PENDING`, `Priority.high`: an identifier, a dot, the member.
    if let Some((prefix, member)) = s.rsplit_once('.')
        && !prefix.is_empty()
        && !member.is_empty()
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        s = member;
    }
    let mut out = String::with_capacity(s.len());
    let mut sep = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if sep && !out.is_empty() {
                out.push('_');
            }
            sep = false;
            out.extend(c.to_lowercase());
        } else if c == '\'' {
            // `won't` -> `wont`
        } else {
            sep = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_keys_fold_case_separators_and_enum_prefixes() {
        assert_eq!(vocab_key("  In Progress "), "in_progress");
        assert_eq!(vocab_key("TaskStatus.PENDING"), "pending");
        assert_eq!(vocab_key("<TaskPriority.HIGH: 2>"), "high");
        assert_eq!(vocab_key("COMPLETED_PENDING_REVIEW"), "completed_pending_review");
        assert_eq!(vocab_key("in-progress"), "in_progress");
        assert_eq!(vocab_key("won't do"), "wont_do");
        assert_eq!(vocab_key("🚨 URGENT - MISSION COMPLETE"), "urgent_mission_complete");
        assert_eq!(vocab_key("1.5"), "1_5");
    }

    #[test]
    fn change_kinds_have_distinct_names() {
        let mut names: Vec<_> = ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ChangeKind::ALL.len());
        for k in ChangeKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), Value::String(k.as_str().into()));
        }
    }
}

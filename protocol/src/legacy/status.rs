//! The status table: every legacy status spelling family and the canonical status it maps to.

use super::vocab_key;
use crate::task::Status;

/// Legacy status spellings (as [`vocab_key`] folds them: lower case, `_` between words, no enum
/// prefix) and the canonical status each maps to. One table; the docs print it.
pub const STATUS_TABLE: &[(&str, Status)] = &[
    // Waiting to be picked up.
    ("pending", Status::Pending),
    ("todo", Status::Pending),
    ("to_do", Status::Pending),
    ("new", Status::Pending),
    ("open", Status::Pending),
    ("ready", Status::Pending),
    ("available", Status::Pending),
    ("queued", Status::Pending),
    ("backlog", Status::Pending),
    ("created", Status::Pending),
    ("not_started", Status::Pending),
    ("unclaimed", Status::Pending),
    ("unassigned", Status::Pending),
    ("planned", Status::Pending),
    ("scheduled", Status::Pending),
    ("proposed", Status::Pending),
    ("reopened", Status::Pending),
    ("retry", Status::Pending),
    ("retrying", Status::Pending),
    ("expired", Status::Pending),
    ("rejected", Status::Pending),
    // Held by an agent.
    ("in_progress", Status::InProgress),
    ("inprogress", Status::InProgress),
    ("working", Status::InProgress),
    ("claimed", Status::InProgress),
    ("assigned", Status::InProgress),
    ("running", Status::InProgress),
    ("active", Status::InProgress),
    ("ongoing", Status::InProgress),
    ("doing", Status::InProgress),
    ("started", Status::InProgress),
    ("processing", Status::InProgress),
    ("wip", Status::InProgress),
    ("review", Status::InProgress),
    ("in_review", Status::InProgress),
    ("pending_review", Status::InProgress),
    ("awaiting_review", Status::InProgress),
    ("completed_pending_review", Status::InProgress),
    // Finished.
    ("completed", Status::Completed),
    ("complete", Status::Completed),
    ("done", Status::Completed),
    ("finished", Status::Completed),
    ("closed", Status::Completed),
    ("resolved", Status::Completed),
    ("success", Status::Completed),
    ("succeeded", Status::Completed),
    ("delivered", Status::Completed),
    ("approved", Status::Completed),
    // Given up on with an error.
    ("failed", Status::Failed),
    ("failure", Status::Failed),
    ("error", Status::Failed),
    ("errored", Status::Failed),
    ("crashed", Status::Failed),
    ("dead", Status::Failed),
    ("dead_letter", Status::Failed),
    // Waiting on something other than an agent.
    ("blocked", Status::Blocked),
    ("on_hold", Status::Blocked),
    ("hold", Status::Blocked),
    ("paused", Status::Blocked),
    ("stalled", Status::Blocked),
    ("suspended", Status::Blocked),
    ("waiting", Status::Blocked),
    ("awaiting", Status::Blocked),
    ("deferred", Status::Blocked),
    // Will not be done.
    ("cancelled", Status::Cancelled),
    ("canceled", Status::Cancelled),
    ("obsolete", Status::Cancelled),
    ("archived", Status::Cancelled),
    ("abandoned", Status::Cancelled),
    ("superseded", Status::Cancelled),
    ("duplicate", Status::Cancelled),
    ("dropped", Status::Cancelled),
    ("skipped", Status::Cancelled),
    ("wontfix", Status::Cancelled),
    ("wont_do", Status::Cancelled),
    ("wont_fix", Status::Cancelled),
    ("deleted", Status::Cancelled),
];

/// How a status spelling was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Already the canonical spelling (`PENDING`): nothing to record.
    Canonical(Status),
    /// A table spelling (`todo`, `TaskStatus.PENDING`, `Done`).
    Mapped(Status),
    /// A table spelling followed by qualifiers (`BLOCKED_BY_TOOL_LIMITATION`,
    /// `in_progress_captain_masterpiece`): mapped by its leading words, with a warning.
    Qualified(Status),
    /// Nothing matched: the safe default PENDING applies, with a warning.
    Unmapped,
}

impl StatusMatch {
    /// The status to store.
    pub fn status(self) -> Status {
        match self {
            Self::Canonical(s) | Self::Mapped(s) | Self::Qualified(s) => s,
            Self::Unmapped => Status::Pending,
        }
    }
}

fn lookup(key: &str) -> Option<Status> {
    STATUS_TABLE.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
}

/// Reads a status spelling: exact canonical spelling, then the table (case-insensitive, enum
/// prefixes stripped, any separator), then the longest table spelling the value starts with
/// (whole words only).
pub fn map_status(raw: &str) -> StatusMatch {
    if let Some(s) = Status::ALL.into_iter().find(|s| s.as_str() == raw) {
        return StatusMatch::Canonical(s);
    }
    let key = vocab_key(raw);
    if key.is_empty() {
        return StatusMatch::Unmapped;
    }
    if let Some(s) = lookup(&key) {
        return StatusMatch::Mapped(s);
    }
    // Longest leading run of words that is a table spelling.
    let words: Vec<&str> = key.split('_').collect();
    for n in (1..words.len()).rev() {
        if let Some(s) = lookup(&words[..n].join("_")) {
            return StatusMatch::Qualified(s);
        }
    }
    StatusMatch::Unmapped
}

/// Rank for merging duplicate copies of one task: the copy with the higher rank wins.
/// COMPLETED (5) > FAILED (4) > CANCELLED (3) > IN_PROGRESS (2) > BLOCKED (1) > PENDING (0).
///
/// Terminal states outrank live ones (a copy that reached an end is further along than any copy
/// that did not); among terminal states a completion outranks a failure, and a failure outranks
/// a cancellation because it records an attempt. A held task outranks a blocked one, and a
/// blocked one outranks one merely waiting, because each says more about progress.
pub fn status_rank(s: Status) -> u8 {
    match s {
        Status::Completed => 5,
        Status::Failed => 4,
        Status::Cancelled => 3,
        Status::InProgress => 2,
        Status::Blocked => 1,
        Status::Pending => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn st(s: &str) -> Status {
        map_status(s).status()
    }

    #[test]
    fn canonical_spellings_are_not_changes() {
        for s in Status::ALL {
            assert_eq!(map_status(s.as_str()), StatusMatch::Canonical(s));
        }
        assert_eq!(map_status("pending"), StatusMatch::Mapped(Pending));
    }

    #[test]
    fn pending_family() {
        for s in
            ["pending", "todo", "TODO", "To Do", "new", "READY", "available", "queued", "backlog", "REOPENED"]
        {
            assert_eq!(map_status(s), StatusMatch::Mapped(Pending), "{s}");
        }
    }

    #[test]
    fn in_progress_family() {
        for s in [
            "in_progress",
            "In Progress",
            "in-progress",
            "WORKING",
            "claimed",
            "CLAIMED",
            "running",
            "active",
            "ACTIVE",
            "ONGOING",
            "doing",
            "assigned",
            "COMPLETED_PENDING_REVIEW",
        ] {
            assert_eq!(map_status(s), StatusMatch::Mapped(InProgress), "{s}");
        }
    }

    #[test]
    fn completed_family() {
        for s in
            ["completed", "COMPLETE", "complete", "DONE", "Done", "finished", "CLOSED", "resolved", "success"]
        {
            assert_eq!(map_status(s), StatusMatch::Mapped(Completed), "{s}");
        }
    }

    #[test]
    fn failed_family() {
        for s in ["failed", "Failure", "ERROR", "crashed"] {
            assert_eq!(map_status(s), StatusMatch::Mapped(Failed), "{s}");
        }
    }

    #[test]
    fn blocked_family() {
        for s in ["blocked", "ON_HOLD", "on hold", "paused", "Stalled", "waiting"] {
            assert_eq!(map_status(s), StatusMatch::Mapped(Blocked), "{s}");
        }
    }

    #[test]
    fn cancelled_family() {
        for s in ["cancelled", "CANCELED", "OBSOLETE", "ARCHIVED", "superseded", "won't do", "wontfix"] {
            assert_eq!(map_status(s), StatusMatch::Mapped(Cancelled), "{s}");
        }
    }

    #[test]
    fn leaked_enum_names_are_read() {
        assert_eq!(map_status("TaskStatus.PENDING"), StatusMatch::Mapped(Pending));
        assert_eq!(map_status("<TaskStatus.COMPLETED: 'completed'>"), StatusMatch::Mapped(Completed));
        assert_eq!(map_status("Status.in_progress"), StatusMatch::Mapped(InProgress));
    }

    #[test]
    fn qualified_spellings_map_by_leading_words() {
        assert_eq!(map_status("BLOCKED_BY_TOOL_LIMITATION"), StatusMatch::Qualified(Blocked));
        assert_eq!(map_status("PAUSED_BY_DIRECTIVE"), StatusMatch::Qualified(Blocked));
        assert_eq!(map_status("in_progress_captain_masterpiece"), StatusMatch::Qualified(InProgress));
        assert_eq!(map_status("Completed - all tests passing"), StatusMatch::Qualified(Completed));
    }

    #[test]
    fn unknown_is_pending_never_completed() {
        for s in ["DOCUMENTED_WORKAROUND_FOUND", "", "   ", "Refactoring Complete", "42", "🚀"] {
            assert_eq!(map_status(s), StatusMatch::Unmapped, "{s}");
            assert_eq!(st(s), Pending);
        }
    }

    #[test]
    fn rank_orders_most_advanced_first() {
        let mut all = Status::ALL.to_vec();
        all.sort_by_key(|s| std::cmp::Reverse(status_rank(*s)));
        assert_eq!(all, vec![Completed, Failed, Cancelled, InProgress, Blocked, Pending]);
    }

    #[test]
    fn every_table_key_is_already_folded() {
        for (k, _) in STATUS_TABLE {
            assert_eq!(vocab_key(k), *k);
        }
    }
}

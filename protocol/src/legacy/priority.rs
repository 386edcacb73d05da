//! The priority table: word spellings, `P0`-`P3` and integers, onto CRITICAL/HIGH/MEDIUM/LOW.

use super::vocab_key;
use crate::task::Priority;
use serde_json::Value;

/// Legacy priority spellings (folded by [`vocab_key`]) and the canonical priority each maps to.
/// Integers and their strings follow the rule in [`map_priority`]; the docs print both.
pub const PRIORITY_TABLE: &[(&str, Priority)] = &[
    ("critical", Priority::Critical),
    ("crit", Priority::Critical),
    ("urgent", Priority::Critical),
    ("highest", Priority::Critical),
    ("blocker", Priority::Critical),
    ("emergency", Priority::Critical),
    ("immediate", Priority::Critical),
    ("p0", Priority::Critical),
    ("high", Priority::High),
    ("important", Priority::High),
    ("major", Priority::High),
    ("elevated", Priority::High),
    ("p1", Priority::High),
    ("medium", Priority::Medium),
    ("med", Priority::Medium),
    ("mid", Priority::Medium),
    ("normal", Priority::Medium),
    ("regular", Priority::Medium),
    ("default", Priority::Medium),
    ("moderate", Priority::Medium),
    ("standard", Priority::Medium),
    ("p2", Priority::Medium),
    ("low", Priority::Low),
    ("lowest", Priority::Low),
    ("minor", Priority::Low),
    ("trivial", Priority::Low),
    ("background", Priority::Low),
    ("p3", Priority::Low),
    ("p4", Priority::Low),
    ("p5", Priority::Low),
];

/// How a priority value was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityMatch {
    /// Already the canonical spelling (`HIGH`).
    Canonical(Priority),
    /// A table spelling or an integer on the 0-5 scale.
    Mapped(Priority),
    /// A table spelling followed by other words (`URGENT - MISSION COMPLETE`): with a warning.
    Qualified(Priority),
    /// Nothing matched: MEDIUM applies, with a warning.
    Unmapped,
}

impl PriorityMatch {
    pub fn priority(self) -> Priority {
        match self {
            Self::Canonical(p) | Self::Mapped(p) | Self::Qualified(p) => p,
            Self::Unmapped => Priority::Medium,
        }
    }
}

/// Integers: lower is more urgent, on the 0-5 scale legacy boards use: 0 and 1 CRITICAL,
/// 2 HIGH, 3 MEDIUM, 4 and 5 LOW. Anything else (negative, above 5, fractions) is unmapped,
/// because the scales that go higher (a default of 10) disagree about what it means.
fn from_int(n: i64) -> Option<Priority> {
    match n {
        0 | 1 => Some(Priority::Critical),
        2 => Some(Priority::High),
        3 => Some(Priority::Medium),
        4 | 5 => Some(Priority::Low),
        _ => None,
    }
}

fn lookup(key: &str) -> Option<Priority> {
    PRIORITY_TABLE.iter().find(|(k, _)| *k == key).map(|(_, p)| *p)
}

/// Reads a priority from a JSON value: a string spelling or an integer. Null is not a priority
/// (callers treat it as absent).
pub fn map_priority(v: &Value) -> PriorityMatch {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => from_int(i).map_or(PriorityMatch::Unmapped, PriorityMatch::Mapped),
            None => PriorityMatch::Unmapped,
        },
        Value::String(raw) => map_priority_str(raw),
        _ => PriorityMatch::Unmapped,
    }
}

fn map_priority_str(raw: &str) -> PriorityMatch {
    if let Some(p) = Priority::ALL.into_iter().find(|p| p.as_str() == raw) {
        return PriorityMatch::Canonical(p);
    }
    let key = vocab_key(raw);
    if let Ok(i) = key.parse::<i64>() {
        return from_int(i).map_or(PriorityMatch::Unmapped, PriorityMatch::Mapped);
    }
    if let Some(p) = lookup(&key) {
        return PriorityMatch::Mapped(p);
    }
    let words: Vec<&str> = key.split('_').collect();
    for n in (1..words.len()).rev() {
        if let Some(p) = lookup(&words[..n].join("_")) {
            return PriorityMatch::Qualified(p);
        }
    }
    PriorityMatch::Unmapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;
    use serde_json::json;

    fn m(v: Value) -> PriorityMatch {
        map_priority(&v)
    }

    #[test]
    fn canonical_words_are_not_changes() {
        for p in Priority::ALL {
            assert_eq!(m(json!(p.as_str())), PriorityMatch::Canonical(p));
        }
    }

    #[test]
    fn words_in_any_case() {
        for (s, p) in [
            ("High", High),
            ("high", High),
            ("Medium", Medium),
            ("medium", Medium),
            ("Critical", Critical),
            ("low", Low),
            ("Low", Low),
        ] {
            assert_eq!(m(json!(s)), PriorityMatch::Mapped(p), "{s}");
        }
    }

    #[test]
    fn synonyms() {
        for (s, p) in [
            ("URGENT", Critical),
            ("urgent", Critical),
            ("NORMAL", Medium),
            ("normal", Medium),
            ("regular", Medium),
            ("minor", Low),
            ("important", High),
        ] {
            assert_eq!(m(json!(s)), PriorityMatch::Mapped(p), "{s}");
        }
    }

    #[test]
    fn p_levels() {
        for (s, p) in [("P0", Critical), ("p1", High), ("P2", Medium), ("P3", Low)] {
            assert_eq!(m(json!(s)), PriorityMatch::Mapped(p), "{s}");
        }
    }

    #[test]
    fn integers_lower_is_more_urgent() {
        for (i, p) in [(0, Critical), (1, Critical), (2, High), (3, Medium), (4, Low), (5, Low)] {
            assert_eq!(m(json!(i)), PriorityMatch::Mapped(p), "{i}");
            assert_eq!(m(json!(i.to_string())), PriorityMatch::Mapped(p), "{i} as a string");
        }
        for v in [json!(-1), json!(10), json!(0.5), json!("10")] {
            assert_eq!(m(v.clone()), PriorityMatch::Unmapped, "{v}");
        }
    }

    #[test]
    fn leaked_enum_names() {
        assert_eq!(m(json!("TaskPriority.HIGH")), PriorityMatch::Mapped(High));
        assert_eq!(m(json!("<Priority.LOW: 3>")), PriorityMatch::Mapped(Low));
    }

    #[test]
    fn qualified_and_unmapped() {
        assert_eq!(m(json!("🚨 URGENT - MISSION COMPLETE")), PriorityMatch::Qualified(Critical));
        for v in
            [json!("COMPLETE"), json!("BLOCKED"), json!("Agent-7"), json!("WARN"), json!(true), json!({})]
        {
            assert_eq!(m(v.clone()), PriorityMatch::Unmapped, "{v}");
            assert_eq!(m(v).priority(), Medium);
        }
    }

    #[test]
    fn every_table_key_is_already_folded() {
        for (k, _) in PRIORITY_TABLE {
            assert_eq!(vocab_key(k), *k);
        }
    }
}

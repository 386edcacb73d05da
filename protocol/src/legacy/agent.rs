//! Agent id spellings: the `Agent-N` family and decorated names, onto valid agent names.

use super::time::is_placeholder;
use crate::names::validate_agent;

/// Words that appear where an agent id belongs but name nobody in particular: pronouns,
/// broadcast targets and "no one" markers. Compared case-insensitively, `-`/`_`/space folded.
pub const NON_AGENT_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "you",
    "yall",
    "y_all",
    "we",
    "us",
    "they",
    "them",
    "he",
    "she",
    "it",
    "self",
    "can",
    "all",
    "everyone",
    "everybody",
    "anyone",
    "anybody",
    "someone",
    "somebody",
    "nobody",
    "none",
    "null",
    "nil",
    "n_a",
    "na",
    "tbd",
    "unknown",
    "unknown_agent",
    "unassigned",
    "any",
    "agent",
    "agents",
    "broadcast",
    "all_agents",
    "all_active_agents",
    "swarm",
];

/// Spellings that, where a message's recipient belongs, address every agent: such mail is a
/// broadcast, addressed to [`crate::names::BROADCAST`]. Compared like [`NON_AGENT_WORDS`]. (As an assignee
/// they still name no agent.)
pub const BROADCAST_WORDS: &[&str] =
    &["all", "all_agents", "all_active_agents", "broadcast", "everyone", "everybody", "swarm"];

/// Does this recipient spelling address every agent (`ALL_AGENTS`, `BROADCAST`, `All Agents`)?
pub fn is_broadcast(s: &str) -> bool {
    let folded = fold(s);
    BROADCAST_WORDS.contains(&folded.as_str()) || BROADCAST_WORDS.contains(&folded.replace('_', "").as_str())
}

/// Lower case, with `-`, space, `'` and `/` as `_`: how spellings are compared with the word lists.
fn fold(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace(['-', ' ', '\'', '/'], "_")
}

/// Canonical spelling of an agent id, or `None` when the string names no agent.
///
/// 1. Decorations go: a parenthesised suffix (`Agent-8 (Captain)`), a ` - description` tail
///    (`Agent-1 - Integration Specialist`), surrounding whitespace.
/// 2. The `Agent-N` family (`Agent2`, `agent-2`, `Agent 2`, `Agent_2`, `AGENT-02`, and
///    `agent-Agent-2` with a doubled prefix) becomes `Agent-N`.
/// 3. Pronouns, broadcast targets, "nobody" words and template placeholders give `None`.
/// 4. A valid agent name (see [`validate_agent`]) passes through unchanged.
/// 5. Otherwise spaces become `-` (`Captain THEA` → `Captain-THEA`) if that makes it valid;
///    anything else gives `None`.
pub fn normalise_agent(s: &str) -> Option<String> {
    if is_placeholder(s) {
        return None;
    }
    let mut t = s.trim();
    if let Some(i) = t.find(" - ").or_else(|| t.find(" — ")) {
        t = t[..i].trim();
    }
    if let Some(i) = t.find('(')
        && i > 0
        && t.ends_with(')')
    {
        t = t[..i].trim();
    }
    if t.is_empty() {
        return None;
    }
    // `agent-Agent-1`: a mailbox-directory prefix doubled onto an Agent-N id.
    let doubled = t
        .get(..6)
        .filter(|h| h.eq_ignore_ascii_case("agent-") || h.eq_ignore_ascii_case("agent_"))
        .and_then(|_| t.get(6..))
        .and_then(agent_number);
    if let Some(n) = agent_number(t).or(doubled) {
        return Some(format!("Agent-{n}"));
    }
    let folded = fold(t);
    if NON_AGENT_WORDS.contains(&folded.as_str())
        || NON_AGENT_WORDS.contains(&folded.replace('_', "").as_str())
    {
        return None;
    }
    if validate_agent(t).is_ok() {
        return Some(t.to_string());
    }
    let hyphened = t.split_whitespace().collect::<Vec<_>>().join("-");
    if validate_agent(&hyphened).is_ok() {
        return Some(hyphened);
    }
    None
}

/// `agent`, then at most one separator (`-`, `_`, space), then digits: the number, without
/// leading zeros. Case-insensitive.
fn agent_number(t: &str) -> Option<u64> {
    let head = t.get(..5)?;
    if !head.eq_ignore_ascii_case("agent") {
        return None;
    }
    let rest = &t[5..];
    let rest = rest.strip_prefix(['-', '_', ' ']).unwrap_or(rest);
    if rest.is_empty() || rest.len() > 6 || !rest.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        normalise_agent(s)
    }

    #[test]
    fn agent_n_family() {
        for s in [
            "Agent-2",
            "Agent2",
            "agent-2",
            "Agent 2",
            "Agent_2",
            "agent_2",
            "AGENT-2",
            "agent2",
            "Agent-02",
            "  Agent-2  ",
        ] {
            assert_eq!(n(s).as_deref(), Some("Agent-2"), "{s:?}");
        }
    }

    #[test]
    fn decorations_are_dropped() {
        assert_eq!(n("Agent-8 (Captain)").as_deref(), Some("Agent-8"));
        assert_eq!(n("Agent-1 (Gemini)").as_deref(), Some("Agent-1"));
        assert_eq!(n("agent-2 (from co_captain_directive)").as_deref(), Some("Agent-2"));
        assert_eq!(n("Agent-1 - Integration & Core Systems Specialist").as_deref(), Some("Agent-1"));
        assert_eq!(n("Agent-5 (Business Intelligence & Memory Safety)").as_deref(), Some("Agent-5"));
    }

    #[test]
    fn other_valid_names_pass_through() {
        for s in ["Captain-Agent-5", "GeminiAssistant", "Worker-1", "Supervisor1", "SocialScout"] {
            assert_eq!(n(s).as_deref(), Some(s), "{s}");
        }
        assert_eq!(n("agent-Agent-1").as_deref(), Some("Agent-1"));
        assert_eq!(n("Captain THEA").as_deref(), Some("Captain-THEA"));
        assert_eq!(n("Captain Agent-4").as_deref(), Some("Captain-Agent-4"));
    }

    #[test]
    fn pronouns_placeholders_and_broadcasts_are_none() {
        for s in [
            "yall",
            "y'all",
            "i",
            "I",
            "me",
            "you",
            "all",
            "ALL",
            "can",
            "",
            "   ",
            "Agent-",
            "agent",
            "BROADCAST",
            "ALL_ACTIVE_AGENTS",
            "Unknown-Agent",
            "{{agent_id}}",
            "[TARGET_AGENT]",
            "<agent>",
            "none",
            "N/A",
        ] {
            assert_eq!(n(s), None, "{s:?}");
        }
    }

    #[test]
    fn broadcast_spellings() {
        for s in [
            "ALL",
            "all",
            "ALL_AGENTS",
            "BROADCAST",
            "broadcast",
            "ALL_ACTIVE_AGENTS",
            "All Agents",
            " everyone ",
        ] {
            assert!(is_broadcast(s), "{s:?}");
        }
        for s in ["Agent-1", "yall", "anyone", "ALL-1", "{{all}}", ""] {
            assert!(!is_broadcast(s), "{s:?}");
        }
    }

    #[test]
    fn invalid_names_that_cannot_be_fixed_are_none() {
        for s in ["../etc", "a/b", ".hidden", "ä-agent", &"x".repeat(80)] {
            assert_eq!(n(s), None, "{s:?}");
        }
    }

    #[test]
    fn results_are_always_valid_agent_names() {
        for s in ["Agent-8 (Captain)", "Captain THEA", "agent_7", "Worker-1"] {
            assert!(validate_agent(&n(s).unwrap()).is_ok());
        }
    }
}

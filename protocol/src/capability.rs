//! Capabilities: what an agent can do (`python`, `web`), declared in its mailbox's `agent.json`,
//! and what a task requires (`required_capabilities`). A task waiting in a shared pool may be
//! claimed only by an agent that holds every capability it requires.
//!
//! Capability names are compared without regard to ASCII case or surrounding blanks
//! (`PYTHON_SCRIPTING` is `python_scripting`). A task's set of requirements is named by a
//! **tag**, a hash of the set, which its dispatch name carries (`…-T-1.caps-<tag>.json`) and
//! under which the broker writes the set once, for agents to read before they claim
//! (`capabilities/<tag>.json`). A set's tag never changes, so an agent may cache what it read.

use crate::error::ValidationError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest capability name, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 64;
/// Length of a tag: 16 hexadecimal digits.
pub const TAG_LEN: usize = 16;

/// A capability name must hold something, fit in [`MAX_CAPABILITY_LEN`] bytes and have no
/// control characters.
pub fn validate_capability(name: &str) -> Result<(), ValidationError> {
    let t = name.trim();
    if t.is_empty() {
        return Err(ValidationError::new("capability", "must not be empty"));
    }
    if t.len() > MAX_CAPABILITY_LEN {
        return Err(ValidationError::new(
            "capability",
            format!("`{}` is longer than {MAX_CAPABILITY_LEN} bytes", t.escape_debug()),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ValidationError::new("capability", "must not contain control characters"));
    }
    Ok(())
}

/// How capability names compare: trimmed, ASCII lower case.
pub fn key(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// The requirements in `required` that `held` does not cover, as they were written.
pub fn missing<'a>(required: &'a [String], held: &[String]) -> Vec<&'a str> {
    let held: Vec<String> = held.iter().map(|h| key(h)).collect();
    let mut out: Vec<&str> = Vec::new();
    for r in required {
        if !held.contains(&key(r)) && !out.iter().any(|o| key(o) == key(r)) {
            out.push(r.as_str());
        }
    }
    out
}

/// The set `required` as compared: keys, sorted, each once.
pub fn canonical(required: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = required.iter().map(|r| key(r)).filter(|k| !k.is_empty()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The tag of a set of requirements (16 hex digits of a 64-bit FNV-1a hash of its canonical
/// form), or `None` for no requirement. Stable across builds and machines.
pub fn tag(required: &[String]) -> Option<String> {
    let keys = canonical(required);
    if keys.is_empty() {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in keys.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some(format!("{h:016x}"))
}

/// Is `s` a well-formed tag (what a dispatch name may carry)?
pub fn is_tag(s: &str) -> bool {
    s.len() == TAG_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `mailboxes/<agent>/agent.json`: what an agent declares about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentProfile {
    /// The capabilities the agent holds.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `capabilities/<tag>.json`: the set of requirements a tag stands for, written by the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CapabilitySet {
    pub tag: String,
    /// The requirements, as compared (see [`canonical`]).
    pub capabilities: Vec<String>,
}

impl CapabilitySet {
    /// The set a task's requirements make, or `None` for no requirement.
    pub fn of(required: &[String]) -> Option<Self> {
        tag(required).map(|tag| Self { tag, capabilities: canonical(required) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_ignores_case_and_blanks() {
        let req = v(&["PYTHON_SCRIPTING", "web", "Web"]);
        assert_eq!(missing(&req, &v(&["python_scripting "])), ["web"]);
        assert!(missing(&req, &v(&["WEB", "Python_Scripting"])).is_empty());
        assert_eq!(missing(&req, &[]), ["PYTHON_SCRIPTING", "web"]);
    }

    #[test]
    fn tags_name_the_set_not_its_spelling() {
        assert_eq!(tag(&[]), None);
        let a = tag(&v(&["web", "python"])).unwrap();
        assert_eq!(tag(&v(&["Python", " WEB", "web"])), Some(a.clone()));
        assert_ne!(tag(&v(&["web"])), Some(a.clone()));
        assert!(is_tag(&a), "{a}");
        assert!(!is_tag("xyz") && !is_tag(&"A".repeat(TAG_LEN)));
        assert_eq!(CapabilitySet::of(&v(&["Web", "python"])).unwrap().capabilities, ["python", "web"]);
    }

    #[test]
    fn capability_names() {
        assert!(validate_capability("PYTHON_SCRIPTING").is_ok());
        assert!(validate_capability("Data analysis").is_ok());
        for bad in ["", "  ", "a\nb", &"x".repeat(65)] {
            assert!(validate_capability(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// An agent holding exactly the requirements lacks none of them, and one holding none
        /// lacks every distinct one.
        #[test]
        fn holding_the_set_covers_it(req in proptest::collection::vec("[a-zA-Z_ ]{1,8}", 0..6)) {
            let req: Vec<String> = req.into_iter().filter(|r| !r.trim().is_empty()).collect();
            prop_assert!(missing(&req, &req).is_empty());
            prop_assert_eq!(missing(&req, &[]).len(), canonical(&req).len());
            prop_assert_eq!(tag(&req).is_some(), !req.is_empty());
        }
    }
}

//! File and directory names: agent names, pool names, dispatch (claim) names and unique message
//! names. Nothing here touches the filesystem; `runtime-layout` turns these names into paths.
//!
//! A **dispatch name** is the name under which a task waits in a `new/` directory and, once
//! claimed, sits in an agent's `cur/`. It is also the claim token:
//!
//! ```text
//!   1-20250501T100000500000-000000000042-LEAD-TWITTER-2135e6f2.json
//!   │ │                     │            └ task id, made path-safe and shortened (for operators)
//!   │ │                     └ broker dispatch sequence: unique, new on every dispatch
//!   │ └ task creation time (older first)
//!   └ priority rank: 0 CRITICAL, 1 HIGH, 2 MEDIUM, 3 LOW (urgent first)
//! ```
//!
//! Plain byte order of these names is dispatch order. A task in a shared pool that requires
//! capabilities carries their tag (see [`crate::capability`]) before `.json`:
//! `…-LEAD-7.caps-3f2a9c1e0b4d5a67.json`.

use crate::error::ValidationError;
use crate::task::Priority;
use crate::time::Timestamp;

/// Longest agent or pool name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest task-id fragment carried in a dispatch name.
pub const MAX_ID_FRAGMENT: usize = 80;

/// The agent and pool name rules below as a regular expression, for the JSON Schema (it cannot say
/// "no `..`"; [`validate_agent`] does).
pub const AGENT_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The address of a broadcast: mail sent to `ALL` goes to every registered agent but its sender.
/// No agent may take this name, in any case.
pub const BROADCAST: &str = "ALL";
/// The prefix of a group's address: `@reviewers` is the group `reviewers` of `mailroom.toml`'s
/// `[groups]`. Agent names start with a letter or digit, so no agent name starts with it.
pub const GROUP_PREFIX: char = '@';

/// The address rules (an agent name, `ALL`, or `@` and a group name) as a regular expression, for
/// the JSON Schema (it cannot say "no `..`" nor "not `all` in another case"; [`Recipient::parse`]
/// does).
pub const RECIPIENT_PATTERN: &str = "^@?[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// Agent names are case-sensitive and path-safe: 1-64 bytes of `A-Z a-z 0-9 - _ .`, starting
/// with a letter or digit, with no `..`, and not [`BROADCAST`] in any case.
pub fn validate_agent(name: &str) -> Result<(), ValidationError> {
    check_segment(name, "agent")?;
    if name.eq_ignore_ascii_case(BROADCAST) {
        return Err(ValidationError::new(
            "agent",
            format!("`{name}` is reserved: mail to `{BROADCAST}` goes to every agent"),
        ));
    }
    Ok(())
}

/// Group names (`[groups]` of `mailroom.toml`, addressed as `@name`) follow the pool-name rules.
pub fn validate_group(name: &str) -> Result<(), ValidationError> {
    check_segment(name, "group")
}

/// Whom mail is addressed to: one agent, every agent ([`BROADCAST`]), or a named group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Agent(String),
    All,
    Group(String),
}

impl Recipient {
    /// Reads an address: `ALL`, `@group`, or an agent name. The error names the field `to`.
    pub fn parse(address: &str) -> Result<Self, ValidationError> {
        if address == BROADCAST {
            return Ok(Self::All);
        }
        if let Some(group) = address.strip_prefix(GROUP_PREFIX) {
            return validate_group(group)
                .map(|()| Self::Group(group.to_string()))
                .map_err(|e| ValidationError::new("to", e.rule));
        }
        validate_agent(address)
            .map(|()| Self::Agent(address.to_string()))
            .map_err(|e| ValidationError::new("to", e.rule))
    }

    /// The address as it is written: `ALL`, `@group` or the agent's name.
    pub fn address(&self) -> String {
        match self {
            Self::Agent(a) => a.clone(),
            Self::All => BROADCAST.to_string(),
            Self::Group(g) => format!("{GROUP_PREFIX}{g}"),
        }
    }
}

/// Pool names follow the agent-name rules.
pub fn validate_pool(name: &str) -> Result<(), ValidationError> {
    check_segment(name, "pool")
}

fn check_segment(name: &str, what: &str) -> Result<(), ValidationError> {
    let rule = |r: &str| Err(ValidationError::new(what, format!("`{}` {r}", name.escape_debug())));
    if name.is_empty() {
        return rule("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return rule(&format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return rule("must start with a letter or a digit");
    }
    if !name.chars().all(is_name_char) {
        return rule("may contain only letters, digits, `-`, `_` and `.`");
    }
    if name.contains("..") {
        return rule("must not contain `..`");
    }
    Ok(())
}

/// The suffix of the file beside each quarantine entry that says why it is there.
pub const REASON_SUFFIX: &str = ".error.json";

/// A quarantine entry named by an operator (`requeue`): one file name inside
/// `broker/quarantine/`, so no `/`, no NUL, not `.` or `..` nor any other dot-file, and not the
/// `<entry>.error.json` that holds an entry's reason. Whether the entry exists is the broker's
/// to say.
pub fn validate_quarantine_entry(name: &str) -> Result<(), ValidationError> {
    let rule = |r: &str| Err(ValidationError::new("name", format!("`{}` {r}", name.escape_debug())));
    if name.is_empty() {
        return rule("is empty");
    }
    if name.len() > 255 {
        return rule("is longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\0') {
        return rule("must be a file name within broker/quarantine/ (no `/`)");
    }
    if name.starts_with('.') {
        return rule("must not start with `.` (`..` and hidden files are not entries)");
    }
    if name.ends_with(REASON_SUFFIX) {
        return rule("is the reason of an entry, not an entry (name the entry itself)");
    }
    Ok(())
}

/// The pool a task type routes to by default: characters outside `A-Za-z0-9-_.` become `_`,
/// the result is shortened to 64 bytes, and an absent or empty type gives `default`.
pub fn pool_for_task_type(task_type: Option<&str>) -> String {
    let raw = task_type.map(str::trim).unwrap_or("");
    let mut out: String = raw.chars().map(|c| if is_name_char(c) { c } else { '_' }).collect();
    while out.contains("..") {
        out = out.replace("..", "_.");
    }
    if out.starts_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.insert(0, 'x');
    }
    out.truncate(MAX_NAME_LEN);
    if out.is_empty() { "default".to_string() } else { out }
}

/// A task id made safe to appear inside a file name (never used alone as a path).
pub fn id_fragment(task_id: &str) -> String {
    // `.` becomes `_` too, so a fragment can never form `..` with the `.json` that follows it.
    let mut out: String = task_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' })
        .collect();
    let mut cut = MAX_ID_FRAGMENT.min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    if out.is_empty() { "_".to_string() } else { out }
}

/// What separates the tag of a task's required capabilities from the id fragment.
pub const CAPS_MARK: &str = ".caps-";

/// The parts of a dispatch name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DispatchName {
    pub priority: Priority,
    /// The task's creation time, in [`Timestamp::compact`] form.
    pub created: String,
    pub seq: u64,
    pub id_fragment: String,
    /// The tag of the capabilities the task requires (see [`crate::capability::tag`]), for a
    /// task waiting in a shared pool that requires some.
    pub caps: Option<String>,
}

impl DispatchName {
    pub fn new(priority: Priority, created: Timestamp, seq: u64, task_id: &str) -> Self {
        Self { priority, created: created.compact(), seq, id_fragment: id_fragment(task_id), caps: None }
    }

    /// The same name, carrying the tag of the capabilities a claimant must hold.
    pub fn with_caps(mut self, tag: Option<String>) -> Self {
        self.caps = tag;
        self
    }

    /// Parses a file name; `None` if it is not a dispatch name (mail, notices, strays).
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".json")?;
        let (stem, caps) = match stem.rsplit_once(CAPS_MARK) {
            Some((stem, tag)) if crate::capability::is_tag(tag) => (stem, Some(tag.to_string())),
            Some(_) => return None,
            None => (stem, None),
        };
        let mut parts = stem.splitn(4, '-');
        let rank = parts.next()?;
        let created = parts.next()?;
        let seq = parts.next()?;
        let frag = parts.next()?;
        if rank.len() != 1 || created.len() != 21 || seq.len() != 12 || frag.is_empty() {
            return None;
        }
        let priority = Priority::from_rank(rank.parse().ok()?)?;
        if !created.chars().all(|c| c.is_ascii_digit() || c == 'T')
            || !seq.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        if !frag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
            return None;
        }
        Some(Self {
            priority,
            created: created.to_string(),
            seq: seq.parse().ok()?,
            id_fragment: frag.to_string(),
            caps,
        })
    }

    pub fn file_name(&self) -> String {
        let caps = self.caps.as_deref().map(|t| format!("{CAPS_MARK}{t}")).unwrap_or_default();
        format!("{}-{}-{:012}-{}{caps}.json", self.priority.rank(), self.created, self.seq, self.id_fragment)
    }
}

/// Is `name` something a reader of `new/` or `cur/` must skip (dot-files, temporaries)?
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp")
}

/// A unique name for a file delivered into a maildir, maildir style:
/// `<kind>-<time>.P<pid>Q<counter>R<random>.<host>.json`. `kind` is `msg` for messages to the
/// broker, `mail` for mail and `notice` for broker notices. Time leads so that names sort in
/// delivery order within a kind.
pub fn unique_name(kind: &str, now: Timestamp, pid: u32, counter: u64, random: u32, host: &str) -> String {
    let host: String =
        host.chars().take(32).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("{kind}-{}.P{pid}Q{counter}R{random:08x}.{host}.json", now.compact())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quarantine_entries_are_single_names_and_never_reasons() {
        for ok in ["000000000042-msg-1.json", "x", "a..b.json", "000000000007-drop-1-lead 42.json"] {
            assert!(validate_quarantine_entry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../journal/segment-1.jsonl",
            "a/b",
            "/etc/passwd",
            ".hidden",
            "e.json.error.json",
            "a\0b",
        ] {
            let e = validate_quarantine_entry(bad).unwrap_err();
            assert_eq!(e.field, "name", "{bad}");
        }
        assert!(validate_quarantine_entry(&"x".repeat(256)).is_err());
    }

    /// The schema's pattern says what `check_segment` checks (but `..`, which it cannot say).
    #[test]
    fn agent_pattern_follows_the_rules() {
        assert_eq!(AGENT_PATTERN, format!("^[A-Za-z0-9][A-Za-z0-9._-]{{0,{}}}$", MAX_NAME_LEN - 1));
        for c in ['-', '_', '.'] {
            assert!(is_name_char(c) && AGENT_PATTERN.contains(c));
        }
    }

    #[test]
    fn agent_names() {
        for ok in ["Agent-5", "agent_2", "A", "Captain-Agent-8", "w1.x"] {
            assert!(validate_agent(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../etc", "a/b", ".hidden", "-x", "a..b", "Agent 2", "ä", &"x".repeat(65)] {
            assert!(validate_agent(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_agent("a/b").unwrap_err().field, "agent");
        for reserved in ["ALL", "all", "All"] {
            assert!(validate_agent(reserved).unwrap_err().rule.contains("reserved"), "{reserved}");
        }
        assert!(validate_agent("ALL-1").is_ok() && validate_agent("Allie").is_ok());
    }

    #[test]
    fn recipients() {
        assert_eq!(Recipient::parse("ALL"), Ok(Recipient::All));
        assert_eq!(Recipient::parse("@reviewers"), Ok(Recipient::Group("reviewers".into())));
        assert_eq!(Recipient::parse("Agent-5"), Ok(Recipient::Agent("Agent-5".into())));
        for bad in ["all", "@", "@../x", "@a b", "", "a/b", "@@x"] {
            let e = Recipient::parse(bad).unwrap_err();
            assert_eq!(e.field, "to", "{bad}");
        }
        for r in [Recipient::All, Recipient::Group("g".into()), Recipient::Agent("A".into())] {
            assert_eq!(Recipient::parse(&r.address()), Ok(r));
        }
    }

    #[test]
    fn pools() {
        assert_eq!(pool_for_task_type(None), "default");
        assert_eq!(pool_for_task_type(Some("  ")), "default");
        assert_eq!(pool_for_task_type(Some("REFACTOR/MAINTENANCE")), "REFACTOR_MAINTENANCE");
        assert!(!pool_for_task_type(Some("../../etc")).contains(".."));
        assert!(validate_pool(&pool_for_task_type(Some("../../etc"))).is_ok());
        assert!(validate_pool(&pool_for_task_type(Some(".hidden"))).is_ok());
    }

    #[test]
    fn dispatch_names_round_trip_and_sort() {
        let t0 = Timestamp::from_micros(1_700_000_000_000_000);
        let a = DispatchName::new(Priority::High, t0.plus_secs(100), 9, "LEAD/../x");
        let b = DispatchName::new(Priority::Medium, t0, 1, "older but less urgent");
        let c = DispatchName::new(Priority::High, t0, 10, "older");
        let mut names = vec![b.file_name(), a.file_name(), c.file_name()];
        names.sort();
        assert_eq!(names, vec![c.file_name(), a.file_name(), b.file_name()]);
        assert_eq!(DispatchName::parse(&a.file_name()), Some(a.clone()));
        assert!(!a.file_name().contains('/'));
        assert_eq!(DispatchName::parse("mail-20250101T000000000000.P1Q1R0.h.json"), None);
        assert_eq!(DispatchName::parse("../1-x.json"), None);
        let gated = c.clone().with_caps(Some("0123456789abcdef".into()));
        assert!(gated.file_name().ends_with("-older.caps-0123456789abcdef.json"), "{}", gated.file_name());
        assert_eq!(DispatchName::parse(&gated.file_name()), Some(gated.clone()));
        let mut with_tag = vec![gated.file_name(), a.file_name(), b.file_name()];
        with_tag.sort();
        assert_eq!(with_tag, [gated.file_name(), a.file_name(), b.file_name()], "the tag changes no order");
        let bad = c.file_name().replace(".json", ".caps-xyz.json");
        assert_eq!(DispatchName::parse(&bad), None);
    }

    proptest! {
        #[test]
        fn any_task_id_gives_a_safe_parseable_name(id in "\\PC{1,300}", seq in 0u64..999_999_999_999, rank in 0u8..4, caps in proptest::option::of("[a-z]{1,10}")) {
            let tag = caps.and_then(|c| crate::capability::tag(&[c]));
            let n = DispatchName::new(Priority::from_rank(rank).unwrap(), Timestamp::from_micros(1_600_000_000_000_000), seq, &id).with_caps(tag);
            let name = n.file_name();
            prop_assert!(name.len() < 200);
            prop_assert!(!name.contains('/') && !name.starts_with('.') && !name.contains(".."));
            prop_assert!(name.is_ascii());
            prop_assert_eq!(DispatchName::parse(&name), Some(n));
        }

        #[test]
        fn any_task_type_gives_a_valid_pool(t in "\\PC{0,100}") {
            prop_assert!(validate_pool(&pool_for_task_type(Some(&t))).is_ok());
        }

        #[test]
        fn no_agent_name_is_a_broadcast_or_a_group(s in "[@a-zA-Z0-9._-]{0,70}") {
            if validate_agent(&s).is_ok() {
                prop_assert_eq!(Recipient::parse(&s), Ok(Recipient::Agent(s.clone())));
            }
        }

        #[test]
        fn agent_validation_never_admits_path_tricks(s in "[a-zA-Z0-9./ _-]{0,70}") {
            if validate_agent(&s).is_ok() {
                prop_assert!(!s.contains('/') && !s.contains("..") && !s.starts_with('.') && !s.is_empty());
            }
        }
    }
}

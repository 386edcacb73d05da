//! Refused input: why it was refused ([`Refusal`]), and how it leaves — journaled, moved (or
//! copied) into `broker/quarantine/` beside a `<name>.error.json` that names the file, the field
//! and the rule, and, when the input names an agent, a notice to that agent. Nothing refused is
//! ever deleted.
//!
//! And how it comes back: [`requeue`] (a `requeue` message or command) journals the requeue, then,
//! after the commit, moves the entry into `broker/inbox/new/` under a fresh name and its reason
//! into `broker/quarantine/requeued/`, kept as history. The inbox handles it again from the start:
//! input still bad goes back to quarantine with its (new) reason, under a new name.

use super::effects::{Effect, Post, json_pretty};
use super::env::Env;
use super::legacy::{DROP_PREFIX, MAIL_DROP_PREFIX};
use super::tx::Tx;
use crate::journal::{Entry, Rejected, Requeued};
use protocol::ValidationError;
use protocol::message::{Message, Notice, NoticeKind};
use protocol::names::{REASON_SUFFIX, validate_agent, validate_quarantine_entry};
use runtime_layout::FileKind;
use serde_json::{Value, json};
use std::fmt;
use std::path::{Path, PathBuf};

/// The directory of `broker/quarantine/` where the reasons of requeued entries are kept.
pub const REQUEUED_DIR: &str = "requeued";

/// Why a message (or a task within a file) was refused.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub notice: NoticeKind,
    pub field: String,
    pub rule: String,
    pub task_id: Option<String>,
}

impl Refusal {
    pub fn new(notice: NoticeKind, field: &str, rule: impl Into<String>) -> Self {
        Self { notice, field: field.into(), rule: rule.into(), task_id: None }
    }

    /// A refusal of invalid input (the usual kind).
    pub fn rejected(field: &str, rule: impl Into<String>) -> Self {
        Self::new(NoticeKind::Rejected, field, rule)
    }

    /// Names the task the refused input was about.
    pub fn task(mut self, id: &str) -> Self {
        self.task_id = Some(id.to_string());
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "field `{}`: {}", self.field, self.rule)
        }
    }
}

impl From<ValidationError> for Refusal {
    fn from(e: ValidationError) -> Self {
        Self::rejected(&e.field, e.rule)
    }
}

/// A file name made safe to show and to reuse as part of a quarantine name.
pub(crate) fn printable(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_control() || c == '/' { '_' } else { c }).collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    let mut cut = s.len().min(150);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// The quarantine name of input refused by the record numbered `seq`: unique, and sorted by time.
fn entry_name(seq: u64, name: &str) -> String {
    format!("{seq:012}-{}", printable(name))
}

/// Journals the refusal of a whole file, moves it into quarantine with its reason and tells the
/// sender. `name` is the inbox message's name (or a name made up for a file elsewhere).
pub(crate) fn reject_file(tx: &mut Tx, from: &Path, name: &str, msg: Option<&Message>, r: Refusal) {
    let now = tx.now();
    let to = tx.env.layout.quarantine_dir().join(entry_name(tx.ledger.next_seq(), name));
    let reason_text = r.to_string();
    let reason = json!({
        "file": tx.env.rel(from),
        "quarantined_at": now,
        "field": r.field,
        "rule": r.rule,
        "reason": reason_text,
        "kind": msg.map(Message::kind),
        "task_id": r.task_id,
    });
    let path = tx.env.rel(&to);
    let sender = msg.and_then(Message::sender).map(str::to_string);
    tx.push(Entry::Reject(record(name, sender.clone(), &r, &reason_text, path.clone())));
    tx.push(Entry::Consume { msg: name.to_string(), path, board: None });
    tracing::warn!(file = %tx.env.rel(from), reason = %reason_text, "quarantined");
    tx.effect(Effect::Quarantine { from: from.to_path_buf(), to, reason });
    notify(tx, sender, msg, r, reason_text);
}

/// Journals the refusal of a message that came on the broker's socket (`name` is its file name;
/// the journal says it was refused at the socket) and tells the sender, as [`reject_file`] does
/// for a file; there is no file to keep. The caller answers after the commit.
pub(crate) fn reject_socket(tx: &mut Tx, name: &str, msg: &Message, r: Refusal) {
    let reason_text = r.to_string();
    let sender = msg.sender().map(str::to_string);
    tx.push(Entry::Reject(record(name, sender.clone(), &r, &reason_text, protocol::socket::SOCKET.into())));
    tracing::info!(message = %name, reason = %reason_text, "refused on the local socket");
    notify(tx, sender, Some(msg), r, reason_text);
}

/// The journal's record of the refusal of the message `name` (sent by `agent`), kept at `path`.
fn record(name: &str, agent: Option<String>, r: &Refusal, reason: &str, path: String) -> Rejected {
    Rejected {
        msg: Some(name.to_string()),
        task_id: r.task_id.clone(),
        agent,
        notice: Some(r.notice),
        field: r.field.clone(),
        rule: r.rule.clone(),
        reason: reason.to_string(),
        path,
        ..Default::default()
    }
}

/// The notice of a refusal, to the agent that sent the message (if an agent did).
fn notify(tx: &mut Tx, agent: Option<String>, msg: Option<&Message>, r: Refusal, reason: String) {
    let Some(agent) = agent else { return };
    let mut n = Notice::new(r.notice, tx.now(), reason);
    n.task_id = r.task_id;
    n.claim = match msg {
        Some(
            Message::Complete { claim, .. } | Message::Fail { claim, .. } | Message::Release { claim, .. },
        ) => Some(claim.clone()),
        _ => None,
    };
    n.message = msg.map(Message::to_value);
    tx.effect(Effect::Post { agent, post: Post::Notice(n) });
}

/// Journals the refusal of one task of a multi-task file (the file itself is consumed) and
/// quarantines that task as a JSON file of its own.
pub(crate) fn reject_part(tx: &mut Tx, name: &str, index: usize, raw: &Value, r: &Refusal) {
    let now = tx.now();
    let qname = format!("{}-task{index}.json", entry_name(tx.ledger.next_seq(), name));
    let to = tx.env.layout.quarantine_dir().join(&qname);
    let file = tx.env.rel(&tx.env.layout.broker_inbox().new_dir().join(name));
    let reason = json!({
        "file": file,
        "part": index,
        "quarantined_at": now,
        "field": r.field,
        "rule": r.rule,
        "reason": r.to_string(),
        "task_id": r.task_id,
    });
    // Not `msg`: that would mark the whole file as handled (and bound for this part's
    // quarantine path) if a crash kept this record without the file's own.
    tx.push(Entry::Reject(Rejected {
        file: Some(name.to_string()),
        part: Some(index),
        task_id: r.task_id.clone(),
        field: r.field.clone(),
        rule: r.rule.clone(),
        reason: r.to_string(),
        path: tx.env.rel(&to),
        ..Default::default()
    }));
    tx.effect(Effect::QuarantineCopy { to, bytes: json_pretty(raw), reason });
}

/// Journals and quarantines a file the broker finds where it has no business being (a task file
/// under a name the broker never dispatched or no longer knows).
pub(crate) fn stray(tx: &mut Tx, path: &Path, name: &str, why: &str) {
    let now = tx.now();
    let to = tx.env.layout.quarantine_dir().join(entry_name(tx.ledger.next_seq(), name));
    tx.push(Entry::Stray { reason: why.to_string(), path: tx.env.rel(&to), from: tx.env.rel(path) });
    let reason = json!({"file": tx.env.rel(path), "quarantined_at": now, "reason": why});
    tx.effect(Effect::Quarantine { from: path.to_path_buf(), to, reason });
}

/// The reason file beside a quarantine entry (or beside where it was).
pub(crate) fn reason_path(entry: &Path) -> PathBuf {
    let mut p = entry.as_os_str().to_owned();
    p.push(REASON_SUFFIX);
    PathBuf::from(p)
}

/// Journals that the quarantine entry `name` goes back into the inbox, and queues the moves.
/// Refuses anything but a regular file directly inside `broker/quarantine/` that is not an
/// entry's reason, and an entry requeued already. `msg` is the message (or command) asking.
pub(crate) fn requeue(tx: &mut Tx, name: &str, msg: &str) -> Result<(), Refusal> {
    validate_quarantine_entry(name).map_err(Refusal::from)?;
    if tx.state().requeued(name) {
        return Err(Refusal::rejected("name", format!("`{name}` was requeued already")));
    }
    let dir = tx.env.layout.quarantine_dir();
    let from = dir.join(name);
    match tx.env.fs().stat(&from) {
        Ok(Some(m)) if m.kind == FileKind::File => {}
        Ok(Some(m)) => {
            return Err(Refusal::rejected(
                "name",
                format!("`{name}` is a {}, not a quarantined file", m.kind),
            ));
        }
        Ok(None) => return Err(Refusal::rejected("name", format!("no quarantine entry `{name}`"))),
        Err(e) => return Err(Refusal::rejected("name", format!("`{name}` cannot be looked at: {e}"))),
    }
    let reason_from = reason_path(&from);
    // The reason names where the input came from (so it goes back through the same door) and
    // the task it was about. A reason that cannot be read only costs those two.
    let reason: Value = match tx.env.fs().read(&reason_from, 1 << 20) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(e) if e.is_not_found() => Value::Null,
        Err(e) => {
            tracing::warn!(entry = %name, error = %e, "requeue: the entry's reason cannot be read");
            Value::Null
        }
    };
    let fresh = fresh_name(tx.env, reason["file"].as_str());
    let to = tx.env.layout.broker_inbox().new_dir().join(&fresh);
    let reason_to = reason_path(&dir.join(REQUEUED_DIR).join(name));
    tx.push(Entry::Requeue(Requeued {
        name: name.to_string(),
        path: tx.env.rel(&to),
        reason_path: tx.env.rel(&reason_to),
        msg: msg.to_string(),
        task_id: reason["task_id"].as_str().map(str::to_string),
    }));
    tracing::info!(entry = %name, as_message = %fresh, "requeued from quarantine");
    tx.effect(Effect::Requeue { from, to, reason_from, reason_to });
    Ok(())
}

/// The inbox name a requeued entry gets: fresh, and of the same door it first came through —
/// a file that came in through `drop/` or a legacy mailbox keeps its lenient prefix (and its
/// mailbox's agent), a strict message gets a plain name.
fn fresh_name(env: &Env, original: Option<&str>) -> String {
    let unique = env.names.next("r");
    let unique = unique.trim_start_matches("r-").trim_end_matches(".json");
    let Some(file) = original else { return env.names.next("requeued") };
    let path = Path::new(file);
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry.json");
    let inbox = env.rel(&env.layout.broker_inbox().new_dir());
    if path.parent() == Some(Path::new(&inbox)) {
        if let Some(agent) = base.strip_prefix(MAIL_DROP_PREFIX).and_then(|r| r.split('+').next()) {
            return format!("{MAIL_DROP_PREFIX}{agent}+{unique}-{}", printable(base));
        }
        if base.starts_with(DROP_PREFIX) {
            return format!("{DROP_PREFIX}{unique}-{}", printable(base));
        }
        return env.names.next("requeued");
    }
    // From outside the inbox: a drop directory, or `<mail dir>/<agent>/inbox/`.
    let parent = path.parent();
    let mailbox_agent = parent
        .filter(|p| p.file_name().is_some_and(|n| n == "inbox"))
        .and_then(Path::parent)
        .and_then(|p| p.file_name()?.to_str())
        .filter(|a| validate_agent(a).is_ok() && !path.starts_with(env.layout.comms()));
    match mailbox_agent {
        Some(agent) => format!("{MAIL_DROP_PREFIX}{agent}+{unique}-{}", printable(base)),
        None => format!("{DROP_PREFIX}{unique}-{}", printable(base)),
    }
}

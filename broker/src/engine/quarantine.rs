//! Refused input: why it was refused ([`Refusal`]), and how it leaves — journaled, moved (or
//! copied) into `broker/quarantine/` beside a `<name>.error.json` that names the file, the field
//! and the rule, and, when the input names an agent, a notice to that agent. Nothing refused is
//! ever deleted.

use super::effects::{Effect, Post, json_pretty};
use super::tx::Tx;
use crate::journal::{Entry, Rejected};
use protocol::ValidationError;
use protocol::message::{Message, Notice, NoticeKind};
use serde_json::{Value, json};
use std::fmt;
use std::path::Path;

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
    tx.push(Entry::Reject(Rejected {
        msg: Some(name.to_string()),
        task_id: r.task_id.clone(),
        agent: sender.clone(),
        notice: Some(r.notice),
        field: r.field.clone(),
        rule: r.rule.clone(),
        reason: reason_text.clone(),
        path: path.clone(),
        ..Default::default()
    }));
    tx.push(Entry::Consume { msg: name.to_string(), path, board: None });
    tracing::warn!(file = %tx.env.rel(from), reason = %reason_text, "quarantined");
    tx.effect(Effect::Quarantine { from: from.to_path_buf(), to, reason });
    if let Some(agent) = sender {
        let mut n = Notice::new(r.notice, now, reason_text);
        n.task_id = r.task_id;
        n.claim = match msg {
            Some(
                Message::Complete { claim, .. }
                | Message::Fail { claim, .. }
                | Message::Release { claim, .. },
            ) => Some(claim.clone()),
            _ => None,
        };
        n.message = msg.map(Message::to_value);
        tx.effect(Effect::Post { agent, post: Post::Notice(n) });
    }
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

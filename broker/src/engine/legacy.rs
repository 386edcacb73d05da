//! The lenient front door for what existing scripts write: a file taken from a drop directory
//! (`drop-…` in the inbox) or a legacy mailbox (`maildrop+<agent>+…`) is parsed leniently,
//! normalised by `protocol::legacy`, and then goes through the same admission and state machine
//! as any message. A file of several tasks is consumed if any is taken; each refused task is
//! quarantined on its own.

use super::admission::{Admission, admit, identity};
use super::inbox::handle;
use super::mail::{Letter, send};
use super::quarantine::{Refusal, reject_part};
use super::tx::Tx;
use crate::state::fnv64;
use protocol::legacy;
use protocol::message::Message;
use serde_json::Value;

/// Inbox name prefix of a task file taken from a drop directory.
pub const DROP_PREFIX: &str = "drop-";
/// Inbox name prefix of a message taken from a legacy mailbox: `maildrop+<agent>+<unique>-<name>`.
pub const MAIL_DROP_PREFIX: &str = "maildrop+";

/// Is this inbox message one that goes through the lenient path?
pub fn is_legacy_name(name: &str) -> bool {
    name.starts_with(DROP_PREFIX) || name.starts_with(MAIL_DROP_PREFIX)
}

/// Is a dropped file complete enough to take: anything the lenient parser can read (strict JSON
/// included)? The error is what a quarantine after the settle timeout reports.
pub fn parses(bytes: &[u8]) -> Result<(), protocol::ValidationError> {
    legacy::parse_lenient(bytes)
        .map(|_| ())
        .map_err(|f| protocol::ValidationError::new("", format!("not parseable: {f}")))
}

/// The hash of a task object's JSON as written (a board entry the board writer wrote is
/// recognised by it).
pub(crate) fn task_hash(v: &Value) -> u64 {
    fnv64(&serde_json::to_vec(v).expect("a JSON value serialises"))
}

/// The id a raw legacy object names, for error reports (before normalisation succeeds).
pub(crate) fn raw_id(v: &Value) -> Option<String> {
    ["task_id", "id", "taskId", "task"].iter().find_map(|k| match v.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A legacy message with no recipient field is addressed to the owner of the inbox it was in.
pub(crate) fn default_recipient(value: &mut Value, agent: &str) {
    if let Value::Object(m) = value
        && !legacy::mail_recipient_named(m)
        && !agent.is_empty()
    {
        m.insert("to".into(), Value::String(agent.to_string()));
    }
}

/// A refusal, with the message it concerns when the file turned out to be a strict message.
pub(crate) type LegacyRefusal = (Refusal, Option<Box<Message>>);

/// A file taken from a drop directory or a legacy mailbox.
pub(crate) fn consume(tx: &mut Tx, name: &str, bytes: &[u8]) -> Result<(), LegacyRefusal> {
    let now = tx.now();
    let lenient = legacy::parse_lenient(bytes)
        .map_err(|f| (Refusal::rejected("", format!("not parseable: {f}")), None))?;
    let mut value = lenient.value;
    if let Some(rest) = name.strip_prefix(MAIL_DROP_PREFIX) {
        let dir_agent = rest.split('+').next().unwrap_or_default();
        default_recipient(&mut value, dir_agent);
        let mail = legacy::normalise_mail(&value, now).map_err(|e| (e.into(), None))?;
        let msg = Message::Send {
            from: mail.from.clone(),
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
        };
        let letter = Letter {
            from: mail.from,
            to: mail.to,
            subject: mail.subject,
            body: mail.body,
            sent_at: mail.sent_at,
            read: mail.read,
        };
        return send(tx, letter, name).map_err(|r| (r, Some(Box::new(msg))));
    }
    // A message written by a script that knows the protocol: strict, like the inbox.
    if value.get("kind").and_then(Value::as_str).is_some_and(|k| k != "submit") {
        let msg = Message::from_value(value).map_err(|e| (e.into(), None))?;
        return handle(tx, &msg, name).map_err(|r| (r, Some(Box::new(msg))));
    }
    let tasks = match value.get("kind").and_then(Value::as_str) {
        Some("submit") => vec![value.get("task").cloned().unwrap_or(Value::Null)],
        _ => legacy::extract_tasks(&value).map_err(|why| (Refusal::rejected("", why), None))?.tasks,
    };
    let total = tasks.len();
    if total == 0 {
        return Err((Refusal::rejected("", "no task in this file"), None));
    }
    let mut taken = 0;
    let mut refused = Vec::new();
    for (i, raw) in tasks.into_iter().enumerate() {
        match submit(tx, &raw, name) {
            Ok(()) => taken += 1,
            Err(r) if total == 1 => return Err((r, None)),
            Err(r) => refused.push((i, raw, r)),
        }
    }
    // Nothing taken: the whole file goes to quarantine, once. Otherwise each refused task is
    // quarantined on its own and the file is consumed.
    if taken == 0
        && let Some((_, _, r)) = refused.first()
    {
        let why = format!("none of the {total} tasks could be taken; the first: {}", r.rule);
        return Err((Refusal::rejected(&r.field, why), None));
    }
    for (i, raw, r) in &refused {
        reject_part(tx, name, *i, raw, r);
    }
    Ok(())
}

/// A legacy task object: normalised, then admitted like a submission.
pub(crate) fn submit(tx: &mut Tx, raw: &Value, msg: &str) -> Result<(), Refusal> {
    let n = legacy::normalise_task(raw, tx.now()).map_err(|e| {
        let r = Refusal::from(e.within("task"));
        match raw_id(raw) {
            Some(id) => r.task(&id),
            None => r,
        }
    })?;
    admit_normalised(tx, raw, n, msg)
}

/// Admits a task `normalise_task` made from `raw`; identity (for duplicates) is `raw`'s hash.
pub(crate) fn admit_normalised(
    tx: &mut Tx,
    raw: &Value,
    n: legacy::Normalised,
    msg: &str,
) -> Result<(), Refusal> {
    for c in n.changes.iter().filter(|c| c.warning) {
        tracing::warn!(task = %n.task.task_id, field = %c.field, change = c.kind.as_str(), "normalised with a warning");
    }
    let hash = identity(tx, &n.task.task_id, raw);
    admit(tx, n.task, hash, msg, Admission::Submit)
}

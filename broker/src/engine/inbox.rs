//! The inbox: a batch of messages from `broker/inbox/new/`, in name order, each routed by its
//! kind to the part that handles it. A handled message is journaled as consumed and moved to
//! `inbox/cur/`; a refused one goes to quarantine with its reason. A message the journal says
//! was consumed before a crash is only moved where it belongs, never handled twice.

use super::claims::finish;
use super::effects::Effect;
use super::quarantine::{Refusal, reject_file};
use super::tx::Tx;
use super::{EngineError, admission, legacy, mail, operator};
use crate::journal::Entry;
use protocol::machine::Event;
use protocol::message::Message;
use protocol::names;
use runtime_layout::{Durability, FileKind, FsError};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What one batch took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    pub messages: usize,
    /// More messages wait than the batch took.
    pub more: bool,
}

/// Consumes up to `batch_size` messages.
pub(crate) fn consume(tx: &mut Tx) -> Result<Batch, EngineError> {
    let inbox = tx.env.layout.broker_inbox();
    let mut entries = tx.env.fs().list(&inbox.new_dir())?;
    entries.retain(|e| !e.name_str().is_some_and(names::is_hidden));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let batch = tx.env.cfg.broker.batch_size;
    let more = entries.len() > batch;
    let mut n = 0;
    for e in entries.into_iter().take(batch) {
        n += 1;
        let from = inbox.new_dir().join(&e.name);
        let Some(name) = e.name_str().map(str::to_string) else {
            let shown = e.name.to_string_lossy().into_owned();
            reject_file(tx, &from, &shown, None, Refusal::rejected("", "file name is not UTF-8"));
            continue;
        };
        if let Some(dest) = tx.state().consumed(&name).map(str::to_string) {
            finish_consumed(tx, from, &name, &dest);
            continue;
        }
        if tx.env.durability == Durability::Always && n > 1 {
            tx.commit()?;
        }
        if e.kind != FileKind::File {
            let r = Refusal::rejected("", format!("is a {}, not a regular file", e.kind));
            reject_file(tx, &from, &name, None, r);
            continue;
        }
        let bytes = match tx.env.fs().read(&from, tx.env.cfg.broker.max_message_bytes) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue,
            Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
                let r = Refusal::rejected("", strip_path(&e.to_string(), &from));
                reject_file(tx, &from, &name, None, r);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if legacy::is_legacy_name(&name) {
            match legacy::consume(tx, &name, &bytes) {
                Ok(()) => consumed(tx, from, &name),
                Err((r, msg)) => reject_file(tx, &from, &name, msg.as_deref(), r),
            }
            continue;
        }
        let msg = match Message::parse(&bytes) {
            Ok(m) => m,
            Err(v) => {
                reject_file(tx, &from, &name, None, v.into());
                continue;
            }
        };
        match handle(tx, &msg, &name) {
            Ok(()) => consumed(tx, from, &name),
            Err(r) => reject_file(tx, &from, &name, Some(&msg), r),
        }
    }
    Ok(Batch { messages: n, more })
}

/// A message consumed before a crash: finish moving it where the journal says it goes.
fn finish_consumed(tx: &mut Tx, from: PathBuf, name: &str, dest: &str) {
    let to = tx.env.layout.comms().join(dest);
    if to.starts_with(tx.env.layout.broker_inbox().cur()) {
        tx.effect(Effect::Consumed { from, to });
    } else {
        let why = tx
            .state()
            .refusal(name)
            .unwrap_or("rejected before a restart; `mailroom trace` or the journal has the reason")
            .to_string();
        let reason = json!({"file": tx.env.rel(&from), "reason": why});
        tx.effect(Effect::Quarantine { from, to, reason });
    }
}

/// Routes a message to the part that handles its kind.
pub(crate) fn handle(tx: &mut Tx, msg: &Message, name: &str) -> Result<(), Refusal> {
    match msg {
        Message::Submit { task } => admission::submit(tx, task, name),
        Message::Complete { agent, claim, result } => {
            finish(tx, agent, claim, name, Event::Complete { result: result.clone() })
        }
        Message::Fail { agent, claim, error, retryable } => {
            finish(tx, agent, claim, name, Event::Fail { error: error.clone(), retryable: *retryable })
        }
        Message::Release { agent, claim } => finish(tx, agent, claim, name, Event::Release),
        Message::Cancel { task_id } => operator::cancel(tx, task_id, name),
        Message::Retry { task_id } => operator::retry(tx, task_id, name),
        Message::Send { from, to, subject, body } => mail::send(tx, from, to, subject.as_deref(), body, name),
    }
}

/// Journals that an inbox message was taken and moves it to `inbox/cur/`.
pub(crate) fn consumed(tx: &mut Tx, from: PathBuf, name: &str) {
    let to = tx.env.layout.broker_inbox().cur().join(name);
    tx.push(Entry::Consume { msg: name.to_string(), path: tx.env.rel(&to), board: None });
    tx.effect(Effect::Consumed { from, to });
}

/// An I/O error's text without the path it names (the quarantine reason names the file already).
pub(crate) fn strip_path(msg: &str, path: &Path) -> String {
    msg.replace(&format!("{}: ", path.display()), "")
}

//! The inbox: a batch of messages from `broker/inbox/new/`, in name order, each routed by its
//! kind to the part that handles it. A handled message is journaled as consumed and moved to
//! `inbox/cur/`; a refused one goes to quarantine with its reason.
//!
//! A name the journal says was consumed is one of two things. Right after a start, it is a
//! message a crash caught between its journal record and its move: it is only moved where the
//! journal says, never handled twice. Once the inbox has been drained after the start, every
//! such move is done, so a name met again is a new message under a reused name (or a refused
//! one an operator moved back by hand): it is handled like any other, and the copy kept under
//! that name in `inbox/cur/` is never overwritten.
//!
//! A pass lists `inbox/new/` unless the file events named every message that arrived since the
//! inbox was last caught up with ([`Arrivals::Named`]): once a pass has taken everything a
//! listing found, whatever is there later arrived with an event naming it. Those files are
//! read in name order as a listing's would be, without the listing. Anything the events do not
//! pin down (lost events, a file written in place, the watch renewed, a backlog, the start)
//! makes the next pass list again, and the loop's tick makes one list at least that often.

use super::claims::finish;
use super::commands::Verdict;
use super::effects::{Answer, Effect};
use super::look::Arrivals;
use super::quarantine::{self, Refusal, reject_file};
use super::tx::Tx;
use super::{EngineError, admission, legacy, mail, operator};
use crate::journal::Entry;
use protocol::machine::Event;
use protocol::message::Message;
use protocol::names;
use protocol::socket;
use runtime_layout::{Durability, Entry as Listed, FileKind, FsError};
use serde_json::json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

/// What one batch took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    pub messages: usize,
    /// Another pass should follow at once: messages listed wait beyond this batch, or the batch
    /// came from an earlier listing (one that lists again is due).
    pub more: bool,
    /// Messages waiting in `inbox/new/` as last listed, this batch included (arrivals since the
    /// listing are counted once a pass lists again).
    pub waiting: usize,
}

/// The inbox part: it knows whether the moves a crash interrupted are still to be finished, and
/// holds what a listing found beyond the batch it took.
pub(crate) struct Inbox {
    recovering: bool,
    /// Messages listed but not taken yet, in name order. A backlog is listed and sorted once and
    /// taken a batch per pass, where listing it for every batch cost O(backlog) per pass and
    /// O(backlog² / batch) to drain.
    listed: VecDeque<Listed>,
    /// The last pass took everything its listing (or the events) found: what is in `new/` now
    /// arrived since, each file with an event naming it.
    caught_up: bool,
}

impl Inbox {
    /// An inbox just opened: names consumed before the start may be interrupted moves.
    pub fn new() -> Self {
        Self { recovering: true, listed: VecDeque::new(), caught_up: false }
    }

    /// Consumes up to `batch_size` messages: the next ones of the backlog listed earlier, or,
    /// once it is taken, the files `arrivals` names when the inbox was caught up, or else those
    /// of a new listing.
    pub fn consume(&mut self, tx: &mut Tx, arrivals: Arrivals) -> Result<Batch, EngineError> {
        let from_backlog = !self.listed.is_empty();
        let mut cut = false;
        let batch = tx.env.cfg.broker.batch_size;
        let named = match arrivals {
            Arrivals::Named(names) if self.caught_up && !from_backlog && names.len() <= batch => Some(names),
            _ => None,
        };
        let stale = from_backlog || named.is_some();
        if let Some(names) = named {
            self.listed = named_entries(names).into();
        } else if !from_backlog {
            // A listing can miss a message renamed in while it runs and still catch a later
            // one: kept for later passes, that later one would be handled before the message
            // its client wrote first (a cancel before its submit). So what is kept beyond this
            // batch is only what was named before the listing began (names carry the time their
            // client made them); the rest is listed again once the backlog is taken.
            let before = format!("msg-{}", tx.now().compact());
            // Unreadable now (a client changed its mode): nothing is taken, and the inbox stays
            // as it was since the start (a recovering inbox goes on recovering).
            let Some(entries) = list(tx)? else {
                // What the events named since is not all there is: a listing must come first.
                self.caught_up = false;
                return Ok(Batch { messages: 0, more: false, waiting: 0 });
            };
            self.listed = entries.into();
            if self.listed.len() > batch {
                let beyond = self.listed.split_off(batch);
                let listed = beyond.len();
                self.listed
                    .extend(beyond.into_iter().filter(|e| e.name.as_encoded_bytes() < before.as_bytes()));
                cut = self.listed.len() < batch + listed;
            }
        }
        let waiting = self.listed.len();
        let take = waiting.min(batch);
        let (messages, unreadable) = consume(tx, self.recovering, stale, self.listed.drain(..take))?;
        if unreadable {
            self.listed.clear();
            self.caught_up = false;
            return Ok(Batch { messages, more: false, waiting });
        }
        // A batch taken from an earlier listing is followed by a pass that lists again, even
        // when the backlog is gone: what arrived meanwhile was not listed (and its wake-up was
        // read while the backlog drained).
        let batch = Batch { messages, more: from_backlog || cut || !self.listed.is_empty(), waiting };
        if !batch.more {
            self.recovering = false;
        }
        self.caught_up = !batch.more;
        Ok(batch)
    }
}

/// Files events named in `inbox/new/`, as a listing would give them: in name order, once each,
/// hidden names left out. Each is taken for a regular file: reading one that is not (a link, a
/// FIFO) refuses it with the same reason a listing's kind would.
fn named_entries(mut names: Vec<String>) -> Vec<Listed> {
    names.retain(|n| !names::is_hidden(n));
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(|n| Listed { name: n.into(), kind: FileKind::File }).collect()
}

/// The messages in `inbox/new/`, in name order (`None`: the directory cannot be read now).
fn list(tx: &Tx) -> Result<Option<Vec<Listed>>, EngineError> {
    let new = tx.env.layout.broker_inbox().new_dir();
    let mut entries = match tx.env.fs().list(&new) {
        Ok(e) => e,
        // Clients write here and can change its mode; the broker waits for it to be readable
        // again rather than stopping (its journal and the rest of the tree are fine).
        Err(e) if e.is_permission_denied() => {
            tx.env.warn_once(&new, "cannot list the inbox", &e);
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    entries.retain(|e| !e.name_str().is_some_and(names::is_hidden));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(entries))
}

/// Handles the messages `entries` (listed earlier: one may be gone or changed since, which
/// reading it finds; `stale` when the listing is an earlier pass's). Returns how many it took,
/// and whether it stopped because `inbox/new/` itself can no longer be read: its messages are
/// then left there, none refused for it.
fn consume(
    tx: &mut Tx,
    recovering: bool,
    stale: bool,
    entries: impl Iterator<Item = Listed>,
) -> Result<(usize, bool), EngineError> {
    let inbox = tx.env.layout.broker_inbox();
    let mut n = 0;
    for e in entries {
        n += 1;
        let from = inbox.new_dir().join(&e.name);
        let Some(name) = e.name_str().map(str::to_string) else {
            let shown = e.name.to_string_lossy().into_owned();
            reject_file(tx, &from, &shown, None, Refusal::rejected("", "file name is not UTF-8"));
            continue;
        };
        let seen_before = tx.state().consumed(&name).map(|d| d.into_owned());
        // Answered on the socket: this file is its client sending it again after a lost answer.
        if seen_before.as_deref() == Some(socket::SOCKET) && e.kind == FileKind::File {
            match tx.state().refusal(&name).map(str::to_string) {
                Some(why) => {
                    let r = Refusal::rejected("", format!("refused before, on the local socket: {why}"));
                    reject_file(tx, &from, &name, None, r);
                }
                None => tx.effect(Effect::Consumed { from, to: inbox.cur().join(&name), len: None }),
            }
            continue;
        }
        if recovering && let Some(dest) = seen_before {
            finish_consumed(tx, from, &name, &dest);
            continue;
        }
        let reused = seen_before.is_some();
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
                let mut r = Refusal::rejected("", strip_path(&e.to_string(), &from));
                if matches!(e, FsError::TooLarge { .. })
                    && let Some(id) = task_id_in_head(tx, &from)
                {
                    r = r.task(&id);
                }
                reject_file(tx, &from, &name, None, r);
                continue;
            }
            Err(e) if e.is_permission_denied() => {
                // Listed passes ago, then the directory's mode changed: wait for it, as a pass
                // that cannot list it does, rather than refusing every message it holds.
                if stale && list(tx)?.is_none() {
                    return Ok((n - 1, true));
                }
                reject_file(tx, &from, &name, None, unreadable(&e, &from));
                continue;
            }
            // The file's own error (a bad block): refused with it, the broker serves on.
            Err(e) if the_file_s(tx, &e, &from) => {
                reject_file(tx, &from, &name, None, unreadable(&e, &from));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if legacy::is_legacy_name(&name) {
            match legacy::consume(tx, &name, &bytes) {
                Ok(()) => consumed(tx, from, &name, reused, bytes.len()),
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
            Ok(()) => consumed(tx, from, &name, reused, bytes.len()),
            Err(r) => reject_file(tx, &from, &name, Some(&msg), r),
        }
    }
    Ok((n, false))
}

/// A message consumed before a crash: finish moving it where the journal says it goes.
fn finish_consumed(tx: &mut Tx, from: PathBuf, name: &str, dest: &str) {
    let to = tx.env.layout.comms().join(dest);
    if to.starts_with(tx.env.layout.broker_inbox().cur()) {
        tx.effect(Effect::Consumed { from, to, len: None });
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
        Message::Send { from, to, subject, body } => {
            let letter = mail::Letter {
                from: from.clone(),
                to: to.clone(),
                subject: subject.clone(),
                body: body.clone(),
                sent_at: None,
                read: false,
            };
            mail::send(tx, letter, name)
        }
        Message::Requeue { name: entry } => quarantine::requeue(tx, entry, name),
    }
}

/// Handles a message that came on the broker's socket (`protocol::socket`) under `name`, as one
/// read from `inbox/new/` would be, and journals it as consumed there; the answer is sent once
/// the commit is durable. A name taken before (on the socket or as a file) is accepted again
/// without being handled: its client is sending it again after an answer it never got.
pub(crate) fn from_socket(
    tx: &mut Tx,
    name: String,
    msg: &Message,
    reply: oneshot::Sender<Verdict>,
    file_waits: Option<bool>,
) {
    let taken = tx.state().consumed(&name).map(|d| d.into_owned());
    let verdict = match (taken, tx.state().refusal(&name)) {
        // Refused before (on the socket or as a file): refused again, with the reason given then.
        (Some(_), Some(why)) => Verdict::refused(Refusal::rejected("", format!("refused before: {why}"))),
        (Some(_), None) => accepted(tx),
        // A file of that name waits in the inbox: the message is the file's (a client that
        // gave up on the socket delivers its file only then, and a name seen in `new/` must not
        // be taken by someone else's request).
        (None, _)
            if file_waits.unwrap_or_else(|| {
                tx.env
                    .fs()
                    .stat(&tx.env.layout.broker_inbox().new_dir().join(&name))
                    .is_ok_and(|m| m.is_some())
            }) =>
        {
            Verdict::refused(Refusal::rejected(
                "name",
                "a file of that name waits in broker/inbox/new: the message is taken from the file",
            ))
        }
        (None, _) => match handled_via_socket(tx, msg, &name) {
            Ok(()) => {
                tx.push(Entry::Consume { msg: name, path: socket::SOCKET.to_string(), board: None });
                accepted(tx)
            }
            Err(r) => {
                let verdict = Verdict::refused(r.clone());
                quarantine::reject_socket(tx, &name, msg, r);
                verdict
            }
        },
    };
    // An accepted submit shows its sender no move: answered as soon as the commit is durable.
    let answer = Answer::Verdict(reply, verdict);
    if matches!(msg, Message::Submit { .. }) && matches!(answer, Answer::Verdict(_, Verdict::Accepted { .. }))
    {
        tx.effect(Effect::Acknowledge(answer));
    } else {
        tx.effect(Effect::Reply(answer));
    }
}

/// [`handle`], with the records naming the socket as where the message came from.
fn handled_via_socket(tx: &mut Tx, msg: &Message, name: &str) -> Result<(), Refusal> {
    tx.via = Some(socket::SOCKET);
    let handled = handle(tx, msg, name);
    tx.via = None;
    handled
}

fn accepted(tx: &Tx) -> Verdict {
    Verdict::Accepted { task_id: String::new(), seq: tx.ledger.next_seq().saturating_sub(1) }
}

/// Journals that an inbox message was taken and moves it to `inbox/cur/` — under its own name,
/// or, when a message of that name is kept there already (a reused name), beside it.
pub(crate) fn consumed(tx: &mut Tx, from: PathBuf, name: &str, reused: bool, len: usize) {
    let cur = tx.env.layout.broker_inbox().cur();
    let mut to = cur.join(name);
    if reused {
        let mut n = 1;
        while tx.env.fs().stat(&to).is_ok_and(|m| m.is_some()) {
            to = cur.join(format!("{name}~{n}"));
            n += 1;
        }
    }
    tx.push(Entry::Consume { msg: name.to_string(), path: tx.env.rel(&to), board: None });
    tx.effect(Effect::Consumed { from, to, len: Some(len as u64) });
}

/// Whether `e`, met reading the client's file `path`, is that file's own: an error reading it once
/// open, or one opening it while its directory can still be listed (an inode that cannot be
/// read, say). Such a file is refused with the error; anything else is the broker's to stop on.
pub(crate) fn the_file_s(tx: &Tx, e: &runtime_layout::FsError, path: &Path) -> bool {
    e.is_the_file_s() || (e.is_open_failure() && path.parent().is_some_and(|d| tx.env.fs().list(d).is_ok()))
}

/// The refusal of input the broker may not read: it is input, not a failure of the broker.
pub(crate) fn unreadable(e: &runtime_layout::FsError, path: &Path) -> Refusal {
    Refusal::rejected("", format!("cannot be read: {}", strip_path(&e.to_string(), path)))
}

/// An I/O error's text without the path it names (the quarantine reason names the file already).
pub(crate) fn strip_path(msg: &str, path: &Path) -> String {
    msg.replace(&format!("{}: ", path.display()), "")
}

/// The `task_id` a message too large to read names among its first bytes, if it does, so that
/// its refusal is tied to the task (its reason file, its notice, `trace`). Only a prefix is read.
fn task_id_in_head(tx: &Tx, path: &Path) -> Option<String> {
    let head = tx.env.fs().read_at(path, 0, 4096).ok()?;
    let text = String::from_utf8_lossy(&head);
    let at = text.find("\"task_id\"")? + "\"task_id\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let id = serde_json::Deserializer::from_str(rest).into_iter::<String>().next()?.ok()?;
    protocol::task::validate_task_id(&id).ok()?;
    Some(id)
}

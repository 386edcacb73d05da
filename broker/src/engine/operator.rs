//! Operator verbs: cancel (a queued file is removed, a held claim revoked with a notice) and
//! retry (a FAILED, BLOCKED or CANCELLED task goes back to where it came from — its pool if it
//! was claimed from one — and the dependents its failure BLOCKED are unblocked, transitively).

use super::dispatch::{settle_dependents, try_dispatch};
use super::effects::{Effect, Post};
use super::quarantine::Refusal;
use super::tx::Tx;
use crate::journal::{self, Entry, JournalError, Place};
use protocol::Task;
use protocol::machine::{Event, transition};
use protocol::message::{Notice, NoticeKind};

pub(crate) fn cancel(tx: &mut Tx, id: &str, msg: &str) -> Result<(), Refusal> {
    let Some(live) = tx.state().live(id) else {
        return Err(match tx.state().status_of(id) {
            Some(s) => Refusal::rejected("task_id", format!("cannot cancel a task that is {s}")),
            None => Refusal::rejected("task_id", format!("no task `{id}`")),
        }
        .task(id));
    };
    if let Place::Forwarded { pool } = &live.place {
        return Err(Refusal::rejected(
            "task_id",
            format!("task `{id}` was forwarded to the cluster (pool `{pool}`): it is cancelled where it runs, not here"),
        )
        .task(id));
    }
    let now = tx.now();
    let tr = transition(Some(&live.task), &Event::Cancel, now, tx.env.cfg.backoff())
        .map_err(|e| Refusal::rejected("task_id", e.to_string()).task(id))?;
    let (mut task, place) = (live.task.clone(), live.place.clone());
    tr.apply(&mut task, &Event::Cancel, "operator", now, None);
    tx.push(Entry::Cancel { task_id: id.to_string(), task, place: Place::Done, msg: msg.to_string() });
    match place {
        Place::Queued { dir, name } => {
            let queued = tx.env.maildir(&dir).new_dir().join(&name);
            tx.effect(Effect::Revoke { queued, name, task_id: id.to_string() });
        }
        Place::Held { agent, name, .. } => {
            tx.effect(Effect::Remove { path: tx.env.layout.mailbox(&agent).cur().join(&name) });
            let mut n =
                Notice::new(NoticeKind::Cancelled, now, "the task was cancelled; the claim is revoked");
            n.task_id = Some(id.to_string());
            n.claim = Some(name);
            tx.effect(Effect::Post { agent, post: Post::Notice(n) });
        }
        _ => {}
    }
    settle_dependents(tx, id);
    Ok(())
}

pub(crate) fn retry(tx: &mut Tx, id: &str, msg: &str) -> Result<(), Refusal> {
    let (task, pooled) = match tx.state().live(id) {
        Some(l) => (l.task.clone(), false),
        None => match tx.state().finished(id) {
            Some(f) => match find_finished(tx, id) {
                Ok(Some(t)) => (t, f.pooled),
                Ok(None) => {
                    return Err(Refusal::rejected(
                        "task_id",
                        format!("task `{id}` not found in the journal"),
                    )
                    .task(id));
                }
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "cannot read the journal to redrive a task");
                    return Err(Refusal::rejected(
                        "task_id",
                        format!("task `{id}` could not be read back: {e}"),
                    )
                    .task(id));
                }
            },
            None => return Err(Refusal::rejected("task_id", format!("no task `{id}`")).task(id)),
        },
    };
    let now = tx.now();
    let tr = transition(Some(&task), &Event::Retry, now, tx.env.cfg.backoff())
        .map_err(|e| Refusal::rejected("task_id", e.to_string()).task(id))?;
    let mut task = task;
    tr.apply(&mut task, &Event::Retry, "operator", now, None);
    task.not_before = None;
    // A task that was claimed from a pool goes back to its pool, not to its last holder.
    if pooled {
        task.assigned_to = None;
    }
    tx.push(Entry::Retry { task_id: id.to_string(), task, place: Place::Backlog, msg: msg.to_string() });
    try_dispatch(tx, id);
    // The tasks its failure blocked may wait for it again.
    settle_dependents(tx, id);
    Ok(())
}

/// The last journaled form of a finished task (for a redrive of one that left memory). A
/// segment that cannot be read is an error, not "not found".
fn find_finished(tx: &Tx, id: &str) -> Result<Option<Task>, JournalError> {
    if let Some(t) = tx.state().recent_done().rev().find(|t| t.task_id == id) {
        return Ok(Some(t.clone()));
    }
    let mut found = None;
    let mut notes = journal::Notes::default();
    for p in journal::all_segments(tx.env.fs(), &tx.env.layout.journal_dir())? {
        journal::read_segment(
            tx.env.fs(),
            &p,
            |r, _, _| {
                if let Some((task, _)) = r.entry.change()
                    && task.task_id == id
                {
                    found = Some(task.clone());
                }
            },
            &mut notes,
        )?;
    }
    Ok(found)
}

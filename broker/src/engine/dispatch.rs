//! Dispatch and dependencies: a PENDING task in the backlog becomes a file in its queue (or its
//! agent's mailbox) once every dependency is COMPLETED and its `not_before` has passed; a failed
//! or cancelled dependency BLOCKs it instead, and that cascades to whatever depends on it.

use super::BROKER;
use super::effects::{Effect, task_bytes};
use super::tx::Tx;
use super::window;
use crate::config::Route;
use crate::journal::{Entry, Place};
use protocol::machine::{Event, transition};
use protocol::names::DispatchName;
use protocol::{Status, Task};
use serde_json::json;

/// Every backlog task that can go now; then the room claims made in ready windows goes to the
/// tasks waiting for it.
pub(crate) fn ready(tx: &mut Tx) {
    let ids: Vec<String> = tx.state().backlog().map(str::to_string).collect();
    for id in ids {
        try_dispatch(tx, &id);
    }
    window::refill(tx);
}

/// Dispatches a backlog task if its dependencies and `not_before` allow; blocks it if a
/// dependency failed.
pub(crate) fn try_dispatch(tx: &mut Tx, id: &str) {
    let Some(live) = tx.state().live(id) else { return };
    if live.place != Place::Backlog || live.task.status != Status::Pending {
        return;
    }
    let now = tx.now();
    if live.task.not_before.is_some_and(|t| t > now) {
        return;
    }
    for dep in &live.task.depends_on {
        match tx.state().status_of(dep) {
            Some(Status::Completed) => {}
            Some(Status::Failed | Status::Cancelled) => {
                let dep = dep.clone();
                block(tx, id, &dep);
                return;
            }
            _ => return,
        }
    }
    let task = live.task.clone();
    let dir = match (&task.assigned_to, tx.env.route_of(&task)) {
        (Some(a), _) => Place::mailbox_dir(a),
        (None, Route::Agent(a)) => Place::mailbox_dir(&a),
        (None, Route::Pool(p)) => Place::pool_dir(&p),
    };
    queue_file(tx, id, task, dir);
}

/// Gives a queued task a new name and a fresh file, in the same queue: its file was copied,
/// contested, rewritten or lost. The old name is retired, so nothing under it counts any more.
pub(crate) fn redeliver(tx: &mut Tx, id: &str) {
    let Some(live) = tx.state().live(id) else { return };
    let Place::Queued { dir, .. } = &live.place else { return };
    let (task, dir) = (live.task.clone(), dir.clone());
    queue_file(tx, id, task, dir);
}

/// Journals the task as ready in `dir` under a fresh dispatch name and delivers its file, or
/// leaves it waiting for room in the maildir's [ready window](window).
fn queue_file(tx: &mut Tx, id: &str, mut task: Task, dir: String) {
    let now = tx.now();
    let created = task.created_at.unwrap_or(now);
    let name = DispatchName::new(task.priority, created, tx.ledger.next_seq(), id).file_name();
    let Ok(tr) = transition(Some(&task), &Event::Dispatch, now, tx.env.cfg.backoff()) else { return };
    let maildir = tx.env.maildir(&dir);
    let place = window::admit(tx, &dir, &name);
    let to = match &place {
        Place::Waiting { .. } => json!({"to": format!("{dir}/new/{name}"), "waiting": true}),
        _ => json!({"to": place.rel_path()}),
    };
    tr.apply(&mut task, &Event::Dispatch, BROKER, now, Some(to));
    if matches!(place, Place::Waiting { .. }) {
        tx.push(Entry::Dispatch { task_id: id.to_string(), task, place });
        return;
    }
    let bytes = task_bytes(&task);
    tx.push(Entry::Dispatch { task_id: id.to_string(), task, place });
    if let Err(e) = maildir.create(tx.env.fs(), false) {
        tracing::error!(error = %e, "cannot create the destination maildir");
    }
    tx.effect(Effect::Deliver { maildir, name, bytes });
}

fn block(tx: &mut Tx, id: &str, dep: &str) {
    let now = tx.now();
    let Some(live) = tx.state().live(id) else { return };
    let ev = Event::DependencyFailed { dependency: dep.to_string() };
    let Ok(tr) = transition(Some(&live.task), &ev, now, tx.env.cfg.backoff()) else { return };
    let mut task = live.task.clone();
    tr.apply(&mut task, &ev, BROKER, now, None);
    tx.push(Entry::Block {
        task_id: id.to_string(),
        task,
        place: Place::Backlog,
        reason: format!("dependency `{dep}` failed or was cancelled"),
    });
    settle_dependents(tx, id);
}

/// Re-examines the tasks that depend on `id` after it changed state.
pub(crate) fn settle_dependents(tx: &mut Tx, id: &str) {
    let state = tx.state();
    let waiting: Vec<String> = state
        .backlog()
        .filter(|w| state.live(w).is_some_and(|l| l.task.depends_on.iter().any(|d| d == id)))
        .map(str::to_string)
        .collect();
    for w in waiting {
        try_dispatch(tx, &w);
    }
}

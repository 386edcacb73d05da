//! Dispatch: a PENDING task in the backlog becomes a file in its queue (or its agent's mailbox)
//! once its `not_before` has passed and its [dependencies](super::dependencies) allow, under a
//! dispatch name made by [`dispatch_name`], the one definition of dispatch order.

use super::BROKER;
pub(crate) use super::dependencies::settle_dependents;
use super::dependencies::{self, Deps};
use super::effects::{Effect, task_bytes};
use super::tx::Tx;
use super::window;
use crate::config::Route;
use crate::journal::{Entry, POOLS_DIR, Place};
use protocol::capability::CapabilitySet;
use protocol::machine::{Event, transition};
use protocol::names::DispatchName;
use protocol::{Priority, Status, Task, Timestamp};
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

/// Dispatches a backlog task if its time and dependencies allow; when a dependency makes it
/// BLOCKED, its dependents are settled too.
pub(crate) fn try_dispatch(tx: &mut Tx, id: &str) {
    if examine(tx, id) == Some(Deps::Blocked) {
        settle_dependents(tx, id);
    }
}

/// Dispatches the backlog task `id` if its `not_before` has passed and its dependencies allow
/// (see [`dependencies::check`]); returns what they allowed, or `None` when the task is not
/// waiting in the backlog or its time has not come. Does not settle dependents.
pub(crate) fn examine(tx: &mut Tx, id: &str) -> Option<Deps> {
    let live = tx.state().live(id)?;
    if live.place != Place::Backlog || live.task.status != Status::Pending {
        return None;
    }
    let now = tx.now();
    if live.task.not_before.is_some_and(|t| t > now) {
        return None;
    }
    let deps = dependencies::check(tx, id);
    if deps != Deps::Ready {
        return Some(deps);
    }
    let Some(live) = tx.state().live(id) else { return Some(deps) };
    let task = live.task.clone();
    let dir = match (&task.assigned_to, tx.env.route_of(&task)) {
        (Some(a), _) => Place::mailbox_dir(a),
        (None, Route::Agent(a)) => Place::mailbox_dir(&a),
        // A shared pool's task goes to the cluster, unless it came from there.
        (None, Route::Pool(p)) if tx.env.cfg.shared(&p) && tx.state().pulled(id).is_none() => {
            super::cluster::forward(tx, id, task, p);
            return Some(Deps::Ready);
        }
        (None, Route::Pool(p)) => Place::pool_dir(&p),
    };
    queue_file(tx, id, task, dir);
    Some(Deps::Ready)
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
fn queue_file(tx: &mut Tx, id: &str, task: Task, dir: String) {
    queue_file_as(tx, id, task, dir, |task_id, task, place| Entry::Dispatch { task_id, task, place });
}

/// [`queue_file`], journaled as the record `entry` makes (a dispatch, or a pull from the cluster).
pub(crate) fn queue_file_as(
    tx: &mut Tx,
    id: &str,
    mut task: Task,
    dir: String,
    entry: impl FnOnce(String, Task, Place) -> Entry,
) {
    let now = tx.now();
    let Ok(tr) = transition(Some(&task), &Event::Dispatch, now, tx.env.cfg.backoff()) else { return };
    let caps = gate(&task, &dir);
    let aging = tx.env.cfg.dispatch.aging_secs;
    let name = dispatch_name(&task, caps.as_ref(), tx.ledger.next_seq(), now, aging).file_name();
    let maildir = tx.env.maildir(&dir);
    let place = window::admit(tx, &dir, &name);
    let to = match &place {
        Place::Waiting { .. } => json!({"to": format!("{dir}/new/{name}"), "waiting": true}),
        _ => json!({"to": place.rel_path()}),
    };
    tr.apply(&mut task, &Event::Dispatch, BROKER, now, Some(to));
    if matches!(place, Place::Waiting { .. }) {
        tx.push(entry(id.to_string(), task, place));
        return;
    }
    let bytes = task_bytes(&task);
    tx.push(entry(id.to_string(), task, place));
    tx.effects.make_maildir(tx.env, &maildir);
    if let Some(set) = caps {
        tx.effect(Effect::WriteCapabilities(set));
    }
    tx.effect(Effect::Deliver { maildir, name, bytes });
}

/// The capabilities an agent must hold to claim `task` from the maildir `dir`: those it requires,
/// when `dir` is a shared pool. A task addressed to one agent is that agent's to claim.
pub(crate) fn gate(task: &Task, dir: &str) -> Option<CapabilitySet> {
    if !dir.starts_with(POOLS_DIR) {
        return None;
    }
    CapabilitySet::of(&task.required_capabilities)
}

/// A task's dispatch name: where it sorts among the files agents claim from, and, for a task
/// gated by capabilities, their tag. The order is its priority as aged at `now` (see
/// [`aged_priority`]), then its creation time, then the sequence number `seq`. Every name the
/// broker gives a queued task is made here, so dispatch order has one definition: a part that
/// keeps ready tasks in order without files orders them by this name too.
pub(crate) fn dispatch_name(
    task: &Task,
    caps: Option<&CapabilitySet>,
    seq: u64,
    now: Timestamp,
    aging_secs: u64,
) -> DispatchName {
    let created = task.created_at.unwrap_or(now);
    let priority = aged_priority(task, now, aging_secs);
    DispatchName::new(priority, created, seq, &task.task_id).with_caps(caps.map(|c| c.tag.clone()))
}

/// The priority `task` has for dispatch order at `now`: its own, raised one level per full
/// `aging_secs` it has waited to be claimed ([`waiting_since`]), never above CRITICAL.
pub(crate) fn aged_priority(task: &Task, now: Timestamp, aging_secs: u64) -> Priority {
    let since = waiting_since(task).unwrap_or(now);
    let waited = u64::try_from(now.as_micros().saturating_sub(since.as_micros()) / 1_000_000).unwrap_or(0);
    task.priority.aged(waited, aging_secs)
}

/// Since when a queued task has waited to be claimed: the first of the broker's `dispatch` and
/// `age` entries that end its history (a file delivered again, or renamed by aging, does not
/// restart the wait). `None` for a task that is not waiting in a queue.
pub(crate) fn waiting_since(task: &Task) -> Option<Timestamp> {
    task.history
        .iter()
        .rev()
        .take_while(|h| h.actor == BROKER && matches!(h.action.as_str(), "dispatch" | "age"))
        .last()
        .map(|h| h.timestamp)
}

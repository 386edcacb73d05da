//! Dependencies and their dead ends. A PENDING task in the backlog waits until every task it
//! depends on is COMPLETED. What can go wrong is never silent:
//!
//! - a dependency that does not exist: the task records "waiting for unknown task X" (a `wait`
//!   record and history entry, once per change of that set: shown by `board`, `trace` and the
//!   command channel), and is BLOCKED once it has waited `[dispatch] missing_dependency_secs`;
//! - a dependency that ends FAILED or CANCELLED, or is BLOCKED itself: the task is BLOCKED, and
//!   that cascades to every task depending on it, transitively;
//! - a dependency cycle: refused when it would close (at admission, [`cycle`]), naming it;
//! - a BLOCKED dependency fixed (redriven by `retry`, or a missing one submitted at last): the
//!   tasks it blocked are PENDING again (`unblock`), transitively.
//!
//! The cascade walks the state's index of dependents with a work list, never by recursion.

use super::BROKER;
use super::tx::Tx;
use crate::journal::{Entry, Place};
use crate::state::State;
use protocol::machine::{Event, transition};
use protocol::{HistoryEntry, Status, Task, Timestamp};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Whether a backlog task may be dispatched, as far as its dependencies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deps {
    /// Every dependency is COMPLETED.
    Ready,
    /// Some dependency is not finished yet (or does not exist, not for long enough to give up).
    Waiting,
    /// The task was BLOCKED now.
    Blocked,
}

/// The `waiting` entry of the task's current wait, if any: the last one, unless a transition
/// (submit, retry, dispatch, ...) came after it.
fn current_wait(task: &Task) -> Option<&HistoryEntry> {
    for h in task.history.iter().rev() {
        if h.action == "waiting" {
            return Some(h);
        }
        if h.to.is_some() {
            return None;
        }
    }
    None
}

/// The unknown dependencies a `waiting` entry lists.
fn listed(h: &HistoryEntry) -> Vec<String> {
    h.details
        .as_ref()
        .and_then(|d| d.get("unknown"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Since when the task has waited for `dep`, which does not exist: the first `waiting` entry of
/// the current wait that has listed it ever since.
fn unknown_since(task: &Task, dep: &str) -> Option<Timestamp> {
    let mut since = None;
    for h in task.history.iter().rev() {
        if h.action == "waiting" {
            if !listed(h).iter().any(|d| d == dep) {
                break;
            }
            since = Some(h.timestamp);
        } else if h.to.is_some() {
            break;
        }
    }
    since
}

/// What a PENDING task is waiting for that an operator should know: "waiting for unknown task
/// X". `None` when nothing is amiss (or the task is not waiting). For `board`, `trace` and the
/// command channel.
pub fn waiting_note(task: &Task) -> Option<String> {
    if task.status != Status::Pending {
        return None;
    }
    let h = current_wait(task)?;
    let unknown = listed(h);
    (!unknown.is_empty()).then(|| unknown_text(&unknown))
}

fn unknown_text(unknown: &[String]) -> String {
    let which = if unknown.len() == 1 { "task" } else { "tasks" };
    format!("waiting for unknown {which} {}", unknown.join(", "))
}

/// Looks at the dependencies of the backlog task `id`: journals that it waits for tasks that do
/// not exist (when that set changed) and blocks it when a dependency failed, was cancelled, is
/// BLOCKED, or has not existed for `missing_dependency_secs`. Blocking is not cascaded here: the
/// caller settles the task's dependents ([`settle_dependents`]).
pub(crate) fn check(tx: &mut Tx, id: &str) -> Deps {
    let Some(live) = tx.state().live(id) else { return Deps::Waiting };
    let task = live.task.clone();
    let now = tx.now();
    let mut unknown = Vec::new();
    let mut ready = true;
    for dep in &task.depends_on {
        match tx.state().status_of(dep) {
            Some(Status::Completed) => {}
            Some(s @ (Status::Failed | Status::Cancelled | Status::Blocked)) => {
                let verb = if s == Status::Blocked { "is BLOCKED" } else { "failed or was cancelled" };
                block(tx, id, dep, format!("dependency `{dep}` {verb}"));
                return Deps::Blocked;
            }
            Some(_) => ready = false,
            None => {
                ready = false;
                unknown.push(dep.clone());
            }
        }
    }
    let recorded = current_wait(&task).map(listed).unwrap_or_default();
    if unknown != recorded {
        let reason = if unknown.is_empty() {
            format!("the tasks it waited for exist now: {}", recorded.join(", "))
        } else {
            unknown_text(&unknown)
        };
        wait(tx, id, &unknown, reason);
    }
    let limit = tx.env.cfg.dispatch.missing_dependency_secs;
    let Some(live) = tx.state().live(id) else { return Deps::Waiting };
    for dep in &unknown {
        let since = unknown_since(&live.task, dep).unwrap_or(now);
        let waited = now.as_micros().saturating_sub(since.as_micros()) / 1_000_000;
        if u64::try_from(waited).unwrap_or(0) >= limit {
            let dep = dep.clone();
            block(tx, id, &dep, format!("dependency `{dep}` does not exist (waited {waited} s for it)"));
            return Deps::Blocked;
        }
    }
    if ready { Deps::Ready } else { Deps::Waiting }
}

fn wait(tx: &mut Tx, id: &str, unknown: &[String], reason: String) {
    let now = tx.now();
    let Some(live) = tx.state().live(id) else { return };
    let ev = Event::Wait { reason: reason.clone() };
    let Ok(tr) = transition(Some(&live.task), &ev, now, tx.env.cfg.backoff()) else { return };
    let mut task = live.task.clone();
    tr.apply(&mut task, &ev, BROKER, now, Some(json!({"unknown": unknown, "reason": reason})));
    tx.push(Entry::Wait { task_id: id.to_string(), task, place: Place::Backlog, reason });
}

fn block(tx: &mut Tx, id: &str, dep: &str, reason: String) {
    let now = tx.now();
    let Some(live) = tx.state().live(id) else { return };
    let ev = Event::DependencyFailed { dependency: dep.to_string(), reason: reason.clone() };
    let Ok(tr) = transition(Some(&live.task), &ev, now, tx.env.cfg.backoff()) else { return };
    let mut task = live.task.clone();
    tr.apply(&mut task, &ev, BROKER, now, Some(json!({"dependency": dep})));
    tx.push(Entry::Block { task_id: id.to_string(), task, place: Place::Backlog, reason });
}

/// The dependency a BLOCKED task was blocked for by the broker (not by an operator, an import or
/// a board): the `dependency_failed` entry that blocked it names it.
fn blocked_for(task: &Task) -> Option<&str> {
    if task.status != Status::Blocked {
        return None;
    }
    let h = task.history.iter().rev().find(|h| h.to.is_some())?;
    (h.action == "dependency_failed").then(|| h.details.as_ref()?.get("dependency")?.as_str())?
}

/// May a task the broker blocked for `dep` go back to waiting: `dep` exists now, and none of its
/// dependencies is FAILED, CANCELLED or BLOCKED? (Another that does not exist yet is waited for
/// again, with its own time limit.)
fn unblockable(state: &State, task: &Task, dep: &str) -> bool {
    state.status_of(dep).is_some()
        && task.depends_on.iter().all(|d| {
            !matches!(state.status_of(d), Some(Status::Failed | Status::Cancelled | Status::Blocked))
        })
}

fn unblock(tx: &mut Tx, id: &str) {
    let now = tx.now();
    let Some(live) = tx.state().live(id) else { return };
    let Ok(tr) = transition(Some(&live.task), &Event::Unblock, now, tx.env.cfg.backoff()) else { return };
    let mut task = live.task.clone();
    let was = task.error.take();
    tr.apply(&mut task, &Event::Unblock, BROKER, now, Some(json!({"was": was})));
    let reason = format!(
        "its dependencies are no longer failed, cancelled, blocked or unknown (was: {})",
        was.unwrap_or_default()
    );
    tx.push(Entry::Unblock { task_id: id.to_string(), task, place: Place::Backlog, reason });
}

/// Re-examines, transitively, the tasks that depend on `id` after it changed state: a waiting
/// one may be dispatched, wait on, or be BLOCKED; one blocked on a dependency may be PENDING
/// again. Each change is passed on to its own dependents.
pub(crate) fn settle_dependents(tx: &mut Tx, id: &str) {
    let mut work = vec![id.to_string()];
    let mut seen: HashSet<(String, Option<Status>)> = HashSet::new();
    while let Some(changed) = work.pop() {
        let dependents: Vec<String> = tx.state().dependents(&changed).map(str::to_string).collect();
        for d in dependents {
            let Some(live) = tx.state().live(&d) else { continue };
            let before = live.task.status;
            if let Some(dep) = blocked_for(&live.task) {
                if !unblockable(tx.state(), &live.task, dep) {
                    continue;
                }
                unblock(tx, &d);
            } else if before == Status::Blocked {
                continue; // blocked by an operator, an import or a board: theirs to redrive
            }
            super::dispatch::examine(tx, &d);
            let after = tx.state().status_of(&d);
            // Passed on when it changed: BLOCKED now, or no longer (a cycle cannot close, but a
            // task is walked at most once per status it reaches, whatever the graph).
            if after != Some(before) && seen.insert((d.clone(), after)) {
                work.push(d);
            }
        }
    }
}

/// The dependency cycle a task `id` depending on `deps` would close, if any: `id`, a path of live
/// tasks each depending on the next, and `id` again.
pub(crate) fn cycle(state: &State, id: &str, deps: &[String]) -> Option<Vec<String>> {
    // Depth first from each dependency, along `depends_on`, remembering how each task was reached.
    let mut came_from: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut stack: Vec<String> = Vec::new();
    for d in deps {
        if !came_from.contains_key(d) {
            came_from.insert(d.clone(), id.to_string());
            stack.push(d.clone());
        }
    }
    while let Some(t) = stack.pop() {
        let Some(live) = state.live(&t) else { continue };
        for next in &live.task.depends_on {
            if next == id {
                let mut path = vec![id.to_string()];
                let mut at = t.clone();
                while at != id {
                    path.push(at.clone());
                    at = came_from[&at].clone();
                }
                path.push(id.to_string());
                // path is id, t, ..., first dependency, id read backwards from t: put it in order.
                let last = path.len() - 1;
                path[1..last].reverse();
                return Some(path);
            }
            if !came_from.contains_key(next) {
                came_from.insert(next.clone(), t.clone());
                stack.push(next.clone());
            }
        }
    }
    None
}

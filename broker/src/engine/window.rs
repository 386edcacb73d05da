//! The ready window: at most `[dispatch] ready_window` ready tasks of one maildir (a pool or an
//! agent's mailbox) are files in its `new/`, so a claim — which lists `new/` — and a pass cost the
//! same with ten tasks queued or a million. The others wait in the state ([`Place::Waiting`])
//! under the dispatch name they will have, and the files are always the best of the maildir's
//! ready tasks:
//!
//! - a task made ready gets its file if the window has room and no waiting task sorts before it;
//! - if the window is full and the task sorts before the window's last file, that file is
//!   withdrawn (it waits again under the same name) and the new task takes its place, so a
//!   CRITICAL task submitted behind 100,000 LOW ones is the next one claimed;
//! - otherwise it waits, and once claims have drained the window to three quarters of its size
//!   ([`refill_below`]) a pass fills it again with waiting tasks in order.
//!
//! Refilling waits for that much room because refilling at every claim made the window's last
//! place swing under a backlog of mixed priorities: a LOW task promoted into the room one claim
//! made, withdrawn at the next pass for a HIGH one arriving, promoted again, each swing a file
//! written or removed and a record journaled (about one of each per task in such a run). The
//! room left above the mark takes arriving tasks that sort before the waiting ones without
//! withdrawing anything, and the files are still the best ready tasks: only their count
//! varies, between the mark and the size.
//!
//! A withdrawal removes the file *before* its record is journaled, unlike the broker's other
//! moves: the unlink and an agent's claiming rename race atomically (one of them finds the file
//! gone), so either the agent holds the task and it is not withdrawn, or nobody does. Until the
//! record is durable the journal says the file is queued — the state a power loss that undid the
//! file's delivery leaves too — and `reconcile` writes it again; a durable record whose unlink a
//! power loss undid leaves a file for a waiting task, which `reconcile` removes.

use super::effects::{Effect, task_bytes};
use super::tx::Tx;
use crate::journal::{Entry, Place};

/// Where a task made ready for `dir` under `name` goes: a file (`Queued`), taking the place of
/// a withdrawn one if need be, or `Waiting`.
pub(crate) fn admit(tx: &mut Tx, dir: &str, name: &str) -> Place {
    let queued = Place::Queued { dir: dir.to_string(), name: name.to_string() };
    let limit = tx.env.cfg.dispatch.ready_window;
    let Some(w) = tx.state().window(dir).filter(|_| limit > 0) else { return queued };
    let behind_waiting = w.waiting_in_order().next().is_some_and(|(first, _)| first < name);
    if w.filed() < limit {
        // Room: unless a waiting task sorts before it (the pass's refill takes those in order).
        return if behind_waiting { waiting(dir, name) } else { queued };
    }
    match w.last_filed().map(str::to_string) {
        Some(last) if name < last.as_str() => {
            withdraw(tx, dir, &last);
            queued
        }
        _ => waiting(dir, name),
    }
}

fn waiting(dir: &str, name: &str) -> Place {
    Place::Waiting { dir: dir.to_string(), name: name.to_string() }
}

/// Takes the queued file `name` out of `dir`'s window. An agent that renamed it first keeps it
/// (its claim is seen at the next look): then nothing is withdrawn, and the window is over its
/// size by one until that claim is seen.
fn withdraw(tx: &mut Tx, dir: &str, name: &str) {
    let Some(id) = tx.state().task_named(name).map(str::to_string) else { return };
    let new_dir = tx.env.maildir(dir).new_dir();
    let path = new_dir.join(name);
    match tx.env.fs().remove_file(&path) {
        Ok(()) => {
            tx.push(Entry::Withdraw { task_id: id, place: waiting(dir, name) });
            tx.effects.left(new_dir);
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => tracing::warn!(file = %tx.env.rel(&path), error = %e, "cannot withdraw a queued file"),
    }
}

/// How few files a window of `limit` holds before waiting tasks are given files again: three
/// quarters of it (the whole of a window under four files).
fn refill_below(limit: usize) -> usize {
    limit - limit / 4
}

/// Gives waiting tasks their files, in dispatch order, up to their windows' size, in each
/// window drained below [`refill_below`].
pub(crate) fn refill(tx: &mut Tx) {
    let limit = tx.env.cfg.dispatch.ready_window;
    let dirs: Vec<String> = tx.state().windows_waiting().map(str::to_string).collect();
    for dir in dirs {
        let Some(w) = tx.state().window(&dir) else { continue };
        if limit > 0 && w.filed() >= refill_below(limit) {
            continue;
        }
        let room = if limit == 0 { usize::MAX } else { limit.saturating_sub(w.filed()) };
        let next: Vec<(String, String)> =
            w.waiting_in_order().take(room).map(|(n, id)| (n.to_string(), id.to_string())).collect();
        for (name, id) in next {
            promote(tx, &dir, name, id);
        }
    }
}

fn promote(tx: &mut Tx, dir: &str, name: String, id: String) {
    let Some(live) = tx.state().live(&id) else { return };
    let bytes = task_bytes(&live.task);
    let caps = super::dispatch::gate(&live.task, dir);
    let maildir = tx.env.maildir(dir);
    tx.push(Entry::Promote {
        task_id: id,
        place: Place::Queued { dir: dir.to_string(), name: name.clone() },
    });
    tx.effects.make_maildir(tx.env, &maildir);
    if let Some(set) = caps {
        tx.effect(Effect::WriteCapabilities(set));
    }
    tx.effect(Effect::Deliver { maildir, name, bytes });
}

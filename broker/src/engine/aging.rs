//! Priority aging (`[dispatch] aging_secs`): a task that waits in a queue rises one priority level
//! for dispatch order per `aging_secs` it waits, never above CRITICAL, so a constant stream of
//! more urgent work cannot starve it. Its own `priority` never changes; the rise is recorded in
//! its history, once per level.
//!
//! Dispatch order is the order of file names, so an aged task gets a better name: the broker
//! renames it, the way it dispatches. Before the record, it takes the file out of the queue into
//! the queue's `tmp/` (a rename, like the claim an agent makes): if an agent claimed it first the
//! rename fails and the claim stands; once the file is out, no agent can claim it under the old
//! name. Then it journals the new name (the old one is retired, so the fence refuses it like any
//! former name) and, after the commit, delivers the file under the new name and removes the old
//! one from `tmp/`. A crash in between leaves the journal ahead: `reconcile` delivers whichever
//! name the journal holds and removes a retired name left in `new/` or `tmp/`.
//!
//! Each task is renamed at most three times per wait (LOW to CRITICAL), and the queued tasks are
//! looked at once a second at most, each look costing a name parse per queued task. A look that
//! comes late (a busy broker, an `aging_secs` below a second) may find a task two levels up: it
//! is renamed once, and its one history entry says from which level to which (`was`,
//! `dispatched_as`).

use super::dispatch::{aged_priority, dispatch_name, gate};
use super::effects::{Effect, task_bytes};
use super::tx::Tx;
use super::window;
use super::{BROKER, EngineError};
use crate::journal::{Entry, Place};
use protocol::Timestamp;
use protocol::machine::{Event, Transition, transition};
use protocol::names::DispatchName;
use serde_json::json;

/// When the queued tasks were last looked at.
#[derive(Default)]
pub(crate) struct Aging {
    last: Option<Timestamp>,
}

impl Aging {
    /// Renames every queued task whose aged priority sorts before its name's, if aging is on and a
    /// second has passed since the last look.
    pub fn run_if_due(&mut self, tx: &mut Tx) -> Result<(), EngineError> {
        let aging = tx.env.cfg.dispatch.aging_secs;
        let now = tx.now();
        if aging == 0 || self.last.is_some_and(|t| now >= t && now.as_micros() - t.as_micros() < 1_000_000) {
            return Ok(());
        }
        self.last = Some(now);
        let due: Vec<String> =
            tx.state()
                .lives()
                .filter(|l| match &l.place {
                    Place::Queued { name, .. } | Place::Waiting { name, .. } => DispatchName::parse(name)
                        .is_some_and(|n| aged_priority(&l.task, now, aging) < n.priority),
                    _ => false,
                })
                .map(|l| l.task.task_id.clone())
                .collect();
        for id in due {
            age(tx, &id)?;
        }
        Ok(())
    }
}

/// Queues the task `id` again under a name with its aged priority.
fn age(tx: &mut Tx, id: &str) -> Result<(), EngineError> {
    let now = tx.now();
    let aging = tx.env.cfg.dispatch.aging_secs;
    let Some(live) = tx.state().live(id) else { return Ok(()) };
    let (dir, old, filed) = match live.place.clone() {
        Place::Queued { dir, name } => (dir, name, true),
        Place::Waiting { dir, name } => (dir, name, false),
        _ => return Ok(()),
    };
    let Ok(tr) = transition(Some(&live.task), &Event::Age, now, tx.env.cfg.backoff()) else { return Ok(()) };
    let mut task = live.task.clone();
    let maildir = tx.env.maildir(&dir);
    let (queued, withdrawn) = (maildir.new_dir().join(&old), maildir.tmp().join(&old));
    if !tx.env.layout.maildir_contained(tx.env.fs(), &maildir) {
        return Ok(());
    }
    if !filed {
        age_waiting(tx, id, task, tr, dir, old);
        return Ok(());
    }
    // Out of reach first: once the file is in tmp/, no agent can claim it under the old name.
    match tx.env.fs().rename_noreplace(&queued, &withdrawn) {
        Ok(()) => tx.effects.left(maildir.new_dir()),
        // Claimed meanwhile (the claim stands), or gone (the audit delivers it again).
        Err(e) if e.is_not_found() || e.is_permission_denied() => return Ok(()),
        Err(e) if e.is_already_exists() => {
            // What a crash left of an earlier withdrawal of this very file: it is the same one.
            tx.env.fs().remove_file(&withdrawn)?;
            tx.env.fs().rename_noreplace(&queued, &withdrawn)?;
            tx.effects.left(maildir.new_dir());
        }
        Err(e) => return Err(e.into()),
    }
    let caps = gate(&task, &dir);
    let effective = aged_priority(&task, now, aging);
    let was = DispatchName::parse(&old).map_or(task.priority, |n| n.priority);
    let name = dispatch_name(&task, caps.as_ref(), tx.ledger.next_seq(), now, aging).file_name();
    let place = Place::Queued { dir, name: name.clone() };
    let waited = super::dispatch::waiting_since(&task)
        .map_or(0, |s| (now.as_micros().saturating_sub(s.as_micros())) / 1_000_000);
    let reason = format!(
        "waited {waited} s to be claimed: dispatched as {effective}, was {was} (its priority is {})",
        task.priority
    );
    let details = json!({
        "priority": task.priority,
        "was": was,
        "dispatched_as": effective,
        "waited_secs": waited,
        "from": tx.env.rel(&queued),
        "to": place.rel_path(),
    });
    tr.apply(&mut task, &Event::Age, BROKER, now, Some(details));
    let bytes = task_bytes(&task);
    tx.push(Entry::Age { task_id: id.to_string(), task, place, from: old, reason });
    tx.effect(Effect::Deliver { maildir, name, bytes });
    tx.effect(Effect::Remove { path: withdrawn });
    Ok(())
}

/// Ages a task waiting for room in its ready window: no file to move, only a better name, and a
/// file at once if the name now sorts before the window's last file.
fn age_waiting(tx: &mut Tx, id: &str, mut task: protocol::Task, tr: Transition, dir: String, old: String) {
    let now = tx.now();
    let aging = tx.env.cfg.dispatch.aging_secs;
    let caps = gate(&task, &dir);
    let effective = aged_priority(&task, now, aging);
    let was = DispatchName::parse(&old).map_or(task.priority, |n| n.priority);
    let name = dispatch_name(&task, caps.as_ref(), tx.ledger.next_seq(), now, aging).file_name();
    let place = window::admit(tx, &dir, &name);
    let reason = format!(
        "waited for room in the ready window: ranked as {effective}, was {was} (its priority is {})",
        task.priority
    );
    let details = json!({"priority": task.priority, "was": was, "dispatched_as": effective, "waiting": true});
    tr.apply(&mut task, &Event::Age, BROKER, now, Some(details));
    let bytes = matches!(place, Place::Queued { .. }).then(|| task_bytes(&task));
    tx.push(Entry::Age { task_id: id.to_string(), task, place, from: old, reason });
    if let Some(bytes) = bytes {
        if let Some(set) = caps {
            tx.effect(Effect::WriteCapabilities(set));
        }
        tx.effect(Effect::Deliver { maildir: tx.env.maildir(&dir), name, bytes });
    }
}

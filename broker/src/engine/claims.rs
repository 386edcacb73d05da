//! Claims and leases. An agent claims by renaming a queued file into its `cur/`; the broker
//! *observes* that rename and journals it, *fences* every report (the claim must be current and
//! its file in the reporter's `cur/`), *finishes* a claim on complete/fail/release, and *takes
//! back* a claim whose lease ran out or whose file vanished, under a new name, so a claim taken
//! back can never be completed.

use super::dispatch::{settle_dependents, try_dispatch};
use super::effects::{Effect, Post};
use super::quarantine::Refusal;
use super::tx::Tx;
use super::{BROKER, EngineError};
use crate::journal::{Entry, Place, Report, TakenBack};
use protocol::machine::{Event, transition};
use protocol::message::{Notice, NoticeKind};
use protocol::{Status, Task};
use runtime_layout::FileKind;
use serde_json::json;

/// A task claimed from a pool goes back to the pool when taken back; one addressed to an agent
/// stays addressed to it.
fn unassign_if_pooled(task: &mut Task, place: &Place) {
    if place.claimed_from_pool() {
        task.assigned_to = None;
    }
}

/// Journals that `agent` holds the task `id` under the claim `name` (its file is in the agent's
/// `cur/`), and makes the agent's rename durable with this batch.
pub(crate) fn record_claim(tx: &mut Tx, id: &str, agent: &str, name: &str) {
    let now = tx.now();
    let Some(live) = tx.state().live(id) else { return };
    let from = match &live.place {
        Place::Queued { dir, .. } => dir.clone(),
        _ => String::new(),
    };
    let ev = Event::Claim { agent: agent.to_string() };
    let Ok(tr) = transition(Some(&live.task), &ev, now, tx.env.cfg.backoff()) else { return };
    let mut task = live.task.clone();
    tr.apply(&mut task, &ev, agent, now, Some(json!({"claim": name})));
    let place =
        Place::Held { agent: agent.to_string(), name: name.to_string(), seen_at: now, from: from.clone() };
    tx.push(Entry::Claim { task_id: id.to_string(), task, place, agent: agent.to_string() });
    // The agent's rename is not fsynced: make it durable with this batch, so that a power
    // loss cannot put back in new/ a task the journal says is held.
    tx.effects.arrived_in(tx.env.layout.mailbox(agent).cur());
    if !from.is_empty() {
        tx.effects.left(tx.env.maildir(&from).new_dir());
    }
}

/// Finds task files that agents renamed into their `cur/` since the last look.
pub(crate) fn observe(tx: &mut Tx) -> Result<(), EngineError> {
    if tx.state().queued_count() == 0 {
        return Ok(());
    }
    for agent in tx.env.agents()? {
        let cur = tx.env.layout.mailbox(&agent).cur();
        if !tx.env.layout.is_contained(tx.env.fs(), &cur.join("_")) {
            continue; // a cur/ that is a symbolic link is never listed (claims there do not count)
        }
        let entries = match tx.env.fs().list(&cur) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let Some(name) = e.name_str() else { continue };
            let Some(id) = tx.state().task_named(name).map(str::to_string) else { continue };
            if matches!(tx.state().live(&id).map(|l| &l.place), Some(Place::Queued { .. }))
                && e.kind == FileKind::File
            {
                record_claim(tx, &id, &agent, name);
            }
        }
    }
    Ok(())
}

/// The fence: resolves `claim` for a complete/fail/release from `agent`. The claim must be
/// current and its file must be in `mailboxes/<agent>/cur/`. A claim the broker had not yet
/// observed is adopted here.
fn holder(tx: &mut Tx, agent: &str, claim: &str) -> Result<String, Refusal> {
    let stale = |rule: String| Refusal::new(NoticeKind::Stale, "claim", rule);
    let Some(id) = tx.state().task_named(claim).map(str::to_string) else {
        let why = match tx.state().retired_name(claim) {
            Some(id) => {
                format!(
                    "`{claim}` is no longer a claim on task `{id}` (it was taken back, released or finished)"
                )
            }
            None => format!("`{claim}` is not a claim the broker knows"),
        };
        return Err(stale(why));
    };
    let path = tx.env.layout.mailbox(agent).cur().join(claim);
    let here = matches!(tx.env.fs().stat(&path), Ok(Some(m)) if m.kind == FileKind::File);
    match tx.state().live(&id).map(|l| &l.place) {
        Some(Place::Held { agent: holder, .. }) if holder != agent => {
            Err(stale(format!("`{claim}` is held by `{holder}`, not `{agent}`")).task(&id))
        }
        _ if !here => Err(stale(format!("`{claim}` is not in mailboxes/{agent}/cur/")).task(&id)),
        Some(Place::Queued { .. }) => {
            record_claim(tx, &id, agent, claim);
            Ok(id)
        }
        _ => Ok(id),
    }
}

/// A complete, fail or release of `claim` by `agent`, sent as the inbox message `msg`.
pub(crate) fn finish(tx: &mut Tx, agent: &str, claim: &str, msg: &str, ev: Event) -> Result<(), Refusal> {
    let id = holder(tx, agent, claim)?;
    let now = tx.now();
    let live = tx.state().live(&id).expect("the fence returns live tasks only");
    let tr = transition(Some(&live.task), &ev, now, tx.env.cfg.backoff())
        .map_err(|e| Refusal::rejected("kind", e.to_string()).task(&id))?;
    let mut task = live.task.clone();
    tr.apply(&mut task, &ev, agent, now, Some(json!({"claim": claim})));
    if tr.to == Status::Pending {
        unassign_if_pooled(&mut task, &live.place);
    }
    let place = if tr.to.is_terminal() { Place::Done } else { Place::Backlog };
    let path = tx.env.layout.mailbox(agent).cur().join(claim);
    let report = Report {
        task_id: id.clone(),
        task,
        place,
        msg: msg.to_string(),
        agent: agent.to_string(),
        claim: tx.env.rel(&path),
    };
    tx.push(match ev {
        Event::Complete { .. } => Entry::Complete(report),
        Event::Fail { .. } => Entry::Fail(report),
        _ => Entry::Release(report),
    });
    tx.effect(Effect::Remove { path });
    if tr.to.is_terminal() {
        settle_dependents(tx, &id);
    } else {
        try_dispatch(tx, &id);
    }
    Ok(())
}

/// Takes back claims whose lease ran out or whose file left the holder's `cur/`.
pub(crate) fn take_back_expired(tx: &mut Tx) -> Result<(), EngineError> {
    let now = tx.now();
    let lease_default = tx.env.cfg.broker.lease_secs;
    let held: Vec<(String, String, String, protocol::Timestamp, u64)> = tx
        .state()
        .lives()
        .filter_map(|l| match &l.place {
            Place::Held { agent, name, seen_at, .. } => Some((
                l.task.task_id.clone(),
                agent.clone(),
                name.clone(),
                *seen_at,
                l.task.lease(lease_default),
            )),
            _ => None,
        })
        .collect();
    for (id, agent, name, seen_at, lease) in held {
        let path = tx.env.layout.mailbox(&agent).cur().join(&name);
        let (expired, reason) = match tx.env.fs().stat(&path)? {
            Some(m) if m.kind == FileKind::File => {
                let deadline = m.mtime.max(seen_at).plus_secs(lease);
                if now <= deadline {
                    continue;
                }
                (true, format!("lease of {lease} s ran out"))
            }
            _ => (false, format!("the claimed file left mailboxes/{agent}/cur/")),
        };
        let live = tx.state().live(&id).expect("collected from the live tasks above");
        let Ok(tr) = transition(Some(&live.task), &Event::LeaseExpired, now, tx.env.cfg.backoff()) else {
            continue;
        };
        let mut task = live.task.clone();
        tr.apply(
            &mut task,
            &Event::LeaseExpired,
            BROKER,
            now,
            Some(json!({"claim": name, "reason": reason})),
        );
        if tr.to == Status::Pending {
            unassign_if_pooled(&mut task, &live.place);
        }
        let from = match &live.place {
            Place::Held { from, .. } => from.clone(),
            _ => String::new(),
        };
        let terminal = tr.to.is_terminal();
        let taken = TakenBack {
            task_id: id.clone(),
            task,
            place: if terminal { Place::Done } else { Place::Backlog },
            agent: agent.clone(),
            reason: reason.clone(),
            claim: tx.env.rel(&path),
        };
        tx.push(if expired { Entry::Expire(taken) } else { Entry::Vanish(taken) });
        tracing::info!(task = %id, agent = %agent, %reason, "claim taken back");
        if !expired && !from.is_empty() {
            // A power loss before the claim was made durable puts the file back where it was
            // claimed from, under a name that is now retired: take it away.
            tx.effect(Effect::Remove { path: tx.env.maildir(&from).new_dir().join(&name) });
        }
        if expired {
            tx.effect(Effect::Remove { path });
            let mut n = Notice::new(NoticeKind::LeaseExpired, now, reason);
            n.task_id = Some(id.clone());
            n.claim = Some(name);
            tx.effect(Effect::Post { agent, post: Post::Notice(n) });
        }
        if terminal {
            settle_dependents(tx, &id);
        } else {
            try_dispatch(tx, &id);
        }
    }
    Ok(())
}

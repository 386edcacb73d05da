//! Claims and leases. An agent claims by renaming a queued file into its `cur/`; the broker
//! *observes* that rename and journals it, *fences* every report (the claim must be current and
//! its file in the reporter's `cur/`), *finishes* a claim on complete/fail/release, and *takes
//! back* a claim whose lease ran out or whose file vanished, under a new name, so a claim taken
//! back can never be completed.
//!
//! A claim from a shared pool of a task that requires capabilities is adopted only if the agent
//! holds every one (its `agent.json`); otherwise it is *refused*: journaled, the file put back
//! where it was under the same name (the task never stops being queued), and the agent told.
//! Checking costs one read of the agent's `agent.json` per observed claim of such a task, and
//! nothing for any other claim.

use super::EngineError;
use super::dispatch::{redeliver, settle_dependents, try_dispatch};
use super::effects::{Effect, Post, task_bytes};
use super::look::Claims;
use super::quarantine::{Refusal, stray};
use super::tx::Tx;
use crate::journal::{Entry, Place, RefusedClaim, Report};
use protocol::capability;
use protocol::machine::{Event, transition};
use protocol::message::{Notice, NoticeKind};
use protocol::names;
use protocol::{Status, Task};
use runtime_layout::{FileKind, FsError, Meta};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A task claimed from a pool goes back to the pool when taken back; one addressed to an agent
/// stays addressed to it.
pub(crate) fn unassign_if_pooled(task: &mut Task, place: &Place) {
    if place.claimed_from_pool() {
        task.assigned_to = None;
    }
}

/// The required capabilities `agent` lacks to claim the task `id` where it is queued: none for a
/// task addressed to one agent (its mailbox), nor for one that requires nothing. An `agent.json`
/// that cannot be read counts as declaring nothing.
fn lacks(tx: &Tx, id: &str, agent: &str) -> Vec<String> {
    let Some(live) = tx.state().live(id) else { return Vec::new() };
    if live.place.pool().is_none() || live.task.required_capabilities.is_empty() {
        return Vec::new();
    }
    let held = crate::agents::read_capabilities(tx.env.fs(), &tx.env.layout, agent).unwrap_or_else(|e| {
        let path = tx.env.layout.agent_profile(agent);
        tx.env.warn_once(&path, "an agent profile that cannot be read declares nothing", &e);
        Vec::new()
    });
    capability::missing(&live.task.required_capabilities, &held).into_iter().map(str::to_string).collect()
}

/// Journals that `agent` holds the task `id` under the claim `name` (its file is in the agent's
/// `cur/`), like [`record_claim`]; or, when the agent lacks a capability the task requires,
/// refuses the claim (see [`refuse`]; `notify` says whether the agent gets a notice of its own)
/// and says why.
pub(crate) fn adopt(tx: &mut Tx, id: &str, agent: &str, name: &str, notify: bool) -> Result<(), Refusal> {
    let missing = lacks(tx, id, agent);
    if !missing.is_empty() {
        return Err(refuse(tx, id, agent, name, missing, notify));
    }
    record_claim(tx, id, agent, name);
    Ok(())
}

/// Takes back at once a claim the agent may not hold: the record, the file back into the maildir
/// it was claimed from (rewritten there if it is gone), and, with `notify`, a `refused` notice.
/// The task stays queued under the same name.
fn refuse(tx: &mut Tx, id: &str, agent: &str, name: &str, missing: Vec<String>, notify: bool) -> Refusal {
    let live = tx.state().live(id).expect("refused claims are of live queued tasks");
    let from = match &live.place {
        Place::Queued { dir, .. } => dir.clone(),
        _ => String::new(),
    };
    let bytes = task_bytes(&live.task);
    let reason = format!(
        "`{agent}` lacks the capabilities task `{id}` requires: {} (declare them in mailboxes/{agent}/agent.json, e.g. `mailroom agent add {agent} --capability ...`)",
        missing.join(", ")
    );
    tx.push(Entry::Refuse(RefusedClaim {
        task_id: id.to_string(),
        agent: agent.to_string(),
        name: name.to_string(),
        from: from.clone(),
        missing,
        reason: reason.clone(),
    }));
    tracing::info!(task = %id, %agent, %reason, "claim refused");
    let claim = tx.env.layout.mailbox(agent).cur().join(name);
    tx.effect(Effect::Return { claim, maildir: tx.env.maildir(&from), name: name.to_string(), bytes });
    if notify {
        let mut n = Notice::new(NoticeKind::Refused, tx.now(), reason.clone());
        n.task_id = Some(id.to_string());
        n.claim = Some(name.to_string());
        tx.effect(Effect::Post { agent: agent.to_string(), post: Post::Notice(n) });
    }
    Refusal::new(NoticeKind::Refused, "claim", reason).task(id)
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

/// What came of claiming a queued file for an agent that asked the broker to ([`grant`]).
pub(crate) enum Grant {
    /// The file is in the agent's `cur/` and is the task `id`'s: journal it with
    /// [`record_claim`] once the agent has its answer, or put it back with [`ungrant`].
    Made(String),
    /// Not there any more (an agent claimed it by listing): try the next.
    Gone,
    /// Not the dispatched file: set aside as an observed claim would be, and the task queued
    /// again under a new name, whose file is written by the next commit: try again after it.
    Revoked,
    /// The agent's `cur/` cannot take it (missing, a link, its permissions): try no other.
    Refused,
}

/// Claims the queued file `name` of `maildir` for `agent`: the rename the agent would make, from
/// the queue's `new/` into its `cur/` (beneath the root, never replacing a file), then the
/// checks an observed claim passes (the file moved is the dispatched one). Nothing is journaled
/// here.
pub(crate) fn grant(tx: &mut Tx, agent: &str, maildir: &str, name: &str) -> Grant {
    let Some(id) = tx.state().task_named(name).map(str::to_string) else { return Grant::Gone };
    let queued = tx.env.maildir(maildir).new_dir().join(name);
    let cur = tx.env.layout.mailbox(agent).cur();
    let claimed = cur.join(name);
    match tx.env.fs().rename_noreplace(&queued, &claimed) {
        Ok(()) => {}
        // Taken already, unless it is the agent's `cur/` that is missing.
        Err(e) if e.is_not_found() => {
            let cur_there = matches!(tx.env.fs().stat(&cur), Ok(Some(m)) if m.kind == FileKind::Dir);
            return if cur_there { Grant::Gone } else { Grant::Refused };
        }
        // Something of that name in its `cur/` already: the next look there decides what.
        Err(e) if e.is_already_exists() => return Grant::Gone,
        Err(e) => {
            tx.env.warn_once(&cur, "cannot claim a task for an agent into its cur/", &e);
            return Grant::Refused;
        }
    }
    // The queued name is the broker's own rename's source, gone now: only the bytes are left to
    // check (what an observed claim's `check` ends with).
    let expected = task_bytes(&tx.state().live(&id).expect("a named task is live").task);
    match dispatched(tx, &claimed, &expected) {
        Ok(true) => Grant::Made(id),
        Ok(false) => {
            refuse_copy(tx, &id, agent, &claimed, name, REWRITTEN);
            redeliver(tx, &id);
            Grant::Revoked
        }
        // Put back rather than left in a `cur/` whose agent is not told of it.
        Err(e) => {
            tx.env.warn_once(&claimed, "cannot read a claim made for an agent", &e);
            ungrant(tx, agent, maildir, name);
            Grant::Gone
        }
    }
}

/// Puts back the file [`grant`] moved (its agent gone before the answer, or the file unreadable):
/// nothing was journaled.
/// A file that cannot go back is left in the agent's `cur/`, where the next look adopts it as
/// the agent's claim (its lease then takes it back).
pub(crate) fn ungrant(tx: &Tx, agent: &str, maildir: &str, name: &str) {
    let claimed = tx.env.layout.mailbox(agent).cur().join(name);
    let queued = tx.env.maildir(maildir).new_dir().join(name);
    if let Err(e) = tx.env.fs().rename_noreplace(&claimed, &queued) {
        tx.env.warn_once(&claimed, "cannot put back a claim whose agent hung up", &e);
    }
}

/// Largest task file the broker reads back to check a claim.
const MAX_TASK_BYTES: u64 = 16 << 20;

/// Finds task files that agents renamed into their `cur/` since the last look. A file counts as
/// a claim only when it is the dispatched file itself, moved: it has left its queue (a copy or a
/// hard link left beside the original is not a claim), one agent alone has it (a task found in
/// two `cur/`s is taken from both and queued again under a new name), the agent's name is valid,
/// and its bytes are those the broker dispatched (a file rewritten in the queue is never worked
/// on under the broker's name).
///
/// `look` says whose `cur/` to list: every mailbox's, or only those where claims arrived (a
/// claim elsewhere is found by the next pass that looks everywhere).
pub(crate) fn observe(tx: &mut Tx, look: &Claims) -> Result<(), EngineError> {
    if tx.state().queued_count() == 0 {
        return Ok(());
    }
    let mailboxes = match look {
        Claims::Nowhere => return Ok(()),
        Claims::Files(files) => return observe_named(tx, files),
        Claims::Everywhere => tx.env.mailbox_dirs()?,
        Claims::Of(agents) => agents
            .iter()
            .map(|a| (a.clone(), tx.env.layout.mailboxes_dir().join(a), names::validate_agent(a).is_ok()))
            .collect(),
    };
    // Each queued name found in some cur/, with every mailbox it was found in.
    let mut found: Found = BTreeMap::new();
    for (agent, mailbox, valid) in mailboxes {
        let cur = mailbox.join("cur");
        // A cur/ that is a symbolic link (or beneath one) is never listed: claims there do not
        // count. A filesystem that resolves beneath the root refuses one as it lists.
        if !tx.env.fs().resolves_beneath() && !tx.env.layout.is_contained(tx.env.fs(), &cur.join("_")) {
            continue;
        }
        let entries = match tx.env.fs().list(&cur) {
            Ok(e) => e,
            Err(e) if e.is_not_found() || e.is_containment() => continue,
            Err(e) if e.is_permission_denied() => {
                tx.env.warn_once(&cur, "cannot list an agent's claims", &e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let Some(name) = e.name_str() else { continue };
            let Some(id) = tx.state().task_named(name) else { continue };
            if e.kind == FileKind::File
                && matches!(tx.state().live(id).map(|l| &l.place), Some(Place::Queued { .. }))
            {
                let at = (agent.clone(), cur.join(name), valid, None);
                found.entry(name.to_string()).or_default().push(at);
            }
        }
    }
    decide(tx, found)
}

/// Each queued task's name found in some `cur/`, with every mailbox it was found in: the agent,
/// the file's path, whether the agent's name is valid, and what a stat found there if one was
/// made.
type Found = BTreeMap<String, Vec<(String, PathBuf, bool, Option<Meta>)>>;

/// [`observe`] where the events named every file that arrived: each named file still under a
/// queued task's name is looked at (a stat: it may have moved on since), nothing is listed.
fn observe_named(
    tx: &mut Tx,
    files: &std::collections::BTreeSet<(String, String)>,
) -> Result<(), EngineError> {
    let mut found: Found = BTreeMap::new();
    for (agent, name) in files {
        let queued = tx.state().task_named(name).and_then(|id| tx.state().live(id));
        if !matches!(queued.map(|l| &l.place), Some(Place::Queued { .. })) {
            continue; // Adopted already (its report came first), or no task's name at all.
        }
        let path = tx.env.layout.mailboxes_dir().join(agent).join("cur").join(name);
        // As for a listing: a `cur/` that is a link (or beneath one) holds no claims.
        if !tx.env.fs().resolves_beneath() && !tx.env.layout.is_contained(tx.env.fs(), &path) {
            continue;
        }
        let meta = match tx.env.fs().stat(&path) {
            Ok(Some(m)) if m.kind == FileKind::File => m,
            Ok(_) => continue,
            Err(e) if e.is_not_found() || e.is_containment() => continue,
            Err(e) if e.is_permission_denied() => {
                tx.env.warn_once(&path, "cannot look at an agent's claim", &e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let valid = names::validate_agent(agent).is_ok();
        found.entry(name.clone()).or_default().push((agent.clone(), path, valid, Some(meta)));
    }
    decide(tx, found)
}

/// Adopts, refuses or sets aside what [`observe`] found.
fn decide(tx: &mut Tx, found: Found) -> Result<(), EngineError> {
    for (name, holders) in found {
        let Some(id) = tx.state().task_named(&name).map(str::to_string) else { continue };
        let Some(Place::Queued { dir, .. }) = tx.state().live(&id).map(|l| l.place.clone()) else { continue };
        let queued = tx.env.maildir(&dir).new_dir().join(&name);
        if let [(agent, path, true, meta)] = holders.as_slice() {
            match check(tx, &id, (path, *meta), &queued) {
                // A refused claim is journaled, and its file put back, by `adopt` itself.
                Ok(Check::Claim) => {
                    let _ = adopt(tx, &id, agent, &name, true);
                }
                Ok(Check::Copy) => refuse_copy(tx, &id, agent, path, &name, COPY),
                Ok(Check::Revoke(why)) => {
                    refuse_copy(tx, &id, agent, path, &name, why);
                    redeliver(tx, &id);
                }
                Err(e) if e.is_not_found() => {} // moved on again meanwhile: the next look decides
                Err(e) if e.is_permission_denied() || super::inbox::the_file_s(tx, &e, path) => {
                    tx.env.warn_once(path, "cannot read a claim", &e)
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        // Several mailboxes, or one whose name is not an agent's: nobody holds it.
        let still_queued = tx.env.fs().stat(&queued)?.is_some();
        for (agent, path, ok, _) in &holders {
            let why = if !*ok {
                "claimed into a mailbox whose name is not a valid agent name"
            } else if still_queued {
                COPY
            } else {
                "the task was found in more than one agent's cur/: taken from all and queued again"
            };
            refuse_copy(tx, &id, agent, path, &name, why);
        }
        if !still_queued {
            redeliver(tx, &id);
        }
    }
    Ok(())
}

/// A file in an agent's `cur/` under a queued task's name that is not a claim: quarantined (it
/// is kept, with why) and the agent, when it is one, is told.
fn refuse_copy(tx: &mut Tx, id: &str, agent: &str, path: &Path, name: &str, why: &str) {
    stray(tx, path, name, why);
    if names::validate_agent(agent).is_ok() {
        let mut n = Notice::new(NoticeKind::Rejected, tx.now(), why);
        n.task_id = Some(id.to_string());
        n.claim = Some(name.to_string());
        tx.effect(Effect::Post { agent: agent.to_string(), post: Post::Notice(n) });
    }
}

/// The fence: resolves `claim` for a complete/fail/release from `agent`. The claim must be
/// current and its file must be in `mailboxes/<agent>/cur/`. A claim the broker had not yet
/// observed is adopted here.
fn holder(tx: &mut Tx, agent: &str, claim: &str) -> Result<String, Refusal> {
    let stale = |rule: String| Refusal::new(NoticeKind::Stale, "claim", rule);
    let Some(id) = tx.state().task_named(claim).map(str::to_string) else {
        return Err(match tx.state().retired_name(claim) {
            Some(id) => stale(format!(
                "`{claim}` is no longer a claim on task `{id}` (it was taken back, released or finished)"
            ))
            .task(id),
            None => stale(format!("`{claim}` is not a claim the broker knows")),
        });
    };
    let path = tx.env.layout.mailbox(agent).cur().join(claim);
    let here = match tx.env.fs().stat(&path) {
        Ok(Some(m)) if m.kind == FileKind::File => Some(m),
        _ => None,
    };
    match tx.state().live(&id).map(|l| l.place.clone()) {
        Some(Place::Held { agent: holder, .. }) if holder != agent => {
            Err(stale(format!("`{claim}` is held by `{holder}`, not `{agent}`")).task(&id))
        }
        _ if here.is_none() => Err(stale(format!("`{claim}` is not in mailboxes/{agent}/cur/")).task(&id)),
        Some(Place::Queued { dir, .. }) => {
            // Not seen yet: the same checks as `observe` before the claim is adopted.
            let queued = tx.env.maildir(&dir).new_dir().join(claim);
            match check(tx, &id, (&path, here), &queued) {
                Ok(Check::Claim) => {
                    adopt(tx, &id, agent, claim, false)?;
                    Ok(id)
                }
                Ok(Check::Copy) => Err(stale(format!("`{claim}` is not a claim: {COPY}")).task(&id)),
                Ok(Check::Revoke(why)) => {
                    refuse_copy(tx, &id, agent, &path, claim, why);
                    redeliver(tx, &id);
                    Err(stale(format!("`{claim}` is not a claim: {why}")).task(&id))
                }
                Err(e) => Err(stale(format!("`{claim}` cannot be checked: {e}")).task(&id)),
            }
        }
        _ => Ok(id),
    }
}

/// What a file under a queued task's name in an agent's `cur/` is.
enum Check {
    /// The dispatched file, moved there: a claim.
    Claim,
    /// A copy beside the original, which stays queued: not a claim.
    Copy,
    /// Not the dispatched file (rewritten), or the original went elsewhere meanwhile: the task
    /// must be queued again under a new name.
    Revoke(&'static str),
}

const REWRITTEN: &str = "the claimed file is not the one dispatched (it was rewritten): the claim is revoked";

const COPY: &str = "a copy of a task still waiting in its queue is not a claim (claim by renaming the file)";

/// Tells whether the file at `claimed` (with what a stat just found there, if the caller made
/// one) is a claim on the queued task `id`, whose queued file was at `queued`. The same file
/// under both names (a hard link, or a rename whose source entry a power loss kept) is a claim
/// once the queue's name is removed — atomically, so that no second agent can take it meanwhile.
fn check(
    tx: &mut Tx,
    id: &str,
    (claimed, held): (&Path, Option<Meta>),
    queued: &Path,
) -> Result<Check, FsError> {
    let held = match held {
        Some(m) => m,
        None => tx.env.fs().stat(claimed)?.ok_or_else(|| gone(claimed))?,
    };
    let expected = task_bytes(&tx.state().live(id).expect("a queued task is live").task);
    if let Some(q) = tx.env.fs().stat(queued)? {
        if q.ino != held.ino {
            // Two files: the claim beside a copy left queued, or a file someone put at the
            // queued name after the claim's rename. Only the second is not the task's bytes: it
            // is moved aside (never opened for writing), so it costs the claim nothing.
            if dispatched(tx, queued, &expected)? {
                return Ok(Check::Copy);
            }
            set_aside(tx, queued)?;
        } else {
            match tx.env.fs().remove_file(queued) {
                Ok(()) => tx.effects.left(queued.parent().map(Path::to_path_buf).unwrap_or_default()),
                Err(e) if e.is_not_found() => {
                    return Ok(Check::Revoke("the task's file was taken into another mailbox too"));
                }
                Err(e) => return Err(e),
            }
        }
    }
    if dispatched(tx, claimed, &expected)? { Ok(Check::Claim) } else { Ok(Check::Revoke(REWRITTEN)) }
}

/// Whether the file at `path` holds the task's dispatched bytes. A task file is not fsynced one
/// by one: a power loss can cut it short after the agent read it whole, so a prefix of what was
/// dispatched counts as it, not as a rewrite.
fn dispatched(tx: &Tx, path: &Path, expected: &[u8]) -> Result<bool, FsError> {
    match tx.env.fs().read(path, MAX_TASK_BYTES) {
        Ok(bytes) => Ok(expected.starts_with(&bytes)),
        Err(FsError::TooLarge { .. } | FsError::NotRegular { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves a file someone put at a queued task's name aside, to `<name>.displaced-<time>`.
fn set_aside(tx: &mut Tx, path: &Path) -> Result<(), FsError> {
    let aside = super::placing::displaced_name(path, tx.now(), 0);
    match tx.env.fs().rename_noreplace(path, &aside) {
        Ok(()) => {
            tracing::warn!(path = %tx.env.rel(path), moved_to = %tx.env.rel(&aside),
                "a file someone else put at a claimed task's queued name: moved aside, never opened for writing");
            tx.effects.arrived_in(aside.parent().map(Path::to_path_buf).unwrap_or_default());
            Ok(())
        }
        Err(e) if e.is_not_found() || e.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn gone(path: &Path) -> FsError {
    FsError::io("stat", path, std::io::ErrorKind::NotFound.into())
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
    tx.effect(Effect::Retire { path });
    if tr.to.is_terminal() {
        settle_dependents(tx, &id);
    } else {
        try_dispatch(tx, &id);
    }
    Ok(())
}

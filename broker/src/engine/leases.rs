//! Leases. A held claim is taken back when its lease runs out (no heartbeat for `lease_secs`)
//! or when its file leaves the holder's `cur/`, and, at a start, when a power loss left its file
//! holding another task (`take_back_foreign`). A heartbeat is a change of the claim file's
//! mtime; the lease counts from when the *broker saw* that change, on its own clock, never from
//! the mtime's value — an mtime set far into the future holds a claim no longer than any other
//! heartbeat. [`LeaseWatch`] is the part that remembers what the broker saw.

use super::claims::unassign_if_pooled;
use super::dispatch::{settle_dependents, try_dispatch};
use super::effects::{Effect, Post};
use super::tx::Tx;
use super::{BROKER, EngineError};
use crate::journal::{Entry, Place, TakenBack};
use protocol::machine::{Event, transition};
use protocol::message::{Notice, NoticeKind};
use protocol::{Status, Timestamp};
use runtime_layout::{FileKind, FsError};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Largest claim file read back at a start (task files are far smaller).
const MAX_CLAIM_BYTES: u64 = 16 << 20;

/// What the broker last saw of each held claim's file: its mtime, and when (by the broker's
/// clock) it saw that mtime first.
#[derive(Default)]
pub(crate) struct LeaseWatch {
    seen: HashMap<String, (Timestamp, Timestamp)>,
}

impl LeaseWatch {
    /// When the claim `name` was last heard from: now if its mtime changed since the last look;
    /// on the first look, the later of the claim's observation and its mtime, but never later
    /// than now (after a restart the broker has nothing better than the file's word, bounded).
    pub fn heard(
        &mut self,
        name: &str,
        mtime: Timestamp,
        claimed_at: Timestamp,
        now: Timestamp,
    ) -> Timestamp {
        match self.seen.get_mut(name) {
            Some((last_mtime, at)) => {
                if *last_mtime != mtime {
                    *last_mtime = mtime;
                    *at = now;
                }
                *at
            }
            None => {
                let at = mtime.max(claimed_at).min(now);
                self.seen.insert(name.to_string(), (mtime, at));
                at
            }
        }
    }

    /// Forgets every claim not in `held`.
    pub fn forget_all_but<'a>(&mut self, held: impl Iterator<Item = &'a str>) {
        let keep: HashSet<&str> = held.collect();
        self.seen.retain(|k, _| keep.contains(k.as_str()));
    }
}

/// Takes back claims whose lease ran out or whose file left the holder's `cur/`.
pub(crate) fn take_back_expired(tx: &mut Tx, watch: &mut LeaseWatch) -> Result<(), EngineError> {
    let now = tx.now();
    let lease_default = tx.env.cfg.broker.lease_secs;
    let held: Vec<(String, String, String, protocol::Timestamp, u64)> = tx
        .state()
        .held()
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
    watch.forget_all_but(held.iter().map(|h| h.2.as_str()));
    for (id, agent, name, seen_at, lease) in held {
        let path = tx.env.layout.mailbox(&agent).cur().join(&name);
        let seen = match tx.env.fs().stat(&path) {
            Ok(s) => s,
            // The agent made its claims unreadable: nothing can be told, so nothing is decided.
            Err(e) if e.is_permission_denied() => {
                tx.env.warn_once(&path, "cannot look at a claim", &e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (expired, reason) = match seen {
            Some(m) if m.kind == FileKind::File => {
                let deadline = watch.heard(&name, m.mtime, seen_at, now).plus_secs(lease);
                if now <= deadline {
                    continue;
                }
                (true, format!("lease of {lease} s ran out"))
            }
            _ => (false, format!("the claimed file left mailboxes/{agent}/cur/")),
        };
        let how = if expired { How::Expired } else { How::Vanished };
        take_back(tx, &id, &agent, &name, how, reason);
    }
    Ok(())
}

/// Why a held claim is taken back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// Its lease ran out: the file is removed and the agent told (`lease_expired`).
    Expired,
    /// Its file left the holder's `cur/`.
    Vanished,
    /// Its file holds another task (what a power loss can leave of a file written in place):
    /// the file is removed and the agent told (`rejected`).
    Foreign,
}

/// Takes the claim `name` of `id` back from `agent`: journaled, the task queued again (or
/// finished, when its attempts are spent), the file and the agent dealt with as `how` says.
fn take_back(tx: &mut Tx, id: &str, agent: &str, name: &str, how: How, reason: String) {
    let now = tx.now();
    let path = tx.env.layout.mailbox(agent).cur().join(name);
    let live = tx.state().live(id).expect("a held task is live");
    let Ok(tr) = transition(Some(&live.task), &Event::LeaseExpired, now, tx.env.cfg.backoff()) else {
        return;
    };
    let mut task = live.task.clone();
    tr.apply(&mut task, &Event::LeaseExpired, BROKER, now, Some(json!({"claim": name, "reason": reason})));
    if tr.to == Status::Pending {
        unassign_if_pooled(&mut task, &live.place);
    }
    let from = match &live.place {
        Place::Held { from, .. } => from.clone(),
        _ => String::new(),
    };
    let terminal = tr.to.is_terminal();
    let taken = TakenBack {
        task_id: id.to_string(),
        task,
        place: if terminal { Place::Done } else { Place::Backlog },
        agent: agent.to_string(),
        reason: reason.clone(),
        claim: tx.env.rel(&path),
    };
    tx.push(if how == How::Expired { Entry::Expire(taken) } else { Entry::Vanish(taken) });
    tracing::info!(task = %id, agent = %agent, %reason, "claim taken back");
    if how == How::Vanished && !from.is_empty() {
        // A power loss before the claim was made durable puts the file back where it was
        // claimed from, under a name that is now retired: take it away.
        tx.effect(Effect::Remove { path: tx.env.maildir(&from).new_dir().join(name) });
    }
    let notice = match how {
        How::Expired => Some(NoticeKind::LeaseExpired),
        How::Foreign => Some(NoticeKind::Rejected),
        How::Vanished => None,
    };
    if let Some(kind) = notice {
        tx.effect(Effect::Remove { path });
        let mut n = Notice::new(kind, now, reason);
        n.task_id = Some(id.to_string());
        n.claim = Some(name.to_string());
        tx.effect(Effect::Post { agent: agent.to_string(), post: Post::Notice(n) });
    }
    if terminal {
        settle_dependents(tx, id);
    } else {
        try_dispatch(tx, id);
    }
}

/// At a start: takes back every held claim whose file holds another task than the claim's, so
/// that no agent works on that task under this claim. A power loss can leave that in a task file
/// the broker wrote into a finished claim's file (`spares.rs`) before it was claimed: the claim
/// was adopted when the file was right, and its new bytes never reached the disk.
pub(crate) fn take_back_foreign(tx: &mut Tx) -> Result<(), EngineError> {
    let held: Vec<(String, String, String)> = tx
        .state()
        .held()
        .filter_map(|l| match &l.place {
            Place::Held { agent, name, .. } => Some((l.task.task_id.clone(), agent.clone(), name.clone())),
            _ => None,
        })
        .collect();
    for (id, agent, name) in held {
        let path = tx.env.layout.mailbox(&agent).cur().join(&name);
        let bytes = match tx.env.fs().read(&path, MAX_CLAIM_BYTES) {
            Ok(b) => b,
            // Gone, unreadable or not a file: the lease check decides, as for any claim.
            Err(e)
                if e.is_not_found()
                    || e.is_permission_denied()
                    || super::inbox::the_file_s(tx, &e, &path) =>
            {
                continue;
            }
            Err(FsError::NotRegular { .. } | FsError::TooLarge { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let held_id = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["task_id"].as_str().map(String::from));
        match held_id {
            Some(other) if other != id => {
                let reason =
                    format!("the claimed file holds task {other:?} after a power loss, not this one");
                take_back(tx, &id, &agent, &name, How::Foreign, reason);
            }
            _ => {}
        }
    }
    Ok(())
}

//! Admission: a new task is validated, checked against what the broker already has (an identical
//! resubmission is a no-op, a different one with the same id is refused), given a destination
//! that exists inside the root, journaled whole, and offered to dispatch.

use super::BROKER;
use super::dependencies;
use super::dispatch::{settle_dependents, try_dispatch};
use super::quarantine::Refusal;
use super::tx::Tx;
use crate::config::Route;
use crate::journal::{Admitted, Entry, Place};
use crate::state::fnv64;
use protocol::machine::{Event, transition};
use protocol::names;
use protocol::{HistoryEntry, Status, Task};
use runtime_layout::FsError;
use serde_json::{Value, json};

/// How a new task enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A submission: the task starts PENDING whatever status it claims.
    Submit,
    /// A migration (`mailroom import`): the task keeps its state; with `create_agents`, the
    /// mailbox of an assignee that does not exist yet is created.
    Import { create_agents: bool },
}

/// A `submit` message: the task in the canonical schema.
pub(crate) fn submit(tx: &mut Tx, raw: &Value, msg: &str) -> Result<(), Refusal> {
    let task = Task::from_value(raw.clone()).map_err(|e| Refusal::from(e.within("task")))?;
    let hash = identity(tx, &task.task_id, raw);
    admit(tx, task, hash, msg, Admission::Submit)
}

/// The identity of a submitted task, for telling an identical resubmission from a conflicting
/// one: a hash of its canonical form (object keys sorted at every level), so that the same task
/// with its keys in another order is the same task. A task admitted before identities were
/// canonical keeps the hash of its bytes as written; a resubmission matching that is the same too.
pub(crate) fn identity(tx: &Tx, id: &str, raw: &Value) -> u64 {
    let canonical = fnv64(&serde_json::to_vec(&canonical(raw)).expect("a JSON value serialises"));
    match tx.state().hash_of(id) {
        Some(h)
            if h != canonical && h == fnv64(&serde_json::to_vec(raw).expect("a JSON value serialises")) =>
        {
            h
        }
        _ => canonical,
    }
}

/// `v` with the keys of every object sorted.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Accepts a new task (or recognises an identical resubmission). `Submit` starts every task
/// PENDING; `Import` keeps the state a migrated task had (IN_PROGRESS, which no claim backs
/// here, becomes PENDING so the work is offered again). `msg` is the inbox message (for an
/// import, the source file).
pub(crate) fn admit(
    tx: &mut Tx,
    mut task: Task,
    hash: u64,
    msg: &str,
    how: Admission,
) -> Result<(), Refusal> {
    let id = task.task_id.clone();
    if let Some(existing) = tx.state().hash_of(&id) {
        if existing == hash {
            tx.push(Entry::Duplicate { task_id: id, msg: msg.to_string() });
            return Ok(());
        }
        let status = tx.state().status_of(&id).map(|s| s.as_str()).unwrap_or("?");
        return Err(Refusal::rejected(
            "task.task_id",
            format!("duplicate: task `{id}` already exists ({status}) with different content"),
        )
        .task(&id));
    }
    if task.depends_on.iter().any(|d| d == &id) {
        return Err(Refusal::rejected("task.depends_on", "a task cannot depend on itself").task(&id));
    }
    if let Some(cycle) = dependencies::cycle(tx.state(), &id, &task.depends_on) {
        return Err(Refusal::rejected(
            "task.depends_on",
            format!("it would close a dependency cycle: {} (each depends on the next)", cycle.join(" -> ")),
        )
        .task(&id));
    }
    let now = tx.now();
    let given = task.status;
    let import = matches!(how, Admission::Import { .. });
    let keep = import && given != Status::InProgress;
    if !(keep && given.is_terminal()) {
        check_destination(tx, &task, matches!(how, Admission::Import { create_agents: true }))
            .map_err(|r| r.task(&id))?;
    }
    if task.created_at.is_none() {
        task.created_at = Some(now);
    }
    let actor = task.created_by.clone().unwrap_or_else(|| "producer".to_string());
    let place = if keep {
        let mut details = json!({"status": given});
        if import {
            details["source"] = json!(msg);
        }
        task.history.push(HistoryEntry {
            timestamp: now,
            actor: BROKER.to_string(),
            action: "import".into(),
            from: None,
            to: Some(given),
            details: Some(details),
        });
        task.updated_at = Some(now);
        if given.is_terminal() { Place::Done } else { Place::Backlog }
    } else {
        // A submission starts PENDING with no attempt made, whatever it says: what it said is
        // recorded in its history, never dropped silently.
        let given_attempts = task.attempts;
        task.status = Status::Pending;
        task.attempts = 0;
        let tr = transition(None, &Event::Submit, now, tx.env.cfg.backoff())
            .map_err(|e| Refusal::rejected("task", e.to_string()))?;
        let mut ignored = serde_json::Map::new();
        if given != Status::Pending {
            ignored.insert("ignored_status".into(), json!(given));
        }
        if given_attempts != 0 {
            ignored.insert("ignored_attempts".into(), json!(given_attempts));
        }
        let details = (!ignored.is_empty()).then_some(serde_json::Value::Object(ignored));
        tr.apply(&mut task, &Event::Submit, &actor, now, details);
        Place::Backlog
    };
    let path = match how {
        Admission::Import { .. } => msg.to_string(),
        Admission::Submit => match tx.via {
            Some(via) => via.to_string(),
            None => tx.env.rel(&tx.env.layout.broker_inbox().new_dir().join(msg)),
        },
    };
    let done = place == Place::Done;
    let admitted = Admitted { task_id: id.clone(), task, place, msg: msg.to_string(), hash, path };
    tx.push(if import { Entry::Import(admitted) } else { Entry::Submit(admitted) });
    if !done {
        try_dispatch(tx, &id);
    }
    // Tasks may have waited for this one, not knowing it (or been blocked for want of it).
    settle_dependents(tx, &id);
    Ok(())
}

/// Checks that the task's destination exists (or may be created) and lies inside the root.
fn check_destination(tx: &mut Tx, task: &Task, create: bool) -> Result<(), Refusal> {
    let (field, target) = match (&task.assigned_to, tx.env.route_of(task)) {
        (Some(a), _) => ("task.assigned_to", Route::Agent(a.clone())),
        (None, route) => ("task.task_type", route),
    };
    let (md, agent) = match target {
        Route::Agent(agent) => {
            names::validate_agent(&agent).map_err(|e| Refusal::rejected(field, e.rule))?;
            (tx.env.layout.mailbox(&agent), Some(agent))
        }
        Route::Pool(p) => (tx.env.layout.queue(&p), None),
    };
    // Before asking whether a mailbox exists: one that is a link (never followed) does not. A
    // directory of the broker's own in the way (`queues/`, `mailboxes/` replaced) is no fault of
    // the task: the delivery fails on it and the broker moves it aside (`crate::repair`).
    let owned_in_the_way = match tx.effects.contain_maildir(tx.env, &md) {
        Ok(()) => false,
        Err(FsError::NotBeneath { at, .. }) if tx.env.layout.owned_dirs().contains(&at) => true,
        Err(_) => {
            return Err(Refusal::rejected(
                field,
                format!(
                    "destination `{}` is a symbolic link or not a directory: the broker writes only inside its root",
                    tx.env.rel(&md.root)
                ),
            ));
        }
    };
    if let Some(agent) = agent
        && !owned_in_the_way
        && !md.exists(tx.env.fs())
    {
        if !tx.env.cfg.broker.allow_unknown_agents && !create {
            return Err(Refusal::rejected(
                field,
                format!(
                    "no agent `{agent}` (its mailbox does not exist; `mailroom agent add {agent}` creates it)"
                ),
            ));
        }
        md.create(tx.env.fs(), true).map_err(|e| Refusal::rejected(field, e.to_string()))?;
    }
    Ok(())
}

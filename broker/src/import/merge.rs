//! The tasks of an import: a task id seen more than once (in one file or several) is merged, the
//! most advanced state winning and the other copies recorded in its history; the winner goes
//! through admission. A file whose copy lost says so (`merged into <file>`, with the ids), and
//! an agent whose mailbox admission creates for the task is noted with why.

use super::report::{FileReport, Refused};
use super::{Candidate, Importer};
use crate::config::Route;
use crate::engine::admission::{Admission, admit};
use crate::engine::tx::Tx;
use crate::engine::{BROKER, EngineError};
use crate::import::ImportFile;
use crate::state::fnv64;
use protocol::names::validate_agent;
use protocol::{HistoryEntry, Task, legacy};
use serde_json::json;
use std::collections::BTreeMap;

enum Outcome {
    Imported,
    AlreadyImported,
    Refused(String),
}

/// Merges the copies of each task id and admits the winner, reporting on each file.
pub(super) fn admit_all(
    imp: &mut Importer,
    tx: &mut Tx,
    files: &[ImportFile],
    by_id: BTreeMap<String, Vec<Candidate>>,
    reports: &mut [FileReport],
) -> Result<(), EngineError> {
    let now = tx.now();
    for (id, mut cands) in by_id {
        cands.sort_by(|a, b| {
            legacy::status_rank(b.1.status)
                .cmp(&legacy::status_rank(a.1.status))
                .then(b.1.updated_at.cmp(&a.1.updated_at))
        });
        let mut raws: Vec<Vec<u8>> =
            cands.iter().map(|c| serde_json::to_vec(&c.2).expect("a JSON value serialises")).collect();
        raws.sort();
        let hash = fnv64(&raws.concat());
        let (wfi, mut task, _) = cands[0].clone();
        let kept = &files[wfi].display;
        for (fi, other, _) in &cands[1..] {
            task.history.push(HistoryEntry {
                timestamp: now,
                actor: BROKER.to_string(),
                action: "merge".into(),
                from: Some(other.status),
                to: Some(task.status),
                details: Some(json!({
                    "source": files[*fi].display,
                    "kept": kept,
                    "why": "the same task id appeared more than once; the most advanced state is kept",
                })),
            });
            if *fi != wfi {
                let into = reports[*fi].merged_into.entry(kept.clone()).or_default();
                if !into.contains(&id) {
                    into.push(id.clone());
                }
            }
        }
        let outcome = match tx.state().hash_of(&id) {
            Some(h) if h == hash => Outcome::AlreadyImported,
            Some(_) => {
                Outcome::Refused(format!("task `{id}` already exists in this root with different content"))
            }
            None => admit_one(imp, tx, task, hash, kept),
        };
        let fr = &mut reports[wfi];
        fr.merged += cands.len() - 1;
        match outcome {
            Outcome::Imported => fr.accepted.push(id),
            Outcome::AlreadyImported => fr.already.push(id),
            Outcome::Refused(reason) => fr.refused.push(Refused { task_id: Some(id), reason }),
        }
        if !imp.opts.dry_run {
            tx.commit()?;
        }
    }
    Ok(())
}

/// Admits one merged task (in a dry run, only says it would), noting the agent whose mailbox
/// admission creates for it.
fn admit_one(imp: &mut Importer, tx: &mut Tx, task: Task, hash: u64, file: &str) -> Outcome {
    let dest = destination_agent(tx, &task).filter(|a| validate_agent(&a.0).is_ok() && !imp.exists(tx, &a.0));
    let dest = dest.filter(|_| imp.opts.create_agents || tx.env.cfg.broker.allow_unknown_agents);
    if imp.opts.dry_run {
        if let Some((agent, why)) = dest {
            imp.note_created(&agent, why, file);
        }
        return Outcome::Imported;
    }
    let how = Admission::Import { create_agents: imp.opts.create_agents };
    match admit(tx, task, hash, file, how) {
        Ok(()) => {
            if let Some((agent, why)) = dest
                && tx.env.layout.mailbox(&agent).exists(tx.env.fs())
            {
                imp.note_created(&agent, why, file);
            }
            Outcome::Imported
        }
        Err(r) => Outcome::Refused(r.to_string()),
    }
}

/// The agent a task will be delivered to (its assignee, or its type's agent route), with why, if
/// admission looks for that agent's mailbox: a task that ends finished is never delivered.
fn destination_agent(tx: &Tx, task: &Task) -> Option<(String, String)> {
    if task.status.is_terminal() {
        return None;
    }
    match (&task.assigned_to, tx.env.route_of(task)) {
        (Some(a), _) => Some((a.clone(), format!("assignee of task `{}`", task.task_id))),
        (None, Route::Agent(a)) => Some((
            a,
            format!(
                "route of task type `{}` (task `{}`)",
                task.task_type.as_deref().unwrap_or_default(),
                task.task_id
            ),
        )),
        (None, Route::Pool(_)) => None,
    }
}

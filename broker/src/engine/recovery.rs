//! Recovery: brings the tree in line with the state replayed from the journal before the broker
//! serves — claims made while it was down, held claims whose file a power loss left holding
//! another task, queued files a crash lost or tore, the copy a
//! half-durable claim left in `new/`, requeues from quarantine cut short, and files left under
//! names the broker no longer knows.

use super::EngineError;
use super::claims::{adopt, observe};
use super::dispatch::gate;
use super::effects::{Effect, task_bytes};
use super::leases::take_back_foreign;
use super::look::Claims;
use super::quarantine::{reason_path, stray};
use super::spares;
use super::tx::Tx;
use crate::journal::{Place, Requeued};
use protocol::names::DispatchName;
use runtime_layout::FsError;
use std::path::PathBuf;

/// Redoes or cleans up whatever file effects a crash interrupted.
pub(crate) fn reconcile(tx: &mut Tx) -> Result<(), EngineError> {
    spares::clear(tx.env);
    observe(tx, &Claims::Everywhere)?;
    take_back_foreign(tx)?;
    // A claim whose rename was only partly durable at a power loss (cur/ synced, new/ not)
    // leaves its file in both places: the copy in new/ must not be claimed again.
    let held: Vec<PathBuf> = tx
        .state()
        .lives()
        .filter_map(|l| match &l.place {
            Place::Held { name, from, .. } if !from.is_empty() => {
                Some(tx.env.maildir(from).new_dir().join(name))
            }
            _ => None,
        })
        .collect();
    for path in held {
        if tx.env.fs().stat(&path)?.is_some() {
            tx.effect(Effect::Remove { path });
        }
    }
    // Withdrawn from a full ready window (journaled), with the unlink undone by a power loss.
    let withdrawn: Vec<std::path::PathBuf> = tx
        .state()
        .lives()
        .filter_map(|l| match &l.place {
            Place::Waiting { dir, name } => Some(tx.env.maildir(dir).new_dir().join(name)),
            _ => None,
        })
        .collect();
    for path in withdrawn {
        if tx.env.fs().stat(&path)?.is_some() {
            tx.effect(Effect::Remove { path });
        }
    }
    let queued: Vec<(String, String, String)> = tx
        .state()
        .lives()
        .filter_map(|l| match &l.place {
            Place::Queued { dir, name } => Some((l.task.task_id.clone(), dir.clone(), name.clone())),
            _ => None,
        })
        .collect();
    for (id, dir, name) in queued {
        let md = tx.env.maildir(&dir);
        let path = md.new_dir().join(&name);
        // Exactly what it would be written with: a power loss can leave a file cut short, or
        // (written into a finished claim's file) with what that file held before, another
        // task's bytes or this task's own from an earlier dispatch.
        let intact = match tx.env.fs().read(&path, tx.env.cfg.broker.max_message_bytes) {
            Ok(bytes) => tx.state().live(&id).is_some_and(|l| task_bytes(&l.task) == bytes),
            Err(e) if e.is_not_found() => false,
            Err(FsError::NotRegular { .. } | FsError::TooLarge { .. }) => false,
            Err(e) if e.is_permission_denied() => false,
            Err(e) => return Err(e.into()),
        };
        // The set a gated file's tag stands for (written once, before the file: a no-op if there).
        if let Some(set) = tx.state().live(&id).and_then(|l| gate(&l.task, &dir)) {
            tx.effect(Effect::WriteCapabilities(set));
        }
        if intact {
            continue;
        }
        // Lost or torn by a power loss (task files are not fsynced one by one).
        if tx.env.fs().stat(&path)?.is_some() {
            match tx.env.fs().remove_file(&path) {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        // Or claimed after `observe` listed the agents' cur/ and before the look above. Agents
        // keep claiming while the broker starts: look again now, after the look in new/, so
        // that a file renamed in between is found in some cur/ rather than delivered a second
        // time under the same name to a second agent.
        if let Some(agent) = tx.env.holder_of(&name)? {
            // A claim the agent may not hold is put back and the file rewritten by `adopt`.
            let _ = adopt(tx, &id, &agent, &name, true);
            continue;
        }
        let bytes = task_bytes(&tx.state().live(&id).expect("collected from the live tasks above").task);
        md.create(tx.env.fs(), false)?;
        tx.effect(Effect::Deliver { maildir: md, name, bytes });
    }
    // Requeues journaled whose moves a crash cut short (each move is done at most once).
    let requeues: Vec<Requeued> = tx.state().requeues().cloned().collect();
    for r in requeues {
        let from = tx.env.layout.quarantine_dir().join(&r.name);
        let reason_from = reason_path(&from);
        if tx.env.fs().stat(&from)?.is_some() || tx.env.fs().stat(&reason_from)?.is_some() {
            let to = tx.env.layout.comms().join(&r.path);
            let reason_to = tx.env.layout.comms().join(&r.reason_path);
            tx.effect(Effect::Requeue { from, to, reason_from, reason_to });
        }
    }
    // Files under names that are not current, in every new/ and cur/, and in tmp/ the file a
    // crash left there after priority aging took it out of its queue under its former name.
    for md in tx.env.all_maildirs()? {
        for sub in [md.new_dir(), md.cur(), md.tmp()] {
            if tx.env.fs().stat(&sub)?.is_none() {
                continue;
            }
            let entries = match tx.env.fs().list(&sub) {
                Ok(e) => e,
                Err(e) if e.is_permission_denied() => {
                    tx.env.warn_once(&sub, "cannot list a maildir", &e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for e in entries {
                let Some(name) = e.name_str().map(str::to_string) else { continue };
                if DispatchName::parse(&name).is_none() || tx.state().task_named(&name).is_some() {
                    continue;
                }
                let path = sub.join(&name);
                if tx.state().retired_name(&name).is_some() {
                    tx.effect(Effect::Remove { path });
                } else if sub != md.tmp() {
                    stray(
                        tx,
                        &path,
                        &name,
                        "a task file under a name the broker never dispatched or no longer knows",
                    );
                }
            }
        }
    }
    tx.commit()
}

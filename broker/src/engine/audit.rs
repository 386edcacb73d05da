//! The queue audit: every `audit_secs` the broker looks at the file of every task waiting in a
//! queue or a mailbox. A file that is gone — deleted by someone, not claimed (no agent's `cur/`
//! has it) at two looks in a row — is delivered again under a new name; a file whose size or
//! mtime changed since the broker last looked is read, and if it is not what the broker
//! dispatched it is quarantined and a fresh copy delivered under a new name. So a deleted queued
//! file comes back without a restart, and a rewritten one is never claimed as the broker's.

use super::EngineError;
use super::dispatch::redeliver;
use super::effects::task_bytes;
use super::quarantine::stray;
use super::tx::Tx;
use crate::journal::Place;
use protocol::Timestamp;
use runtime_layout::FsError;
use std::collections::{HashMap, HashSet};

/// Largest queued file the audit reads back.
const MAX_TASK_BYTES: u64 = 16 << 20;

/// What the audit saw of one queued file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Its size and mtime when last found intact.
    Intact(u64, Timestamp),
    /// Not found (and held by nobody) at the last look.
    Missing,
}

#[derive(Default)]
pub(crate) struct QueueAudit {
    last: Option<Timestamp>,
    seen: HashMap<String, Seen>,
}

impl QueueAudit {
    /// Looks at every queued file if `audit_secs` have passed since the last look.
    pub fn run_if_due(&mut self, tx: &mut Tx) -> Result<(), EngineError> {
        let now = tx.now();
        let every = tx.env.cfg.broker.audit_secs;
        if every == 0 || self.last.is_some_and(|t| now >= t && now < t.plus_secs(every)) {
            return Ok(());
        }
        self.last = Some(now);
        let queued: Vec<(String, String, String)> = tx
            .state()
            .lives()
            .filter_map(|l| match &l.place {
                Place::Queued { dir, name } => Some((l.task.task_id.clone(), dir.clone(), name.clone())),
                _ => None,
            })
            .collect();
        let current: HashSet<&str> = queued.iter().map(|q| q.2.as_str()).collect();
        self.seen.retain(|name, _| current.contains(name.as_str()));
        for (id, dir, name) in queued {
            let path = tx.env.maildir(&dir).new_dir().join(&name);
            let meta = match tx.env.fs().stat(&path) {
                Ok(m) => m,
                Err(e) if e.is_permission_denied() => {
                    tx.env.warn_once(&path, "cannot look at a queued file", &e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(meta) = meta else {
                // Claimed since the last pass (the next pass records it), or gone.
                if tx.env.holder_of(&name)?.is_some() {
                    continue;
                }
                if self.seen.insert(name.clone(), Seen::Missing) == Some(Seen::Missing) {
                    tracing::warn!(task = %id, file = %tx.env.rel(&path), "a queued file disappeared: delivered again");
                    self.seen.remove(&name);
                    redeliver(tx, &id);
                }
                continue;
            };
            if self.seen.get(&name) == Some(&Seen::Intact(meta.len, meta.mtime)) {
                continue;
            }
            let expected = task_bytes(&tx.state().live(&id).expect("collected from the live tasks").task);
            let intact = match tx.env.fs().read(&path, MAX_TASK_BYTES) {
                Ok(bytes) => bytes == expected,
                Err(e) if e.is_not_found() => continue, // claimed meanwhile
                Err(FsError::TooLarge { .. } | FsError::NotRegular { .. }) => false,
                Err(e) if e.is_permission_denied() => false,
                Err(e) => return Err(e.into()),
            };
            if intact {
                self.seen.insert(name, Seen::Intact(meta.len, meta.mtime));
            } else {
                tracing::warn!(task = %id, file = %tx.env.rel(&path), "a queued file was rewritten: quarantined, delivered again");
                stray(tx, &path, &name, "a queued task file was rewritten after dispatch");
                self.seen.remove(&name);
                redeliver(tx, &id);
            }
        }
        Ok(())
    }
}

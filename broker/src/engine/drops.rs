//! The drop watcher: files that existing scripts write any way at all — into `drop/`, the
//! configured task directories, and each `<mail_dir>/<agent>/inbox/` — are watched until they are
//! complete (they parse leniently and have not changed for `settle_ms`), then renamed into the
//! broker's inbox under a name that says where they came from. A file that never parses is
//! quarantined after `settle_timeout_secs`, bytes intact.

use super::EngineError;
use super::inbox::{strip_path, the_file_s, unreadable};
use super::legacy::{DROP_PREFIX, MAIL_DROP_PREFIX, parses};
use super::quarantine::{Refusal, printable, reject_file};
use super::tx::Tx;
use protocol::Timestamp;
use protocol::names;
use runtime_layout::{FileKind, FsError};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// A directory that existing scripts write into.
#[derive(Debug, Clone)]
struct DropSource {
    dir: PathBuf,
    /// For a legacy mailbox inbox: the agent it belongs to.
    mail_for: Option<String>,
}

/// A file being watched until it is complete.
#[derive(Debug, Clone, Copy)]
struct Watch {
    len: u64,
    mtime: Timestamp,
    first_seen: Timestamp,
}

#[derive(Default)]
pub(crate) struct DropWatcher {
    watching: HashMap<PathBuf, Watch>,
}

impl DropWatcher {
    /// Whether a file is being watched until it is complete (a later pass must look again).
    pub fn settling(&self) -> bool {
        !self.watching.is_empty()
    }

    /// Moves every complete file of every drop directory into the inbox.
    pub fn take(&mut self, tx: &mut Tx) -> Result<(), EngineError> {
        let mut seen = HashSet::new();
        for source in sources(tx)? {
            self.take_from(tx, &source, &mut seen)?;
        }
        self.watching.retain(|k, _| seen.contains(k));
        Ok(())
    }

    fn take_from(
        &mut self,
        tx: &mut Tx,
        source: &DropSource,
        seen: &mut HashSet<PathBuf>,
    ) -> Result<(), EngineError> {
        let dir = &source.dir;
        let entries = match tx.env.fs().list(dir) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if e.is_permission_denied() => {
                tx.env.warn_once(dir, "cannot list a drop directory", &e);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let now = tx.now();
        let cfg = &tx.env.cfg.broker;
        let (settle_us, timeout_us, limit) =
            (cfg.settle_ms as i64 * 1000, cfg.settle_timeout_secs as i64 * 1_000_000, cfg.max_message_bytes);
        for e in entries {
            let shown = e.name.to_string_lossy().into_owned();
            if names::is_hidden(&shown) {
                continue;
            }
            let path = dir.join(&e.name);
            if e.kind != FileKind::File || e.name_str().is_none() {
                let rule = if e.kind != FileKind::File {
                    format!("is a {}, not a regular file", e.kind)
                } else {
                    "file name is not UTF-8".into()
                };
                reject_file(tx, &path, &shown, None, Refusal::rejected("", rule));
                continue;
            }
            seen.insert(path.clone());
            let meta = match tx.env.fs().stat(&path) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) if e.is_permission_denied() => {
                    tx.env.warn_once(&path, "cannot look at a dropped file", &e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let prev = self.watching.get(&path).copied();
            let watch = Watch {
                len: meta.len,
                mtime: meta.mtime,
                first_seen: prev.map(|p| p.first_seen).unwrap_or(now),
            };
            self.watching.insert(path.clone(), watch);
            let unchanged = prev.is_some_and(|p| p.len == meta.len && p.mtime == meta.mtime);
            let quiet = meta.mtime.as_micros() + settle_us <= now.as_micros();
            if !unchanged || !quiet {
                continue;
            }
            let parsed = match tx.env.fs().read(&path, limit) {
                Ok(bytes) => parses(&bytes),
                Err(e) if e.is_not_found() => continue,
                Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
                    reject_file(
                        tx,
                        &path,
                        &shown,
                        None,
                        Refusal::rejected("", strip_path(&e.to_string(), &path)),
                    );
                    self.watching.remove(&path);
                    continue;
                }
                Err(e) if e.is_permission_denied() || the_file_s(tx, &e, &path) => {
                    reject_file(tx, &path, &shown, None, unreadable(&e, &path));
                    self.watching.remove(&path);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match parsed {
                Ok(()) => {
                    let unique = tx.env.names.next("d");
                    let unique = unique.trim_start_matches("d-").trim_end_matches(".json");
                    let name = match &source.mail_for {
                        None => format!("{DROP_PREFIX}{unique}-{}", printable(&shown)),
                        Some(agent) => format!("{MAIL_DROP_PREFIX}{agent}+{unique}-{}", printable(&shown)),
                    };
                    let inbox = tx.env.layout.broker_inbox().new_dir();
                    tx.env.fs().rename_noreplace(&path, &inbox.join(&name))?;
                    // Made durable before the batch is journaled (a file a power loss put back
                    // in `drop/` would be taken twice: once more mail, say): destination first.
                    if tx.env.durability.sync_files() {
                        tx.env.fs().sync_dir(&inbox)?;
                        tx.env.fs().sync_dir(dir)?;
                    }
                    self.watching.remove(&path);
                    tracing::debug!(file = %tx.env.rel(&path), as_message = %name, "took a dropped file");
                }
                Err(v) if now.as_micros() - watch.first_seen.as_micros() >= timeout_us => {
                    reject_file(tx, &path, &shown, None, v.into());
                    self.watching.remove(&path);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// `drop/`, the configured task directories, and every `<mail_dir>/<agent>/inbox/`.
fn sources(tx: &Tx) -> Result<Vec<DropSource>, EngineError> {
    let mut out = vec![DropSource { dir: tx.env.layout.drop_dir(), mail_for: None }];
    let root = tx.env.layout.root();
    for d in &tx.env.cfg.ingest.task_dirs {
        out.push(DropSource { dir: root.join(d), mail_for: None });
    }
    for d in &tx.env.cfg.ingest.mail_dirs {
        let base = root.join(d);
        let entries = match tx.env.fs().list(&base) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => continue,
            Err(e) if e.is_permission_denied() => {
                tx.env.warn_once(&base, "cannot list a legacy mail directory", &e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            if e.kind == FileKind::Dir
                && let Some(n) = e.name_str()
                && !names::is_hidden(n)
            {
                // The directory's name says whose inbox it is; a name that is not a valid
                // agent name is kept for the normaliser to map (`Agent 2` -> `Agent-2`).
                let agent: String = n.chars().map(|c| if c == '+' || c == '/' { '_' } else { c }).collect();
                out.push(DropSource { dir: base.join(n).join("inbox"), mail_for: Some(agent) });
            }
        }
    }
    Ok(out)
}

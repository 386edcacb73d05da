//! Spare task files: the file of a finished claim, kept to be written again as one of the next
//! task files instead of being removed.
//!
//! A task cost the broker one file created (its queued file) and one removed (the claim, once
//! finished). Creating a file allocates an inode and removing one frees it; on ext4 without a
//! journal each allocation also skips, looking up every one, the inodes freed in the last minute,
//! so under a steady load that scan was the largest single cost of the broker's pass. Instead:
//!
//! 1. a finished claim's file is moved into `broker/spare/` under a fresh name (one rename, in
//!    place of the removal), while fewer than [`KEEP`] spares wait there;
//! 2. the next task file is a spare rewritten in place ([`Fs::overwrite`]: its bytes from the
//!    start, cut to their length, fsynced only under `always`, as a new task file would be) and
//!    renamed into its `new/` under its dispatch name, refusing to replace anything there.
//!
//! What keeps it safe:
//!
//! - Only the broker writes `broker/spare/`, and only a regular file goes there. A spare is
//!   written only after checks on the open file, just before the write: a regular file, of the
//!   broker's user, with no other name and no mode its owner did not give it. A claim an agent
//!   hard-linked elsewhere or made executable or writable by others is never written: that spare
//!   is removed and the task file created as before.
//! - A spare's old bytes never reach a reader: each is rewritten whole before it is published.
//!   Reconciling at a start removes every file in `broker/spare/` (a crash's leftovers, which may
//!   hold a task file not yet renamed into place: the journal has its task, and recovery
//!   delivers it again).
//! - A power loss can leave a published file with what its inode held before (a finished
//!   task's bytes, or this task's own from an earlier dispatch, since task files are not fsynced
//!   under `batch`) where a new file would have been empty or cut short. Recovery redelivers a
//!   queued file whose bytes are not exactly its task's, the broker revokes a claim whose bytes
//!   are not those it dispatched, and the SDK refuses a claimed file whose task id is not the one
//!   its name carries. A claim adopted before the loss whose file now holds another task is taken
//!   back at the start (`leases::take_back_foreign`).

use super::env::Env;
use runtime_layout::{FileKind, FsError, Maildir};
use std::path::{Path, PathBuf};

/// Most spare files kept at once: more than one busy pass finishes, so that every task file of a
/// steady load is a spare; few enough that an idle root holds a handful of small files.
pub(crate) const KEEP: usize = 64;

/// The spare files waiting in `broker/spare/`, most recently kept last.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    files: Vec<PathBuf>,
}

impl Spares {
    /// Takes the finished claim at `claim` as a spare. `false` when it was not taken (enough are
    /// kept, it is not a regular file, or the move failed): the caller removes it as before.
    pub fn keep(&mut self, env: &Env, claim: &Path) -> bool {
        if self.files.len() >= KEEP {
            return false;
        }
        // Only a regular file: whatever else an agent put at the claim's name since its report
        // was checked (the journal's fsync lies between) is removed as before, or refused there,
        // never carried into `broker/spare/`, where a directory could not be removed.
        if !matches!(env.fs().stat(claim), Ok(Some(m)) if m.kind == FileKind::File) {
            return false;
        }
        let to = env.layout.spare_dir().join(env.names.next("spare"));
        match env.fs().rename_noreplace(claim, &to) {
            Ok(()) => {
                self.files.push(to);
                true
            }
            // Gone already, a spare directory removed, another filesystem: removal says.
            Err(_) => false,
        }
    }

    /// Writes a task file into `maildir/new/name` through a spare: `None` when there is none or
    /// the one taken could not be used (it is removed; the caller creates the file as before),
    /// else what publishing it gave (`AlreadyExists` when a file has that name already).
    pub fn deliver(
        &mut self,
        env: &Env,
        maildir: &Maildir,
        name: &str,
        bytes: &[u8],
        sync: bool,
    ) -> Option<Result<PathBuf, FsError>> {
        let spare = self.files.pop()?;
        let fs = env.fs();
        if let Err(e) = fs.overwrite(&spare, bytes, sync) {
            tracing::debug!(spare = %env.rel(&spare), error = %e, "a spare task file was not reused");
            if let Err(e) = fs.remove_file(&spare)
                && !e.is_not_found()
            {
                env.warn_once(&spare, "cannot remove a spare task file", &e);
            }
            return None;
        }
        let dest = maildir.new_dir().join(name);
        match fs.rename_noreplace(&spare, &dest) {
            Ok(()) => Some(Ok(dest)),
            Err(e) if e.is_already_exists() => {
                self.files.push(spare);
                Some(Err(e))
            }
            Err(e) => {
                tracing::debug!(spare = %env.rel(&spare), error = %e, "a spare task file was not reused");
                let _ = fs.remove_file(&spare);
                None
            }
        }
    }
}

/// Removes every file in `broker/spare/`: at a start none is known, and whatever a crash left
/// there is either a finished claim's file or a task file its journal record will deliver again.
/// A file that cannot be removed, or a directory that cannot be listed, is left with a warning:
/// nothing reads it, and no task waits on it.
pub(crate) fn clear(env: &Env) {
    let dir = env.layout.spare_dir();
    let entries = match env.fs().list(&dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return,
        Err(e) => return env.warn_once(&dir, "cannot list the spare task files", &e),
    };
    for e in entries {
        let path = dir.join(&e.name);
        match env.fs().remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => env.warn_once(&path, "cannot remove a spare task file", &err),
        }
    }
}

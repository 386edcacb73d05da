//! Read-only views of a root for operators and front ends: [`status`] (is a broker running, what
//! waits where), [`quarantine`] (entries and their reasons), [`agents`] (claims held, leases, last
//! activity). They read the tree and never change it — not even the broker's lock, which is
//! looked at, never taken — so they are safe to call while a broker runs, from the CLI or from
//! the HTTP API. `crate::board` is the boards' view.

pub mod agents;
pub mod liveness;
pub mod quarantine;
pub mod status;

use protocol::Timestamp;
use runtime_layout::{FileKind, Fs, FsError, Layout, Maildir};
use std::path::{Path, PathBuf};

/// Why a view could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{} is not a mailroom root (run `mailroom init`)", root.display())]
    NotInitialised { root: PathBuf },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Invalid(protocol::ValidationError),
}

/// Refuses a directory that is not an initialised root.
pub fn require_root(fs: &dyn Fs, layout: &Layout) -> Result<(), ViewError> {
    if layout.is_initialised(fs) {
        Ok(())
    } else {
        Err(ViewError::NotInitialised { root: layout.root().to_path_buf() })
    }
}

/// Seconds from `then` to `now` (0 when `then` is later).
pub fn secs_since(now: Timestamp, then: Timestamp) -> f64 {
    (now.as_micros() - then.as_micros()).max(0) as f64 / 1e6
}

/// The regular files of a directory (none when it is missing), without dot-files.
pub(crate) fn files(fs: &dyn Fs, dir: &Path) -> Result<Vec<String>, FsError> {
    names_of(fs, dir, FileKind::File, |n| !protocol::names::is_hidden(n))
}

/// The subdirectories of a directory whose names follow the agent and pool rules.
pub(crate) fn named_dirs(fs: &dyn Fs, dir: &Path) -> Result<Vec<String>, FsError> {
    names_of(fs, dir, FileKind::Dir, |n| protocol::names::validate_pool(n).is_ok())
}

/// The sorted names of a directory's entries of `kind` that `keep` accepts (none when the
/// directory is missing).
fn names_of(fs: &dyn Fs, dir: &Path, kind: FileKind, keep: fn(&str) -> bool) -> Result<Vec<String>, FsError> {
    let entries = match fs.list(dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<String> = entries
        .into_iter()
        .filter(|e| e.kind == kind)
        .filter_map(|e| e.name_str().map(str::to_string))
        .filter(|n| keep(n))
        .collect();
    out.sort();
    Ok(out)
}

/// Task files (dispatch names) waiting in a maildir's `new/`, and the oldest one's mtime.
pub(crate) fn waiting(fs: &dyn Fs, md: &Maildir) -> Result<(usize, Option<Timestamp>), FsError> {
    let mut n = 0;
    let mut oldest: Option<Timestamp> = None;
    for name in files(fs, &md.new_dir())? {
        if protocol::names::DispatchName::parse(&name).is_none() {
            continue;
        }
        n += 1;
        if let Some(m) = fs.stat(&md.new_dir().join(&name))? {
            oldest = Some(oldest.map_or(m.mtime, |o| o.min(m.mtime)));
        }
    }
    Ok((n, oldest))
}

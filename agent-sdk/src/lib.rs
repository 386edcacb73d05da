//! The Rust client for mailroom agents and producers: submit tasks, claim them with one atomic
//! rename, heartbeat, complete, fail, release, and exchange mail, all over the file protocol of
//! `docs/PROTOCOL.md`. Synchronous: no runtime and no threads ([`Agent::claim_wait`] polls one
//! inotify descriptor on the caller's thread).
//!
//! Every message waits for the broker's answer by default ([`Ack`]): a message leaves the
//! broker's inbox only once the broker has journaled what it does with it, so a call that returns
//! `Ok` means *accepted and journaled*, a refusal comes back as [`Error::Refused`] with the field
//! and the rule, and a broker that is not running as [`Error::Unanswered`] (the message waits in
//! the inbox; nothing is lost). The client need not fsync its own files for that promise.
//!
//! The parts: [`Client`] (`client.rs`: producers and operators), [`Agent`] (`agent.rs`: claims,
//! heartbeats, reports, mail), and the answer to a message (`ack.rs`).
//!
//! Every read, rename, touch, listing and delivery goes through a [`runtime_layout::Fs`]:
//! [`Client::open`] and [`Agent::open`] use a [`RootFs`] on the root (every path resolved beneath
//! it, never through a link: a pool or mailbox replaced by a symlink cannot make an agent write,
//! rename or read outside the root), and [`Client::open_with`] and [`Agent::open_with`] take any
//! other (the power-loss suite runs this very code on
//! `runtime_layout::sim::SimFs`). The one exception is the wake-up of [`Agent::claim_wait`],
//! which watches the real directories with inotify: wake-ups are only hints, and the periodic
//! rescan through the `Fs` finds the tasks whatever the filesystem.
//!
//! ```no_run
//! use mailroom_agent_sdk::{Agent, Client};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), mailroom_agent_sdk::Error> {
//! let root = mailroom_agent_sdk::default_root(None);
//! Client::open(&root)?.submit(&serde_json::json!({"task_id": "T-1", "task_type": "build"}))?;
//!
//! let agent = Agent::open(&root, "Agent-1")?;
//! if let Some(claim) = agent.claim_wait(&["build".to_string()], Duration::from_secs(10))? {
//!     agent.heartbeat(&claim.name)?; // keep the lease while working
//!     agent.complete(&claim.name, serde_json::json!({"ok": true}))?;
//! }
//! # Ok(())
//! # }
//! ```

mod ack;
mod agent;
mod capabilities;
mod client;
mod handoff;
mod line;
mod offers;

pub use ack::{Ack, Verdict};
pub use agent::{Agent, Claim, Inbound};
pub use client::Client;

use protocol::ValidationError;
use runtime_layout::{Fs, FsError, RootFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest task file an agent reads when claiming.
const MAX_TASK_BYTES: u64 = 16 << 20;
/// How often `claim_wait` rescans even without a filesystem event (events are only a hint).
const SAFETY_RESCAN: Duration = Duration::from_millis(500);

/// What can go wrong for an agent or a producer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} is not a mailroom root (run `mailroom init` or start the broker)", root.display())]
    NotInitialised { root: PathBuf },
    #[error("invalid name: {0}")]
    InvalidName(ValidationError),
    #[error("no agent `{agent}` in {} (`mailroom agent add {agent}` creates it)", root.display())]
    UnknownAgent { agent: String, root: PathBuf },
    #[error("invalid task: {reason}")]
    InvalidTask { reason: ValidationError },
    #[error("agent `{agent}` does not hold claim `{claim}` (taken back, finished, or never held)")]
    ClaimLost { agent: String, claim: String },
    #[error("{path}: claimed file is not a valid task: {reason}", path = path.display())]
    CorruptTask { path: PathBuf, reason: ValidationError },
    #[error("message {message} refused: {reason}")]
    Refused { message: String, field: String, rule: String, reason: String },
    #[error(
        "message {message} not answered within {:.1} s: no broker consumed it (it waits in the inbox; nothing is lost)",
        waited.as_secs_f64()
    )]
    Unanswered { message: String, waited: Duration },
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(transparent)]
    Profile(#[from] runtime_layout::ProfileError),
}

/// The root to use: an explicit one, else `MAILROOM_ROOT`, else `./runtime`.
pub fn default_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("MAILROOM_ROOT") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("runtime"),
    }
}

/// The root's filesystem, contained beneath it; a root that is not a directory is not a root.
pub(crate) fn root_fs(root: &Path) -> Result<Arc<dyn Fs>, Error> {
    match RootFs::open(root) {
        Ok(fs) => Ok(Arc::new(fs)),
        Err(e) if e.is_not_found() || std::fs::metadata(root).is_ok_and(|m| !m.is_dir()) => {
            Err(Error::NotInitialised { root: root.to_path_buf() })
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;

//! Placing files where the journal says, never over someone else's.
//!
//! Every name the broker moves or writes a file to was chosen free when the move was journaled
//! (a fresh quarantine entry, a fresh inbox name, a task's own dispatch name). So a file already
//! at that name is one of two things: the broker's own, left by a crash that interrupted the
//! move (the same inode as the source, or the very bytes it was writing), or a file someone else
//! put there — a client's stray copy, a planted file, a hard link to a file outside the root.
//! The first finishes the move; the second is moved aside (`<name>.displaced-<time>`, never
//! opened for writing) and the broker's file takes the name, so nothing is lost and nothing
//! foreign is ever taken for the broker's own: a planted reason never stands for the real one,
//! a planted queued file never costs a claim its task.

use super::EngineError;
use super::effects::{Effects, json_pretty};
use super::env::Env;
use runtime_layout::{Maildir, deliver, write_atomic};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The most of an existing reason file read to tell whose it is.
const MAX_REASON_BYTES: u64 = 1 << 20;

/// How many times a name is cleared before giving up (each try moves one intruder aside).
const TRIES: u32 = 3;

impl Effects {
    /// Moves `from` to `to`, never over what is there. A file already at `to` that is `from`
    /// itself (the same inode: the move happened before a crash that kept the source's entry
    /// too, only the destination's fsync done) means the move is finished by removing `from`;
    /// failing there would stop every restart. Anything else at `to` is moved aside and the
    /// move made. True when this call moved the file.
    pub(super) fn move_in(&mut self, env: &Env, from: &Path, to: &Path) -> Result<bool, EngineError> {
        let fs = env.fs();
        for attempt in 0.. {
            match fs.rename_noreplace(from, to) {
                Ok(()) => {
                    self.touch_src(from);
                    self.touch_dir(to);
                    return Ok(true);
                }
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) if e.is_already_exists() && attempt < TRIES => {
                    match (fs.stat(from)?, fs.stat(to)?) {
                        (None, _) => return Ok(false),
                        (Some(s), Some(d)) if s.ino == d.ino => {
                            match fs.remove_file(from) {
                                Ok(()) => self.touch_src(from),
                                Err(e) if e.is_not_found() => {}
                                Err(e) => return Err(e.into()),
                            }
                            return Ok(false);
                        }
                        (Some(_), Some(_)) => self.set_aside(env, to, attempt)?,
                        // Gone meanwhile: try again.
                        (Some(_), None) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns")
    }

    /// Makes `path` hold exactly `bytes`: written (atomically, durably as configured) when
    /// absent, kept when it already holds them (written before a crash), and otherwise the file
    /// there is moved aside first.
    pub(super) fn write_exact(&mut self, env: &Env, path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
        for attempt in 0..=TRIES {
            if !self.holds_other(env, path, bytes, attempt)? {
                if env.fs().stat(path)?.is_none() {
                    write_atomic(env.fs(), path, bytes, &env.names, env.durability)?;
                    self.touch_dir(path);
                }
                return Ok(());
            }
        }
        Err(intruder(path))
    }

    /// Puts a refused claim back where it was claimed from, under the same name: the claim's
    /// file is renamed back into `maildir/new/`; if the agent removed it meanwhile, `bytes` are
    /// written there instead. A file someone else put at that name is moved aside either way.
    pub(super) fn put_back(
        &mut self,
        env: &Env,
        claim: &Path,
        maildir: &Maildir,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), EngineError> {
        let fs = env.fs();
        let queued = maildir.new_dir().join(name);
        // A link on either path is refused (the broker moves it aside and rebuilds: `crate::repair`).
        env.layout.guard(fs, claim)?;
        env.layout.guard_maildir(fs, maildir)?;
        if self.move_in(env, claim, &queued)? {
            return Ok(());
        }
        // The claim is gone (the agent removed its copy), or was already back: the queued file
        // must be the task's own bytes.
        for attempt in 0..=TRIES {
            if self.holds_other(env, &queued, bytes, attempt)? {
                continue;
            }
            match deliver(fs, maildir, name, bytes, runtime_layout::Durability::Never) {
                Ok(p) => self.touch_dir(&p),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        Err(intruder(&queued))
    }

    /// Writes `<quarantined>.error.json`: the reason beside a quarantine entry. A reason already
    /// there about the same input (the same `file`: written before a crash, whose rerun words
    /// it with a later time) is kept; any other file at that name is moved aside first.
    pub(super) fn write_reason(
        &mut self,
        env: &Env,
        quarantined: &Path,
        reason: &Value,
    ) -> Result<(), EngineError> {
        let mut err_path = quarantined.as_os_str().to_owned();
        err_path.push(".error.json");
        let err_path = PathBuf::from(err_path);
        if let Some(m) = env.fs().stat(&err_path)? {
            let earlier: Option<Value> = match env.fs().read(&err_path, MAX_REASON_BYTES) {
                Ok(b) if m.kind == runtime_layout::FileKind::File => serde_json::from_slice(&b).ok(),
                _ => None,
            };
            let same_input = earlier.is_some_and(|v| v["reason"].is_string() && v["file"] == reason["file"]);
            if same_input {
                return Ok(());
            }
        }
        self.write_exact(env, &err_path, &json_pretty(reason))
    }

    /// True when a file other than `bytes` sits at `path` and was moved aside now. A file that
    /// cannot be read as a regular file (a directory, a link, one too large) is another's too.
    fn holds_other(
        &mut self,
        env: &Env,
        path: &Path,
        bytes: &[u8],
        attempt: u32,
    ) -> Result<bool, EngineError> {
        let fs = env.fs();
        let theirs = match fs.stat(path)? {
            None => return Ok(false),
            Some(m) if m.kind != runtime_layout::FileKind::File || m.len != bytes.len() as u64 => true,
            Some(_) => match fs.read(path, bytes.len() as u64) {
                Ok(found) => found != bytes,
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e)
                    if e.is_permission_denied() || matches!(e, runtime_layout::FsError::TooLarge { .. }) =>
                {
                    true
                }
                Err(e) => return Err(e.into()),
            },
        };
        if theirs {
            self.set_aside(env, path, attempt)?;
        }
        Ok(theirs)
    }

    /// Moves the file at `to` aside, never opening it.
    fn set_aside(&mut self, env: &Env, to: &Path, attempt: u32) -> Result<(), EngineError> {
        let aside = displaced_name(to, env.now(), attempt);
        match env.fs().rename_noreplace(to, &aside) {
            Ok(()) => {
                tracing::warn!(path = %env.rel(to), moved_to = %env.rel(&aside),
                    "a file someone else put at a name the broker was placing a file at: moved aside, never opened for writing");
                self.touch_dir(&aside);
                Ok(())
            }
            Err(e) if e.is_not_found() || e.is_already_exists() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The error when a name stays taken however often the file there is moved aside (someone is
/// racing the broker for it): the pass fails and is retried, like any other disk error.
fn intruder(path: &Path) -> EngineError {
    EngineError::Fs(runtime_layout::FsError::io(
        "place",
        path,
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file keeps reappearing at this name"),
    ))
}

/// Where a file found at `to` is moved aside: `<to>.displaced-<time>`, `-<n>` after a first try.
pub(super) fn displaced_name(to: &Path, now: protocol::Timestamp, attempt: u32) -> PathBuf {
    let mut p = to.as_os_str().to_owned();
    p.push(format!(".displaced-{}", now.compact()));
    if attempt > 0 {
        p.push(format!("-{}", attempt + 1));
    }
    PathBuf::from(p)
}

//! How long a command waits for the broker's answer to its message. The wait
//! (`--answer-within`, 30 s by default) is for a broker that is busy; when no broker runs on the
//! root at all, sitting it out tells the user nothing for half a minute. So a command first looks
//! whether one runs (`mailroom::views::liveness`: the kernel's lock table, never the lock
//! itself). When none does, it waits a grace of a second (a broker starting meanwhile answers
//! within it), looking again every 50 ms, and says that none runs (exit 10) only when none ran at
//! any of those looks: a broker being restarted (by a supervisor, after a crash) is down for
//! milliseconds and is seen. The message stays in the inbox for the next broker, as after any
//! wait that ran out. A broker seen during the grace gets the rest of the wait.
//!
//! The commands deliver files, never the broker's socket (`protocol::socket`): what an operator
//! or a script sends by hand is kept in `broker/inbox/cur/` like any file, and a command's
//! start-up costs more than the file does.

use super::exit::{self, Failure};
use agent_sdk::{Ack, Client, Error, Verdict};
use runtime_layout::{Layout, RootFs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a command waits when no broker runs on the root.
pub const GRACE: Duration = Duration::from_secs(1);

/// How often the grace looks whether a broker runs.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Sends a message through `send` (which returns the message's name), with the wait `ack` asks
/// for, cut to [`GRACE`] while no broker runs on `root`.
pub fn answered(
    root: &Path,
    ack: Ack,
    send: impl FnOnce(Ack) -> Result<String, Error>,
) -> Result<String, Failure> {
    let Ack::Wait(full) = ack else { return Ok(send(ack)?) };
    if full <= GRACE || runs(root) != Some(false) {
        return Ok(send(ack)?);
    }
    let started = Instant::now();
    let (seen, over) = (AtomicBool::new(false), AtomicBool::new(false));
    let sent = std::thread::scope(|s| {
        s.spawn(|| {
            while !over.load(Ordering::Relaxed) {
                if runs(root) != Some(false) {
                    seen.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(LOOK_EVERY);
            }
        });
        let sent = send(Ack::Wait(GRACE));
        over.store(true, Ordering::Relaxed);
        sent
    });
    let message = match sent {
        Err(Error::Unanswered { message, .. }) => message,
        other => return Ok(other?),
    };
    if !seen.load(Ordering::Relaxed) && runs(root) == Some(false) {
        return Err(Failure::new(
            exit::UNANSWERED,
            format!(
                "message {message}: no broker is running on {}: it waits in the inbox for the next \
                 one (`mailroom run`); nothing is lost",
                root.display()
            ),
        ));
    }
    // One ran meanwhile: it gets the rest of the wait.
    let rest = full.saturating_sub(started.elapsed());
    match Client::open(root)?.verdict(&message, rest)? {
        Verdict::Accepted => Ok(message),
        Verdict::Refused { field, rule, reason } => {
            Err(Error::Refused { message, field, rule, reason }.into())
        }
        Verdict::Unanswered => Err(Error::Unanswered { message, waited: full }.into()),
    }
}

/// Whether a broker runs on `root`; `None` when that cannot be told (a root not made yet, a
/// holder on another host).
fn runs(root: &Path) -> Option<bool> {
    let fs = RootFs::open(root).ok()?;
    let live = mailroom::views::liveness::check(&fs, &Layout::new(root)).ok()?;
    (live.judged_by != "other-host").then_some(live.running)
}

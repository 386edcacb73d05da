//! The answer to a message. The broker moves a message out of `broker/inbox/new/` only once it
//! has journaled what it does with it: into `broker/inbox/cur/` when it accepted it, into
//! `broker/quarantine/<seq>-<name>` (beside `<seq>-<name>.error.json`, written first) when it
//! refused it. So a client that waits for its message to leave `new/` learns the verdict, and
//! that verdict is durable under the broker's default durability: the client need not fsync its
//! own file or directory, and a refusal comes back with the field and the rule.

use crate::Error;
use runtime_layout::{Fs, Layout};
use std::time::{Duration, Instant};

/// How a call that sends a message learns it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Wait up to this long for the broker's answer (the default: 30 s). The message is written
    /// without fsync: the broker's journal is what makes it durable.
    Wait(Duration),
    /// Do not wait: the call returns once the message is delivered, made durable by the client's
    /// own fsyncs of the file and the inbox directory (unless durability is relaxed).
    None,
}

impl Default for Ack {
    fn default() -> Self {
        Self::Wait(Duration::from_secs(30))
    }
}

/// What the broker did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Journaled and acted on.
    Accepted,
    /// Journaled as refused, with why.
    Refused { field: String, rule: String, reason: String },
    /// Still in the inbox after the wait: no broker consumed it (yet).
    Unanswered,
}

/// The longest one watch is trusted before the message is looked at again.
const RENEW: Duration = Duration::from_millis(250);

/// Waits up to `timeout` for the message `name` to leave the inbox, then tells what became of it.
pub fn wait(fs: &dyn Fs, layout: &Layout, name: &str, timeout: Duration) -> Result<Verdict, Error> {
    let inbox = layout.broker_inbox();
    let pending = inbox.new_dir().join(name);
    let start = Instant::now();
    // Woken by the kernel when the message moves (`Departure`); without a watch (a simulated
    // filesystem, no inotify left), look often at first, then less.
    let mut pause = Duration::from_micros(100);
    while fs.stat(&pending)?.is_some() {
        let waited = start.elapsed();
        if waited >= timeout {
            return Ok(Verdict::Unanswered);
        }
        let left = timeout - waited;
        match runtime_layout::Departure::watch(&pending) {
            // Looked at again once watched: a move before the watch began wakes nobody. A
            // wake-up is only a hint, and the watch is renewed every while in case one is missed.
            Ok(Some(w)) if fs.stat(&pending)?.is_some() => {
                if w.wait(left.min(RENEW)).is_err() {
                    std::thread::sleep(pause.min(left));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
    if fs.stat(&inbox.cur().join(name))?.is_some() {
        return Ok(Verdict::Accepted);
    }
    // Refused: the reason is beside the quarantined message, written before it moved.
    let quarantine = layout.quarantine_dir();
    let suffix = format!("-{name}.error.json");
    for e in fs.list(&quarantine)? {
        let Some(entry) = e.name_str() else { continue };
        if !entry.ends_with(&suffix) {
            continue;
        }
        let bytes = fs.read(&quarantine.join(entry), 1 << 20)?;
        let why: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |k: &str| why[k].as_str().unwrap_or_default().to_string();
        return Ok(Verdict::Refused { field: text("field"), rule: text("rule"), reason: text("reason") });
    }
    // Taken and no longer kept in `cur/` (retention pruned it): it was accepted.
    Ok(Verdict::Accepted)
}

/// The verdict as a call's result: `Ok` when accepted, an error otherwise.
pub fn into_result(message: String, verdict: Verdict, timeout: Duration) -> Result<String, Error> {
    match verdict {
        Verdict::Accepted => Ok(message),
        Verdict::Refused { field, rule, reason } => Err(Error::Refused { message, field, rule, reason }),
        Verdict::Unanswered => Err(Error::Unanswered { message, waited: timeout }),
    }
}

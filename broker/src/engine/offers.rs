//! Offers: agents waiting on the broker's socket for work are named the next task file each may
//! claim, one agent per file, instead of every waiting agent's watch waking at each file that
//! lands in a shared pool and all of them racing for it (with N agents idle, N wake-ups, N looks
//! and N − 1 lost renames per task).
//!
//! A waiting agent ([`Command::Await`](super::commands::Command)) is answered after a pass's
//! commit and moves, so that every file it may be named is on disk: the first file in dispatch
//! order of its own mailbox and of its pools (every pool when it names none) that it may claim
//! (a pool's task that requires capabilities only if its `agent.json` declares them), that was
//! not named to any agent in the last [`HOLD`], and that is still there: the state's files
//! include those agents claimed since the broker last looked, so the file is looked at (a stat)
//! before it is named. Agents are answered in the order they asked. At its deadline an agent is
//! answered that nothing came; one that hangs up first is dropped.
//!
//! An agent that asks with `claim` is answered with a claim: the broker renames the file into
//! the agent's `cur/` itself (`claims::grant`: the rename an agent would make, checked as an
//! observed claim is) and journals the claim with the next commit. Nobody else can take that
//! file any more, so a grant is never lost to an agent claiming by listing, and the agent makes
//! one request per task. A grant whose agent hung up before its answer was sent is undone (the
//! file renamed back; nothing was journaled); one whose answer was lost on the way (the agent
//! died meanwhile) is a claim nobody works on, taken back when its lease runs out, like the
//! claim of an agent that died after its own rename.
//!
//! Without `claim` an offer is a hint: nothing is journaled, the claim is still the agent's
//! rename, and an agent claiming by listing may take the file first (the offered agent then
//! asks again). A file offered to an agent that never claims it (it stopped) is offered again
//! once [`HOLD`] has passed. Whatever an offer misses, the agent's own look at its deadline
//! finds.
//!
//! Anyone who may connect to the socket may wait as any agent, as anyone who may write into the
//! tree may rename any task file: the socket is only as open as `broker/inbox/new/`.

use super::claims::{self, Grant};
use super::commands::{Offer, Verdict};
use super::env::Env;
use super::tx::Tx;
use crate::state::{State, Window};
use protocol::capability;
use protocol::names::DispatchName;
use runtime_layout::FileKind;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a file named to an agent is not named again (to any agent).
pub(crate) const HOLD: Duration = Duration::from_millis(200);

/// How early a waiter is answered that nothing came, so that deadlines close together share a
/// pass.
const SLACK: Duration = Duration::from_millis(10);

struct Waiter {
    agent: String,
    /// `mailboxes/<agent>`: its own maildir.
    own: String,
    /// `queues/<pool>` of each pool it named (none: every pool).
    pools: Vec<String>,
    deadline: Instant,
    /// Claimed for it by the broker, rather than named.
    claim: bool,
    /// The verdict on the report it sent with its await, until it comes: it waits from then.
    after: Option<oneshot::Receiver<Verdict>>,
    reply: oneshot::Sender<Offer>,
}

/// The agents waiting, in the order they asked, and the files named lately.
#[derive(Default)]
pub(crate) struct Offers {
    waiting: Vec<Waiter>,
    /// Dispatch name → when it was last named to an agent.
    named: HashMap<String, Instant>,
}

impl Offers {
    /// `agent` waits until `deadline` for a file of its mailbox or of `pools`, claimed for it
    /// when `claim` says so.
    pub fn wait(
        &mut self,
        agent: String,
        pools: Vec<String>,
        deadline: Instant,
        claim: bool,
        after: Option<oneshot::Receiver<Verdict>>,
        reply: oneshot::Sender<Offer>,
    ) {
        // The maildirs' names made once, not at every pass it waits through.
        let own = format!("mailboxes/{agent}");
        let pools = pools.iter().map(|p| format!("queues/{p}")).collect();
        self.waiting.push(Waiter { agent, own, pools, deadline, claim, after, reply });
    }

    /// When the loop must run a pass even if nothing else happens: a waiter's deadline, or the
    /// end of a hold that keeps a file from a waiter. A waiter whose report is not journaled yet
    /// is due nothing before the commit that journals it (after which waiters are answered).
    pub fn wake_at(&self) -> Option<Instant> {
        let deadline = self.waiting.iter().filter(|w| w.after.is_none()).map(|w| w.deadline).min()?;
        let held = self.named.values().map(|at| *at + HOLD).min();
        Some(held.map_or(deadline, |h| h.min(deadline)))
    }

    /// Answers every waiter it can: with a file or a claim, or with nothing at its deadline.
    /// Call with every move of the last commit done; the claims made are journaled by the next
    /// commit.
    pub fn answer(&mut self, tx: &mut Tx, now: Instant) {
        if self.waiting.is_empty() {
            return;
        }
        self.named.retain(|_, at| now.duration_since(*at) < HOLD);
        let mut still = Vec::new();
        // Once a claim was revoked, the files it moves wait for the next commit: the waiters
        // left are answered after it (a file not written yet would be held from them).
        let mut settling = false;
        for mut w in std::mem::take(&mut self.waiting) {
            if w.reply.is_closed() {
                continue; // The agent gave up waiting (its connection closed).
            }
            // Its report first: accepted, it waits from now on; refused, that is the answer;
            // not journaled yet, it waits for the commit that journals it; never to be judged
            // (the broker stopping), no answer is the answer.
            if let Some(verdict) = &mut w.after {
                match verdict.try_recv() {
                    Ok(Verdict::Accepted { .. }) => w.after = None,
                    Ok(Verdict::Refused { field, rule, reason, .. }) => {
                        let _ = w.reply.send(Offer::Refused { field, rule, reason });
                        continue;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {
                        still.push(w);
                        continue;
                    }
                    Err(oneshot::error::TryRecvError::Closed) => continue,
                }
            }
            if settling {
                still.push(w);
                continue;
            }
            // The state's files include some an agent claimed since the last look: each is
            // looked at (or claimed) before it is named, and one gone is kept from every waiter
            // for a hold. `refused`: its `cur/` could not take a file; it is answered that
            // nothing came, at once (its own look then meets what stopped the broker, and
            // reports it).
            let mut refused = false;
            let offer = loop {
                let Some((maildir, name)) = self.best_for(tx.env, tx.state(), &w) else { break None };
                self.named.insert(name.clone(), now);
                if !w.claim {
                    if on_disk(tx.env, &maildir, &name) {
                        break Some((maildir, name, None));
                    }
                    continue;
                }
                match claims::grant(tx, &w.agent, &maildir, &name) {
                    Grant::Made(id) => break Some((maildir, name, Some(id))),
                    Grant::Gone => continue,
                    // The files the revocation moves are moved by the next commit: asked again
                    // after it (the loop runs it at once), none of them held meanwhile.
                    Grant::Revoked => {
                        settling = true;
                        break None;
                    }
                    Grant::Refused => {
                        // Not the file's doing: another agent may be handed it at once.
                        self.named.remove(&name);
                        refused = true;
                        break None;
                    }
                }
            };
            match offer {
                Some((maildir, name, None)) => {
                    let _ = w.reply.send(Offer::Offered { maildir, name });
                }
                Some((maildir, name, Some(id))) => {
                    let answer = Offer::Claimed { maildir: maildir.clone(), name: name.clone() };
                    match w.reply.send(answer) {
                        Ok(()) => claims::record_claim(tx, &id, &w.agent, &name),
                        // It hung up meanwhile: the file goes back, and nothing is journaled.
                        Err(_) => claims::ungrant(tx, &w.agent, &maildir, &name),
                    }
                }
                // Within a few milliseconds of its deadline: answered now, with the others due.
                None if refused || w.deadline <= now + SLACK => {
                    let _ = w.reply.send(Offer::Nothing);
                }
                None => still.push(w),
            }
        }
        self.waiting = still;
    }

    /// The first file in dispatch order that `w` may claim and nobody was named lately.
    fn best_for(&self, env: &Env, state: &State, w: &Waiter) -> Option<(String, String)> {
        let own = w.own.as_str();
        // Its mailbox and pools looked up, or every pool's window when it names none.
        let windows: Vec<(&str, &Window)> = if w.pools.is_empty() {
            state.windows().filter(|(d, _)| *d == own || d.starts_with("queues/")).collect()
        } else {
            std::iter::once(own)
                .chain(w.pools.iter().map(String::as_str))
                .filter_map(|d| state.window(d).map(|w| (d, w)))
                .collect()
        };
        let mut held: Option<Vec<String>> = None;
        let mut best: Option<(&str, &str)> = None;
        for (dir, window) in windows {
            let pooled = dir != own;
            let first = window.filed_in_order().find(|name| {
                !self.named.contains_key(*name)
                    && (!pooled || may_claim(env, state, &w.agent, name, &mut held))
            });
            if let Some(name) = first
                && best.is_none_or(|(_, b)| name < b)
            {
                best = Some((dir, name));
            }
        }
        best.map(|(d, n)| (d.to_string(), n.to_string()))
    }
}

/// Whether the task file `name` is in `maildir`'s `new/`, a regular file.
fn on_disk(env: &Env, maildir: &str, name: &str) -> bool {
    let path = env.maildir(maildir).new_dir().join(name);
    matches!(env.fs().stat(&path), Ok(Some(m)) if m.kind == FileKind::File)
}

/// Whether `agent` may claim the pool file `name`: it requires no capabilities, or the agent
/// declares every one (its `agent.json`, read once per answer and only for such a file).
fn may_claim(env: &Env, state: &State, agent: &str, name: &str, held: &mut Option<Vec<String>>) -> bool {
    if DispatchName::parse(name).is_none_or(|d| d.caps.is_none()) {
        return true;
    }
    let Some(live) = state.task_named(name).and_then(|id| state.live(id)) else { return false };
    let held = held.get_or_insert_with(|| {
        crate::agents::read_capabilities(env.fs(), &env.layout, agent).unwrap_or_default()
    });
    capability::missing(&live.task.required_capabilities, held).is_empty()
}

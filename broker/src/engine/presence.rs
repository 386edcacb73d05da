//! Agent presence, as the broker sees it: for every registered agent, the last time a journal
//! record showed it alive (a claim, a report, mail, a refused message: kept in the state, so it
//! survives a restart and a snapshot) or a heartbeat touched one of its claims (the claim file's
//! mtime, read here), its capabilities and claims, and its state. The presence board
//! (`central_task_boards/agents.json`) is refreshed at most once a second and rewritten only when
//! it changed. It is derived and informative: a mailbox, claim or `agent.json` the broker may not
//! read (the agent's own doing) is left out with a warning, never a reason to stop.

use super::EngineError;
use super::env::Env;
use crate::agents::{AgentStatus, presence, read_capabilities};
use crate::journal::Place;
use crate::state::State;
use protocol::Timestamp;
use runtime_layout::{FileKind, replace_file};
use std::collections::BTreeMap;

/// Every registered agent's status now.
pub(crate) fn statuses(env: &Env, state: &State) -> Result<Vec<AgentStatus>, EngineError> {
    let now = env.now();
    let mut held: BTreeMap<&str, Vec<(&str, Timestamp)>> = BTreeMap::new();
    for l in state.held() {
        if let Place::Held { agent, name, seen_at, .. } = &l.place {
            held.entry(agent).or_default().push((name, *seen_at));
        }
    }
    let mut out = Vec::new();
    for name in env.agents()? {
        let cur = env.layout.mailbox(&name).cur();
        let claims = held.remove(name.as_str()).unwrap_or_default();
        let mut last_seen = state.last_seen(&name);
        for (claim, seen_at) in &claims {
            let mut t = *seen_at;
            // A heartbeat is a touch of the claim file.
            match env.fs().stat(&cur.join(claim)) {
                Ok(Some(m)) if m.kind == FileKind::File => t = t.max(m.mtime),
                Ok(_) => {}
                Err(e) => env.warn_once(&cur, "cannot see an agent's heartbeats", &e),
            }
            last_seen = Some(last_seen.map_or(t, |l| l.max(t)));
        }
        let mut names: Vec<String> = claims.iter().map(|(c, _)| (*c).to_string()).collect();
        names.sort();
        let state = presence(last_seen, names.len(), now, env.cfg.agents.stale_secs);
        let capabilities = read_capabilities(env.fs(), &env.layout, &name).unwrap_or_else(|e| {
            env.warn_once(
                &env.layout.agent_profile(&name),
                "an agent profile that cannot be read declares nothing",
                &e,
            );
            Vec::new()
        });
        out.push(AgentStatus { capabilities, name, held: names, last_seen, state });
    }
    Ok(out)
}

/// The writer of the presence board.
#[derive(Default)]
pub(crate) struct PresenceBoard {
    written: Option<Vec<u8>>,
    checked: Option<Timestamp>,
}

impl PresenceBoard {
    /// Rewrites the presence board if it changed (looking at most once a second unless `force`),
    /// fsynced only when `durable`, like the task boards: it is derived, rebuilt at every start.
    pub fn write(&mut self, env: &Env, state: &State, force: bool, durable: bool) -> Result<(), EngineError> {
        let now = env.now();
        if !force && self.checked.is_some_and(|t| now >= t && now.as_micros() - t.as_micros() < 1_000_000) {
            return Ok(());
        }
        self.checked = Some(now);
        let list = match statuses(env, state) {
            Ok(l) => l,
            // The mailboxes cannot be listed (their directory's mode, say): nothing to show now.
            Err(e) => {
                env.warn_once(
                    &env.layout.mailboxes_dir(),
                    "cannot list the agents for the presence board",
                    &e,
                );
                return Ok(());
            }
        };
        let mut bytes = serde_json::to_vec_pretty(&list).expect("agent statuses always serialise");
        bytes.push(b'\n');
        let path = env.layout.agents_board();
        if !force && self.written.as_ref() == Some(&bytes) {
            return Ok(());
        }
        let sync = durable && env.durability.sync_files();
        replace_file(env.fs(), &path, &bytes, &env.names, sync)?;
        if sync {
            env.fs().sync_dir(&env.layout.boards_dir())?;
        }
        self.written = Some(bytes);
        Ok(())
    }
}

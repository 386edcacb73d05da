//! An agent's report carried in the await for its next claim (`after`, as
//! `Agent::complete_then_claim` sends it): the broker answers the await only once the report is
//! journaled, so its answer acknowledges the report. Until it comes the report is unanswered, and
//! a crash makes its agent send it again as a file under the same name.

use super::{Asked, Pending, R, Report, World};
use mailroom::engine::commands::{self, Command};
use protocol::Message;
use protocol::names::DispatchName;
use serde_json::json;
use tokio::sync::oneshot;

impl World {
    /// `agent` completes `claim` and asks for its next claim in one request on the socket: the
    /// claim the broker made for it once a pass journaled the report and answered, if a task was
    /// there. Without the socket (or a broker), the report alone and the agent's own claim.
    pub(crate) fn complete_then_claim(&mut self, agent: &str, claim: &str) -> R<Option<String>> {
        if self.clients != super::Clients::Socket || self.engine.is_none() {
            self.complete(agent, claim)?;
            return self.claim(agent);
        }
        // The SDK reports only on a claim it still holds.
        if !self.agent(agent).held()?.iter().any(|c| c == claim) {
            return Ok(None);
        }
        let msg =
            Message::Complete { agent: agent.into(), claim: claim.into(), result: json!({"by": agent}) };
        let name = self.names.next("msg");
        let task = DispatchName::parse(claim).unwrap().id_fragment;
        let report = Report { msg: name.clone(), task, claim: claim.to_string() };
        self.unanswered.insert(name.clone());
        let (reply, answer) = oneshot::channel();
        let after = Some(commands::Report { name: name.clone(), msg: msg.clone(), file_waits: None });
        // Due at once: a pass with nothing for it answers that nothing came.
        let deadline = std::time::Instant::now();
        let pools = Vec::new();
        self.engine().take([Command::Await {
            agent: agent.into(),
            pools,
            deadline,
            claim: true,
            after,
            reply,
        }]);
        self.on_socket.push((name, msg, Pending::Report(report), Asked::Await(agent.into(), answer)));
        self.step()?;
        let granted = self.granted.iter().position(|(a, _)| a == agent).map(|i| self.granted.remove(i).1);
        Ok(granted)
    }
}

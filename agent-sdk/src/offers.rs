//! Waiting for work by asking the broker (`protocol::socket::Await`): the broker names each task
//! file that lands to one waiting agent, in dispatch order, so an idle agent wakes once for a
//! task it is likely to get. Watching the directories instead wakes every idle agent at every
//! file that lands in a shared pool, and all of them race for it: with 32 agents that cost more
//! than the work (see docs/BENCHMARKS.md).
//!
//! An offer is only where to look: the claim is still this agent's rename, which another agent
//! claiming by listing may win (then the agent asks again). When the broker answers that
//! nothing came, the agent looks itself once, so a file no offer named (one named to an agent
//! that stopped, say) waits at most one wait. Without a socket, or with a broker that does not
//! offer, [`Agent::claim_wait`] watches the directories as before.

use crate::agent::{Agent, Claim};
use crate::{Error, SAFETY_RESCAN};
use protocol::socket::{Answer, Await};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Agent {
    /// Waits until `deadline` for a task offered by the broker, and claims it. `None`: the
    /// socket gave no answer (or this broker makes no offers): the caller watches instead.
    pub(crate) fn claim_offered(
        &self,
        pools: &[String],
        deadline: Instant,
    ) -> Result<Option<Option<Claim>>, Error> {
        if self.no_offers.load(Ordering::Relaxed) {
            return Ok(None);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some(None));
            }
            let wait = (deadline - now).min(SAFETY_RESCAN);
            let req =
                Await { agent: self.name.clone(), pools: pools.to_vec(), wait_ms: wait.as_millis() as u64 };
            match self.client.await_offer(&req) {
                Some(Answer::Offered { maildir, name }) => {
                    if let Some(c) = self.take_offer(pools, &maildir, &name)? {
                        return Ok(Some(Some(c)));
                    }
                }
                Some(Answer::Nothing) => {
                    if let Some(c) = self.claim(pools)? {
                        return Ok(Some(Some(c)));
                    }
                }
                Some(Answer::Refused { .. } | Answer::Accepted { .. }) => {
                    // A broker that does not know awaits: watch, now and from now on.
                    self.no_offers.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
    }

    /// Claims the offered file `name` of `maildir` (relative to `agent_comms/`) if it is one this
    /// agent claims from `pools` and may claim; `None` when it is not, or the race was lost.
    fn take_offer(&self, pools: &[String], maildir: &str, name: &str) -> Result<Option<Claim>, Error> {
        let dir = self.client.layout.comms().join(maildir).join("new");
        if !self.claims_from(pools).has(&dir) || !self.claimable(name, &mut None)? {
            return Ok(None);
        }
        self.try_claim(name, &dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Priority;
    use protocol::names::DispatchName;
    use runtime_layout::{Layout, Maildir, RealFs};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    fn task_file(dir: &Maildir, id: &str, prio: Priority, seq: u64) -> String {
        dir.create(&RealFs, false).unwrap();
        let name = DispatchName::new(prio, runtime_layout::now(), seq, id).file_name();
        let task = serde_json::json!({"task_id": id, "priority": prio.as_str(), "status": "PENDING"});
        std::fs::write(dir.new_dir().join(&name), serde_json::to_vec(&task).unwrap()).unwrap();
        name
    }

    /// A stand-in for the broker's socket that answers every request with `answer` and counts
    /// the awaits it read.
    fn serve(layout: &Layout, answer: String) -> std::sync::mpsc::Receiver<String> {
        let listener = UnixListener::bind(layout.socket_file()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut read = BufReader::new(conn.try_clone().unwrap());
                let mut write = conn;
                let mut line = String::new();
                while read.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let _ = tx.send(line.clone());
                    line.clear();
                    if write.write_all(format!("{answer}\n").as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        rx
    }

    #[test]
    fn the_file_the_broker_offers_is_the_one_claimed() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(&RealFs).unwrap();
        let pool = layout.queue("p");
        let best = task_file(&pool, "best", Priority::Critical, 1);
        let offered = task_file(&pool, "offered", Priority::Low, 2);
        let answer = serde_json::json!({"verdict": "offered", "maildir": "queues/p", "name": offered});
        let asked = serve(&layout, answer.to_string());
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("a claim");
        // A look would have taken the CRITICAL task: the agent took what it was offered.
        assert_eq!(claim.name, offered);
        assert_eq!(claim.task.task_id, "offered");
        let line = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let req: Await = serde_json::from_str(line.trim().strip_prefix("await ").unwrap()).unwrap();
        assert_eq!((req.agent.as_str(), req.pools.as_slice()), ("A", &["p".to_string()][..]));
        assert!(req.wait_ms <= SAFETY_RESCAN.as_millis() as u64);
        assert!(pool.new_dir().join(&best).exists());
    }

    #[test]
    fn a_broker_that_refuses_awaits_is_watched_instead() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(&RealFs).unwrap();
        let pool = layout.queue("p");
        let name = task_file(&pool, "t", Priority::Medium, 1);
        let refused = r#"{"verdict":"refused","field":"name","rule":"r","reason":"field `name`: r"}"#;
        let asked = serve(&layout, refused.to_string());
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("a claim");
        assert_eq!(claim.name, name, "found by the agent's own look");
        assert!(asked.recv_timeout(Duration::from_secs(5)).unwrap().starts_with("await "));
        // From then on it does not ask.
        assert!(agent.no_offers.load(Ordering::Relaxed));
        assert_eq!(agent.claim_wait(&["p".into()], Duration::from_millis(50)).unwrap().map(|c| c.name), None);
        assert!(asked.try_recv().is_err(), "no second await");
    }
}

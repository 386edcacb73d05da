//! Waiting for work by asking the broker (`protocol::socket::Await`): the broker claims each
//! task file that lands for one waiting agent, in dispatch order (it renames the file into the
//! agent's `cur/`, as the agent would, and journals the claim), so an idle agent wakes once, for
//! a task it holds. Watching the directories instead wakes every idle agent at every file that
//! lands in a shared pool, and all of them race for it: with 32 agents that cost more than the
//! work (see docs/BENCHMARKS.md). A broker that only names files (`offered`, the answer to an
//! await without `claim`) is followed too: the agent then renames the file itself, and may lose
//! it to an agent claiming by listing (then it asks again).
//!
//! When the broker answers that nothing came, the agent looks itself once, so a file the broker
//! did not hand out (one it could not move, say) waits at most one wait. Without a socket, or
//! with a broker that does not offer, [`Agent::claim_wait`] watches the directories as before:
//! an await with no answer within its wait and a quarter of a second pauses asking for five
//! seconds (a broker stuck in a long pass, say), a refused one for a minute (a broker older than
//! offers).

use crate::agent::{Agent, Claim};
use crate::{Error, SAFETY_RESCAN};
use protocol::socket::{Answer, Await};
use runtime_layout::FileKind;
use std::time::{Duration, Instant};

/// How long an agent watches instead of asking after an await got no answer (no socket, a
/// broker stuck in a long pass or out of space): the directories' events serve meanwhile.
const SILENT_PAUSE: Duration = Duration::from_secs(5);

/// How long it watches after a broker refused an await (one older than offers).
const REFUSED_PAUSE: Duration = Duration::from_secs(60);

impl Agent {
    /// Whether [`Agent::claim_wait`] asks the broker to name it a task file (the default), or
    /// only watches the directories.
    pub fn with_offers(self, ask: bool) -> Self {
        // Not asking is a pause no wait outlives (about thirty years).
        let never = (!ask).then(|| Instant::now() + Duration::from_secs(1 << 30));
        *self.offers_resume.lock().unwrap_or_else(|p| p.into_inner()) = never;
        self
    }

    /// Waits until `deadline` for a task offered by the broker, and claims it. `None`: the
    /// socket gave no answer (or the broker makes no offers): the caller watches instead, for
    /// what is left of the wait.
    pub(crate) fn claim_offered(
        &self,
        pools: &[String],
        deadline: Instant,
    ) -> Result<Option<Option<Claim>>, Error> {
        if self.offers_paused() {
            return Ok(None);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                // No time to ask (a wait of zero, say): one look, as `claim` does.
                return Ok(Some(self.claim(pools)?));
            }
            let wait = (deadline - now).min(SAFETY_RESCAN);
            let wait_ms = wait.as_millis() as u64;
            let req =
                Await { agent: self.name.clone(), pools: pools.to_vec(), wait_ms, claim: true, after: None };
            match self.client.await_offer(&req) {
                Some(Answer::Claimed { name, .. }) => {
                    if let Some(c) = self.take_grant(&name)? {
                        return Ok(Some(Some(c)));
                    }
                }
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
                    self.pause_offers(REFUSED_PAUSE);
                    return Ok(None);
                }
                None => {
                    self.pause_offers(SILENT_PAUSE);
                    return Ok(None);
                }
            }
        }
    }

    pub(crate) fn offers_paused(&self) -> bool {
        let resume = self.offers_resume.lock().unwrap_or_else(|p| p.into_inner());
        resume.is_some_and(|at| Instant::now() < at)
    }

    fn pause_offers(&self, pause: Duration) {
        *self.offers_resume.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + pause);
    }

    /// The claim `name` the broker made for this agent (its file moved into this agent's
    /// `cur/`). `None` when the file is no longer there (taken back meanwhile): ask again.
    pub(crate) fn take_grant(&self, name: &str) -> Result<Option<Claim>, Error> {
        if protocol::names::DispatchName::parse(name).is_none() {
            return Ok(None); // Not a claim's name: nothing of this agent's to read.
        }
        match self.held_claim(name) {
            Ok(c) => Ok(Some(c)),
            Err(Error::Io(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Claims the offered file `name` of `maildir` (relative to `agent_comms/`) if it is one this
    /// agent claims from `pools` and may claim, and a regular file (what a listing would skip, a
    /// link or a FIFO put at the name since, is not taken); `None` when it is not, or the race
    /// was lost.
    pub(crate) fn take_offer(
        &self,
        pools: &[String],
        maildir: &str,
        name: &str,
    ) -> Result<Option<Claim>, Error> {
        let dir = self.client.layout.comms().join(maildir).join("new");
        if !self.claims_from(pools).has(&dir) || !self.claimable(name, &mut None)? {
            return Ok(None);
        }
        match self.client.fs.stat(&dir.join(name))? {
            Some(m) if m.kind == FileKind::File => self.try_claim(name, &dir),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::root;
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
        let (d, layout) = root();
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
    fn a_claim_the_broker_made_is_the_one_returned_and_the_agent_asks_for_claims() {
        let (d, layout) = root();
        let pool = layout.queue("p");
        let best = task_file(&pool, "best", Priority::Critical, 1);
        let agent = Agent::register(d.path(), "A").unwrap();
        // What the broker does for a claim: the file moved into the agent's cur/.
        let granted = task_file(&pool, "granted", Priority::Low, 2);
        std::fs::rename(pool.new_dir().join(&granted), layout.mailbox("A").cur().join(&granted)).unwrap();
        let answer = serde_json::json!({"verdict": "claimed", "maildir": "queues/p", "name": granted});
        let asked = serve(&layout, answer.to_string());
        let claim = agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("a claim");
        assert_eq!((claim.name.as_str(), claim.task.task_id.as_str()), (granted.as_str(), "granted"));
        assert_eq!(claim.task.status, protocol::Status::InProgress, "read as the claim makes it");
        assert_eq!(claim.path, layout.mailbox("A").cur().join(&granted));
        let line = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let req: Await = serde_json::from_str(line.trim().strip_prefix("await ").unwrap()).unwrap();
        assert!(req.claim, "asks the broker to claim: {line}");
        assert!(pool.new_dir().join(&best).exists(), "nothing renamed by the agent itself");
    }

    #[test]
    fn an_agent_told_not_to_ask_watches() {
        let (d, layout) = root();
        let pool = layout.queue("p");
        let best = task_file(&pool, "best", Priority::Critical, 1);
        let other = task_file(&pool, "other", Priority::Low, 2);
        let answer = serde_json::json!({"verdict": "offered", "maildir": "queues/p", "name": other});
        let asked = serve(&layout, answer.to_string());
        let agent = Agent::register(d.path(), "A").unwrap().with_offers(false);
        let claim = agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("a claim");
        assert_eq!(claim.name, best, "its own look, not the offer");
        assert!(asked.try_recv().is_err(), "never asked");
    }

    #[test]
    fn a_wait_of_zero_looks_once_without_asking() {
        let (d, layout) = root();
        let best = task_file(&layout.queue("p"), "best", Priority::High, 1);
        let asked = serve(&layout, r#"{"verdict":"nothing"}"#.to_string());
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = agent.claim_wait(&["p".into()], Duration::ZERO).unwrap().expect("the file waiting");
        assert_eq!(claim.name, best);
        assert!(asked.try_recv().is_err(), "no time to ask");
    }

    /// A socket that takes requests and never answers (a broker stuck in a pass): the wait ends
    /// when it should, and the agent watches for a while instead of asking again.
    #[test]
    fn a_silent_socket_costs_no_more_than_the_wait() {
        let (d, layout) = root();
        let listener = UnixListener::bind(layout.socket_file()).unwrap();
        let (tx, asked) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut line = String::new();
                let _ = BufReader::new(conn.try_clone().unwrap()).read_line(&mut line);
                let _ = tx.send(line);
                held.push(conn);
            }
        });
        let agent = Agent::register(d.path(), "A").unwrap();
        let pool = layout.queue("p");
        pool.create(&RealFs, false).unwrap();
        let started = Instant::now();
        assert!(agent.claim_wait(&["p".into()], Duration::from_secs(1)).unwrap().is_none());
        // A liveness bound, not a timing: before, a silent socket held a wait 5 s past its end.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(asked.recv_timeout(Duration::from_secs(5)).unwrap().starts_with("await "));
        let name = task_file(&pool, "t", Priority::Medium, 1);
        let claim =
            agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("found by watching");
        assert_eq!(claim.name, name);
        assert!(asked.try_recv().is_err(), "not asked again while paused");
    }

    #[test]
    fn a_broker_that_refuses_awaits_is_watched_instead() {
        let (d, layout) = root();
        let pool = layout.queue("p");
        let name = task_file(&pool, "t", Priority::Medium, 1);
        let refused = r#"{"verdict":"refused","field":"name","rule":"r","reason":"field `name`: r"}"#;
        let asked = serve(&layout, refused.to_string());
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = agent.claim_wait(&["p".into()], Duration::from_secs(5)).unwrap().expect("a claim");
        assert_eq!(claim.name, name, "found by the agent's own look");
        assert!(asked.recv_timeout(Duration::from_secs(5)).unwrap().starts_with("await "));
        // For a while it does not ask.
        assert!(agent.offers_paused());
        assert_eq!(agent.claim_wait(&["p".into()], Duration::from_millis(50)).unwrap().map(|c| c.name), None);
        assert!(asked.try_recv().is_err(), "no second await");
    }
}

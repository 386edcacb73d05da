//! A report and the next claim in one exchange: an agent that finished a claim puts its report
//! in the await that asks for its next one (`protocol::socket::After`). The broker handles the
//! report as the same message alone, and begins the wait only once the report is journaled, so
//! the await's answer also says the report was accepted. Per task an agent then makes one
//! exchange with the broker instead of two (a report, then an await or a look of its own), and
//! the broker handles one request instead of two.
//!
//! Whatever the exchange cannot settle falls back on what the two calls do: without the socket
//! (or with a client that does not wait for answers) the report is sent alone and the claim
//! waited for; a broker older than `after` refuses the whole request without doing anything
//! (field `await`), and the report is then sent alone on the socket; when no answer comes, the
//! report's fate is unknown, so it is delivered again as a file under the same name (taken once,
//! whatever happened) before the wait.

use crate::Error;
use crate::agent::{Agent, Claim};
use protocol::Message;
use protocol::names::validate_pool;
use protocol::socket::{After, Answer, Await};
use serde_json::Value;
use std::time::{Duration, Instant};

impl Agent {
    /// Reports success on `claim` (as [`Agent::complete`]) and waits up to `timeout` for the
    /// next claim from the agent's mailbox and `pools` (as [`Agent::claim_wait`]), in one
    /// exchange with the broker when it can. `Ok` means the report was accepted; the claim is
    /// `None` when nothing came within the wait.
    pub fn complete_then_claim(
        &self,
        claim: &str,
        result: Value,
        pools: &[String],
        timeout: Duration,
    ) -> Result<Option<Claim>, Error> {
        let report = Message::Complete { agent: self.name().to_string(), claim: claim.to_string(), result };
        self.report_then_claim(claim, &report, pools, timeout)
    }

    /// Reports failure on `claim` (as [`Agent::fail`]) and waits for the next claim, as
    /// [`Agent::complete_then_claim`] does.
    pub fn fail_then_claim(
        &self,
        claim: &str,
        error: &str,
        retryable: bool,
        pools: &[String],
        timeout: Duration,
    ) -> Result<Option<Claim>, Error> {
        let report = Message::Fail {
            agent: self.name().to_string(),
            claim: claim.to_string(),
            error: error.to_string(),
            retryable,
        };
        self.report_then_claim(claim, &report, pools, timeout)
    }

    fn report_then_claim(
        &self,
        claim: &str,
        report: &Message,
        pools: &[String],
        timeout: Duration,
    ) -> Result<Option<Claim>, Error> {
        for p in pools {
            validate_pool(p).map_err(Error::InvalidName)?;
        }
        self.before_report(claim)?;
        let deadline = Instant::now() + timeout;
        let client = self.client();
        if !client.answers_on_socket() || self.offers_paused() {
            client.send_message(report)?;
            return self.claim_wait(pools, deadline.saturating_duration_since(Instant::now()));
        }
        let name = client.names.next("msg");
        let wait = deadline.saturating_duration_since(Instant::now()).min(crate::SAFETY_RESCAN);
        let req = Await {
            agent: self.name().to_string(),
            pools: pools.to_vec(),
            wait_ms: wait.as_millis() as u64,
            claim: true,
            after: Some(After::new(&name, report)),
        };
        let claimed = match client.await_after(&req) {
            Some(Answer::Claimed { name, .. }) => self.take_grant(&name)?,
            Some(Answer::Offered { maildir, name }) => self.take_offer(pools, &maildir, &name)?,
            Some(Answer::Nothing) => return self.claim(pools),
            // A broker that does not know `after` did nothing: the report alone, on the socket.
            Some(Answer::Refused { field, .. }) if field == "await" => {
                client.send_named(name, report, true)?;
                None
            }
            Some(Answer::Refused { field, rule, reason }) => {
                return Err(Error::Refused { message: name, field, rule, reason });
            }
            Some(Answer::Accepted { .. }) | None => {
                client.send_named(name, report, false)?;
                None
            }
        };
        match claimed {
            Some(c) => Ok(Some(c)),
            None => self.claim_wait(pools, deadline.saturating_duration_since(Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::root;
    use protocol::Priority;
    use protocol::names::DispatchName;
    use runtime_layout::{Layout, RealFs};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;

    /// A stand-in for the broker's socket that answers its requests with `answers`, in order,
    /// on one connection, and passes on each request line.
    fn serve(layout: &Layout, answers: Vec<&'static str>) -> std::sync::mpsc::Receiver<String> {
        let listener = UnixListener::bind(layout.socket_file()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(Ok(conn)) = listener.incoming().next() else { return };
            let mut read = BufReader::new(conn.try_clone().unwrap());
            let mut write = conn;
            for answer in answers {
                let mut line = String::new();
                if read.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let _ = tx.send(line);
                let _ = write.write_all(format!("{answer}\n").as_bytes());
            }
        });
        rx
    }

    /// Agent `A` holding a claim (its file in its `cur/`): the claim's name.
    fn held(layout: &Layout, agent: &Agent) -> String {
        let name = DispatchName::new(Priority::Medium, runtime_layout::now(), 1, "t").file_name();
        let task = serde_json::json!({"task_id": "t", "status": "PENDING"});
        let cur = layout.mailbox(agent.name()).cur();
        std::fs::write(cur.join(&name), serde_json::to_vec(&task).unwrap()).unwrap();
        name
    }

    #[test]
    fn the_report_travels_in_the_await_and_a_refusal_of_it_is_the_callers_error() {
        let (d, layout) = root();
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = held(&layout, &agent);
        let refused = r#"{"verdict":"refused","field":"claim","rule":"r","reason":"field `claim`: r"}"#;
        let asked = serve(&layout, vec![r#"{"verdict":"nothing"}"#, refused]);
        layout.queue("p").create(&RealFs, false).unwrap();
        let pools = vec!["p".to_string()];
        let next =
            agent.complete_then_claim(&claim, serde_json::json!({"n": 1}), &pools, Duration::from_secs(2));
        assert!(next.unwrap().is_none(), "nothing came");
        let line = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let req: Await = serde_json::from_str(line.trim().strip_prefix("await ").unwrap()).unwrap();
        assert!(req.claim);
        let report = req.after.expect("the report in the await").report("A").unwrap();
        assert_eq!(
            report,
            Message::Complete {
                agent: "A".into(),
                claim: claim.clone(),
                result: serde_json::json!({"n": 1})
            }
        );
        match agent.fail_then_claim(&claim, "boom", false, &pools, Duration::from_secs(2)) {
            Err(Error::Refused { field, .. }) => assert_eq!(field, "claim"),
            other => panic!("a refused report: {other:?}"),
        }
    }

    /// A broker older than reports in awaits refuses the request whole (field `await`): the
    /// report goes alone, under the same name, and the wait follows.
    #[test]
    fn a_broker_that_does_not_know_the_report_in_an_await_gets_it_alone() {
        let (d, layout) = root();
        let agent = Agent::register(d.path(), "A").unwrap();
        let claim = held(&layout, &agent);
        let unknown = r#"{"verdict":"refused","field":"await","rule":"r","reason":"field `await`: r"}"#;
        let asked =
            serve(&layout, vec![unknown, r#"{"verdict":"accepted","seq":7}"#, r#"{"verdict":"nothing"}"#]);
        layout.queue("p").create(&RealFs, false).unwrap();
        let pools = vec!["p".to_string()];
        let next =
            agent.complete_then_claim(&claim, serde_json::json!({}), &pools, Duration::from_millis(300));
        assert!(next.unwrap().is_none());
        let first = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let req: Await = serde_json::from_str(first.trim().strip_prefix("await ").unwrap()).unwrap();
        let name = req.after.expect("the report in the await").name;
        let second = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let (alone, json) = second.trim_end().split_once(' ').unwrap();
        assert_eq!(alone, name, "the same message, under the same name");
        assert!(json.contains(r#""kind":"complete""#), "{json}");
    }
}

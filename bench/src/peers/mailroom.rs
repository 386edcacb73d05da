//! mailroom in the peers comparison, through the SDK's default calls, so that it runs the same
//! loops as the peers and follows whatever the SDK's default acknowledgement is:
//!
//! - producer: `Client::submit` of W1's task into the pool `bench`;
//! - agent: `Agent::claim` (no watcher), else `Agent::claim_wait` for up to the wait (the broker
//!   claims for it on its socket); then `Agent::complete_then_claim`, which reports and asks for
//!   the next claim in one exchange (the report acknowledged durably before the claim comes back).
//!
//! Each round runs on a fresh root with its own broker (`mailroom run`, default durability), as W1
//! does; completions are counted from the journal while the round runs, and afterwards the
//! journal's `complete` records are the system's own account of what was completed.

use super::{Producer, Side, System, Tally, Target, Worker};
use crate::error::BenchError;
use crate::journal_watch::{self, JournalTail};
use crate::pipeline::{Pipe, write_config};
use crate::procs::{Proc, start_broker};
use crate::run::Ctx;
use agent_sdk::{Agent, Client};
use runtime_layout::Layout;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// The pool every task of the comparison goes to (W1's task type).
const POOL: &str = "bench";

pub struct MailroomProducer(Client);

impl MailroomProducer {
    pub fn open(root: &str) -> Result<Self, BenchError> {
        Ok(Self(Client::open(root)?))
    }
}

impl Producer for MailroomProducer {
    fn submit(&mut self, _id: &str, body: &str) -> Result<(), BenchError> {
        let task: serde_json::Value =
            serde_json::from_str(body).map_err(|e| BenchError::process("mailroom producer", e))?;
        self.0.submit(&task)?;
        Ok(())
    }
}

pub struct MailroomWorker {
    agent: Agent,
    pools: Vec<String>,
    /// The claim the last report's exchange brought back, taken by the next `next`.
    ahead: Option<agent_sdk::Claim>,
    /// The wait the harness last asked for, used by the report's exchange.
    wait: Duration,
}

impl MailroomWorker {
    pub fn open(root: &str, name: &str) -> Result<Self, BenchError> {
        let agent = Agent::register(root, name)?;
        Ok(Self { agent, pools: vec![POOL.into()], ahead: None, wait: Duration::ZERO })
    }
}

impl Worker for MailroomWorker {
    /// The claim's name.
    type Held = String;

    fn next(&mut self, wait: Duration) -> Result<Option<(String, String)>, BenchError> {
        self.wait = wait;
        // Under load a task is nearly always waiting: try without a watcher first.
        let claim = match self.ahead.take() {
            Some(c) => Some(c),
            None => match self.agent.claim(&self.pools)? {
                Some(c) => Some(c),
                None => self.agent.claim_wait(&self.pools, wait)?,
            },
        };
        Ok(claim.map(|c| {
            let body =
                json!({"task_id": c.task.task_id, "params": {"submitted_us": c.task.params["submitted_us"]}});
            (body.to_string(), c.name)
        }))
    }

    fn complete(&mut self, _id: &str, claim: String) -> Result<(), BenchError> {
        self.ahead = self.agent.complete_then_claim(&claim, json!({}), &self.pools, self.wait)?;
        Ok(())
    }
}

/// The orchestrator's half: a fresh root and broker per round.
#[derive(Default)]
pub struct MailroomSide {
    broker: Option<Proc>,
    tail: Option<JournalTail>,
    root: Option<PathBuf>,
}

impl MailroomSide {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Side for MailroomSide {
    fn system(&self) -> System {
        System::Mailroom
    }

    fn version(&self) -> String {
        format!("mailroom {}", env!("CARGO_PKG_VERSION"))
    }

    fn prepare(&mut self, cx: &mut Ctx, round: usize) -> Result<Target, BenchError> {
        let dir = cx.fresh(&format!("peers-mailroom-r{round}"))?;
        let root = dir.join("runtime");
        let pipe = Pipe { assigned_pct: 0, ..cx.base() };
        write_config(cx.fs(), &root, &pipe)?;
        let (broker, _) = start_broker(cx.fs(), &cx.bins, &root, &dir.join("broker.log"))?;
        self.broker = Some(broker);
        self.tail = Some(JournalTail::new(&Layout::new(&root)));
        self.root = Some(root.clone());
        Ok(Target { url: root.display().to_string(), ns: String::new(), dir })
    }

    fn completed(&mut self, _t: &Target) -> Result<usize, BenchError> {
        if let Some(b) = &mut self.broker {
            b.check()?;
        }
        let Some(tail) = &mut self.tail else { return Ok(0) };
        tail.poll();
        Ok(tail.completes)
    }

    fn finish(&mut self, _t: &Target) -> Result<Tally, BenchError> {
        if let Some(b) = self.broker.take() {
            b.terminate()?;
        }
        let mut completions: HashMap<String, u64> = HashMap::new();
        if let Some(root) = self.root.take() {
            journal_watch::for_each_completion(&runtime_layout::RealFs, &root, &HashSet::new(), |c| {
                *completions.entry(c.task.task_id).or_default() += 1;
            })?;
        }
        Ok(Tally {
            completions: Some(completions),
            left: 0,
            checked: "every `complete` record of the broker's journal".into(),
        })
    }

    fn stop(mut self: Box<Self>) -> Result<(), BenchError> {
        match self.broker.take() {
            Some(b) => b.terminate(),
            None => Ok(()),
        }
    }
}

//! The load processes of the peers comparison, the same two loops for every system:
//!
//! - `mailroom-bench peer-producer --system S`: submits its share of the tasks one at a time, each
//!   acknowledged before the next ([`Producer::submit`]); the task is W1's (`load::bench_task`,
//!   about `--body-bytes` of JSON with the submit time in `params.submitted_us`).
//! - `mailroom-bench peer-agent --system S`: takes a task ([`Worker::next`]), completes it
//!   ([`Worker::complete`], acknowledged), and again, until the stop file exists and nothing came.
//!
//! Each writes a report (JSON) the orchestrator reads afterwards: a producer its first submit
//! time, an agent every id it completed with the time its completion was acknowledged.

use super::{Producer, System, Worker, mailroom, nats, postgres, redis};
use crate::error::BenchError;
use crate::load::bench_task;
use crate::procs::{now_us, write_file};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How long an agent waits for a task before it looks at the stop file again.
const WAIT: Duration = Duration::from_millis(200);

/// Arguments of `mailroom-bench peer-producer`.
#[derive(clap::Args, Debug, Clone)]
pub struct PeerProducerArgs {
    #[arg(long, value_enum)]
    pub system: System,
    /// A runtime root (mailroom) or `host:port` (the servers).
    #[arg(long)]
    pub url: String,
    /// The round's queue: a table, a key prefix or a stream.
    #[arg(long, default_value = "")]
    pub ns: String,
    /// This producer's index (it submits tasks index, index+of, index+2*of, ...).
    #[arg(long)]
    pub index: usize,
    #[arg(long)]
    pub of: usize,
    #[arg(long)]
    pub tasks: usize,
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Where to write this producer's report (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `mailroom-bench peer-agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct PeerAgentArgs {
    #[arg(long, value_enum)]
    pub system: System,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "")]
    pub ns: String,
    #[arg(long)]
    pub name: String,
    /// Exit once this file exists and no task came.
    #[arg(long)]
    pub stop: PathBuf,
    /// Where to write what this agent completed (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// A producer's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerOut {
    pub submitted: usize,
    /// When its first submit began, in µs since the epoch.
    pub first_us: i64,
}

/// An agent's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentOut {
    /// The ids it completed, in order.
    pub ids: Vec<String>,
    /// For each, when its completion was acknowledged (µs since the epoch).
    pub done_us: Vec<i64>,
    /// For each, its submit time (from the task).
    pub submitted_us: Vec<i64>,
}

/// The id of the peers run's `i`th task.
pub fn peer_task_id(i: usize) -> String {
    crate::load::task_id("P", i)
}

pub fn peer_producer_main(a: &PeerProducerArgs) -> Result<(), BenchError> {
    match a.system {
        System::Mailroom => produce(&mut mailroom::MailroomProducer::open(&a.url)?, a),
        System::Postgres => produce(&mut postgres::PgProducer::connect(&a.url, &a.ns)?, a),
        System::Redis => produce(&mut redis::RedisProducer::connect(&a.url, &a.ns)?, a),
        System::Nats => produce(&mut nats::NatsProducer::connect(&a.url, &a.ns)?, a),
    }
}

pub fn peer_agent_main(a: &PeerAgentArgs) -> Result<(), BenchError> {
    match a.system {
        System::Mailroom => work(&mut mailroom::MailroomWorker::open(&a.url, &a.name)?, a),
        System::Postgres => work(&mut postgres::PgWorker::connect(&a.url, &a.ns)?, a),
        System::Redis => work(&mut redis::RedisWorker::connect(&a.url, &a.ns, &a.name)?, a),
        System::Nats => work(&mut nats::NatsWorker::connect(&a.url, &a.ns)?, a),
    }
}

fn produce(p: &mut impl Producer, a: &PeerProducerArgs) -> Result<(), BenchError> {
    let mut out = ProducerOut::default();
    let mut i = a.index;
    while i < a.tasks {
        let task = bench_task("P", i, a.body_bytes, None);
        let body = task.to_string();
        if out.submitted == 0 {
            out.first_us = now_us();
        }
        p.submit(&peer_task_id(i), &body)?;
        out.submitted += 1;
        i += a.of.max(1);
    }
    write_report(&a.out, &out)
}

fn work<W: Worker>(w: &mut W, a: &PeerAgentArgs) -> Result<(), BenchError> {
    let mut out = AgentOut::default();
    loop {
        match w.next(WAIT)? {
            Some((body, held)) => {
                let (id, submitted) = id_and_submit_time(&body);
                w.complete(&id, held)?;
                out.done_us.push(now_us());
                out.ids.push(id);
                out.submitted_us.push(submitted);
            }
            None if a.stop.exists() => break,
            None => {}
        }
    }
    write_report(&a.out, &out)
}

/// A task body's id and submit time (an unreadable body reads as an empty id, counted as lost).
pub fn id_and_submit_time(body: &str) -> (String, i64) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let id = v["task_id"].as_str().unwrap_or_default().to_string();
    (id, v["params"]["submitted_us"].as_i64().unwrap_or(0))
}

fn write_report(path: &std::path::Path, v: &impl Serialize) -> Result<(), BenchError> {
    let text = serde_json::to_string(v).map_err(|e| BenchError::process("writing a report", e))?;
    write_file(path, text)
}

/// Reads a report a load process wrote (a missing or unreadable one reads as empty).
pub fn read_report<T: for<'de> Deserialize<'de> + Default>(path: &std::path::Path) -> T {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_gives_its_id_and_submit_time() {
        let body = bench_task("P", 7, 300, None).to_string();
        let (id, t) = id_and_submit_time(&body);
        assert_eq!(id, peer_task_id(7));
        assert!(t > 0);
        assert_eq!(id_and_submit_time("not json"), (String::new(), 0));
    }

    /// The loops, on an in-memory system: every task submitted is completed once, and the
    /// reports say so.
    #[test]
    fn the_loops_complete_every_task_once() {
        use std::cell::RefCell;
        use std::collections::VecDeque;
        use std::rc::Rc;
        type Queue = Rc<RefCell<VecDeque<String>>>;
        struct P(Queue);
        impl Producer for P {
            fn submit(&mut self, _id: &str, body: &str) -> Result<(), BenchError> {
                self.0.borrow_mut().push_back(body.to_string());
                Ok(())
            }
        }
        struct W(Queue, Vec<String>);
        impl Worker for W {
            type Held = ();
            fn next(&mut self, _wait: Duration) -> Result<Option<(String, ())>, BenchError> {
                Ok(self.0.borrow_mut().pop_front().map(|b| (b, ())))
            }
            fn complete(&mut self, id: &str, _held: ()) -> Result<(), BenchError> {
                self.1.push(id.to_string());
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let q: Queue = Rc::default();
        for index in 0..2 {
            let a = PeerProducerArgs {
                system: System::Redis,
                url: String::new(),
                ns: String::new(),
                index,
                of: 2,
                tasks: 5,
                body_bytes: 300,
                out: dir.path().join(format!("p{index}.json")),
            };
            produce(&mut P(q.clone()), &a).unwrap();
        }
        let p0: ProducerOut = read_report(&dir.path().join("p0.json"));
        assert_eq!(p0.submitted, 3);
        std::fs::write(dir.path().join("stop"), b"").unwrap();
        let a = PeerAgentArgs {
            system: System::Redis,
            url: String::new(),
            ns: String::new(),
            name: "A".into(),
            stop: dir.path().join("stop"),
            out: dir.path().join("a.json"),
        };
        let mut w = W(q, Vec::new());
        work(&mut w, &a).unwrap();
        let out: AgentOut = read_report(&a.out);
        let mut ids = out.ids.clone();
        ids.sort();
        assert_eq!(ids, (0..5).map(peer_task_id).collect::<Vec<_>>());
        assert_eq!(w.1, out.ids);
        assert_eq!(out.done_us.len(), 5);
    }
}

//! NATS JetStream as a job queue: a work-queue stream on file storage and one durable pull
//! consumer shared by every agent, acknowledged after processing.
//!
//! The server: `nats-server -js -sd <dir> -a 127.0.0.1 -p <port>`, a child of the bench stopped
//! with SIGTERM by its guard. Its acknowledgements are not fsync acknowledgements: the 2.9 file
//! store writes a message to its block file (the page cache) before the publish ack and fsyncs
//! every two minutes; 2.9.10, the Debian 12 package, has no `sync_interval` option to change that
//! (docs/BENCHMARKS.md, "What each acknowledgement promises").
//!
//! The workflow, one stream per round (`TASKS_R<round>`, subject `tasks.r<round>`, retention
//! work-queue, storage file) with its consumer `agents` (explicit ack, ack wait 60 s):
//! - producer: `publish` and wait for the stream's `PubAck`;
//! - agent: the consumer's message stream, pulling one message at a time, then `double_ack`
//!   (the ack, and the server's reply that it was applied: the message is deleted);
//! - check: the stream is empty (its last sequence says how many messages it ever stored), and the
//!   consumer has nothing unacknowledged or redelivered. JetStream keeps no record of what was
//!   acknowledged, so the completed ids come from the agents' reports.
//!
//! The client is `async-nats`; each process drives it from a current-thread tokio runtime of its
//! own, blocking on one call at a time.

use super::server::{Server, start};
use super::{Producer, Side, Skip, System, Tally, Target, Worker, client_error, find_program, version_of};
use crate::error::BenchError;
use crate::run::Ctx;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use rustix::process::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::runtime::Runtime;

/// The durable consumer every agent pulls from.
const CONSUMER: &str = "agents";

/// `nats-server` on `PATH` or in `/usr/sbin` (Debian package `nats-server`).
pub fn locate() -> Result<PathBuf, Skip> {
    find_program("nats-server", &["/usr/sbin", "/usr/bin", "/usr/local/bin"])
        .ok_or_else(|| Skip("NATS not installed: no nats-server (Debian package nats-server)".into()))
}

fn runtime() -> Result<Runtime, BenchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::process("tokio runtime", e))
}

fn err(what: &str) -> impl Fn(Box<dyn std::fmt::Display>) -> BenchError + '_ {
    move |e| client_error(System::Nats, what, e)
}

/// A boxed error, for [`err`].
fn boxed<E: std::fmt::Display + 'static>(e: E) -> Box<dyn std::fmt::Display> {
    Box::new(e)
}

/// The stream and subject of a round's `--ns` (`r0` -> `TASKS_R0`, `tasks.r0`).
fn names(ns: &str) -> (String, String) {
    (format!("TASKS_{}", ns.to_uppercase()), format!("tasks.{ns}"))
}

fn connect(rt: &Runtime, url: &str) -> Result<jetstream::Context, BenchError> {
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // The context spawns a task of its own: inside the runtime.
        Ok::<_, async_nats::ConnectError>(jetstream::new(client))
    })
    .map_err(boxed)
    .map_err(err("connect"))
}

pub struct NatsProducer {
    rt: Runtime,
    js: jetstream::Context,
    subject: String,
}

impl NatsProducer {
    pub fn connect(url: &str, ns: &str) -> Result<Self, BenchError> {
        let rt = runtime()?;
        let js = connect(&rt, url)?;
        Ok(Self { rt, js, subject: names(ns).1 })
    }
}

impl Producer for NatsProducer {
    fn submit(&mut self, _id: &str, body: &str) -> Result<(), BenchError> {
        let (js, subject, payload) = (&self.js, self.subject.clone(), body.to_string());
        self.rt
            .block_on(async move {
                // The first await sends the message, the second waits for the stream's PubAck.
                js.publish(subject, payload.into()).await.map_err(boxed)?.await.map_err(boxed)
            })
            .map_err(err("publish"))?;
        Ok(())
    }
}

pub struct NatsWorker {
    rt: Runtime,
    messages: consumer::pull::Stream,
}

impl NatsWorker {
    pub fn connect(url: &str, ns: &str) -> Result<Self, BenchError> {
        let rt = runtime()?;
        let js = connect(&rt, url)?;
        let stream_name = names(ns).0;
        let messages = rt
            .block_on(async {
                let consumer: consumer::PullConsumer = js
                    .get_stream(&stream_name)
                    .await
                    .map_err(boxed)?
                    .get_consumer(CONSUMER)
                    .await
                    .map_err(boxed)?;
                // One message per pull: an agent holds one task at a time, as the others do.
                consumer.stream().max_messages_per_batch(1).messages().await.map_err(boxed)
            })
            .map_err(err("consumer"))?;
        Ok(Self { rt, messages })
    }
}

impl Worker for NatsWorker {
    type Held = jetstream::Message;

    fn next(&mut self, wait: Duration) -> Result<Option<(String, jetstream::Message)>, BenchError> {
        let next = self.rt.block_on(async { tokio::time::timeout(wait, self.messages.next()).await });
        match next {
            Err(_) | Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(err("pull")(boxed(e))),
            Ok(Some(Ok(m))) => Ok(Some((String::from_utf8_lossy(&m.payload).into_owned(), m))),
        }
    }

    fn complete(&mut self, _id: &str, m: jetstream::Message) -> Result<(), BenchError> {
        self.rt.block_on(m.double_ack()).map_err(boxed).map_err(err("ack"))
    }
}

/// The orchestrator's half: one server for every round, a stream per round.
pub struct NatsSide {
    server: Server,
    url: String,
    rt: Runtime,
    js: jetstream::Context,
    version: String,
}

impl NatsSide {
    /// Starts `nats-server` with its store and log in `dir`.
    pub fn start(dir: &Path, bin: PathBuf) -> Result<Self, BenchError> {
        let store = dir.join("store");
        std::fs::create_dir_all(&store).map_err(|e| BenchError::io(&store, e))?;
        let rt = runtime()?;
        let (server, port) = start(
            "nats-server",
            |port| {
                let mut cmd = Command::new(&bin);
                cmd.args(["-js", "-sd"]).arg(&store).args(["-a", "127.0.0.1", "-p"]).arg(port.to_string());
                Server::spawn(cmd, "nats-server", &dir.join("nats.log"), Signal::TERM)
            },
            // JetStream is up before the server listens for clients.
            |port| connect(&rt, &format!("127.0.0.1:{port}")).map(drop),
        )?;
        let url = format!("127.0.0.1:{port}");
        let js = connect(&rt, &url)?;
        Ok(Self { server, url, rt, js, version: version_of(&bin) })
    }

    /// Creates round `round`'s stream and consumer; returns the round's `--ns`.
    pub fn create_queue(&mut self, round: usize) -> Result<String, BenchError> {
        let ns = format!("r{round}");
        let (name, subject) = names(&ns);
        let js = &self.js;
        self.rt
            .block_on(async move {
                let stream = js
                    .create_stream(stream::Config {
                        name,
                        subjects: vec![subject],
                        retention: stream::RetentionPolicy::WorkQueue,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(boxed)?;
                stream
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(CONSUMER.into()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(60),
                        ..Default::default()
                    })
                    .await
                    .map_err(boxed)
            })
            .map_err(err("create stream"))?;
        Ok(ns)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The stream's state and its consumer's info.
    fn state(&self, ns: &str) -> Result<(stream::State, consumer::Info), BenchError> {
        let name = names(ns).0;
        let js = &self.js;
        self.rt
            .block_on(async move {
                let stream = js.get_stream(&name).await.map_err(boxed)?;
                let mut c: consumer::PullConsumer = stream.get_consumer(CONSUMER).await.map_err(boxed)?;
                let info = c.info().await.map_err(boxed)?.clone();
                Ok::<_, Box<dyn std::fmt::Display>>((stream.cached_info().state.clone(), info))
            })
            .map_err(err("stream info"))
    }
}

impl Side for NatsSide {
    fn system(&self) -> System {
        System::Nats
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn prepare(&mut self, cx: &mut Ctx, round: usize) -> Result<Target, BenchError> {
        let ns = self.create_queue(round)?;
        let dir = cx.fresh(&format!("peers-nats-r{round}"))?;
        Ok(Target { url: self.url.clone(), ns, dir })
    }

    fn completed(&mut self, t: &Target) -> Result<usize, BenchError> {
        if let Some(s) = self.server.exited() {
            return Err(self.server.error(format!("exited during the run ({s})")));
        }
        // A work-queue stream deletes a message once it is acknowledged.
        let (s, _) = self.state(&t.ns)?;
        Ok((s.last_sequence - s.messages) as usize)
    }

    fn finish(&mut self, t: &Target) -> Result<Tally, BenchError> {
        let (s, c) = self.state(&t.ns)?;
        Ok(Tally {
            completions: None,
            left: s.messages as usize + c.num_ack_pending,
            checked: format!(
                "stream {}: {} published, {} left; consumer: {} unacknowledged, {} redelivered (ids from the agents)",
                names(&t.ns).0,
                s.last_sequence,
                s.messages,
                c.num_ack_pending,
                c.num_redelivered
            ),
        })
    }

    fn stop(self: Box<Self>) -> Result<(), BenchError> {
        let Self { server, rt, js, .. } = *self;
        drop(js);
        drop(rt);
        server.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::testing::{exercise, require};

    /// On a real server: the work-queue stream hands two agents two messages, every message is
    /// acknowledged and deleted, nothing is redelivered, and the server is stopped.
    #[test]
    fn the_work_queue_stream_completes_every_task_once() {
        let Some(bin) = require(locate(), "peers::nats (no nats-server)") else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut side = NatsSide::start(dir.path(), bin).unwrap();
        let ns = side.create_queue(0).unwrap();
        let t = Target { url: side.url().into(), ns, dir: dir.path().into() };
        let mut p = NatsProducer::connect(&t.url, &t.ns).unwrap();
        let mut w1 = NatsWorker::connect(&t.url, &t.ns).unwrap();
        let mut w2 = NatsWorker::connect(&t.url, &t.ns).unwrap();
        exercise(&mut side, &t, &mut p, [&mut w1, &mut w2], 12);
        let (_, consumer) = side.state(&t.ns).unwrap();
        assert_eq!(consumer.num_redelivered, 0);
        drop((p, w1, w2));
        Box::new(side).stop().unwrap();
    }

    #[test]
    fn a_round_has_a_stream_and_a_subject_of_its_own() {
        assert_eq!(names("r0"), ("TASKS_R0".into(), "tasks.r0".into()));
        assert_ne!(names("r1"), names("r0"));
    }
}

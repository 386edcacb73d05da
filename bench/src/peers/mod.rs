//! The peers: the systems a user would pick instead of mailroom, run through the same workflow
//! (docs/BENCHMARKS.md, "Peers"): N tasks of about 1 KB, P producer and A agent processes, every
//! submit and every completion acknowledged durably before the client goes on, nothing lost.
//!
//! Each system is a module with two halves:
//! - the **client** half, used inside the load processes (`mailroom-bench peer-producer|peer-agent
//!   --system S`, [`load`]): a [`Producer`] submits one task and returns once the system
//!   acknowledged it; a [`Worker`] takes one task and completes it, acknowledged;
//! - the **orchestrator** half, a [`Side`]: it starts the system's server (a private instance on
//!   a loopback port in a directory of the run, stopped by a guard, [`server`]), prepares a fresh
//!   queue for each round, counts completions while the round runs, and afterwards asks the system
//!   itself what was completed.
//!
//! [`mailroom`] is one of them, so that mailroom runs the very same loops; [`postgres`], [`redis`]
//! and [`nats`] find their server's binaries or say why they cannot ([`Skip`]).

use crate::error::BenchError;
use crate::run::Ctx;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub mod load;
pub mod mailroom;
pub mod nats;
pub mod postgres;
pub mod redis;
pub mod server;

/// A system of the comparison.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    Mailroom,
    Postgres,
    Redis,
    Nats,
}

impl System {
    /// The peers, in the order the report shows them.
    pub const PEERS: [System; 3] = [System::Postgres, System::Redis, System::Nats];

    pub fn name(self) -> &'static str {
        match self {
            Self::Mailroom => "mailroom",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Nats => "nats",
        }
    }
}

/// Submits tasks, each acknowledged by the system before `submit` returns.
pub trait Producer {
    /// Submits the task `id` whose body (JSON) is `body`.
    fn submit(&mut self, id: &str, body: &str) -> Result<(), BenchError>;
}

/// Takes and completes tasks, each completion acknowledged before `complete` returns.
pub trait Worker {
    /// What the worker holds between taking a task and completing it.
    type Held;
    /// The next task's body, waiting up to about `wait` for one; `None` if none came.
    fn next(&mut self, wait: Duration) -> Result<Option<(String, Self::Held)>, BenchError>;
    /// Completes the task `id` it holds.
    fn complete(&mut self, id: &str, held: Self::Held) -> Result<(), BenchError>;
}

/// Where one round's load processes connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `--url`: a root for mailroom, `host:port` for the servers.
    pub url: String,
    /// `--ns`: the round's table, key prefix or stream.
    pub ns: String,
    /// The round's directory (logs, stop file, the processes' reports).
    pub dir: PathBuf,
}

/// What a system says about a round once it is over.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Completions per task id, as recorded by the system itself; `None` when it keeps no record
    /// of completed tasks (JetStream deletes an acknowledged message from a work-queue stream).
    pub completions: Option<HashMap<String, u64>>,
    /// Tasks still queued or held in the system (0 when nothing was lost on the way).
    pub left: usize,
    /// How the figures were checked, for the report.
    pub checked: String,
}

/// A system's orchestrator half: its server, its rounds, its own account of them.
pub trait Side {
    fn system(&self) -> System;
    /// The server's version, as it reports it.
    fn version(&self) -> String;
    /// A fresh queue for round `round` (and, for mailroom, a fresh root and broker).
    fn prepare(&mut self, cx: &mut Ctx, round: usize) -> Result<Target, BenchError>;
    /// Tasks of the round completed so far.
    fn completed(&mut self, t: &Target) -> Result<usize, BenchError>;
    /// Once every load process has exited: what the system itself recorded.
    fn finish(&mut self, t: &Target) -> Result<Tally, BenchError>;
    /// Stops the server (its guard would, but this reports a server that would not stop).
    fn stop(self: Box<Self>) -> Result<(), BenchError>;
}

/// Why a peer could not run: its server is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

/// Starts the orchestrator half of `system`, or says why it is skipped.
pub fn start(system: System, cx: &mut Ctx) -> Result<Result<Box<dyn Side>, Skip>, BenchError> {
    Ok(match system {
        System::Mailroom => Ok(Box::new(mailroom::MailroomSide::new())),
        System::Postgres => match postgres::locate() {
            Ok(bins) => Ok(Box::new(postgres::PgSide::start(&cx.fresh("peers-postgres")?, bins)?)),
            Err(s) => Err(s),
        },
        System::Redis => match redis::locate() {
            Ok(bin) => Ok(Box::new(redis::RedisSide::start(&cx.fresh("peers-redis")?, bin)?)),
            Err(s) => Err(s),
        },
        System::Nats => match nats::locate() {
            Ok(bin) => Ok(Box::new(nats::NatsSide::start(&cx.fresh("peers-nats")?, bin)?)),
            Err(s) => Err(s),
        },
    })
}

/// `program` on `PATH` or in one of `also` (root's `PATH` may lack `/usr/sbin`).
pub fn find_program(program: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The first line `program --version` prints.
pub fn version_of(program: &std::path::Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

/// A client library's error, naming the system.
pub fn client_error(system: System, what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::process(format!("{} {what}", system.name()), e)
}

/// What the peers' tests share: skipping when a server is not installed, and one small workflow
/// run against a real server through the very client and orchestrator halves the bench uses.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::load::bench_task;
    use crate::peers::load::{id_and_submit_time, peer_task_id};

    /// The located server, or `None` after saying `SKIPPED:` (a failure under
    /// `MAILROOM_REQUIRE_ALL`, where CI installed every server).
    pub fn require<T>(found: Result<T, Skip>, test: &str) -> Option<T> {
        match found {
            Ok(t) => Some(t),
            Err(Skip(why)) => {
                assert!(
                    std::env::var_os("MAILROOM_REQUIRE_ALL").is_none(),
                    "{test}: {why}, and MAILROOM_REQUIRE_ALL is set"
                );
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {why}");
                None
            }
        }
    }

    /// Submits `n` tasks, takes one with each worker (two different tasks: neither sees what the
    /// other holds), completes them, drains the rest with both, and checks the system's own
    /// account: every task completed once, nothing left.
    pub fn exercise<P: Producer, W: Worker>(
        side: &mut dyn Side,
        t: &Target,
        p: &mut P,
        w: [&mut W; 2],
        n: usize,
    ) {
        for i in 0..n {
            p.submit(&peer_task_id(i), &bench_task("P", i, 300, None).to_string()).unwrap();
        }
        let [w1, w2] = w;
        let wait = Duration::from_secs(2);
        let (b1, h1) = w1.next(wait).unwrap().expect("a task for the first worker");
        let (b2, h2) = w2.next(wait).unwrap().expect("a task for the second worker");
        let (id1, id2) = (id_and_submit_time(&b1).0, id_and_submit_time(&b2).0);
        assert_ne!(id1, id2, "two workers hold two different tasks");
        w1.complete(&id1, h1).unwrap();
        w2.complete(&id2, h2).unwrap();
        let mut done = 2;
        let short = Duration::from_millis(300);
        loop {
            let mut any = false;
            for w in [&mut *w1, &mut *w2] {
                if let Some((b, h)) = w.next(short).unwrap() {
                    w.complete(&id_and_submit_time(&b).0, h).unwrap();
                    done += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        assert_eq!(done, n);
        assert_eq!(side.completed(t).unwrap(), n);
        let tally = side.finish(t).unwrap();
        assert_eq!(tally.left, 0, "{}", tally.checked);
        if let Some(c) = tally.completions {
            assert_eq!(c.len(), n);
            assert!(c.values().all(|&k| k == 1), "{c:?}");
        }
    }
}

//! Redis as a job queue, the reliable-list pattern (Sidekiq Pro's reliable fetch, the `LMOVE`
//! pattern of the Redis documentation), with `appendonly yes` and `appendfsync always`.
//!
//! The server: `redis-server` with a generated configuration (`bind 127.0.0.1`, a free port, its
//! directory in the run, no RDB snapshots), a child of the bench stopped with SIGTERM by its
//! guard. It must say `appendfsync always` back before a round starts.
//!
//! The workflow, keys prefixed by the round (`r<round>:`):
//! - producer: `LPUSH r0:pending <task>`; the reply comes after the AOF holding it is fsynced;
//! - agent: `BLMOVE r0:pending r0:processing:<agent> RIGHT LEFT <wait>` takes the oldest task into
//!   the agent's own processing list (itself a write, fsynced like any other), then one
//!   `MULTI`/`EXEC` removes it from there (`LREM`) and counts its completion (`HINCRBY r0:done
//!   <id> 1`), acknowledged after the fsync;
//! - check: `HGETALL r0:done` (completions per id), and what is left in `pending` and every
//!   `processing:*` list.

use super::server::{Server, start};
use super::{Producer, Side, Skip, System, Tally, Target, Worker, client_error, find_program, version_of};
use crate::error::BenchError;
use crate::run::Ctx;
use ::redis::{Client, Connection, RedisError};
use rustix::process::Signal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `redis-server` on `PATH` (Debian package `redis-server`).
pub fn locate() -> Result<PathBuf, Skip> {
    find_program("redis-server", &["/usr/bin", "/usr/sbin", "/usr/local/bin"])
        .ok_or_else(|| Skip("Redis not installed: no redis-server (Debian package redis-server)".into()))
}

fn err(what: &str) -> impl Fn(RedisError) -> BenchError + '_ {
    move |e| client_error(System::Redis, what, e)
}

fn connect(url: &str) -> Result<Connection, BenchError> {
    let client = Client::open(format!("redis://{url}/")).map_err(err("url"))?;
    client.get_connection_with_timeout(Duration::from_secs(10)).map_err(err("connect"))
}

/// The round's keys.
struct Keys {
    pending: String,
    done: String,
}

impl Keys {
    fn of(ns: &str) -> Self {
        Self { pending: format!("{ns}:pending"), done: format!("{ns}:done") }
    }

    fn processing(ns: &str, agent: &str) -> String {
        format!("{ns}:processing:{agent}")
    }
}

pub struct RedisProducer {
    con: Connection,
    keys: Keys,
}

impl RedisProducer {
    pub fn connect(url: &str, ns: &str) -> Result<Self, BenchError> {
        Ok(Self { con: connect(url)?, keys: Keys::of(ns) })
    }
}

impl Producer for RedisProducer {
    fn submit(&mut self, _id: &str, body: &str) -> Result<(), BenchError> {
        ::redis::cmd("LPUSH")
            .arg(&self.keys.pending)
            .arg(body)
            .query::<i64>(&mut self.con)
            .map_err(err("LPUSH"))?;
        Ok(())
    }
}

pub struct RedisWorker {
    con: Connection,
    keys: Keys,
    processing: String,
}

impl RedisWorker {
    pub fn connect(url: &str, ns: &str, agent: &str) -> Result<Self, BenchError> {
        Ok(Self { con: connect(url)?, keys: Keys::of(ns), processing: Keys::processing(ns, agent) })
    }
}

impl Worker for RedisWorker {
    /// The task as it sits in the processing list (what `LREM` removes).
    type Held = String;

    fn next(&mut self, wait: Duration) -> Result<Option<(String, String)>, BenchError> {
        let body: Option<String> = ::redis::cmd("BLMOVE")
            .arg(&self.keys.pending)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(wait.as_secs_f64())
            .query(&mut self.con)
            .map_err(err("BLMOVE"))?;
        Ok(body.map(|b| (b.clone(), b)))
    }

    fn complete(&mut self, id: &str, body: String) -> Result<(), BenchError> {
        ::redis::pipe()
            .atomic()
            .cmd("LREM")
            .arg(&self.processing)
            .arg(1)
            .arg(body)
            .ignore()
            .cmd("HINCRBY")
            .arg(&self.keys.done)
            .arg(id)
            .arg(1)
            .ignore()
            .query::<()>(&mut self.con)
            .map_err(err("MULTI LREM HINCRBY EXEC"))
    }
}

/// The orchestrator's half: one server for every round, a key prefix per round.
pub struct RedisSide {
    server: Server,
    url: String,
    admin: Connection,
    version: String,
}

impl RedisSide {
    /// Starts `redis-server` with its configuration, data and log in `dir`.
    pub fn start(dir: &Path, bin: PathBuf) -> Result<Self, BenchError> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| BenchError::io(&data, e))?;
        let (server, port) = start(
            "redis-server",
            |port| {
                let conf = dir.join("redis.conf");
                crate::procs::write_file(&conf, config(port, &data))?;
                let mut cmd = Command::new(&bin);
                cmd.arg(&conf);
                Server::spawn(cmd, "redis-server", &dir.join("redis.log"), Signal::TERM)
            },
            |port| {
                ::redis::cmd("PING")
                    .query::<String>(&mut connect(&format!("127.0.0.1:{port}"))?)
                    .map(drop)
                    .map_err(err("PING"))
            },
        )?;
        let url = format!("127.0.0.1:{port}");
        let mut admin = connect(&url)?;
        for (key, want) in [("appendonly", "yes"), ("appendfsync", "always")] {
            let got: Vec<String> =
                ::redis::cmd("CONFIG").arg("GET").arg(key).query(&mut admin).map_err(err("CONFIG GET"))?;
            if got.get(1).map(String::as_str) != Some(want) {
                return Err(server.error(format!("{key} is {got:?}, not {want}")));
            }
        }
        let version = version_of(&bin).split(" sha=").next().unwrap_or_default().to_string();
        Ok(Self { server, url, admin, version })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The configuration of a private server on `port` with its files in `data`.
fn config(port: u16, data: &Path) -> String {
    format!(
        "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\ndir \"{}\"\nlogfile \"\"\n\
         save \"\"\nappendonly yes\nappendfsync always\n",
        data.display()
    )
}

impl Side for RedisSide {
    fn system(&self) -> System {
        System::Redis
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn prepare(&mut self, cx: &mut Ctx, round: usize) -> Result<Target, BenchError> {
        let dir = cx.fresh(&format!("peers-redis-r{round}"))?;
        Ok(Target { url: self.url.clone(), ns: format!("r{round}"), dir })
    }

    fn completed(&mut self, t: &Target) -> Result<usize, BenchError> {
        if let Some(s) = self.server.exited() {
            return Err(self.server.error(format!("exited during the run ({s})")));
        }
        let n: usize =
            ::redis::cmd("HLEN").arg(Keys::of(&t.ns).done).query(&mut self.admin).map_err(err("HLEN"))?;
        Ok(n)
    }

    fn finish(&mut self, t: &Target) -> Result<Tally, BenchError> {
        let keys = Keys::of(&t.ns);
        let completions: HashMap<String, u64> =
            ::redis::cmd("HGETALL").arg(&keys.done).query(&mut self.admin).map_err(err("HGETALL"))?;
        let mut lists: Vec<String> = ::redis::cmd("KEYS")
            .arg(Keys::processing(&t.ns, "*"))
            .query(&mut self.admin)
            .map_err(err("KEYS"))?;
        lists.push(keys.pending);
        let mut left = 0;
        for l in lists {
            left += ::redis::cmd("LLEN").arg(&l).query::<usize>(&mut self.admin).map_err(err("LLEN"))?;
        }
        Ok(Tally {
            completions: Some(completions),
            left,
            checked: format!("HGETALL {}:done, and the length of pending and every processing list", t.ns),
        })
    }

    fn stop(self: Box<Self>) -> Result<(), BenchError> {
        drop(self.admin);
        self.server.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::testing::{exercise, require};

    /// On a real server: `BLMOVE` hands two agents two tasks, each completion is counted once and
    /// removed from the agent's processing list, and the server is stopped.
    #[test]
    fn the_reliable_list_completes_every_task_once() {
        let Some(bin) = require(locate(), "peers::redis (no redis-server)") else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut side = RedisSide::start(dir.path(), bin).unwrap();
        let t = Target { url: side.url().into(), ns: "r0".into(), dir: dir.path().into() };
        let mut p = RedisProducer::connect(&t.url, &t.ns).unwrap();
        let mut w1 = RedisWorker::connect(&t.url, &t.ns, "A1").unwrap();
        let mut w2 = RedisWorker::connect(&t.url, &t.ns, "A2").unwrap();
        exercise(&mut side, &t, &mut p, [&mut w1, &mut w2], 12);
        drop((p, w1, w2));
        Box::new(side).stop().unwrap();
    }

    #[test]
    fn the_configuration_binds_loopback_and_fsyncs_every_write() {
        let c = config(6399, Path::new("/tmp/r d"));
        assert!(c.contains("bind 127.0.0.1\n") && c.contains("port 6399\n"));
        assert!(c.contains("appendonly yes\n") && c.contains("appendfsync always\n"));
        assert!(c.contains("dir \"/tmp/r d\"\n"));
    }
}

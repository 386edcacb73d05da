//! PostgreSQL as a job queue, the `SELECT … FOR UPDATE SKIP LOCKED` pattern of River, Oban and
//! pg-boss, with `synchronous_commit = on` (a commit returns once its WAL is flushed to disk).
//!
//! The server: `initdb` (trust authentication, user `bench`, no locale) and `postgres` run as a
//! child on a free 127.0.0.1 port (`listen_addresses = 127.0.0.1`, no Unix socket), as `nobody`
//! when the bench runs as root (PostgreSQL refuses root). It is stopped with SIGINT (fast
//! shutdown) by its guard. Its binaries are found on `PATH` or in Debian's
//! `/usr/lib/postgresql/<major>/bin` (package `postgresql`).
//!
//! The workflow, one table per round (`jobs_r<round>`):
//! - producer: `INSERT` of the task (`payload jsonb`), one autocommitted statement: the reply
//!   comes after the commit's WAL flush;
//! - agent: `BEGIN; SELECT id, payload … WHERE state = 'available' ORDER BY id LIMIT 1 FOR UPDATE
//!   SKIP LOCKED`, then `UPDATE … SET state = 'completed', completions = completions + 1;
//!   COMMIT`. The row lock is the claim: a claim costs no commit of its own (the cheapest correct
//!   variant; River and Oban commit the claim separately, one more WAL flush per task). An agent
//!   that finds nothing polls again 5 ms later: `LISTEN/NOTIFY` would wake it sooner, but a
//!   `NOTIFY` takes a database-wide lock from before its transaction commits until after, which
//!   would serialise the producers' commits.
//! - check: `SELECT task_id, completions … WHERE state = 'completed'`, and the rows left over.

use super::server::{RunAs, Scratch, Server, reachable_by, start};
use super::{Producer, Side, Skip, System, Tally, Target, Worker, client_error, version_of};
use crate::error::BenchError;
use crate::run::Ctx;
use ::postgres::{Client, NoTls, Statement};
use rustix::process::Signal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long an agent that found nothing waits before it looks again.
const POLL: Duration = Duration::from_millis(5);

/// The directory holding `initdb` and `postgres`.
#[derive(Debug, Clone)]
pub struct PgBins(pub PathBuf);

/// `initdb` and `postgres` side by side: on `PATH` (following symlinks) or in Debian's
/// `/usr/lib/postgresql/<major>/bin`, the newest major first.
pub fn locate() -> Result<PgBins, Skip> {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.extend(debian.into_iter().map(|(_, d)| d));
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        .map(PgBins)
        .ok_or_else(|| {
            Skip("PostgreSQL not installed: no initdb and postgres (Debian package postgresql)".into())
        })
}

/// The connection string of a server on `port`.
fn conninfo(url: &str) -> String {
    let (host, port) = url.split_once(':').unwrap_or((url, "5432"));
    format!("host={host} port={port} user=bench dbname=postgres connect_timeout=10")
}

fn connect(url: &str) -> Result<Client, BenchError> {
    Client::connect(&conninfo(url), NoTls).map_err(|e| client_error(System::Postgres, "connect", e))
}

fn err(what: &str) -> impl Fn(::postgres::Error) -> BenchError + '_ {
    move |e| client_error(System::Postgres, what, e)
}

/// The table of round `round`.
fn table(round: usize) -> String {
    format!("jobs_r{round}")
}

/// A table name as given on the command line: only `[a-z0-9_]`, so it can be spliced into SQL.
fn checked(ns: &str) -> Result<&str, BenchError> {
    if !ns.is_empty() && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Ok(ns)
    } else {
        Err(BenchError::Usage(format!("--ns `{ns}`: a PostgreSQL table name is [a-z0-9_]+")))
    }
}

pub struct PgProducer {
    client: Client,
    insert: Statement,
}

impl PgProducer {
    pub fn connect(url: &str, ns: &str) -> Result<Self, BenchError> {
        let t = checked(ns)?;
        let mut client = connect(url)?;
        let insert = client
            .prepare(&format!("INSERT INTO {t} (task_id, payload) VALUES ($1, $2::text::jsonb)"))
            .map_err(err("prepare insert"))?;
        Ok(Self { client, insert })
    }
}

impl Producer for PgProducer {
    fn submit(&mut self, id: &str, body: &str) -> Result<(), BenchError> {
        self.client.execute(&self.insert, &[&id, &body]).map_err(err("insert"))?;
        Ok(())
    }
}

pub struct PgWorker {
    client: Client,
    take: Statement,
    done: Statement,
}

impl PgWorker {
    pub fn connect(url: &str, ns: &str) -> Result<Self, BenchError> {
        let t = checked(ns)?;
        let mut client = connect(url)?;
        let take = client
            .prepare(&format!(
                "SELECT id, payload::text FROM {t} WHERE state = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ))
            .map_err(err("prepare select"))?;
        let done = client
            .prepare(&format!(
                "UPDATE {t} SET state = 'completed', completions = completions + 1, completed_at = now() WHERE id = $1"
            ))
            .map_err(err("prepare update"))?;
        Ok(Self { client, take, done })
    }
}

impl Worker for PgWorker {
    /// The row's id, locked by the open transaction.
    type Held = i64;

    fn next(&mut self, wait: Duration) -> Result<Option<(String, i64)>, BenchError> {
        let deadline = Instant::now() + wait;
        loop {
            self.client.batch_execute("BEGIN").map_err(err("begin"))?;
            let rows = self.client.query(&self.take, &[]).map_err(err("select for update"))?;
            if let Some(row) = rows.first() {
                return Ok(Some((row.get(1), row.get(0))));
            }
            self.client.batch_execute("ROLLBACK").map_err(err("rollback"))?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    fn complete(&mut self, _id: &str, row: i64) -> Result<(), BenchError> {
        self.client.execute(&self.done, &[&row]).map_err(err("update"))?;
        // With synchronous_commit = on, COMMIT returns once the WAL is flushed.
        self.client.batch_execute("COMMIT").map_err(err("commit"))?;
        Ok(())
    }
}

/// The orchestrator's half: one server for every round, a table per round.
pub struct PgSide {
    server: Server,
    url: String,
    admin: Client,
    version: String,
}

impl PgSide {
    /// Initialises a cluster and starts its server, with its log in `dir`.
    pub fn start(dir: &Path, bins: PgBins) -> Result<Self, BenchError> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let run_as = RunAs::unprivileged();
        // The data directory must be reachable by the user the server runs as; a run directory
        // under a private temporary directory is not, so it then goes under the system's.
        let base = match run_as {
            Some(who) if !reachable_by(dir, who) => std::env::temp_dir().join(format!(
                "mailroom-bench-pg-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            )),
            _ => dir.join("pg"),
        };
        std::fs::create_dir_all(&base).map_err(|e| BenchError::io(&base, e))?;
        // Removed now if the server does not start; by the server's guard once it has stopped.
        let scratch = Scratch((!base.starts_with(dir)).then(|| base.clone()));
        let data = base.join("data");
        if let Some(who) = run_as {
            who.give(&base)?;
        }
        let mut init = Command::new(bins.0.join("initdb"));
        init.args(["-D"]).arg(&data).args(["-U", "bench", "-A", "trust", "--no-locale", "-E", "UTF8"]);
        // The cluster's initial files are not fsynced: they are set up, not measured, and every
        // commit of the run flushes its WAL all the same.
        init.arg("--no-sync").current_dir("/");
        if let Some(who) = run_as {
            who.apply(&mut init);
        }
        let out = init.output().map_err(|e| BenchError::process("initdb", e))?;
        if !out.status.success() {
            return Err(BenchError::process(
                "initdb",
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            ));
        }
        let log = dir.join("postgres.log");
        let (mut server, port) = start(
            "postgres",
            |port| {
                let mut cmd = Command::new(bins.0.join("postgres"));
                cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string()).current_dir("/");
                for setting in [
                    "listen_addresses=127.0.0.1",
                    "unix_socket_directories=",
                    "fsync=on",
                    "synchronous_commit=on",
                    "full_page_writes=on",
                    "max_connections=40",
                    "shared_buffers=64MB",
                    "logging_collector=off",
                ] {
                    cmd.arg("-c").arg(setting);
                }
                if let Some(who) = run_as {
                    who.apply(&mut cmd);
                }
                Server::spawn(cmd, "postgres", &log, Signal::INT)
            },
            |port| connect(&format!("127.0.0.1:{port}")).map(drop),
        )?;
        if let Some(base) = scratch.disarm() {
            server.remove_when_stopped(base);
        }
        let url = format!("127.0.0.1:{port}");
        let mut admin = connect(&url)?;
        let row = admin.query_one("SHOW synchronous_commit", &[]).map_err(err("show"))?;
        let sync: String = row.get(0);
        if sync != "on" {
            return Err(server.error(format!("synchronous_commit is {sync}, not on")));
        }
        let version = version_of(&bins.0.join("postgres"));
        Ok(Self { server, url, admin, version })
    }
}

impl PgSide {
    /// Creates round `round`'s table; returns its name.
    pub fn create_queue(&mut self, round: usize) -> Result<String, BenchError> {
        let t = table(round);
        self.admin
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigserial PRIMARY KEY, task_id text NOT NULL UNIQUE, payload jsonb NOT NULL, \
                 state text NOT NULL DEFAULT 'available', completions int NOT NULL DEFAULT 0, completed_at timestamptz); \
                 CREATE INDEX {t}_available ON {t} (id) WHERE state = 'available';"
            ))
            .map_err(err("create table"))?;
        Ok(t)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Side for PgSide {
    fn system(&self) -> System {
        System::Postgres
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn prepare(&mut self, cx: &mut Ctx, round: usize) -> Result<Target, BenchError> {
        let ns = self.create_queue(round)?;
        let dir = cx.fresh(&format!("peers-postgres-r{round}"))?;
        Ok(Target { url: self.url.clone(), ns, dir })
    }

    fn completed(&mut self, t: &Target) -> Result<usize, BenchError> {
        if let Some(s) = self.server.exited() {
            return Err(self.server.error(format!("exited during the run ({s})")));
        }
        let sql = format!("SELECT count(*) FROM {} WHERE state = 'completed'", checked(&t.ns)?);
        let n: i64 = self.admin.query_one(&sql, &[]).map_err(err("count"))?.get(0);
        Ok(n as usize)
    }

    fn finish(&mut self, t: &Target) -> Result<Tally, BenchError> {
        let ns = checked(&t.ns)?;
        let mut completions = HashMap::new();
        let mut left = 0;
        for row in self
            .admin
            .query(&format!("SELECT task_id, completions, state FROM {ns}"), &[])
            .map_err(err("select"))?
        {
            let state: String = row.get(2);
            if state == "completed" {
                let n: i32 = row.get(1);
                completions.insert(row.get::<_, String>(0), n as u64);
            } else {
                left += 1;
            }
        }
        Ok(Tally {
            completions: Some(completions),
            left,
            checked: format!("every row of {ns}: state and completion count"),
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

    #[test]
    fn a_table_name_is_checked_before_it_is_spliced_into_sql() {
        assert_eq!(checked("jobs_r0").unwrap(), "jobs_r0");
        for bad in ["", "jobs; DROP TABLE x", "Jobs", "a-b"] {
            assert!(matches!(checked(bad), Err(BenchError::Usage(_))), "{bad}");
        }
        assert_eq!(table(2), "jobs_r2");
        assert_eq!(
            conninfo("127.0.0.1:5999"),
            "host=127.0.0.1 port=5999 user=bench dbname=postgres connect_timeout=10"
        );
    }

    /// On a real server (as `nobody` when run as root): SKIP LOCKED hands two agents two tasks,
    /// every completion is committed once, and the server is stopped.
    #[test]
    fn the_skip_locked_queue_completes_every_task_once() {
        let Some(bins) = require(locate(), "peers::postgres (no PostgreSQL)") else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut side = PgSide::start(dir.path(), bins).unwrap();
        let ns = side.create_queue(0).unwrap();
        let t = Target { url: side.url().into(), ns, dir: dir.path().into() };
        let mut p = PgProducer::connect(&t.url, &t.ns).unwrap();
        let mut w1 = PgWorker::connect(&t.url, &t.ns).unwrap();
        let mut w2 = PgWorker::connect(&t.url, &t.ns).unwrap();
        exercise(&mut side, &t, &mut p, [&mut w1, &mut w2], 12);
        drop((p, w1, w2));
        Box::new(side).stop().unwrap();
    }
}

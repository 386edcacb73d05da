//! A peer's server as a child process of the bench: started on a loopback port in a directory of
//! the run, waited for until it answers, and always stopped, even when the run fails or panics.
//!
//! - [`Server`] owns the child. Dropping it sends the server's clean-stop signal, waits up to ten
//!   seconds, then kills it: a failed or panicking workload can never leave a database running.
//!   (A SIGKILL of the bench itself is the one case no guard can cover.)
//! - [`free_ports`] finds ports nothing listens on, on 127.0.0.1 only. Another process may take a
//!   port between the check and the server's bind, so [`start`] tries a new port when the
//!   server exits before it answers.
//! - [`RunAs`] is who a server runs as: PostgreSQL refuses to run as root, so a root bench runs it
//!   as `nobody`, in directories given to `nobody` that `nobody` can reach ([`reachable_by`]).

use crate::error::BenchError;
use rustix::process::{Pid, Signal, kill_process};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it started.
const READY: Duration = Duration::from_secs(60);
/// How long a server may take to stop cleanly before it is killed.
const STOP: Duration = Duration::from_secs(10);

/// A server process, stopped when dropped.
pub struct Server {
    child: Child,
    what: String,
    log: PathBuf,
    /// The signal that stops it cleanly (PostgreSQL: SIGINT, its fast shutdown).
    signal: Signal,
    /// Removed once the server has stopped (a data directory outside the run's directory).
    scratch: Option<PathBuf>,
}

impl Server {
    /// Starts `cmd` with stdout and stderr in `log`.
    pub fn spawn(mut cmd: Command, what: &str, log: &Path, signal: Signal) -> Result<Self, BenchError> {
        let file = std::fs::File::create(log).map_err(|e| BenchError::io(log, e))?;
        let err = file.try_clone().map_err(|e| BenchError::io(log, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::process(what, format!("{}: {e}", cmd.get_program().display())))?;
        Ok(Self { child, what: what.into(), log: log.into(), signal, scratch: None })
    }

    /// Removes `dir` once the server has stopped.
    pub fn remove_when_stopped(&mut self, dir: PathBuf) {
        self.scratch = Some(dir);
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// An error naming the server, with the end of its log.
    pub fn error(&self, problem: impl std::fmt::Display) -> BenchError {
        BenchError::process(
            &self.what,
            format!("{problem}; log {}:\n{}", self.log.display(), self.log_tail()),
        )
    }

    /// Waits until `probe` answers `Ok`; an error (with the probe's last one) if the server exits
    /// first or takes too long.
    pub fn wait_ready(
        &mut self,
        mut probe: impl FnMut() -> Result<(), BenchError>,
    ) -> Result<(), BenchError> {
        let t0 = Instant::now();
        loop {
            let last = match probe() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if let Some(s) = self.exited() {
                return Err(self.error(format!("exited before it answered ({s})")));
            }
            if t0.elapsed() > READY {
                return Err(self.error(format!("not answering after {READY:?} ({last})")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops it cleanly (killing it if it takes more than ten seconds).
    pub fn stop(mut self) -> Result<(), BenchError> {
        match self.halt() {
            Some(_) => Ok(()),
            None => Err(self.error(format!("did not stop within {STOP:?} and was killed"))),
        }
    }

    /// The clean-stop signal, then a kill if it is still running after [`STOP`]. `None` when it
    /// had to be killed.
    fn halt(&mut self) -> Option<ExitStatus> {
        let status = match self.exited() {
            Some(s) => Some(s),
            None => {
                if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
                    let _ = kill_process(pid, self.signal);
                }
                let t0 = Instant::now();
                loop {
                    if let Some(s) = self.exited() {
                        break Some(s);
                    }
                    if t0.elapsed() > STOP {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A directory removed when this guard drops, unless [`Scratch::disarm`]ed first.
pub struct Scratch(pub Option<PathBuf>);

impl Scratch {
    /// Gives up the directory (someone else removes it now).
    pub fn disarm(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The last lines of a log file.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `n` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago. All are held
/// until all are found, so they are distinct; they are free again when this returns.
pub fn free_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| BenchError::io("127.0.0.1:0", e))?;
        held.push(l);
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| BenchError::io("127.0.0.1:0", e)))
        .collect()
}

/// Starts a server on a free port: `spawn(port)` starts it, `probe(port)` is `Ok` once it
/// answers. A server that exits before it answers (another process took the port) is tried again
/// on a new port, three times in all.
pub fn start(
    what: &str,
    mut spawn: impl FnMut(u16) -> Result<Server, BenchError>,
    mut probe: impl FnMut(u16) -> Result<(), BenchError>,
) -> Result<(Server, u16), BenchError> {
    let mut last = None;
    for _ in 0..3 {
        let port = free_ports(1)?[0];
        let mut server = spawn(port)?;
        match server.wait_ready(|| probe(port)) {
            Ok(()) => return Ok((server, port)),
            Err(e) if server.exited().is_some() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| BenchError::process(what, "could not start")))
}

/// The user a server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `nobody` when this process is root (PostgreSQL refuses root), else `None`: the server runs
    /// as this user.
    pub fn unprivileged() -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Some(nobody_in(&passwd).unwrap_or(Self { uid: 65534, gid: 65534 }))
    }

    /// Makes `cmd` run as this user.
    pub fn apply(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives `dir` (not what is under it) to this user, mode 0700.
    pub fn give(&self, dir: &Path) -> Result<(), BenchError> {
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid)).map_err(|e| BenchError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| BenchError::io(dir, e))
    }
}

/// The uid and gid of `nobody` in the text of `/etc/passwd`.
fn nobody_in(passwd: &str) -> Option<RunAs> {
    let f: Vec<&str> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == "nobody")?;
    Some(RunAs { uid: f.get(2)?.parse().ok()?, gid: f.get(3)?.parse().ok()? })
}

/// Can `who` reach `dir`: is every directory from `/` to `dir` searchable by that user (as its
/// owner, through its group, or as anyone)? Supplementary groups are not considered.
pub fn reachable_by(dir: &Path, who: RunAs) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else { return false };
    dir.ancestors().all(|d| match std::fs::metadata(d) {
        Ok(m) => searchable(m.mode(), m.uid(), m.gid(), who),
        Err(_) => false,
    })
}

/// Whether a directory of `mode`, owned by `uid`:`gid`, is searchable by `who`.
fn searchable(mode: u32, uid: u32, gid: u32, who: RunAs) -> bool {
    if who.uid == uid {
        mode & 0o100 != 0
    } else if who.gid == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable_on_loopback() {
        let ports = free_ports(5).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{ports:?}");
        for p in ports {
            assert_ne!(p, 0);
            // Free again once returned (unless another process took it meanwhile: retry once).
            let bound = TcpListener::bind((Ipv4Addr::LOCALHOST, p))
                .or_else(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, free_ports(1).unwrap()[0])));
            assert!(bound.is_ok());
        }
    }

    #[test]
    fn nobody_is_read_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65533:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(nobody_in(passwd), Some(RunAs { uid: 65534, gid: 65533 }));
        assert_eq!(nobody_in("root:x:0:0::/:/bin/sh\n"), None);
        assert_eq!(nobody_in("nobody:x:oops:1::/:/bin/sh\n"), None);
    }

    #[test]
    fn a_directory_is_searchable_by_owner_group_or_others_bits() {
        let who = RunAs { uid: 10, gid: 20 };
        assert!(searchable(0o700, 10, 0, who));
        assert!(!searchable(0o070, 10, 20, who), "the owner's bits decide for the owner");
        assert!(searchable(0o010, 0, 20, who));
        assert!(!searchable(0o701, 0, 20, who), "the group's bits decide for the group");
        assert!(searchable(0o001, 0, 0, who));
        assert!(!searchable(0o770, 0, 0, who));
    }

    #[test]
    fn a_server_is_stopped_when_its_guard_drops() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let mut s = Server::spawn(cmd, "sleep", &dir.path().join("log"), Signal::TERM).unwrap();
        s.remove_when_stopped(scratch.clone());
        let pid = s.child.id();
        drop(s);
        // The child was reaped by the guard: no such process any more.
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || !is_running(pid));
        assert!(!scratch.exists(), "the scratch directory is removed once the server stopped");
    }

    fn is_running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false)
    }
}

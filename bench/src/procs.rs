//! The child processes of a run and what the orchestrator reads from them: which binaries to start
//! ([`Binaries`]: `mailroom` for brokers and `trace`, `mailroom-bench` for producers and agents),
//! a child killed if it outlives its workload ([`Proc`]), a broker started and waited for until it
//! serves ([`start_broker`]), and a process's CPU time and peak memory from `/proc`.

use crate::error::BenchError;
use runtime_layout::{Board, Fs, Layout};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Wall clock in microseconds since the epoch (the same clock the broker stamps history with).
pub fn now_us() -> i64 {
    runtime_layout::now().as_micros()
}

/// The executables a run starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `mailroom` under test: `mailroom run` for brokers, `mailroom trace` for W5.
    pub mailroom: PathBuf,
    /// This benchmark's own binary: `mailroom-bench producer|agent` for the load processes.
    pub bench: PathBuf,
}

impl Binaries {
    /// `mailroom` is `explicit` (`--mailroom`, `MAILROOM_BIN`) or the one beside this executable.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, BenchError> {
        let bench = std::env::current_exe().map_err(|e| BenchError::io("the current executable", e))?;
        let mailroom = explicit.map(Path::to_path_buf).unwrap_or_else(|| bench.with_file_name("mailroom"));
        if !mailroom.is_file() {
            return Err(BenchError::NoMailroom(mailroom));
        }
        Ok(Self { mailroom, bench })
    }

    /// `mailroom-bench <role> --root <root> <args>` (a producer or an agent) as a child, its
    /// stderr in `log`.
    pub fn load(
        &self,
        role: &str,
        root: &Path,
        args: &[String],
        log: &Path,
        what: &str,
    ) -> Result<Proc, BenchError> {
        let mut all = vec!["--root".to_string(), root.display().to_string()];
        all.extend_from_slice(args);
        self.role(role, &all, log, what)
    }

    /// `mailroom-bench <role> <args>` as a child, its stderr in `log`.
    pub fn role(&self, role: &str, args: &[String], log: &Path, what: &str) -> Result<Proc, BenchError> {
        let mut cmd = Command::new(&self.bench);
        cmd.arg(role).args(args);
        spawn(cmd, log, what)
    }

    /// `mailroom --root <root> <args>` run to completion with its output captured.
    pub fn mailroom_output(&self, root: &Path, args: &[&str]) -> Result<std::process::Output, BenchError> {
        Command::new(&self.mailroom)
            .arg("--root")
            .arg(root)
            .args(args)
            .env("MAILROOM_LOG", "warn")
            .output()
            .map_err(|e| BenchError::io(&self.mailroom, e))
    }
}

/// A child process, killed on drop if it is still running.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` naming the process if it has already exited unsuccessfully.
    pub fn check(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(s)) if !s.success() => Err(BenchError::process(&self.what, format!("exited with {s}"))),
            _ => Ok(()),
        }
    }

    /// Waits for the process; an error names it when it failed.
    pub fn wait(mut self, timeout: Duration) -> Result<(), BenchError> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(BenchError::process(&self.what, format!("exited with {s}"))),
                Ok(None) if start.elapsed() > timeout => {
                    return Err(BenchError::process(&self.what, format!("still running after {timeout:?}")));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(BenchError::process(&self.what, e)),
            }
        }
    }

    /// SIGTERM (a clean broker shutdown), then wait.
    pub fn terminate(mut self) -> Result<(), BenchError> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        match self.child.wait() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(BenchError::process(&self.what, format!("exited with {s}"))),
            Err(e) => Err(BenchError::process(&self.what, e)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `cmd` with its stderr in `log` (warnings only, or the filter in `MAILROOM_BENCH_LOG`)
/// and no stdin or stdout.
fn spawn(mut cmd: Command, log: &Path, what: &str) -> Result<Proc, BenchError> {
    let file = std::fs::File::create(log).map_err(|e| BenchError::io(log, e))?;
    let filter = std::env::var("MAILROOM_BENCH_LOG").unwrap_or_else(|_| "warn".to_string());
    let child = cmd
        .env("MAILROOM_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| BenchError::process(what, format!("{}: {e}", cmd.get_program().display())))?;
    Ok(Proc { child, what: what.to_string() })
}

/// Starts `mailroom run` on `root` and waits until it serves (it has written its boards, the
/// readiness signal the end-to-end tests use too). Returns the process and the time to serve.
pub fn start_broker(
    fs: &dyn Fs,
    bins: &Binaries,
    root: &Path,
    log: &Path,
) -> Result<(Proc, Duration), BenchError> {
    let ready = Layout::new(root).board(Board::Backlog);
    match fs.remove_file(&ready) {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    let t0 = Instant::now();
    let mut cmd = Command::new(&bins.mailroom);
    cmd.arg("--root").arg(root).arg("run");
    let mut p = spawn(cmd, log, "broker")?;
    while fs.stat(&ready)?.is_none() {
        if let Ok(Some(s)) = p.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(BenchError::process("broker", format!("exited early ({s}): {log}")));
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::process("broker", "not serving after 600 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((p, t0.elapsed()))
}

/// Writes `bytes` to `path`, a file of the run directory (outside every root).
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(|e| BenchError::io(path, e))
}

/// User+system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, t)| t)
}

/// User+system CPU time of each of a process's threads, summed by thread name (`comm`: the
/// broker's loop is `mailroom`, its socket's thread `local-socket`), from
/// `/proc/<pid>/task/*/stat`. A thread that ended before the reading is not in it.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, Duration> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Some((name, cpu)) =
            std::fs::read_to_string(t.path().join("stat")).ok().as_deref().and_then(stat_cpu)
        {
            *out.entry(name).or_default() += cpu;
        }
    }
    out
}

/// The name and user+system time in a `stat` line of `/proc`.
fn stat_cpu(s: &str) -> Option<(String, Duration)> {
    let name = s.get(s.find('(')? + 1..s.rfind(')')?)?.to_string();
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm field: state is field 3, utime 14, stime 15 (1-based) -> index 11, 12.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((name, Duration::from_millis(ticks * 10)))
}

/// Peak resident set (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident set now (`VmRSS`) of a process, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes in MiB.
pub fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Whether `program` runs at all (W2 needs `python3`).
pub fn runs(program: impl AsRef<OsStr>) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_s_cpu_is_read_under_its_name() {
        let line = "4242 (local-socket) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 2 0";
        assert_eq!(stat_cpu(line), Some(("local-socket".into(), Duration::from_millis(1750))));
        // A name with spaces and parentheses is read up to the last one.
        let odd = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 3 4 0";
        assert_eq!(stat_cpu(odd).map(|(n, _)| n).as_deref(), Some("a (b) c"));
        // This process: its threads, this one among them, each read. This thread spins until
        // it has used some CPU itself (other tests' threads come and go, so the process's
        // total says nothing about this one), then is found among the process's threads.
        let own = || stat_cpu(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).unwrap();
        let ((name, start), spin) = (own(), std::time::Instant::now());
        while own().1 < start + Duration::from_millis(20) && spin.elapsed() < Duration::from_secs(20) {
            std::hint::black_box(0u64);
        }
        let used = own().1;
        assert!(used >= start + Duration::from_millis(20), "this thread never ran 20 ms: {used:?}");
        let mine = cpu_by_thread(std::process::id());
        assert!(mine.get(&name).is_some_and(|&t| t >= used), "{name}: {used:?} not in {mine:?}");
    }
}

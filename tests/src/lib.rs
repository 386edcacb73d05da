//! End-to-end test support: a temporary runtime root, the `mailroom` binary, a broker process
//! that is killed when the test ends, and polling helpers. Tests drive real processes.

pub mod cdp;
pub mod cluster;
pub mod http;
pub mod nats;
pub mod privilege;

use rustix::process::{Pid, Signal, kill_process};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The `mailroom` binary, built on first use if needed (`MAILROOM_BIN` overrides).
pub fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("MAILROOM_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => build_bins().join("mailroom"),
    })
    .clone()
}

/// The `mailroom-bench` binary, built on first use if needed into the same target directory as
/// [`bin`], that is beside `mailroom`, where `mailroom bench` looks for it first
/// (`MAILROOM_BENCH_BIN` overrides).
pub fn bench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("MAILROOM_BENCH_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => build_bins().join("mailroom-bench"),
    })
    .clone()
}

/// Builds the workspace's binaries once, into the profile directory of this test executable
/// (test executables live in `target/<profile>/deps/`), and returns that directory.
///
/// One `cargo build --workspace --bins --examples` builds them all with the very features
/// `cargo test --workspace` resolved: cargo unifies features over the packages selected, and
/// over dev-dependencies only when a target that needs them is built (an example does). So every
/// library it links is one `cargo test --workspace` already compiled, and only the binaries
/// themselves are compiled here. A `cargo build -p mailroom` instead resolves features for one
/// package, different ones (tokio, serde_json, ...), and so compiles most of the dependency tree
/// and every workspace crate a second time, inside the first test that asks for a binary.
fn build_bins() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "--workspace", "--bins", "--examples"]).current_dir(workspace());
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the workspace's binaries failed");
        profile_dir
    })
    .clone()
}

/// A temporary runtime root, initialised.
pub struct Root {
    _dir: tempfile::TempDir,
    logs: PathBuf,
    pub path: PathBuf,
    brokers: std::sync::atomic::AtomicU32,
    /// Environment given to every command run on this root (see [`Root::with_env`]).
    env: Vec<(String, String)>,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().to_path_buf();
        Self::init(dir, logs)
    }

    /// A root inside `parent` (a small filesystem, say), with broker logs kept in `logs`.
    pub fn new_in(parent: &Path, logs: &Path) -> Self {
        Self::init(tempfile::tempdir_in(parent).expect("tempdir"), logs.to_path_buf())
    }

    fn init(dir: tempfile::TempDir, logs: PathBuf) -> Self {
        let path = dir.path().join("runtime");
        let r =
            Self { _dir: dir, logs, path, brokers: std::sync::atomic::AtomicU32::new(0), env: Vec::new() };
        let out = r.cmd(&["init"]).output().expect("mailroom init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        r
    }

    pub fn comms(&self) -> PathBuf {
        self.path.join("agent_comms")
    }

    /// Sets `key=value` in the environment of every command run on this root from now on (the
    /// brokers included), such as `MAILROOM_RESOLVE=walk`.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// `mailroom --root <root> args...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.path).args(args).env("MAILROOM_LOG", "warn");
        // Every broker a test starts serves HTTP on a port of its own (see `Root::api`).
        c.env(http::HTTP_ENV, "127.0.0.1:0");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `mailroom --root <root> args...` without root's privileges, so that file modes bind it
    /// as they bind any user: as `nobody` when the tests run as root, with the root's tree and
    /// `inputs` given to `nobody` (see [`privilege::unprivileged_command`]).
    pub fn cmd_unprivileged(&self, args: &[&str], inputs: &[&Path]) -> std::io::Result<Command> {
        let mut c = privilege::unprivileged_command(&bin(), self.scratch(), inputs)?;
        c.arg("--root").arg(&self.path).args(args).env("MAILROOM_LOG", "warn");
        c.env(http::HTTP_ENV, "127.0.0.1:0");
        Ok(c)
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run mailroom")
    }

    /// Runs a command with `stdin` as its input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.comms().join("mailroom.toml"), toml).unwrap();
    }

    /// A scratch directory beside the root (outside it), for logs and test files.
    pub fn scratch(&self) -> &Path {
        self._dir.path()
    }

    /// Starts `mailroom run` without waiting for it to serve.
    pub fn spawn_broker(&self) -> Broker {
        self.spawn_broker_with(&[])
    }

    /// [`Root::spawn_broker`] with more environment variables (`MAILROOM_HTTP`, say).
    pub fn spawn_broker_with(&self, env: &[(&str, &str)]) -> Broker {
        let mut cmd = self.cmd(&["run"]);
        cmd.envs(env.iter().copied());
        self.spawn_broker_as(cmd)
    }

    /// Starts `cmd` (a `mailroom run`) with its log in a file: a pipe nobody drains would block
    /// a chatty broker.
    fn spawn_broker_as(&self, mut cmd: Command) -> Broker {
        let n = self.brokers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = self.logs.join(format!("broker-{n}.log"));
        let log = std::fs::File::create(&log_path).expect("broker log");
        let child =
            cmd.env("MAILROOM_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().expect("spawn broker");
        Broker { child: Some(child), log: log_path }
    }

    /// Starts `mailroom run` and waits until it serves (its boards exist).
    pub fn broker(&self) -> Broker {
        self.broker_as(self.cmd(&["run"]))
    }

    /// [`Root::broker`] without root's privileges (see [`Root::cmd_unprivileged`]): file modes
    /// bind the broker as they bind any user.
    pub fn broker_unprivileged(&self) -> Broker {
        let cmd = self.cmd_unprivileged(&["run"], &[]).expect("hand the root to an unprivileged user");
        self.broker_as(cmd)
    }

    /// Starts `cmd` and waits until it serves.
    ///
    /// The broker writes the four boards one after the other, the backlog first; this one's
    /// backlog is removed beforehand so that its reappearance marks this start, and the others
    /// must exist too (on a first start they appear a moment after the backlog).
    fn broker_as(&self, cmd: Command) -> Broker {
        let dir = self.comms().join("central_task_boards");
        let backlog = dir.join("task_backlog.json");
        let _ = std::fs::remove_file(&backlog);
        // So that `Root::api` finds this broker's address, not a former one's.
        let _ = std::fs::remove_file(self.comms().join("broker/http.addr"));
        let mut b = self.spawn_broker_as(cmd);
        wait_for(Duration::from_secs(20), || {
            if let Some(Some(status)) = b.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("broker exited early: {status}");
            }
            backlog.exists()
                && ["task_ready_queue", "working_tasks", "completed_tasks"]
                    .iter()
                    .all(|n| dir.join(format!("{n}.json")).exists())
        });
        b
    }

    /// Tasks on one board (`task_backlog`, `task_ready_queue`, `working_tasks`, `completed_tasks`).
    /// A board not written yet is empty; one that cannot be read or parsed fails the test (boards
    /// are replaced atomically, so that is a bug, and an empty list would let `is_empty` pass).
    pub fn board(&self, name: &str) -> Vec<serde_json::Value> {
        self.try_board(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Root::board`], or why the board is not a readable JSON list (for a test that put
    /// something else there itself and waits for the broker to replace it).
    pub fn try_board(&self, name: &str) -> Result<Vec<serde_json::Value>, String> {
        let p = self.comms().join("central_task_boards").join(format!("{name}.json"));
        match std::fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| format!("{} is not a JSON list: {e}", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        }
    }

    /// File names in a directory under `agent_comms/` (sorted). A missing directory is empty;
    /// any other error fails the test rather than read as "nothing there".
    pub fn ls(&self, rel: &str) -> Vec<String> {
        let dir = self.comms().join(rel);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        let mut v: Vec<String> = rd
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
                e.file_name().to_string_lossy().into_owned()
            })
            .collect();
        v.sort();
        v
    }
    /// Every journal record (archived segments included, compressed ones decompressed), in
    /// sequence order, read from the files alone. A segment a kill left in two forms (plain and
    /// compressed: the broker removes the plain one only after the compressed one is in place)
    /// is read once. Panics if a sequence number appears twice.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let dir = self.comms().join("broker/journal");
        let mut segs = std::collections::BTreeMap::new();
        for d in [dir.join("archive"), dir.clone()] {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let regular = e.file_type().is_ok_and(|t| t.is_file());
                let plain = n.strip_suffix(".zst").unwrap_or(&n).to_string();
                if regular && n.starts_with("segment-") && plain.ends_with(".jsonl") {
                    // The plain form wins over the compressed one.
                    let prefer = n.ends_with(".jsonl") || !segs.contains_key(&plain);
                    if prefer {
                        segs.insert(plain, e.path());
                    }
                }
            }
        }
        let mut out: Vec<serde_json::Value> = Vec::new();
        for p in segs.into_values() {
            let bytes = std::fs::read(&p).expect("read segment");
            let mut bytes = if p.extension().is_some_and(|x| x == "zst") {
                zstd::stream::decode_all(&bytes[..]).expect("a compressed segment decompresses")
            } else {
                bytes
            };
            // The records end at the first zeros: the reserve the next records go into, or a
            // stretch of a commit a power loss cut (what follows is not replayed either).
            bytes.truncate(bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()));
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                // A torn final line (a crash mid-append) is not a record.
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                    out.push(v);
                }
            }
        }
        out.sort_by_key(|r| r["seq"].as_u64().unwrap_or(0));
        for w in out.windows(2) {
            assert_ne!(w[0]["seq"], w[1]["seq"], "a journal sequence number appears twice");
        }
        out
    }

    /// Every task on the four boards, with the board it is on.
    pub fn all_boards(&self) -> Vec<(String, serde_json::Value)> {
        self.try_all_boards().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Root::all_boards`], or why one of them is not a readable JSON list.
    pub fn try_all_boards(&self) -> Result<Vec<(String, serde_json::Value)>, String> {
        let mut v = Vec::new();
        for b in ["task_backlog", "task_ready_queue", "working_tasks", "completed_tasks"] {
            v.extend(self.try_board(b)?.into_iter().map(|t| (b.to_string(), t)));
        }
        Ok(v)
    }
}

/// A tiny seeded random number generator (splitmix64): reproducible runs from a printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from `var` if set, else from the clock; printed so that a failure can be replayed.
    pub fn seed_from_env(var: &str) -> u64 {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        eprintln!("seed: {var}={seed}");
        seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo) }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// An env var as a number, or a default.
pub fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of a process in KiB (`VmHWM`), if it is running.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A helper process that is SIGKILLed when dropped (so a failing test leaves no orphans).
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running broker; SIGKILLed on drop if still running.
pub struct Broker {
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    /// The broker's process id. A `Broker` holds its child until a consuming method (`kill9`,
    /// `terminate`) or `Drop` takes it, so there is always one to name.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .expect("a Broker holds its child process until it is consumed")
    }

    /// Sends `sig` to the broker process, and only to it: the pid is checked to be positive
    /// (`kill` with 0 or a negative pid would signal a whole process group, this test's own).
    pub fn signal(&self, sig: Signal) -> std::io::Result<()> {
        let pid = self.child.as_ref().map(Child::id).and_then(|id| i32::try_from(id).ok());
        let pid = pid.and_then(Pid::from_raw).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no positive pid to signal")
        })?;
        kill_process(pid, sig).map_err(std::io::Error::from)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code and stderr.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        self.signal(Signal::TERM).expect("SIGTERM the broker");
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        (status.code(), self.log())
    }

    /// Is the process still running (not exited on its own)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the log to say it serves; false if it did not (or exited).
    pub fn wait_serving(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains("serving") {
                return true;
            }
            if !self.is_running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// What the broker has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text of a command's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The environment variable that turns a skip into a failure. `.ci/run` sets it: CI installs
/// python3 and runs as root, so a test that would skip there for want of either is broken.
pub const REQUIRE_ALL: &str = "MAILROOM_REQUIRE_ALL";

/// Is `MAILROOM_REQUIRE_ALL` set (to anything but empty or `0`)?
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Says on stderr, past the test harness's capture, that `test` (or a part of it) did not run
/// and why: `SKIPPED: <test>: <why>`. For inputs that live outside the repository (the reference
/// corpus in `../shared`), which no clean clone has; the caller returns.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    // `eprintln!` would be captured and shown only if the test failed; a skip must be seen.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {why}");
}

/// `test` cannot run because this machine lacks a prerequisite (python3, permission to mount
/// a tmpfs). Under `MAILROOM_REQUIRE_ALL` that is a failure; otherwise the test says so with
/// [`skipped`] and the caller returns.
#[track_caller]
pub fn skip_unless_required(test: &str, why: &str) {
    assert!(!require_all(), "{test}: {why}, and {REQUIRE_ALL} is set: this prerequisite must be present");
    skipped(test, why);
}

/// Does `python3` run here?
pub fn have_python() -> bool {
    Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// The JSON lines of a log file (a missing file, or a torn last line, reads as fewer entries).
pub fn read_json_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How a `mailroom-load` agent behaves: the pool it claims from, how long each task takes, and
/// the share of tasks it fails or releases.
pub struct AgentProfile {
    pub pool: &'static str,
    pub work_ms: u32,
    pub fail_pct: u32,
    pub release_pct: u32,
}

/// Starts a `mailroom-load` agent (`load` is the helper binary) that logs what it was told.
pub fn spawn_load_agent(
    load: &str,
    root: &Root,
    name: &str,
    log: &Path,
    stop: &Path,
    seed: u64,
    p: &AgentProfile,
) -> Proc {
    Proc(
        Command::new(load)
            .args(["agent", "--root", root.path.to_str().unwrap(), "--agent", name, "--pool", p.pool])
            .args(["--log", log.to_str().unwrap(), "--stop", stop.to_str().unwrap()])
            .args(["--seed", &seed.to_string(), "--work-ms", &p.work_ms.to_string()])
            .args(["--fail-pct", &p.fail_pct.to_string(), "--release-pct", &p.release_pct.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start agent"),
    )
}

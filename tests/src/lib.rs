//! End-to-end test support: a temporary runtime root, the `mailroom` binary, a broker process
//! that is killed when the test ends, and polling helpers. Tests drive real processes.

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
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MAILROOM_BIN") {
            return PathBuf::from(p);
        }
        // Test executables live in target/<profile>/deps/; the binary is in target/<profile>/.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let release = profile_dir.ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "mailroom", "--bin", "mailroom"]).current_dir(workspace());
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the mailroom binary failed");
        profile_dir.join("mailroom")
    })
    .clone()
}

/// A temporary runtime root, initialised.
pub struct Root {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    brokers: std::cell::Cell<u32>,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runtime");
        let r = Self { _dir: dir, path, brokers: std::cell::Cell::new(0) };
        let out = r.cmd(&["init"]).output().expect("mailroom init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        r
    }

    pub fn comms(&self) -> PathBuf {
        self.path.join("agent_comms")
    }

    /// `mailroom --root <root> args...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.path).args(args).env("MAILROOM_LOG", "warn");
        c
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

    /// Starts `mailroom run` and waits until it serves (its boards exist).
    pub fn broker(&self) -> Broker {
        let boards = self.comms().join("central_task_boards/task_backlog.json");
        let _ = std::fs::remove_file(&boards);
        // The log goes to a file: a pipe nobody drains would block a chatty broker.
        let log_path = self._dir.path().join(format!("broker-{}.log", self.brokers.get()));
        self.brokers.set(self.brokers.get() + 1);
        let log = std::fs::File::create(&log_path).expect("broker log");
        let child = self
            .cmd(&["run"])
            .env("MAILROOM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn broker");
        let mut b = Broker { child: Some(child), log: log_path };
        wait_for(Duration::from_secs(20), || {
            if let Some(Some(status)) = b.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("broker exited early: {status}");
            }
            boards.exists()
        });
        b
    }

    /// Tasks on one board (`task_backlog`, `task_ready_queue`, `working_tasks`, `completed_tasks`).
    pub fn board(&self, name: &str) -> Vec<serde_json::Value> {
        let p = self.comms().join("central_task_boards").join(format!("{name}.json"));
        std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// File names in a directory under `agent_comms/` (sorted; missing dir = empty).
    pub fn ls(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.comms().join(rel))
            .map(|rd| {
                rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// A running broker; SIGKILLed on drop if still running.
pub struct Broker {
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: libc::kill is a plain syscall wrapper.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.pid(), sig);
        }
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
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        (status.code(), self.log())
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

/// Does `python3` run here?
pub fn have_python() -> bool {
    Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

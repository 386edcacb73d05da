//! Private NATS servers with JetStream for the cluster tests, on free loopback ports, their
//! stores in temporary directories, stopped (and their stores removed) when dropped; each can be
//! stopped and started again on the same ports and store. [`NatsServer`] is one server;
//! [`NatsCluster`] is three servers clustered over loopback routes (a JetStream cluster, as a
//! production deployment with replicas runs). `nats-server` is found as `MAILROOM_NATS_SERVER`,
//! `/usr/sbin/nats-server` (Debian's package) or on `PATH`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, if this machine has one.
pub fn nats_server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAILROOM_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        return Some(debian);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .find(|p| p.exists())
}

/// The `nats-server` binary; without one, `test` says SKIPPED (a failure under
/// `MAILROOM_REQUIRE_ALL`) and gets `None`.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    let bin = nats_server_bin();
    if bin.is_none() {
        crate::skip_unless_required(test, "nats-server is not installed (Debian package `nats-server`)");
    }
    bin
}

/// A loopback port nothing listens on (as of now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server on `port` with JetStream, and waits until it accepts connections.
    pub fn start(bin: &Path, port: u16) -> Self {
        let store = tempfile::tempdir().expect("store dir");
        let mut s = Self { child: None, bin: bin.to_path_buf(), port, store };
        s.restart();
        s
    }

    /// Starts the server again (after [`NatsServer::stop`]) on the same port and store: what
    /// JetStream had written to its files is there again.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"]).arg(self.store.path());
        self.child = Some(spawn_listening(cmd, self.port));
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server the clean way (SIGTERM, so JetStream flushes its files), waiting for it.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

/// Spawns a `nats-server` command (its output discarded) and waits until it accepts
/// connections on `port`.
fn spawn_listening(mut cmd: Command, port: u16) -> Child {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn nats-server");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) || child.try_wait().ok().flatten().is_some() {
            stop_child(child);
            panic!("nats-server did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Stops a server the clean way (SIGTERM, so JetStream flushes its files), waiting for it;
/// SIGKILL after ten seconds.
fn stop_child(mut c: Child) {
    let _ =
        rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM);
    let start = Instant::now();
    while c.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.wait();
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server of a [`NatsCluster`].
struct Member {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    config: PathBuf,
}

/// Three `nats-server -js` processes clustered on loopback: each with a client port, a route
/// port and a monitoring port of its own, a config file (`server_name`, `jetstream
/// { store_dir }`, `cluster { name, listen, routes }`) and a store in one temporary directory.
/// [`NatsCluster::start`] returns once JetStream has a meta leader that sees all three servers,
/// so that a stream with three replicas can be placed; every server is stopped on drop.
pub struct NatsCluster {
    bin: PathBuf,
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// How many servers.
    pub const SIZE: usize = 3;

    pub fn start(bin: &Path) -> Self {
        let dir = tempfile::tempdir().expect("cluster dir");
        let mut all: Vec<u16> = Vec::new();
        while all.len() < 3 * Self::SIZE {
            let p = free_port();
            if !all.contains(&p) {
                all.push(p);
            }
        }
        let ports: Vec<(u16, u16, u16)> = all.chunks(3).map(|c| (c[0], c[1], c[2])).collect();
        let routes: Vec<String> = ports.iter().map(|p| format!("nats-route://127.0.0.1:{}", p.1)).collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, route, monitor))| {
                let store = dir.path().join(format!("store-{i}"));
                let config = dir.path().join(format!("n{i}.conf"));
                let text = format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{\n  store_dir: \"{}\"\n}}\n\
                     cluster {{\n  name: mailroom\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    store.display(),
                    routes.join(", ")
                );
                std::fs::write(&config, text).expect("write a server config");
                Member { child: None, port, monitor, config }
            })
            .collect();
        let mut c = Self { bin: bin.to_path_buf(), members, _dir: dir };
        for i in 0..Self::SIZE {
            c.restart(i);
        }
        c.wait_for_meta_leader(Duration::from_secs(30));
        c
    }

    /// Every server's client URL, for `[cluster] nats`.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("nats://127.0.0.1:{}", m.port)).collect()
    }

    /// Stops server `i` the clean way, waiting for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(c) = self.members[i].child.take() {
            stop_child(c);
        }
    }

    /// Starts server `i` again (after [`NatsCluster::stop`]) with the same config and store.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        let m = &mut self.members[i];
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&m.config);
        m.child = Some(spawn_listening(cmd, m.port));
    }

    /// Waits until a running server's `/jsz` names a meta leader of a meta group as large as
    /// the cluster (every server known, so three replicas can be placed).
    pub fn wait_for_meta_leader(&self, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                match jsz(m.monitor) {
                    Ok(v) => {
                        let meta = &v["meta_cluster"];
                        let leader = meta["leader"].as_str().unwrap_or_default();
                        let size = meta["cluster_size"].as_u64().unwrap_or(0);
                        if !leader.is_empty() && size >= Self::SIZE as u64 {
                            return;
                        }
                        last = meta.to_string();
                    }
                    Err(e) => last = e,
                }
            }
            assert!(start.elapsed() < timeout, "no JetStream meta leader within {timeout:?}: {last}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A server's `/jsz` monitoring document.
fn jsz(monitor: u16) -> Result<serde_json::Value, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    let mut r = agent.get(format!("http://127.0.0.1:{monitor}/jsz")).call().map_err(|e| e.to_string())?;
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..Self::SIZE {
            self.stop(i);
        }
    }
}

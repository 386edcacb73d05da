//! A private NATS server with JetStream for the cluster tests: on a free loopback port, its store
//! in a temporary directory, stopped (and its store removed) when dropped; it can be stopped and
//! started again on the same port and store. `nats-server` is found
//! as `MAILROOM_NATS_SERVER`, `/usr/sbin/nats-server` (Debian's package) or on `PATH`.

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
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server the clean way (SIGTERM, so JetStream flushes its files), waiting for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&c),
                rustix::process::Signal::TERM,
            );
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
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

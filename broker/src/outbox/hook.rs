//! A transition hook: one run of a program per event, never through a shell. The arguments'
//! placeholders are expanded ([`Event::expand`]), the task's JSON is written to its stdin, and it
//! runs in the root, in a process group of its own, with `MAILROOM_ROOT`, `MAILROOM_DELIVERY` and
//! `MAILROOM_EVENT` set. Exit status 0 delivers; anything else, or running past the timeout
//! (the whole group is then killed), is a failed attempt. Exit status and output are logged.

use super::event::Event;
use rustix::process::{Pid, Signal, kill_process_group};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Most output kept (and logged) per stream; the rest is read and dropped.
const OUTPUT: usize = 4096;

pub(crate) struct Hook {
    program: PathBuf,
    args: Vec<String>,
    root: PathBuf,
    timeout: Duration,
}

/// Kills the hook's process group when dropped, unless the hook exited on its own: a hook that
/// times out, or is abandoned when the broker stops, leaves nothing running.
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // Gone already is fine: there is nothing left to kill.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Hook {
    /// `run` is the program and its arguments; a relative program path with a `/` is taken from
    /// the root, a bare name is looked up on `PATH`.
    pub fn new(run: &[String], root: &Path, timeout: Duration) -> Self {
        let program = PathBuf::from(&run[0]);
        let program =
            if program.is_relative() && run[0].contains('/') { root.join(program) } else { program };
        Self { program, args: run[1..].to_vec(), root: root.to_path_buf(), timeout }
    }

    /// One run: `Ok("exit 0")`, or what went wrong.
    pub async fn run(&self, ev: &Event, sink: &str) -> Result<String, String> {
        let args: Vec<String> = self.args.iter().map(|a| ev.expand(a)).collect();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&args)
            .current_dir(&self.root)
            .env("MAILROOM_ROOT", &self.root)
            .env("MAILROOM_DELIVERY", ev.seq.to_string())
            .env("MAILROOM_EVENT", &ev.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let mut group = Group(child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw));
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let input = ev.stdin();
        let work = async {
            let write = async move {
                if let Some(mut s) = stdin {
                    // A hook that does not read its stdin is fine: a broken pipe is not an error.
                    let _ = s.write_all(&input).await;
                }
            };
            let (_, out, err, status) = tokio::join!(write, capped(stdout), capped(stderr), child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                drop(group); // kills the whole group now
                return Err(format!("timed out after {} s: killed", self.timeout.as_secs_f64()));
            }
        };
        group.0 = None;
        let status = status.map_err(|e| format!("waiting for {}: {e}", self.program.display()))?;
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        let (out, err) = (out.trim(), err.trim());
        if status.success() {
            tracing::info!(sink, delivery = ev.seq, stdout = out, stderr = err, "hook ran: exit 0");
            Ok("exit 0".to_string())
        } else {
            let code =
                status.code().map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
            tracing::warn!(sink, delivery = ev.seq, stdout = out, stderr = err, "hook failed: {code}");
            let tail: String = err.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
            Err(if tail.is_empty() { code } else { format!("{code}: {tail}") })
        }
    }
}

/// The first [`OUTPUT`] bytes of a stream, read to its end.
async fn capped(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut s) = stream else { return kept };
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

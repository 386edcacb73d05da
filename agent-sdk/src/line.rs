//! The broker's local socket from the client's side (`protocol::socket`): a message sent as one
//! line and answered on the same connection once the broker journaled it, where a file in the
//! inbox costs a creation, two moves and a removal.
//!
//! The socket is only a faster way to say what a file says. A message is always named as its
//! file would be, and whenever the socket cannot give an answer — no socket (no broker, or one
//! that does not offer it), a connection that breaks, an answer that does not come in time — the
//! same message is delivered as that file, under that name. So nothing is lost whatever happened
//! on the connection, and nothing is done twice: a broker that took the message on the socket
//! takes the file of the same name as already taken (within the journal's current snapshot).

use protocol::socket::{self, Answer};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connection kept for a client and its clones. Requests on one connection are answered in
/// order, one at a time; a clone that finds it in use (another thread asking) opens one of its
/// own for that request rather than wait, so that threads' messages can share a commit.
#[derive(Clone, Default)]
pub(crate) struct Line {
    conn: Arc<Mutex<Option<Conn>>>,
}

/// A connection, and the timeout its socket holds for reads and writes. Timeouts longer than
/// [`TIMEOUT_STEP`] are rounded up to whole steps, and set only when they change: an agent's
/// awaits ask for a little less each time, and setting both timeouts for every request was two
/// system calls of every exchange's six.
struct Conn {
    io: BufReader<UnixStream>,
    timeout: Option<Duration>,
}

impl Conn {
    fn new(stream: UnixStream) -> Self {
        Self { io: BufReader::new(stream), timeout: None }
    }
}

/// The granularity of a connection's timeouts longer than it: an answer may be waited for up to
/// this much longer than asked, never less.
const TIMEOUT_STEP: Duration = Duration::from_millis(250);

impl Line {
    /// Sends `name` with `json` and waits up to `timeout` for the answer. `None` when there is
    /// no answer to give (no socket, a broken connection, no answer in time): the caller then
    /// delivers the message as a file.
    pub fn ask(&self, path: &Path, name: &str, json: &[u8], timeout: Duration) -> Option<Answer> {
        let to_a_message = |a: &Answer| matches!(a, Answer::Accepted { .. } | Answer::Refused { .. });
        self.ask_line(path, &socket::request_line(name, json), timeout, to_a_message)
    }

    /// Sends one request `line` (newline included) and waits up to `timeout` for its answer,
    /// which must be one `fits` (any other: the connection is out of step, so none).
    pub fn ask_line(
        &self,
        path: &Path,
        line: &[u8],
        timeout: Duration,
        fits: impl Fn(&Answer) -> bool,
    ) -> Option<Answer> {
        let Ok(mut guard) = self.conn.try_lock() else {
            let mut own = Conn::new(connect(path)?);
            return exchange(&mut own, line, timeout).filter(&fits);
        };
        if guard.is_none() {
            *guard = Some(Conn::new(connect(path)?));
        }
        let conn = guard.as_mut()?;
        let answer = exchange(conn, line, timeout).filter(&fits);
        if answer.is_none() {
            // The connection's state is unknown now (an answer may still come): a new one next.
            *guard = None;
        }
        answer
    }
}

/// Connects to the socket at `path` without waiting: a broker whose backlog of connections not
/// yet accepted is full (stopped, or swamped) refuses at once (`EAGAIN`), where a blocking
/// connect would wait for it with no bound. `None` then, as for no socket: the caller delivers a
/// file. The connection is made blocking again for the exchange, which its timeouts bound.
fn connect(path: &Path) -> Option<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None).ok()?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path).ok()?).ok()?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

fn exchange(conn: &mut Conn, request: &[u8], timeout: Duration) -> Option<Answer> {
    let timeout = Some(stepped(timeout));
    if conn.timeout != timeout {
        conn.io.get_ref().set_read_timeout(timeout).ok()?;
        conn.io.get_ref().set_write_timeout(timeout).ok()?;
        conn.timeout = timeout;
    }
    conn.io.get_mut().write_all(request).ok()?;
    let mut line = Vec::new();
    conn.io.read_until(b'\n', &mut line).ok()?;
    if line.pop() != Some(b'\n') {
        return None;
    }
    serde_json::from_slice(&line).ok()
}

/// `timeout` rounded up to a whole number of [`TIMEOUT_STEP`]s; one shorter than a step is
/// kept as asked (a millisecond at least), so a short bound stays short.
fn stepped(timeout: Duration) -> Duration {
    if timeout <= TIMEOUT_STEP {
        return timeout.max(Duration::from_millis(1));
    }
    let step = TIMEOUT_STEP.as_nanos();
    Duration::from_nanos(u64::try_from(timeout.as_nanos().div_ceil(step) * step).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn timeouts_are_rounded_up_to_whole_steps() {
        let ms = Duration::from_millis;
        assert_eq!(stepped(Duration::ZERO), ms(1));
        assert_eq!(stepped(ms(40)), ms(40));
        assert_eq!(stepped(ms(250)), ms(250));
        assert_eq!(stepped(ms(251)), ms(500));
        assert_eq!(stepped(ms(499)), ms(500));
        assert_eq!(stepped(Duration::from_secs(30)), Duration::from_secs(30));
    }

    /// A broker that accepts nothing (stopped, or swamped) fills its backlog; a request then gets
    /// no answer at once instead of waiting in `connect` for as long as the broker is stuck.
    #[test]
    fn a_full_backlog_is_no_answer_not_a_wait() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        let listener =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
                .unwrap();
        rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&listener, 1).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            // Connections the listener never accepts, until one is refused.
            let held: Vec<UnixStream> = std::iter::from_fn(|| connect(&p)).take(64).collect();
            let line = Line::default();
            let answer = line.ask(&p, "msg-1.a.json", b"{}", Duration::from_secs(1));
            tx.send((held.len(), answer.is_none())).unwrap();
        });
        // A liveness bound, not a timing: a blocking connect never returns here.
        let (held, none) = rx.recv_timeout(Duration::from_secs(30)).expect("connect returned");
        assert!(held < 64, "the backlog filled after {held} connections");
        assert!(none, "no answer: the caller delivers a file");
        drop(listener);
    }
}

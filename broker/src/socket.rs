//! The broker's local socket (`broker/broker.sock`, wire in `protocol::socket`): a front end on
//! the command channel, like the HTTP surface. Each line read is a message handled as the same
//! message in `broker/inbox/new/` would be ([`Command::Message`](crate::engine::commands::Command)),
//! and answered on the same connection once the broker's journal holds what it did. Messages
//! arriving between two passes share the next pass's commit. An agent's `await` waits on the
//! same channel to be named a task file (`engine::offers`).
//!
//! The socket is bound only once the broker serves (it holds the root's lock: the name is its
//! own), through the storage seam, so that it is made beneath the root whatever links the path
//! holds; a socket a stopped broker left is replaced, any other file at the name is left alone
//! and the socket not offered. It is made with the permission bits and the group of the inbox's
//! `new/` directory, so whoever may deliver a file there may connect, and nobody else (owner-only
//! when the group cannot be given). Without the socket clients deliver files, as they always
//! may.

use crate::engine::commands::{Handle, Offer, Report, Verdict};
use crate::engine::quarantine::Refusal;
use protocol::socket::{self, Answer, Request};
use runtime_layout::{Fs, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Most connections served at once; one more is closed as soon as it is accepted. Each holds at
/// most one request line (up to the largest message) in memory, so this bounds what clients can
/// make the broker hold.
pub const MAX_CONNECTIONS: usize = 256;

/// What the socket counts about itself, for the broker's metrics (the HTTP surface reads them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since the broker started.
    pub accepted: AtomicU64,
    /// Connections closed as soon as accepted, [`MAX_CONNECTIONS`] being open.
    pub turned_away: AtomicU64,
    /// Requests answered `accepted`.
    pub accepted_requests: AtomicU64,
    /// Requests answered `refused` (by the engine, or here: a bad name, a line too long).
    pub refused_requests: AtomicU64,
    /// Agents' awaits answered with a task file to claim.
    pub offered_requests: AtomicU64,
    /// Agents' awaits answered with a claim the broker made for them.
    pub claimed_requests: AtomicU64,
    /// Agents' awaits answered that nothing came.
    pub nothing_requests: AtomicU64,
    /// Agents waiting now on an await.
    pub awaiting: AtomicU64,
}

/// Serves the socket until the broker stops (its channel closes). Returns at once, having
/// logged why, when the socket cannot be offered; clients then deliver files.
///
/// `bound` receives the socket's inode once bound, for [`forget`]; `counters` what it served.
pub async fn serve(
    fs: Arc<dyn Fs>,
    layout: Layout,
    handle: Handle,
    max_message_bytes: u64,
    bound: Arc<AtomicU64>,
    counters: Arc<Counters>,
) {
    // Answered only once the loop runs: the broker holds the lock by then. A broker that stops
    // first (refused the lock) may close its end with the question still in the channel, never
    // answered nor dropped while this thread holds a sender: its closing is the answer then.
    let serving = tokio::select! {
        stats = handle.stats() => stats.is_ok(),
        () = handle.closed() => false,
    };
    if !serving {
        return;
    }
    let path = layout.socket_file();
    let listener = match bind(fs.as_ref(), &layout) {
        Ok(Some((l, ino))) => {
            bound.store(ino, Ordering::Relaxed);
            l
        }
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "no local socket: clients deliver files");
            return;
        }
    };
    tracing::info!(socket = %path.display(), "local socket open");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let inbox = Inbox { fs, new: layout.broker_inbox().new_dir() };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "local socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = handle.closed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.turned_away.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(max = MAX_CONNECTIONS, "local socket: too many connections; one closed");
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let (handle, counters, inbox) = (handle.clone(), counters.clone(), inbox.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handle, max_message_bytes, &counters, &inbox).await {
                tracing::debug!(error = %e, "local socket: connection ended");
            }
            counters.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Removes the socket after the broker stopped (a client connecting to a socket nobody serves
/// is refused and delivers a file instead, but an operator reading `ls broker/` should not see
/// one): only the one this broker bound (`bound`, from [`serve`]), never a socket a broker that
/// started since has bound at the name.
pub fn forget(fs: &dyn Fs, layout: &Layout, bound: &AtomicU64) {
    let path = layout.socket_file();
    let ino = bound.load(Ordering::Relaxed);
    match fs.stat(&path) {
        Ok(Some(m)) if m.kind == runtime_layout::FileKind::Socket && ino != 0 && m.ino == ino => {
            if let Err(e) = fs.remove_file(&path) {
                tracing::warn!(socket = %path.display(), error = %e, "could not remove the local socket");
            }
        }
        _ => {}
    }
}

fn bind(fs: &dyn Fs, layout: &Layout) -> Result<Option<(UnixListener, u64)>, Box<dyn std::error::Error>> {
    // Who may connect is who may deliver into the inbox: its mode and group.
    let path = layout.socket_file();
    let Some(std) = fs.bind_socket(&path, &layout.broker_inbox().new_dir())? else { return Ok(None) };
    let ino = fs.stat(&path)?.map_or(0, |m| m.ino);
    std.set_nonblocking(true)?;
    Ok(Some((UnixListener::from_std(std)?, ino)))
}

/// Answers one connection's requests, one at a time, in order.
async fn connection(
    stream: UnixStream,
    handle: Handle,
    max: u64,
    counters: &Counters,
    inbox: &Inbox,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    // A name and a space beyond the largest message.
    let limit = max.saturating_add(300);
    loop {
        line.clear();
        if (&mut read).take(limit + 1).read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if line.pop() != Some(b'\n') {
            // Over the limit, or cut off: answered, then the connection is closed (the rest of
            // the line cannot be told from a next request).
            let rule = format!("must be one line of at most {limit} bytes");
            counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            write.write_all(&answer_line(&refused("", &rule))).await?;
            return Ok(());
        }
        let answered = if line.starts_with(socket::AWAIT.as_bytes()) {
            // An agent that hangs up while it waits is no longer named files: the engine sees
            // its answer's receiver dropped.
            counters.awaiting.fetch_add(1, Ordering::Relaxed);
            let answered = tokio::select! {
                a = request(&handle, &line, max, inbox) => Some(a),
                () = hung_up(&mut read) => None,
            };
            counters.awaiting.fetch_sub(1, Ordering::Relaxed);
            answered
        } else {
            Some(request(&handle, &line, max, inbox).await)
        };
        let answer = match answered {
            Some(Some(a)) => a,
            Some(None) => return Ok(()), // The broker stopped: no answer is an answer not given.
            None => return Ok(()),       // The agent hung up.
        };
        let counted = match answer {
            Answer::Accepted { .. } => &counters.accepted_requests,
            Answer::Refused { .. } => &counters.refused_requests,
            Answer::Offered { .. } => &counters.offered_requests,
            Answer::Claimed { .. } => &counters.claimed_requests,
            Answer::Nothing => &counters.nothing_requests,
        };
        counted.fetch_add(1, Ordering::Relaxed);
        write.write_all(&answer_line(&answer)).await?;
        if line.capacity() > 1 << 16 {
            // A large message's buffer is not kept for the connection's life.
            line = Vec::new();
        }
    }
}

/// Returns once the client has closed its end (read at its end); never, when it sends more
/// first (that is its next request, read once this one is answered).
async fn hung_up(read: &mut BufReader<tokio::net::unix::OwnedReadHalf>) {
    match read.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The inbox's `new/`, where a message's name is looked up when it arrives.
#[derive(Clone)]
struct Inbox {
    fs: Arc<dyn Fs>,
    new: std::path::PathBuf,
}

impl Inbox {
    /// Whether a file named `name` waits in `broker/inbox/new/` (the engine then takes the
    /// message from the file). Looked up here, on the socket's thread, as the message arrives,
    /// so that the broker's loop makes no lookup per message: a file delivered after this
    /// lookup is taken as a message already taken, as one delivered after the loop's lookup was.
    fn file_waits(&self, name: &str) -> bool {
        self.fs.exists(&self.new.join(name)).unwrap_or(false)
    }
}

/// One request's answer; `None` when the broker stopped before answering it.
async fn request(handle: &Handle, line: &[u8], max: u64, inbox: &Inbox) -> Option<Answer> {
    let (name, json) = match socket::parse_request(line) {
        Ok(Request::Message { name, json }) => (name, json),
        Ok(Request::Await(a)) => {
            // Its report, checked here as a message alone would be (its name, its size, its
            // JSON), and that it is the awaiting agent's own report.
            let after = match &a.after {
                None => None,
                Some(after) if after.message.get().len() as u64 > max => {
                    let rule = format!("is {} bytes; at most {max} are taken", after.message.get().len());
                    return Some(refused("after", &rule));
                }
                Some(after) => match after.report(&a.agent) {
                    Ok(msg) => {
                        let file_waits = Some(inbox.file_waits(&after.name));
                        Some(Report { name: after.name.clone(), msg, file_waits })
                    }
                    Err(v) => return Some(refused(&v.field, &v.rule)),
                },
            };
            let wait = std::time::Duration::from_millis(a.wait_ms);
            return match handle.await_offer(&a.agent, a.pools, wait, a.claim, after).await.ok()? {
                Offer::Offered { maildir, name } => Some(Answer::Offered { maildir, name }),
                Offer::Claimed { maildir, name } => Some(Answer::Claimed { maildir, name }),
                Offer::Nothing => Some(Answer::Nothing),
                Offer::Refused { field, rule, reason } => Some(Answer::Refused { field, rule, reason }),
            };
        }
        Err(v) => return Some(refused(&v.field, &v.rule)),
    };
    if json.len() as u64 > max {
        return Some(refused("", &format!("is {} bytes; at most {max} are taken", json.len())));
    }
    let msg = match protocol::Message::parse(json) {
        Ok(m) => m,
        Err(v) => return Some(refused(&v.field, &v.rule)),
    };
    match handle.message(name, msg, Some(inbox.file_waits(name))).await.ok()? {
        Verdict::Accepted { seq, .. } => Some(Answer::Accepted { seq }),
        Verdict::Refused { field, rule, reason, .. } => Some(Answer::Refused { field, rule, reason }),
    }
}

/// A refusal made here (before the engine saw the request), worded as the engine words its own.
fn refused(field: &str, rule: &str) -> Answer {
    let r = Refusal::rejected(field, rule);
    Answer::Refused { reason: r.to_string(), field: r.field, rule: r.rule }
}

fn answer_line(a: &Answer) -> Vec<u8> {
    let mut line = serde_json::to_vec(a).expect("an answer always serialises");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::RootFs;

    /// A broker that stops before it serves (a second broker refused the root's lock) closes
    /// its end of the channel without answering the socket's first question: the socket gives up
    /// then, and binds nothing. (Closed without draining, the question stays in the channel, as
    /// one sent while the end was being dropped can.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_socket_gives_up_when_the_broker_stops_before_serving() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        std::fs::create_dir_all(layout.root()).unwrap();
        let fs: Arc<dyn Fs> = Arc::new(RootFs::open(layout.root()).unwrap());
        layout.create(fs.as_ref()).unwrap();
        let (handle, mut rx) = crate::engine::commands::channel(4);
        let (bound, counters) = (Arc::new(AtomicU64::new(0)), Arc::new(Counters::default()));
        let served = tokio::spawn(serve(fs, layout.clone(), handle, 1 << 20, bound.clone(), counters));
        while rx.is_empty() {
            tokio::task::yield_now().await;
        }
        rx.close();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), served).await;
        assert!(ended.is_ok(), "the socket still waits for an answer that cannot come");
        assert_eq!(bound.load(Ordering::Relaxed), 0, "nothing bound");
        assert!(!layout.socket_file().exists());
        drop(rx);
    }

    /// The lookup is made where clients deliver files: a name waiting there is found, another
    /// is not, and a link at the name counts as something there (never followed).
    #[test]
    fn a_name_is_looked_up_in_the_inbox_new_directory() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        std::fs::create_dir_all(layout.root()).unwrap();
        let fs: Arc<dyn Fs> = Arc::new(RootFs::open(layout.root()).unwrap());
        layout.create(fs.as_ref()).unwrap();
        let inbox = Inbox { fs, new: layout.broker_inbox().new_dir() };
        std::fs::write(layout.broker_inbox().new_dir().join("msg-1.a.json"), b"{}").unwrap();
        std::fs::write(layout.broker_inbox().cur().join("msg-2.a.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", layout.broker_inbox().new_dir().join("msg-3.a.json"))
            .unwrap();
        assert!(inbox.file_waits("msg-1.a.json"));
        assert!(!inbox.file_waits("msg-2.a.json"), "taken already: in cur/, not new/");
        assert!(inbox.file_waits("msg-3.a.json"));
        assert!(!inbox.file_waits("msg-4.a.json"));
    }
}

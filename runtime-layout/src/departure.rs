//! Waiting for a file to leave: the kernel wakes the waiter when the file itself is moved or
//! removed (inotify on the file, not on its directory), so a client waiting for the broker to
//! take its message is woken once, at once, and not by the directory's other traffic.
//!
//! A watch reads, writes and removes nothing: it only names the file. The last component is not
//! followed if it is a symbolic link. A wake-up is a hint: the caller looks again (through its
//! [`crate::Fs`]) and decides, and a missed one costs at most the caller's own timeout.

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// A watch on one file's departure.
#[derive(Debug)]
pub struct Departure {
    fd: OwnedFd,
}

impl Departure {
    /// Watches `path`; `Ok(None)` when there is no such file (it left already).
    pub fn watch(path: &Path) -> std::io::Result<Option<Self>> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let mask = WatchFlags::MOVE_SELF
            | WatchFlags::DELETE_SELF
            | WatchFlags::ATTRIB
            | WatchFlags::DONT_FOLLOW
            | WatchFlags::ONESHOT;
        match inotify::add_watch(&fd, path, mask) {
            Ok(_) => Ok(Some(Self { fd })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits up to `timeout` for the file to be moved, removed or relinked; `true` when one of
    /// those happened (or the watch ended), `false` when the time ran out or a signal came.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => Ok(n > 0),
            Err(Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_move_wakes_the_waiter_and_a_still_file_does_not() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        let w = Departure::watch(&a).unwrap().expect("the file is there");
        assert!(!w.wait(Duration::from_millis(20)).unwrap(), "nothing happened to it");
        let mover = std::thread::spawn({
            let (a, b) = (a.clone(), b.clone());
            move || {
                std::thread::sleep(Duration::from_millis(50));
                std::fs::rename(a, b).unwrap();
            }
        });
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(20)).unwrap(), "the move woke it");
        assert!(t.elapsed() < Duration::from_secs(20));
        mover.join().unwrap();
        assert!(Departure::watch(&a).unwrap().is_none(), "gone: nothing to watch");
        let w = Departure::watch(&b).unwrap().unwrap();
        std::fs::remove_file(&b).unwrap();
        assert!(w.wait(Duration::from_secs(20)).unwrap(), "the removal woke it");
    }
}

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
use std::cell::RefCell;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

thread_local! {
    /// One inotify instance per thread, made at the first watch and kept: closing an instance
    /// waits for the kernel's notification marks to be released (an RCU grace period, which
    /// took milliseconds under load), so an instance per wait made every acknowledged message
    /// cost that much. A watch is added and removed instead, which does not wait.
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// This thread's instance and its watches.
#[derive(Default)]
struct Local {
    fd: Option<OwnedFd>,
    /// Watches not yet dropped.
    live: HashSet<i32>,
    /// Live watches whose event was read while waiting on another.
    fired: HashSet<i32>,
}

impl Local {
    fn fd(&mut self) -> std::io::Result<&OwnedFd> {
        if self.fd.is_none() {
            self.fd = Some(inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?);
        }
        Ok(self.fd.as_ref().expect("made above"))
    }
}

/// A watch on one file's departure, on the calling thread's inotify instance (so it stays on
/// that thread).
#[derive(Debug)]
pub struct Departure {
    wd: i32,
    _thread: PhantomData<*const ()>,
}

impl Departure {
    /// Watches `path`; `Ok(None)` when there is no such file (it left already).
    pub fn watch(path: &Path) -> std::io::Result<Option<Self>> {
        let mask = WatchFlags::MOVE_SELF
            | WatchFlags::DELETE_SELF
            | WatchFlags::ATTRIB
            | WatchFlags::DONT_FOLLOW
            | WatchFlags::ONESHOT;
        LOCAL.with_borrow_mut(|l| match inotify::add_watch(l.fd()?, path, mask) {
            Ok(wd) => {
                l.live.insert(wd);
                Ok(Some(Self { wd, _thread: PhantomData }))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    /// Waits up to `timeout` for the file to be moved, removed or relinked; `true` when one of
    /// those happened (or the watch ended), `false` when the time ran out or a signal came.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let deadline = Instant::now() + timeout;
        LOCAL.with_borrow_mut(|l| {
            if l.fired.remove(&self.wd) {
                return Ok(true);
            }
            let Local { fd, live, fired } = l;
            let fd = fd.as_ref().expect("a watch made the instance");
            let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
            loop {
                let mut events = inotify::Reader::new(fd.as_fd(), &mut buf);
                let mut mine = false;
                loop {
                    match events.next() {
                        Ok(e) if e.wd() == self.wd => mine = true,
                        // Another live watch's event is kept for its own wait; a dropped
                        // watch's last words (IN_IGNORED) are not.
                        Ok(e) if live.contains(&e.wd()) => {
                            fired.insert(e.wd());
                        }
                        Ok(_) => {}
                        Err(Errno::AGAIN) => break,
                        Err(Errno::INTR) => return Ok(mine),
                        Err(e) => return Err(e.into()),
                    }
                }
                if mine {
                    return Ok(true);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                let ts = Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                match poll(&mut fds, Some(&ts)) {
                    Ok(0) | Err(Errno::INTR) => return Ok(false),
                    Ok(_) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }
}

impl Drop for Departure {
    fn drop(&mut self) {
        LOCAL.with_borrow_mut(|l| {
            l.live.remove(&self.wd);
            l.fired.remove(&self.wd);
            if let Some(fd) = &l.fd {
                // A one-shot watch that fired is gone already (EINVAL): nothing to undo.
                let _ = inotify::remove_watch(fd, self.wd);
            }
        });
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
        drop(w);
        assert!(Departure::watch(&a).unwrap().is_none(), "gone: nothing to watch");
        // A watch on another file of the same thread is not woken by this one's events.
        let c = d.path().join("c");
        std::fs::write(&c, b"y").unwrap();
        let (wb, wc) = (Departure::watch(&b).unwrap().unwrap(), Departure::watch(&c).unwrap().unwrap());
        std::fs::remove_file(&b).unwrap();
        assert!(!wc.wait(Duration::from_millis(20)).unwrap(), "b's removal is not c's");
        assert!(wb.wait(Duration::from_secs(20)).unwrap(), "the removal woke it");
    }
}

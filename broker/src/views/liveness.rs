//! Is a broker running on a root? Answered without touching its lock: taking the lock, even for
//! an instant, could make a broker starting at that very moment refuse to start.
//!
//! The lock is a `flock` on the root directory itself (`runtime_layout::BrokerLock`);
//! `broker/broker.lock` names its holder (`pid=<pid> host=<host>`, written by the broker once it
//! holds the lock; the note stays after the broker stops). On Linux, `/proc/locks` lists every
//! `flock` with the holder's pid and the locked inode: the broker runs when that pid holds a write
//! lock on the root directory's inode. Where `/proc/locks` cannot be read, a holder on this host whose pid is
//! alive is taken as running, and the answer says it was judged by the pid only.

use super::ViewError;
use runtime_layout::{Fs, Layout, hostname};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What is known of the broker of a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Liveness {
    pub running: bool,
    /// The holder the lock file names (the last broker that ran, when none runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How it was judged: `lock` (the kernel's lock table), `pid` (the holder's pid is alive;
    /// no lock table), `other-host` (held from another machine: not judged), `never` (no broker
    /// ever ran here).
    pub judged_by: &'static str,
}

/// `pid=<pid> host=<host>` from the lock file.
fn holder(note: &str) -> (Option<u32>, Option<String>) {
    let mut pid = None;
    let mut host = None;
    for part in note.split_whitespace() {
        if let Some(p) = part.strip_prefix("pid=") {
            pid = p.parse().ok();
        } else if let Some(h) = part.strip_prefix("host=") {
            host = Some(h.to_string());
        }
    }
    (pid, host)
}

/// Does `/proc/locks` (its text) show `pid` holding a write `flock` on inode `ino`?
pub fn holds_flock(locks: &str, pid: u32, ino: u64) -> bool {
    locks.lines().any(|line| {
        let t: Vec<&str> = line.split_whitespace().filter(|t| *t != "->").collect();
        // `1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<ino> 0 EOF`
        let Some(i) = t.iter().position(|t| *t == "FLOCK") else { return false };
        t.get(i + 2) == Some(&"WRITE")
            && t.get(i + 3).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
            && t.get(i + 4).and_then(|d| d.rsplit(':').next()).and_then(|n| n.parse::<u64>().ok())
                == Some(ino)
    })
}

/// Whether a broker runs on `layout`'s root.
pub fn check(fs: &dyn Fs, layout: &Layout) -> Result<Liveness, ViewError> {
    let path = layout.lock_file();
    let note = match fs.read(&path, 4096) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(e.into()),
    };
    let (pid, host) = holder(&note);
    let Some(p) = pid else {
        return Ok(Liveness { running: false, pid: None, host, judged_by: "never" });
    };
    if host.as_deref().is_some_and(|h| h != hostname()) {
        return Ok(Liveness { running: false, pid, host, judged_by: "other-host" });
    }
    // The directory locked is the root as the broker opened it (following a link in its path).
    let ino = std::fs::metadata(layout.root()).map(|m| m.ino());
    let (running, judged_by) = match (std::fs::read_to_string("/proc/locks"), ino) {
        (Ok(locks), Ok(ino)) => (holds_flock(&locks, p, ino), "lock"),
        _ => (Path::new(&format!("/proc/{p}")).exists(), "pid"),
    };
    Ok(Liveness { running, pid, host, judged_by })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_table_is_read_for_the_holder_and_the_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:2f:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:123456 0 EOF\n\
                     3: -> FLOCK  ADVISORY  WRITE 5151 fd:01:123456 0 EOF\n";
        assert!(holds_flock(locks, 4242, 123456));
        assert!(!holds_flock(locks, 4242, 99), "another file");
        assert!(!holds_flock(locks, 77, 99), "a POSIX lock is not the broker's");
        assert!(holds_flock(locks, 5151, 123456), "a waiter's line parses too");
        assert_eq!(holder("pid=12 host=box\n"), (Some(12), Some("box".into())));
        assert_eq!(holder(""), (None, None));
    }

    #[test]
    fn a_held_lock_is_seen_and_a_released_one_is_not() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(&runtime_layout::RealFs).unwrap();
        assert_eq!(check(&runtime_layout::RealFs, &layout).unwrap().judged_by, "never");
        let lock = runtime_layout::BrokerLock::acquire(&runtime_layout::RealFs, &layout).unwrap();
        assert_eq!(check(&runtime_layout::RealFs, &layout).unwrap().judged_by, "never", "no note yet");
        lock.record_holder(&runtime_layout::RealFs).unwrap();
        let live = check(&runtime_layout::RealFs, &layout).unwrap();
        assert!(live.running, "{live:?}");
        assert_eq!(live.pid, Some(std::process::id()));
        drop(lock);
        let live = check(&runtime_layout::RealFs, &layout).unwrap();
        // Our own pid is alive, so only the lock table can tell that the lock is gone.
        if live.judged_by == "lock" {
            assert!(!live.running, "{live:?}");
        }
    }
}

//! The atomic file primitives built on [`Fs`]: maildir delivery and atomic replacement.
//!
//! Delivery (`tmp/` → `new/`): create `tmp/NAME` exclusively, write it, fsync it, rename it to
//! `new/NAME` refusing to replace anything, then (unless the caller batches) fsync `new/`.
//! Readers never look in `tmp/`, so no reader ever sees half a file.
//!
//! Atomic replacement (boards, snapshots): write `.NAME.tmp-<pid>-<n>` beside the target,
//! fsync it, rename it over the target, fsync the directory.
//!
//! Unique names ([`NameSource`]) carry the time, the pid, a counter and the [`hostname`], so that
//! writers on several processes and machines never pick the same name.

use crate::clock::Clock;
use crate::fs::{Fs, FsError};
use crate::layout::Maildir;
use protocol::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How much a write is made durable before it returns. In `mailroom.toml` it is written in
/// lower case (`durability = "batch"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync the file and its directory on every write.
    Always,
    /// fsync the file; the caller fsyncs touched directories once per batch (group commit).
    #[default]
    Batch,
    /// No fsync at all: fastest, and a power loss can lose recent writes.
    Never,
}

impl Durability {
    pub fn sync_files(self) -> bool {
        self != Self::Never
    }
    pub fn sync_dirs_now(self) -> bool {
        self == Self::Always
    }
}

/// This machine's name (`uname(2)`'s nodename), or `localhost` when it has none.
pub fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    match name.trim() {
        "" => "localhost".to_string(),
        name => name.to_string(),
    }
}

/// Produces maildir-unique names: time, pid, a counter, random bits and the host. Names sort by
/// the time of the source's clock; two made by one source in the same microsecond sort by the
/// counter's digits (`Q10` before `Q9`), never by the random bits, so handles that share a source
/// (one process, or one simulated world on a manual clock) get the same order in every run.
#[derive(Debug)]
pub struct NameSource {
    pid: u32,
    host: String,
    counter: AtomicU64,
    seed: u64,
    clock: Clock,
}

impl NameSource {
    /// Names stamped with the system clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// Names stamped with `clock` (a test's manual clock, so that names follow simulated time).
    pub fn with_clock(clock: Clock) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::seeded(clock, nanos)
    }

    /// A source whose random bits start from `nanos`, the pid and this source's place among the
    /// process's sources. Two sources of one process share the pid, and their counters both start
    /// at 0: made in the same nanosecond (threads opening clients at once), they drew the same
    /// bits and named their first messages alike, and `publish` took the other's file in `tmp/`
    /// for a leftover of its own and removed it. The place keeps them apart.
    fn seeded(clock: Clock, nanos: u64) -> Self {
        static SOURCES: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let place = SOURCES.fetch_add(1, Ordering::Relaxed);
        Self {
            pid,
            host: hostname(),
            counter: AtomicU64::new(0),
            seed: (nanos ^ (u64::from(pid) << 32)).wrapping_add(place.wrapping_mul(0xD6E8_FEB8_6659_FD93)),
            clock,
        }
    }

    /// A fresh unique name of the given kind (`msg`, `mail`, `notice`).
    pub fn next(&self, kind: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed+counter: cheap bits that differ between processes and calls.
        let mut z = self.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        protocol::names::unique_name(kind, self.clock.now(), self.pid, n, z as u32, &self.host)
    }

    /// A unique suffix for temporary files.
    pub fn tmp_suffix(&self) -> String {
        format!("{}-{}", self.pid, self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for NameSource {
    fn default() -> Self {
        Self::new()
    }
}

/// The wall clock as a protocol timestamp.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Delivers `bytes` into `maildir/new/name` through `tmp/`. Returns the path in `new/`.
/// Fails with `AlreadyExists` rather than replace a file already delivered under that name.
///
/// A file already in `tmp/` under `name` is the remains of an earlier attempt at this very
/// delivery that a crash interrupted between writing and publishing (names are unique to their
/// writer): it is replaced, so that redoing the delivery publishes the file instead of failing.
pub fn deliver(
    fs: &dyn Fs,
    maildir: &Maildir,
    name: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<PathBuf, FsError> {
    publish(fs, maildir, &maildir.new_dir(), name, bytes, durability)
}

/// [`deliver`], but into `maildir/cur/name`: a file its reader has seen already (legacy mail
/// migrated as read). Returns the path in `cur/`.
pub fn deliver_read(
    fs: &dyn Fs,
    maildir: &Maildir,
    name: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<PathBuf, FsError> {
    publish(fs, maildir, &maildir.cur(), name, bytes, durability)
}

/// Writes `tmp/name` and renames it into `dir` (the maildir's `new/` or `cur/`).
fn publish(
    fs: &dyn Fs,
    maildir: &Maildir,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<PathBuf, FsError> {
    let tmp = maildir.tmp().join(name);
    let dest = dir.join(name);
    match fs.create_new(&tmp, bytes, durability.sync_files()) {
        // Names are unique to their writer, so `tmp/NAME` can only be what a crash left of an
        // earlier attempt to deliver this very file (the broker redelivers under the same name).
        Err(e) if e.is_already_exists() => {
            fs.remove_file(&tmp)?;
            fs.create_new(&tmp, bytes, durability.sync_files())?;
        }
        other => other?,
    }
    if let Err(e) = fs.rename_noreplace(&tmp, &dest) {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    if durability.sync_dirs_now() {
        fs.sync_dir(dir)?;
    }
    Ok(dest)
}

/// Replaces `path` atomically with `bytes`: readers see the old file or the new one, never a mix.
/// Durable (file and directory fsynced) unless `durability` is `Never`.
pub fn write_atomic(
    fs: &dyn Fs,
    path: &Path,
    bytes: &[u8],
    names: &NameSource,
    durability: Durability,
) -> Result<(), FsError> {
    replace_file(fs, path, bytes, names, durability.sync_files())?;
    if durability.sync_files() {
        fs.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// [`write_atomic`] without the directory fsync, for a caller that replaces several files of one
/// directory and fsyncs it once afterwards. `sync_file` fsyncs the new content before the rename.
pub fn replace_file(
    fs: &dyn Fs,
    path: &Path,
    bytes: &[u8],
    names: &NameSource,
    sync_file: bool,
) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file}.tmp-{}", names.tmp_suffix()));
    match fs.create_new(&tmp, bytes, sync_file) {
        // Left by a crashed process that had the same pid (pids repeat after a reboot, and a
        // broker in a container is often pid 1). The name is private to this writer: reclaim it.
        Err(e) if e.is_already_exists() => {
            fs.remove_file(&tmp)?;
            fs.create_new(&tmp, bytes, sync_file)?;
        }
        other => other?,
    }
    if let Err(e) = fs.rename(&tmp, path) {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn deliver_publishes_through_tmp_and_never_clobbers() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::new(d.path());
        md.create(&RealFs, true).unwrap();
        let names = NameSource::new();
        let name = names.next("msg");
        let p = deliver(&RealFs, &md, &name, b"{}", Durability::Always).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(md.tmp()).unwrap().count(), 0, "tmp/ is left empty");
        let again = deliver(&RealFs, &md, &name, b"{\"x\":1}", Durability::Batch).unwrap_err();
        assert!(again.is_already_exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(md.tmp()).unwrap().count(), 0);
        // A half-written tmp/NAME left by a crash does not block delivering NAME again.
        std::fs::write(md.tmp().join("again.json"), b"{\"torn").unwrap();
        let p = deliver(&RealFs, &md, "again.json", b"{}", Durability::Batch).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(md.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn deliver_read_publishes_into_cur() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::new(d.path());
        md.create(&RealFs, true).unwrap();
        let p = deliver_read(&RealFs, &md, "mail-1.json", b"{}", Durability::Always).unwrap();
        assert_eq!(p, md.cur().join("mail-1.json"));
        assert_eq!(std::fs::read_dir(md.new_dir()).unwrap().count(), 0, "nothing in new/");
        assert_eq!(std::fs::read_dir(md.tmp()).unwrap().count(), 0, "tmp/ is left empty");
        assert!(
            deliver_read(&RealFs, &md, "mail-1.json", b"{}", Durability::Batch)
                .unwrap_err()
                .is_already_exists()
        );
    }

    #[test]
    fn deliver_replaces_what_a_crash_left_in_tmp() {
        // A crash between writing tmp/NAME and renaming it into new/ leaves tmp/NAME behind;
        // redoing the delivery must publish the file, not fail or skip with AlreadyExists.
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::new(d.path());
        md.create(&RealFs, true).unwrap();
        std::fs::write(md.tmp().join("1-x.json"), b"{\"torn").unwrap();
        let p = deliver(&RealFs, &md, "1-x.json", b"{}", Durability::Batch).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(md.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn names_are_unique_and_sort_by_time() {
        let n = NameSource::new();
        let a: Vec<String> = (0..1000).map(|_| n.next("msg")).collect();
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), a.len());
        assert!(a.iter().all(|x| x.starts_with("msg-") && x.ends_with(".json") && !x.contains('/')));
    }

    #[test]
    fn sources_made_in_the_same_nanosecond_name_apart() {
        // Two clients opened at once by two threads of one process: same pid, same nanosecond,
        // same microsecond on the clock, both counters at 0. Their names were equal.
        let clock = crate::ManualClock::new(Timestamp::from_micros(1_790_000_000_000_000));
        let (a, b) = (NameSource::seeded(clock.clock(), 42), NameSource::seeded(clock.clock(), 42));
        assert_ne!(a.next("msg"), b.next("msg"));
        // And as the bench's fillers make them: sources opened together by several threads.
        let go = std::sync::Barrier::new(8);
        let names: std::collections::HashSet<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        go.wait();
                        NameSource::new().next("msg")
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(names.len(), 8, "{names:?}");
    }

    #[test]
    fn names_follow_the_clock_they_are_given() {
        let clock = crate::ManualClock::new(Timestamp::from_micros(1_790_000_000_000_000));
        let n = NameSource::with_clock(clock.clock());
        let a = n.next("msg");
        clock.advance_secs(1);
        let b = n.next("msg");
        assert!(a.starts_with("msg-20260921T"), "{a}");
        assert!(a < b, "{a} then {b}");
    }

    #[test]
    fn hostname_is_the_kernels_nodename_or_localhost() {
        let h = hostname();
        assert!(!h.is_empty() && !h.contains('\n'), "{h:?}");
        // Where procfs is mounted it must agree with uname (both read the UTS namespace).
        if let Ok(proc) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let proc = proc.trim();
            assert_eq!(h, if proc.is_empty() { "localhost" } else { proc });
        } else {
            println!("skipped the comparison with /proc/sys/kernel/hostname: not readable here");
        }
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("board.json");
        let n = NameSource::new();
        write_atomic(&RealFs, &p, b"[1]", &n, Durability::Batch).unwrap();
        write_atomic(&RealFs, &p, b"[2]", &n, Durability::Never).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[2]");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // A temporary left by a crashed writer with the same pid and counter does not block.
        let again = NameSource::new();
        std::fs::write(d.path().join(format!(".board.json.tmp-{}-0", std::process::id())), b"torn").unwrap();
        write_atomic(&RealFs, &p, b"[3]", &again, Durability::Batch).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[3]");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

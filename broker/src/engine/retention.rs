//! Retention: what the broker keeps for operators stays within its limits, a bounded amount of
//! work per pass, so the root's files, bytes and inodes level off under sustained load.
//!
//! - **Kept messages** (`broker/inbox/cur/`): the effects mover reports each consumed message it
//!   moved there, in order, so the part knows the oldest without listing the directory; files
//!   there before the broker started are listed once and stat-ed a batch per pass (message
//!   names sort by time only for some writers, so their mtime orders them). The oldest go first,
//!   while there are more than `inbox_keep_count`, more bytes than `inbox_keep_bytes`, or they are
//!   older than `inbox_retention_secs`; a pass removes at most [`PRUNE_PER_PASS`] more than it
//!   moved in. Nothing is lost: the journal holds every message that was accepted.
//! - **Archived segments** (`journal/archive/`): compressed a few pieces of 1 MiB per pass: twice
//!   what the pass appended to the journal (so compression outpaces the journal's growth however
//!   slow passes are: under load their fsyncs make them so), and more while the pass has spent
//!   less than [`COMPRESS_TIME`] on it; see `journal::archive` for why a crash never costs
//!   history. While some wait, the loop comes back within milliseconds instead of a tick
//!   (`StepReport::housekeeping`). Then removed oldest first beyond
//!   `[journal] archive_keep` and `archive_keep_bytes`. The listing is refreshed after a
//!   compaction, a finished compression and once a minute.
//! - **Space**: once a minute, the filesystem's free space and inodes (statvfs); a warning when
//!   less than `low_space_percent` is free or when what is free would not hold what the limits
//!   still let grow.
//!
//! Nothing here stops the broker: an error is logged and the work is tried again a minute later.

use super::env::Env;
use crate::config::Config;
use crate::journal::archive::{self, Archived, Compressor, Limits, Progress};
use protocol::Timestamp;
use runtime_layout::{FileKind, Fs, FsError};
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Kept messages a pass removes beyond those it moved into `inbox/cur/` itself.
pub const PRUNE_PER_PASS: usize = 256;
/// Files of `inbox/cur/` found at start whose size and time a pass looks up.
const SCAN_PER_PASS: usize = 4096;
/// The CPU a pass may spend compressing beyond twice its own journal bytes.
pub const COMPRESS_TIME: std::time::Duration = std::time::Duration::from_millis(10);
/// How often the archive is listed again and the free space looked at, and how long work that
/// failed waits before it is tried again.
const MINUTE_US: i64 = 60_000_000;
/// How often a low-space warning is repeated while the condition lasts.
const WARN_EVERY_US: i64 = 10 * MINUTE_US;

/// A consumed message kept in `inbox/cur/`.
#[derive(Debug)]
struct Kept {
    name: OsString,
    bytes: u64,
    at: Timestamp,
}

/// The first listing of `inbox/cur/`, learned a batch per pass.
#[derive(Debug, Default)]
struct Scan {
    names: Vec<OsString>,
    next: usize,
    found: Vec<Kept>,
    /// Moved in while scanning: already known, not to be counted twice.
    arrived: HashSet<OsString>,
}

/// What the part knows is kept, for warnings and views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptNow {
    pub inbox_files: u64,
    pub inbox_bytes: u64,
    pub archive_files: u64,
    pub archive_bytes: u64,
    /// The last look at the filesystem found its free space, or its free inodes, low.
    pub low_space: bool,
    pub low_inodes: bool,
}

#[derive(Default)]
pub(crate) struct Retention {
    kept: VecDeque<Kept>,
    inbox_bytes: u64,
    /// `None` until the first pass lists `inbox/cur/`.
    scan: Option<Scan>,
    scanned: bool,
    archive: Vec<Archived>,
    archive_listed: Option<Timestamp>,
    archive_stale: bool,
    job: Option<Compressor>,
    /// Work that failed is not tried again before this.
    inbox_pause: Option<Timestamp>,
    archive_pause: Option<Timestamp>,
    space_checked: Option<Timestamp>,
    warned: [Option<Timestamp>; 2],
    low: [bool; 2],
}

impl Retention {
    pub fn new() -> Self {
        Self { archive_stale: true, ..Default::default() }
    }

    /// The journal was compacted: new segments are in the archive.
    pub fn archive_changed(&mut self) {
        self.archive_stale = true;
    }

    /// What is kept, as far as the part knows (files found at start count once looked up).
    pub fn kept_now(&self) -> KeptNow {
        KeptNow {
            inbox_files: self.kept.len() as u64,
            inbox_bytes: self.inbox_bytes,
            archive_files: self.archive.len() as u64,
            archive_bytes: self.archive.iter().map(|s| s.bytes).sum(),
            low_space: self.low[0],
            low_inodes: self.low[1],
        }
    }

    /// One pass's share: `arrived` are the files the effects mover put into `inbox/cur/` since the
    /// last call, in order; `journal_grew` the bytes the pass appended to the journal.
    pub fn work(&mut self, env: &Env, arrived: Vec<(PathBuf, Option<u64>)>, journal_grew: u64) {
        let now = env.now();
        if !paused(self.inbox_pause, now)
            && let Err(e) = self.inbox(env, arrived, now)
        {
            tracing::warn!(error = %e, "pruning broker/inbox/cur failed; trying again in a minute");
            self.inbox_pause = Some(now);
        }
        if !paused(self.archive_pause, now)
            && let Err(e) = self.archive(env, now, journal_grew.saturating_mul(2))
        {
            tracing::warn!(error = %e, "keeping the journal archive failed; trying again in a minute");
            if let Some(job) = self.job.take() {
                job.abandon(env.fs());
            }
            self.archive_pause = Some(now);
            self.archive_stale = true;
        }
        if self.space_checked.is_none_or(|t| now.as_micros() - t.as_micros() >= MINUTE_US) {
            self.space_checked = Some(now);
            self.check_space(env, now);
        }
    }

    /// Is compression still to do (the loop should come back soon rather than after a tick)?
    pub fn pending(&self, env: &Env) -> bool {
        env.cfg.journal.compress_archive
            && self.archive_pause.is_none()
            && (self.job.is_some() || self.archive.iter().any(|s| !s.compressed))
    }

    /// Stops work in progress (on shutdown): a half-written compressed copy is removed.
    pub fn stop(&mut self, fs: &dyn Fs) {
        if let Some(job) = self.job.take() {
            job.abandon(fs);
        }
    }

    fn inbox(
        &mut self,
        env: &Env,
        arrived: Vec<(PathBuf, Option<u64>)>,
        now: Timestamp,
    ) -> Result<(), FsError> {
        let fs = env.fs();
        let cur = env.layout.broker_inbox().cur();
        let moved_in = arrived.len();
        for (p, len) in arrived {
            let Some(name) = p.file_name().map(OsString::from) else { continue };
            // A message read this pass has the length read (it was just moved, not rewritten);
            // another is looked at: gone already (an operator), or replaced by a directory,
            // nothing is kept.
            let bytes = match len {
                Some(len) => len,
                None => match fs.stat(&p)?.filter(|m| m.kind == FileKind::File) {
                    Some(m) => m.len,
                    None => continue,
                },
            };
            if let Some(scan) = &mut self.scan {
                scan.arrived.insert(name.clone());
            }
            self.inbox_bytes += bytes;
            self.kept.push_back(Kept { name, bytes, at: now });
        }
        let b = &env.cfg.broker;
        let expired = |k: &Kept| k.at.plus_secs(b.inbox_retention_secs) < now;
        let mut budget = PRUNE_PER_PASS + moved_in;
        if !self.scanned {
            budget = self.scan_step(env, &cur, now, budget)?;
            if !self.scanned {
                return Ok(());
            }
        }
        while budget > 0 {
            let Some(oldest) = self.kept.front() else { break };
            let over = self.kept.len() as u64 > b.inbox_keep_count || self.inbox_bytes > b.inbox_keep_bytes;
            if !over && !expired(oldest) {
                break;
            }
            remove(fs, &cur.join(&oldest.name))?;
            let k = self.kept.pop_front().expect("looked at");
            self.inbox_bytes -= k.bytes;
            budget -= 1;
        }
        Ok(())
    }

    /// Lists `inbox/cur/` once, then looks up a batch of the files found per call; files past the
    /// time limit go at once. When all are known they go in front, oldest first (they were there
    /// before anything this broker moved in). Returns what is left of the removal budget.
    fn scan_step(
        &mut self,
        env: &Env,
        cur: &Path,
        now: Timestamp,
        mut budget: usize,
    ) -> Result<usize, FsError> {
        let fs = env.fs();
        let scan = match &mut self.scan {
            Some(s) => s,
            None => {
                let names =
                    fs.list(cur)?.into_iter().filter(|e| e.kind == FileKind::File).map(|e| e.name).collect();
                let arrived = self.kept.iter().map(|k| k.name.clone()).collect();
                self.scan.insert(Scan { names, arrived, ..Scan::default() })
            }
        };
        let retention = env.cfg.broker.inbox_retention_secs;
        let end = (scan.next + SCAN_PER_PASS).min(scan.names.len());
        for name in &scan.names[scan.next..end] {
            if scan.arrived.contains(name) {
                continue;
            }
            let path = cur.join(name);
            let Some(m) = fs.stat(&path)?.filter(|m| m.kind == FileKind::File) else { continue };
            if m.mtime.plus_secs(retention) < now && budget > 0 {
                remove(fs, &path)?;
                budget -= 1;
                continue;
            }
            scan.found.push(Kept { name: name.clone(), bytes: m.len, at: m.mtime });
        }
        scan.next = end;
        if scan.next == scan.names.len() {
            let mut found = std::mem::take(&mut scan.found);
            found.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
            self.inbox_bytes += found.iter().map(|k| k.bytes).sum::<u64>();
            for k in found.into_iter().rev() {
                self.kept.push_front(k);
            }
            self.scan = None;
            self.scanned = true;
        }
        Ok(budget)
    }

    fn archive(&mut self, env: &Env, now: Timestamp, owed: u64) -> Result<(), FsError> {
        let fs = env.fs();
        let dir = env.layout.journal_dir().join("archive");
        let first = self.archive_listed.is_none();
        if self.archive_stale
            || self.archive_listed.is_none_or(|t| now.as_micros() - t.as_micros() >= MINUTE_US)
        {
            let mut listing = archive::list(fs, &dir)?;
            if first {
                let stale = archive::snapshot_temporaries(fs, &env.layout.journal_dir())?;
                for p in &stale {
                    remove(fs, p)?;
                }
                for p in stale.iter().chain(&archive::finish_interrupted(fs, &listing)?) {
                    tracing::info!(file = %env.rel(p), "removed what an interrupted compaction or compression left");
                }
                listing = archive::list(fs, &dir)?;
            }
            // Both forms of one segment (a crash between rename and removal): count one.
            listing.segments.dedup_by_key(|s| s.first);
            self.archive = listing.segments;
            self.archive_listed = Some(now);
            self.archive_stale = false;
        }
        let j = &env.cfg.journal;
        let limits = Limits {
            keep: j.archive_keep,
            keep_bytes: j.archive_keep_bytes,
            compressing: j.compress_archive,
        };
        let gone = archive::beyond_retention(&self.archive, limits, now);
        if !gone.is_empty() {
            for &i in &gone {
                let s = &self.archive[i];
                if self.job.as_ref().is_some_and(|job| job.source() == s.path) {
                    self.job.take().expect("checked").abandon(fs);
                }
                remove(fs, &s.path)?;
                tracing::info!(segment = %env.rel(&s.path), bytes = s.bytes, "removed archived history beyond the retention");
            }
            let gone: HashSet<usize> = gone.into_iter().collect();
            let mut i = 0;
            self.archive.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        }
        if !j.compress_archive {
            return Ok(());
        }
        if self.job.is_none() {
            let Some(plain) = self.archive.iter().find(|s| !s.compressed) else { return Ok(()) };
            self.job = Some(Compressor::start(fs, &plain.path, env.durability.sync_files())?);
        }
        let job = self.job.as_mut().expect("started above");
        let started = std::time::Instant::now();
        let mut done = 0;
        loop {
            done += archive::PIECE_BYTES;
            match job.step(fs, archive::PIECE_BYTES)? {
                Progress::Done { plain, compressed } => {
                    let src = self.job.take().expect("running").source().to_path_buf();
                    tracing::info!(segment = %env.rel(&src), plain, compressed, "compressed an archived segment");
                    self.archive_stale = true;
                    return Ok(());
                }
                Progress::More if done < owed || started.elapsed() < COMPRESS_TIME => {}
                Progress::More => return Ok(()),
            }
        }
    }

    fn check_space(&mut self, env: &Env, now: Timestamp) {
        let space = match env.fs().space(&env.layout.journal_dir()) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "statvfs failed");
                return;
            }
        };
        let k = self.kept_now();
        let pct = env.cfg.broker.low_space_percent;
        let (b, j) = (&env.cfg.broker, &env.cfg.journal);
        let may_grow = b.inbox_keep_bytes.saturating_sub(k.inbox_bytes)
            + if j.compress_archive || j.archive_keep_bytes > 0 {
                j.archive_keep_bytes.saturating_sub(k.archive_bytes)
            } else {
                0
            };
        let low_bytes = space.free_bytes.saturating_mul(100) < space.total_bytes.saturating_mul(pct)
            || space.free_bytes < may_grow;
        let low_inodes = space.total_inodes > 0
            && (space.free_inodes.saturating_mul(100) < space.total_inodes.saturating_mul(pct)
                || space.free_inodes < b.inbox_keep_count.saturating_sub(k.inbox_files));
        self.low = [low_bytes, low_inodes];
        for (i, low) in [low_bytes, low_inodes].into_iter().enumerate() {
            let what = if i == 0 { "space" } else { "inodes" };
            match (low, self.warned[i]) {
                (true, Some(t)) if now.as_micros() - t.as_micros() < WARN_EVERY_US => {}
                (true, _) => {
                    self.warned[i] = Some(now);
                    tracing::warn!(
                        free_bytes = space.free_bytes,
                        total_bytes = space.total_bytes,
                        free_inodes = space.free_inodes,
                        total_inodes = space.total_inodes,
                        retention_may_still_grow_bytes = may_grow,
                        "the filesystem is running low on {what}: free some, or lower the retention limits"
                    );
                }
                (false, Some(_)) => {
                    self.warned[i] = None;
                    tracing::info!(
                        free_bytes = space.free_bytes,
                        free_inodes = space.free_inodes,
                        "{what} is no longer low"
                    );
                }
                (false, None) => {}
            }
        }
    }
}

/// Work that failed waits a minute (by the engine's clock) before it is tried again.
fn paused(since: Option<Timestamp>, now: Timestamp) -> bool {
    since.is_some_and(|t| now.as_micros() - t.as_micros() < MINUTE_US)
}

/// Removes a file; one already gone is fine.
fn remove(fs: &dyn Fs, path: &Path) -> Result<(), FsError> {
    match fs.remove_file(path) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The limits of a configuration, for the offline `gc`.
pub fn archive_limits(cfg: &Config) -> Limits {
    let j = &cfg.journal;
    Limits { keep: j.archive_keep, keep_bytes: j.archive_keep_bytes, compressing: j.compress_archive }
}

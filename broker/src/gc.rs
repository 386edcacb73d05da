//! `mailroom gc`: the retention rules applied at once to a stopped root (the caller holds the
//! root's lock), the same rules the running broker applies a bounded amount per pass:
//!
//! 1. kept messages in `broker/inbox/cur/`: those older than `inbox_retention_secs`, then the
//!    oldest (by mtime) beyond `inbox_keep_count` and `inbox_keep_bytes`;
//! 2. the archive: what an interrupted compression left, then every plain segment compressed
//!    (with `compress_archive`), then segments beyond `archive_keep` and `archive_keep_bytes`.
//!
//! A dry run changes nothing and reports what would go; it compresses nothing, so the byte limit
//! is applied to the segments as they are (plain ones counted once compressed, as the broker
//! does), and a real run may remove more once it knows their compressed size.

use crate::config::Config;
use crate::engine::retention::archive_limits;
use crate::footprint::{Area, Footprint, measure};
use crate::journal::archive::{self, Compressor, Progress};
use protocol::Timestamp;
use runtime_layout::{FileKind, Fs, FsError, Layout};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// One archived segment compressed, or to be.
#[derive(Debug, Clone, Serialize)]
pub struct Compressed {
    /// Relative to `agent_comms/`.
    pub segment: String,
    pub plain_bytes: u64,
    /// `None` in a dry run.
    pub compressed_bytes: Option<u64>,
}

/// What a `gc` did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub before: Footprint,
    /// `None` in a dry run.
    pub after: Option<Footprint>,
    /// Kept messages removed from `broker/inbox/cur/`.
    pub inbox_removed: Area,
    /// Temporaries and duplicate plain segments an interrupted compression or compaction left.
    pub leftovers_removed: Area,
    pub compressed: Vec<Compressed>,
    /// Archived segments beyond the retention (relative to `agent_comms/`), and their bytes.
    pub archive_removed: Vec<(String, u64)>,
}

impl GcReport {
    pub fn render(&self) -> String {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        let mut out = format!(
            "inbox/cur: {verb} {} kept messages ({} bytes)\n",
            self.inbox_removed.files, self.inbox_removed.bytes
        );
        if self.leftovers_removed.files > 0 {
            out.push_str(&format!(
                "archive: {verb} {} files an interrupted compression left ({} bytes)\n",
                self.leftovers_removed.files, self.leftovers_removed.bytes
            ));
        }
        for c in &self.compressed {
            match c.compressed_bytes {
                Some(z) => out.push_str(&format!(
                    "archive: compressed {} ({} -> {z} bytes)\n",
                    c.segment, c.plain_bytes
                )),
                None => out
                    .push_str(&format!("archive: would compress {} ({} bytes)\n", c.segment, c.plain_bytes)),
            }
        }
        for (s, b) in &self.archive_removed {
            out.push_str(&format!("archive: {verb} {s} ({b} bytes): beyond the retention\n"));
        }
        let total = |f: &Footprint| f.total();
        let b = total(&self.before);
        match &self.after {
            Some(a) => {
                let a = total(a);
                out.push_str(&format!(
                    "root: {} files, {} bytes -> {} files, {} bytes\n",
                    b.files, b.bytes, a.files, a.bytes
                ));
            }
            None => out.push_str(&format!(
                "root: {} files, {} bytes (dry run: nothing changed)\n",
                b.files, b.bytes
            )),
        }
        out
    }
}

/// Applies the retention rules of `cfg` to the stopped root at `layout`, as of `now`.
pub fn gc(
    fs: &dyn Fs,
    layout: &Layout,
    cfg: &Config,
    now: Timestamp,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let before = measure(fs, layout)?;
    let mut report = GcReport {
        dry_run,
        before,
        after: None,
        inbox_removed: Area::default(),
        leftovers_removed: Area::default(),
        compressed: Vec::new(),
        archive_removed: Vec::new(),
    };
    // 1. Kept messages, oldest first.
    let cur = layout.broker_inbox().cur();
    let mut kept = Vec::new();
    if fs.stat(&cur)?.is_some() {
        for e in fs.list(&cur)?.into_iter().filter(|e| e.kind == FileKind::File) {
            let p = cur.join(&e.name);
            if let Some(m) = fs.stat(&p)?.filter(|m| m.kind == FileKind::File) {
                kept.push((m.mtime, e.name, m.len));
            }
        }
    }
    kept.sort();
    let b = &cfg.broker;
    let (mut count, mut bytes) = (kept.len() as u64, kept.iter().map(|k| k.2).sum::<u64>());
    for (mtime, name, len) in kept {
        let old = mtime.plus_secs(b.inbox_retention_secs) < now;
        if !old && count <= b.inbox_keep_count && bytes <= b.inbox_keep_bytes {
            break;
        }
        if !dry_run {
            remove(fs, &cur.join(&name))?;
        }
        report.inbox_removed.files += 1;
        report.inbox_removed.bytes += len;
        count -= 1;
        bytes -= len;
    }
    // 2. The archive.
    let dir = layout.journal_dir().join("archive");
    let listing = archive::list(fs, &dir)?;
    let stale = archive::snapshot_temporaries(fs, &layout.journal_dir())?;
    let leftovers: Vec<_> = listing
        .temporaries
        .iter()
        .cloned()
        .chain(duplicates(&listing))
        .chain(stale.iter().cloned())
        .collect();
    for p in &leftovers {
        report.leftovers_removed.files += 1;
        report.leftovers_removed.bytes += fs.stat(p)?.map_or(0, |m| m.len);
    }
    if !dry_run {
        archive::finish_interrupted(fs, &listing)?;
        for p in &stale {
            remove(fs, p)?;
        }
    }
    let skip: HashSet<_> = leftovers.into_iter().collect();
    let mut segs: Vec<_> = listing.segments.into_iter().filter(|s| !skip.contains(&s.path)).collect();
    if cfg.journal.compress_archive {
        for s in segs.iter_mut().filter(|s| !s.compressed) {
            let mut c =
                Compressed { segment: layout.rel(&s.path), plain_bytes: s.bytes, compressed_bytes: None };
            if !dry_run {
                let mut job = Compressor::start(fs, &s.path, cfg.broker.durability.sync_files())?;
                let done = loop {
                    match job.step(fs, u64::MAX) {
                        Ok(Progress::More) => {}
                        Ok(Progress::Done { compressed, .. }) => break compressed,
                        Err(e) => {
                            job.abandon(fs);
                            return Err(e.into());
                        }
                    }
                };
                c.compressed_bytes = Some(done);
                s.bytes = done;
                s.compressed = true;
                s.path = dir.join(archive::compressed_name(
                    &s.path.file_name().unwrap_or_default().to_string_lossy(),
                ));
            }
            report.compressed.push(c);
        }
    }
    for i in archive::beyond_retention(&segs, archive_limits(cfg), now) {
        let s = &segs[i];
        if !dry_run {
            remove(fs, &s.path)?;
        }
        report.archive_removed.push((layout.rel(&s.path), s.bytes));
    }
    if !dry_run {
        report.after = Some(measure(fs, layout)?);
    }
    Ok(report)
}

/// Plain segments that also have their compressed form (removed by `finish_interrupted`).
fn duplicates(l: &archive::ArchiveListing) -> Vec<std::path::PathBuf> {
    l.segments
        .windows(2)
        .filter(|w| w[0].first == w[1].first && !w[0].compressed && w[1].compressed)
        .map(|w| w[0].path.clone())
        .collect()
}

fn remove(fs: &dyn Fs, p: &std::path::Path) -> Result<(), FsError> {
    match fs.remove_file(p) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

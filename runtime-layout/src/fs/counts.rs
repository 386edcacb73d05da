//! What a [`RootFs`](super::RootFs) has done, counted as it does it: creations, rewrites, renames,
//! removals, fsyncs of files and of directories, bytes written into new files and appended to the
//! journal, reads, listings and stats. Every mutation of a root goes through the seam, so these
//! are the process's whole filesystem work on its root, counted by the product itself (metrics,
//! the benchmark's operations per task), not guessed from the code.
//!
//! Each count is a relaxed atomic increment after the operation succeeded (a failed operation is
//! not counted): a few nanoseconds beside a system call. Counters are shared by every clone of
//! the `RootFs` (one set per root opened in a process) and read as one [`FsCounts`] copy, whose
//! fields are read one at a time (a copy taken while others write may mix two moments).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The live counters (shared, incremented in place).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    creates: AtomicU64,
    rewrites: AtomicU64,
    created_bytes: AtomicU64,
    renames: AtomicU64,
    unlinks: AtomicU64,
    file_fsyncs: AtomicU64,
    dir_fsyncs: AtomicU64,
    appends: AtomicU64,
    appended_bytes: AtomicU64,
    reads: AtomicU64,
    read_bytes: AtomicU64,
    lists: AtomicU64,
    stats: AtomicU64,
    mkdirs: AtomicU64,
    touches: AtomicU64,
}

/// What a [`Fs`](super::Fs) has done since it was opened (see [`Fs::counts`](super::Fs::counts)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FsCounts {
    /// Files created (`create_new`, `create_private`, `create_append`).
    pub creates: u64,
    /// Existing files written again in place instead of creating new ones (`overwrite`).
    pub rewrites: u64,
    /// Bytes written into files as they were created or rewritten.
    pub created_bytes: u64,
    /// Renames (replacing or not).
    pub renames: u64,
    /// Files removed.
    pub unlinks: u64,
    /// fsyncs of files: a created file's, and an appended file's (`fdatasync`).
    pub file_fsyncs: u64,
    /// fsyncs of directories (`sync_dir`, and the parent of each directory created).
    pub dir_fsyncs: u64,
    /// Appends to a file created for appending (the journal).
    pub appends: u64,
    /// Bytes appended (the journal's bytes).
    pub appended_bytes: u64,
    /// Files read (whole, or a piece).
    pub reads: u64,
    pub read_bytes: u64,
    /// Directories listed.
    pub lists: u64,
    /// `stat` calls (`Fs::stat`; not the lookups an operation makes on its own).
    pub stats: u64,
    /// Directories created.
    pub mkdirs: u64,
    /// Modification times set (`touch`, `set_mtime`).
    pub touches: u64,
}

impl FsCounts {
    /// `(name, value)` of every operation count, in a fixed order (for exporters and tables).
    pub fn operations(&self) -> [(&'static str, u64); 12] {
        [
            ("create", self.creates),
            ("rewrite", self.rewrites),
            ("rename", self.renames),
            ("unlink", self.unlinks),
            ("fsync_file", self.file_fsyncs),
            ("fsync_dir", self.dir_fsyncs),
            ("append", self.appends),
            ("read", self.reads),
            ("list", self.lists),
            ("stat", self.stats),
            ("mkdir", self.mkdirs),
            ("touch", self.touches),
        ]
    }

    /// What happened between `earlier` and `self` (each field's difference, never below 0).
    pub fn since(&self, earlier: &FsCounts) -> FsCounts {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        FsCounts {
            creates: d(self.creates, earlier.creates),
            rewrites: d(self.rewrites, earlier.rewrites),
            created_bytes: d(self.created_bytes, earlier.created_bytes),
            renames: d(self.renames, earlier.renames),
            unlinks: d(self.unlinks, earlier.unlinks),
            file_fsyncs: d(self.file_fsyncs, earlier.file_fsyncs),
            dir_fsyncs: d(self.dir_fsyncs, earlier.dir_fsyncs),
            appends: d(self.appends, earlier.appends),
            appended_bytes: d(self.appended_bytes, earlier.appended_bytes),
            reads: d(self.reads, earlier.reads),
            read_bytes: d(self.read_bytes, earlier.read_bytes),
            lists: d(self.lists, earlier.lists),
            stats: d(self.stats, earlier.stats),
            mkdirs: d(self.mkdirs, earlier.mkdirs),
            touches: d(self.touches, earlier.touches),
        }
    }

    /// The sum of two sets (several processes' counts together).
    pub fn plus(&self, o: &FsCounts) -> FsCounts {
        FsCounts {
            creates: self.creates + o.creates,
            rewrites: self.rewrites + o.rewrites,
            created_bytes: self.created_bytes + o.created_bytes,
            renames: self.renames + o.renames,
            unlinks: self.unlinks + o.unlinks,
            file_fsyncs: self.file_fsyncs + o.file_fsyncs,
            dir_fsyncs: self.dir_fsyncs + o.dir_fsyncs,
            appends: self.appends + o.appends,
            appended_bytes: self.appended_bytes + o.appended_bytes,
            reads: self.reads + o.reads,
            read_bytes: self.read_bytes + o.read_bytes,
            lists: self.lists + o.lists,
            stats: self.stats + o.stats,
            mkdirs: self.mkdirs + o.mkdirs,
            touches: self.touches + o.touches,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> FsCounts {
        FsCounts {
            creates: self.creates.load(Relaxed),
            rewrites: self.rewrites.load(Relaxed),
            created_bytes: self.created_bytes.load(Relaxed),
            renames: self.renames.load(Relaxed),
            unlinks: self.unlinks.load(Relaxed),
            file_fsyncs: self.file_fsyncs.load(Relaxed),
            dir_fsyncs: self.dir_fsyncs.load(Relaxed),
            appends: self.appends.load(Relaxed),
            appended_bytes: self.appended_bytes.load(Relaxed),
            reads: self.reads.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            lists: self.lists.load(Relaxed),
            stats: self.stats.load(Relaxed),
            mkdirs: self.mkdirs.load(Relaxed),
            touches: self.touches.load(Relaxed),
        }
    }

    pub fn created(&self, bytes: usize, synced: bool) {
        self.creates.fetch_add(1, Relaxed);
        self.created_bytes.fetch_add(bytes as u64, Relaxed);
        if synced {
            self.file_fsyncs.fetch_add(1, Relaxed);
        }
    }

    pub fn rewritten(&self, bytes: usize, synced: bool) {
        self.rewrites.fetch_add(1, Relaxed);
        self.created_bytes.fetch_add(bytes as u64, Relaxed);
        if synced {
            self.file_fsyncs.fetch_add(1, Relaxed);
        }
    }

    pub fn created_for_append(&self) {
        self.creates.fetch_add(1, Relaxed);
    }

    pub fn renamed(&self) {
        self.renames.fetch_add(1, Relaxed);
    }

    pub fn unlinked(&self) {
        self.unlinks.fetch_add(1, Relaxed);
    }

    pub fn file_synced(&self) {
        self.file_fsyncs.fetch_add(1, Relaxed);
    }

    pub fn dir_synced(&self) {
        self.dir_fsyncs.fetch_add(1, Relaxed);
    }

    pub fn appended(&self, bytes: usize) {
        self.appends.fetch_add(1, Relaxed);
        self.appended_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn read(&self, bytes: usize) {
        self.reads.fetch_add(1, Relaxed);
        self.read_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn listed(&self) {
        self.lists.fetch_add(1, Relaxed);
    }

    pub fn statted(&self) {
        self.stats.fetch_add(1, Relaxed);
    }

    pub fn made_dir(&self) {
        self.mkdirs.fetch_add(1, Relaxed);
    }

    pub fn touched(&self) {
        self.touches.fetch_add(1, Relaxed);
    }
}

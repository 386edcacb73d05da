//! Injected faults: which operations a [`Fault`] counts, and which of them it fails.

use super::Kind;
use std::path::Path;

/// Which operations a [`Fault`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOn {
    /// Every mutating operation.
    Any,
    /// File and directory fsyncs (`create_new` with `sync`, `sync_dir`, `AppendFile::sync`).
    Sync,
    /// Writes of data (`create_new`, `append`).
    Write,
    /// Reads of a file's content (`read`, `read_at`): a bad block under one file. Never a crash
    /// point, and not counted by [`FaultOn::Any`].
    Read,
    /// Openings of an existing file to read it (`read`, `read_at`): an inode that cannot be
    /// read. Like [`FaultOn::Read`], never a crash point, and not counted by [`FaultOn::Any`].
    Open,
}

/// Makes the `nth` (1-based) matching operation fail with `errno` (e.g. `EIO`, `ENOSPC`).
/// With `sticky`, every later matching operation fails too (a disk that stays full or broken).
#[derive(Debug, Clone)]
pub struct Fault {
    pub on: FaultOn,
    /// Only operations on a path containing this string count.
    pub path_contains: Option<String>,
    pub nth: u64,
    pub errno: i32,
    pub sticky: bool,
}

impl Fault {
    pub fn eio(on: FaultOn, nth: u64) -> Self {
        Self { on, path_contains: None, nth, errno: rustix::io::Errno::IO.raw_os_error(), sticky: false }
    }
    pub fn enospc(on: FaultOn, nth: u64) -> Self {
        Self { on, path_contains: None, nth, errno: rustix::io::Errno::NOSPC.raw_os_error(), sticky: true }
    }
    pub fn on_path(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_string());
        self
    }
}

impl Fault {
    /// Does an operation of `kind` on `path` count towards this fault?
    pub(super) fn matches(&self, kind: Kind, path: &Path) -> bool {
        let kind_matches = match self.on {
            FaultOn::Any => !matches!(kind, Kind::Read | Kind::Open),
            FaultOn::Sync => matches!(kind, Kind::Sync | Kind::WriteSync),
            FaultOn::Write => matches!(kind, Kind::Write | Kind::WriteSync),
            FaultOn::Read => kind == Kind::Read,
            FaultOn::Open => kind == Kind::Open,
        };
        kind_matches && self.path_contains.as_deref().is_none_or(|s| path.to_string_lossy().contains(s))
    }
}

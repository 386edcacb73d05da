//! The footprint of a root: files and bytes per area, counted from the disk, plus the free space
//! and inodes of its filesystem. A library function any front end can call (`mailroom status`,
//! metrics, `mailroom gc`, the soak benchmark); it only reads, through `Fs`, and follows no link.

use runtime_layout::{FileKind, Fs, FsError, Layout, Space};
use serde::Serialize;
use std::path::Path;

/// Files and bytes (apparent sizes) in one area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Area {
    pub files: u64,
    pub bytes: u64,
}

impl Area {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }

    fn plus(self, o: Area) -> Area {
        Area { files: self.files + o.files, bytes: self.bytes + o.bytes }
    }
}

/// Every file under `agent_comms/`, by area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Messages waiting for the broker (`broker/inbox/new/` and `tmp/`).
    pub inbox_pending: Area,
    /// Consumed messages kept for operators (`broker/inbox/cur/`), within `inbox_keep_*`.
    pub inbox_kept: Area,
    /// The journal segments replay reads (the one being appended to, and any not yet archived):
    /// they grow until the next compaction (`compact_after_records`).
    pub journal_live: Area,
    /// The newest snapshot and its tomb files (`tombs-*.jsonl`, a line per finished task
    /// remembered), and a temporary while one is written.
    pub snapshot: Area,
    /// Segments a snapshot covers (`journal/archive/`), within `[journal] archive_keep*`.
    pub archive: Area,
    /// Refused input and its reasons (`broker/quarantine/`): never removed by the broker.
    pub quarantine: Area,
    /// Task files, notices and mail in `queues/` and `mailboxes/`.
    pub tasks: Area,
    /// The four central boards.
    pub boards: Area,
    /// Everything else (`drop/`, the configuration, the lock, temporaries).
    pub other: Area,
    /// The filesystem the root is on, when known.
    pub space: Option<SpaceView>,
}

/// [`Space`], serialisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpaceView {
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_inodes: u64,
    pub total_inodes: u64,
}

impl From<Space> for SpaceView {
    fn from(s: Space) -> Self {
        Self {
            free_bytes: s.free_bytes,
            total_bytes: s.total_bytes,
            free_inodes: s.free_inodes,
            total_inodes: s.total_inodes,
        }
    }
}

impl Footprint {
    /// Every area together.
    pub fn total(&self) -> Area {
        [
            self.inbox_pending,
            self.inbox_kept,
            self.journal_live,
            self.snapshot,
            self.archive,
            self.quarantine,
            self.tasks,
            self.boards,
            self.other,
        ]
        .into_iter()
        .fold(Area::default(), Area::plus)
    }

    /// The areas with their names, in the order above (for tables and metrics).
    pub fn areas(&self) -> [(&'static str, Area); 9] {
        [
            ("inbox_pending", self.inbox_pending),
            ("inbox_kept", self.inbox_kept),
            ("journal_live", self.journal_live),
            ("snapshot", self.snapshot),
            ("archive", self.archive),
            ("quarantine", self.quarantine),
            ("tasks", self.tasks),
            ("boards", self.boards),
            ("other", self.other),
        ]
    }

    /// One line per area and the total, for operators.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, a) in self.areas().into_iter().chain([("total", self.total())]) {
            out.push_str(&format!("{name:<14} {:>9} files {:>14} bytes\n", a.files, a.bytes));
        }
        if let Some(s) = self.space {
            out.push_str(&format!(
                "filesystem     {} of {} bytes free, {} of {} inodes free\n",
                s.free_bytes, s.total_bytes, s.free_inodes, s.total_inodes
            ));
        }
        out
    }
}

/// Counts every regular file under the root's `agent_comms/`, by area. Symbolic links and other
/// special files are not followed or counted. A file that vanishes while it is counted is skipped.
pub fn measure(fs: &dyn Fs, layout: &Layout) -> Result<Footprint, FsError> {
    let mut f = Footprint::default();
    walk(fs, layout.comms(), &mut |path, bytes| {
        let area = classify(layout, path, &mut f);
        area.add(bytes);
    })?;
    f.space = fs.space(layout.comms())?.map(SpaceView::from);
    Ok(f)
}

fn classify<'a>(layout: &Layout, path: &Path, f: &'a mut Footprint) -> &'a mut Area {
    let inbox = layout.broker_inbox();
    let journal = layout.journal_dir();
    if path.starts_with(inbox.cur()) {
        &mut f.inbox_kept
    } else if path.starts_with(&inbox.root) {
        &mut f.inbox_pending
    } else if path.starts_with(journal.join("archive")) {
        &mut f.archive
    } else if path.starts_with(&journal) {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if ["snapshot-", ".snapshot-", "tombs-", ".tombs-"].iter().any(|p| name.starts_with(p)) {
            &mut f.snapshot
        } else {
            &mut f.journal_live
        }
    } else if path.starts_with(layout.quarantine_dir()) {
        &mut f.quarantine
    } else if path.starts_with(layout.queues_dir()) || path.starts_with(layout.mailboxes_dir()) {
        &mut f.tasks
    } else if path.starts_with(layout.boards_dir()) {
        &mut f.boards
    } else {
        &mut f.other
    }
}

fn walk(fs: &dyn Fs, dir: &Path, on_file: &mut impl FnMut(&Path, u64)) -> Result<(), FsError> {
    let entries = match fs.list(dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let path = dir.join(&e.name);
        match e.kind {
            FileKind::Dir => walk(fs, &path, on_file)?,
            FileKind::File => {
                if let Some(m) = fs.stat(&path)?.filter(|m| m.kind == FileKind::File) {
                    on_file(&path, m.len);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::sim::SimFs;

    #[test]
    fn every_file_is_counted_once_in_its_area() {
        let fs = SimFs::new();
        let l = Layout::new("/r");
        l.create(&fs).unwrap();
        l.mailbox("A1").create(&fs, true).unwrap();
        let put = |p: std::path::PathBuf, n: usize| fs.create_new(&p, &vec![b'x'; n], false).unwrap();
        put(l.broker_inbox().new_dir().join("m1"), 10);
        put(l.broker_inbox().cur().join("m0"), 20);
        put(l.broker_inbox().cur().join("m00"), 5);
        put(l.journal_dir().join("segment-0000000000000003.jsonl"), 30);
        put(l.journal_dir().join("snapshot-0000000000000002.json"), 7);
        put(l.journal_dir().join("tombs-0000000000000000.jsonl"), 3);
        fs.create_dir_all(&l.journal_dir().join("archive")).unwrap();
        put(l.journal_dir().join("archive/segment-0000000000000001.jsonl.zst"), 40);
        put(l.quarantine_dir().join("bad"), 50);
        put(l.mailbox("A1").cur().join("t"), 60);
        put(l.board(runtime_layout::Board::Ready), 70);
        put(l.drop_dir().join("d"), 80);
        let f = measure(&fs, &l).unwrap();
        assert_eq!(f.inbox_pending, Area { files: 1, bytes: 10 });
        assert_eq!(f.inbox_kept, Area { files: 2, bytes: 25 });
        assert_eq!(f.journal_live, Area { files: 1, bytes: 30 });
        assert_eq!(f.snapshot, Area { files: 2, bytes: 10 });
        assert_eq!(f.archive, Area { files: 1, bytes: 40 });
        assert_eq!(f.quarantine, Area { files: 1, bytes: 50 });
        assert_eq!(f.tasks, Area { files: 1, bytes: 60 });
        assert_eq!(f.boards, Area { files: 1, bytes: 70 });
        assert_eq!(f.other, Area { files: 1, bytes: 80 });
        assert_eq!(f.total(), Area { files: 11, bytes: 375 });
        assert!(f.render().contains("archive") && f.space.is_none());
    }
}

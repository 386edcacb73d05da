//! The directories the broker owns, and what it does when one of them is not a directory.
//!
//! A [`RootFs`](crate::RootFs) never follows a symbolic link, so a directory of the tree replaced
//! by a link (or by a file, a FIFO...) cannot lead the broker out of its root: the operation is
//! refused with [`FsError::NotBeneath`] naming it. What remains is to keep serving. The impostor
//! is *displaced*: the entry itself (never what it points to) is renamed `<name>.displaced-<UTC
//! time>` beside it, and a real, empty directory made in its place.
//!
//! The exception is the journal and the directories above it (`agent_comms/`, `broker/`,
//! `broker/journal/`): the journal is the broker's only record of what it acknowledged, and an
//! empty directory in its place would be a broker that forgot every task. So those are never
//! displaced: [`TreeError::Journal`] says what is in the way, and the broker stops until the
//! operator puts the journal back. (`journal/archive/`, read only by `mailroom trace`, is
//! displaced like any other.)

use crate::fs::{FileKind, Fs, FsError};
use crate::layout::Layout;
use protocol::Timestamp;
use std::path::{Path, PathBuf};

/// A non-directory found where the tree needs a directory, and where it was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Displaced {
    pub path: PathBuf,
    pub kind: FileKind,
    pub to: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The journal (or a directory above it) is not a real directory beneath the root, or the
    /// journal segment being written was replaced or moved.
    #[error(
        "{}: {what}. The journal must be a real directory inside the root: the broker never follows \
         a link out of its root and cannot go on without its journal. Put the journal directory back \
         in its place (a real directory, not a link), then start the broker again",
        path.display()
    )]
    Journal { path: PathBuf, what: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl Layout {
    /// The directories whose loss is the journal's: `agent_comms/`, `broker/`, `broker/journal/`.
    pub fn journal_chain(&self) -> [PathBuf; 3] {
        [self.comms().to_path_buf(), self.broker_dir(), self.journal_dir()]
    }

    /// Is `path` the journal, a directory above it, or a file of it (not of its archive)?
    pub fn holds_journal(&self, path: &Path) -> bool {
        self.journal_chain().iter().any(|d| d == path)
            || (path.starts_with(self.journal_dir()) && !path.starts_with(self.journal_dir().join("archive")))
    }

    /// Every directory the broker owns, each after its parent. (The configured ingest directories
    /// are the caller's to add.)
    pub fn owned_dirs(&self) -> Vec<PathBuf> {
        let inbox = self.broker_inbox();
        vec![
            self.comms().to_path_buf(),
            self.broker_dir(),
            self.journal_dir(),
            self.journal_dir().join("archive"),
            inbox.root.clone(),
            inbox.tmp(),
            inbox.new_dir(),
            inbox.cur(),
            self.quarantine_dir(),
            self.spare_dir(),
            self.queues_dir(),
            self.mailboxes_dir(),
            self.drop_dir(),
            self.boards_dir(),
        ]
    }

    /// Makes each of [`Layout::owned_dirs`] and then of `extra` a real directory: a missing one
    /// is created, a non-directory displaced and replaced by a directory (the journal's chain
    /// excepted: [`TreeError::Journal`]). Returns what was displaced, for the caller to log.
    pub fn ensure_dirs(
        &self,
        fs: &dyn Fs,
        extra: &[PathBuf],
        now: Timestamp,
    ) -> Result<Vec<Displaced>, TreeError> {
        let mut out = Vec::new();
        for dir in self.owned_dirs().iter().chain(extra) {
            match fs.stat(dir)? {
                Some(m) if m.kind == FileKind::Dir => {}
                Some(m) => {
                    if self.holds_journal(dir) {
                        return Err(TreeError::Journal {
                            path: dir.clone(),
                            what: format!("is a {}, not a directory", m.kind),
                        });
                    }
                    out.push(displace(fs, dir, m.kind, now)?);
                }
                None => fs.create_dir_all(dir)?,
            }
        }
        Ok(out)
    }

    /// Displaces what stood in the way of a refused operation (the culprit of a containment
    /// error), if it is in the tree and is still not a directory. `Ok(None)`: nothing to do
    /// (it is a directory again, or gone, or not the broker's to move).
    pub fn displace(
        &self,
        fs: &dyn Fs,
        culprit: &Path,
        now: Timestamp,
    ) -> Result<Option<Displaced>, TreeError> {
        if !culprit.starts_with(self.root()) || culprit == self.root() {
            return Ok(None);
        }
        let kind = match fs.stat(culprit) {
            Ok(Some(m)) if m.kind != FileKind::Dir => m.kind,
            Ok(_) => return Ok(None),
            // A directory above it is in the way too: the caller's next attempt meets that one.
            Err(e) if e.is_containment() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if self.holds_journal(culprit) {
            return Err(TreeError::Journal {
                path: culprit.to_path_buf(),
                what: format!("is a {kind}, not a directory"),
            });
        }
        displace(fs, culprit, kind, now).map(Some)
    }
}

/// Renames the entry at `path` aside (`<name>.displaced-<time>`, `-2`, `-3`... if taken) and
/// makes a directory in its place.
fn displace(fs: &dyn Fs, path: &Path, kind: FileKind, now: Timestamp) -> Result<Displaced, TreeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stamp = now.compact();
    for n in 1..=100 {
        let aside = if n == 1 {
            format!("{name}.displaced-{stamp}")
        } else {
            format!("{name}.displaced-{stamp}-{n}")
        };
        let to = path.with_file_name(aside);
        match fs.rename_noreplace(path, &to) {
            Ok(()) => {
                fs.create_dir_all(path)?;
                return Ok(Displaced { path: path.to_path_buf(), kind, to });
            }
            Err(e) if e.is_already_exists() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FsError::io("displace", path, std::io::Error::other("100 displaced copies already")).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Resolve, RootFs};
    use std::os::unix::fs::symlink;

    fn setup(resolve: Resolve) -> (tempfile::TempDir, Layout, RootFs, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        std::fs::create_dir(layout.root()).unwrap();
        let fs = RootFs::open_with(layout.root(), resolve).unwrap();
        assert_eq!(layout.ensure_dirs(&fs, &[], Timestamp::from_micros(0)).unwrap(), []);
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("bait.json"), b"{}").unwrap();
        (d, layout, fs, outside)
    }

    #[test]
    fn impostors_are_displaced_as_entries_and_replaced_by_directories() {
        for resolve in [Resolve::Auto, Resolve::Walk] {
            let (_d, layout, fs, outside) = setup(resolve);
            let now = Timestamp::from_micros(1_790_000_000_000_000);
            std::fs::remove_dir(layout.drop_dir()).unwrap();
            symlink(&outside, layout.drop_dir()).unwrap();
            std::fs::remove_dir(layout.boards_dir()).unwrap();
            std::fs::write(layout.boards_dir(), b"a file").unwrap();
            let extra = layout.root().join("tasks");
            symlink(&outside, &extra).unwrap();
            let moved = layout.ensure_dirs(&fs, std::slice::from_ref(&extra), now).unwrap();
            let got: Vec<_> = moved.iter().map(|m| (m.path.clone(), m.kind)).collect();
            assert_eq!(
                got,
                [
                    (layout.drop_dir(), FileKind::Symlink),
                    (layout.boards_dir(), FileKind::File),
                    (extra.clone(), FileKind::Symlink)
                ]
            );
            for m in &moved {
                assert!(std::fs::symlink_metadata(&m.path).unwrap().is_dir(), "{}", m.path.display());
                assert!(m.to.file_name().unwrap().to_str().unwrap().contains(".displaced-20260921T"));
            }
            assert!(std::fs::symlink_metadata(&moved[0].to).unwrap().is_symlink(), "the link itself moved");
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing done outside");
            // Done again at once: a second name, nothing else to do the time after.
            std::fs::remove_dir(layout.drop_dir()).unwrap();
            symlink(&outside, layout.drop_dir()).unwrap();
            let again = layout.ensure_dirs(&fs, &[], now).unwrap();
            assert!(again[0].to.to_str().unwrap().ends_with("-2"), "{:?}", again);
            assert_eq!(layout.ensure_dirs(&fs, &[], now).unwrap(), []);
        }
    }

    #[test]
    fn the_journal_and_its_parents_are_never_displaced() {
        for dir in ["agent_comms/broker/journal", "agent_comms/broker"] {
            let (_d, layout, fs, outside) = setup(Resolve::Auto);
            let p = layout.root().join(dir);
            std::fs::rename(&p, outside.join("moved")).unwrap();
            symlink(outside.join("moved"), &p).unwrap();
            let now = Timestamp::from_micros(0);
            match layout.ensure_dirs(&fs, &[], now) {
                Err(TreeError::Journal { path, .. }) => assert_eq!(path, p),
                other => panic!("{dir}: {other:?}"),
            }
            assert!(matches!(layout.displace(&fs, &p, now), Err(TreeError::Journal { .. })), "{dir}");
            assert!(std::fs::symlink_metadata(&p).unwrap().is_symlink(), "{dir}: left for the operator");
        }
    }

    #[test]
    fn a_culprit_is_displaced_only_while_it_is_not_a_directory() {
        let (_d, layout, fs, outside) = setup(Resolve::Auto);
        let now = Timestamp::from_micros(0);
        let cur = layout.mailbox("Agent-1").cur();
        layout.mailbox("Agent-1").create(&fs, true).unwrap();
        assert_eq!(layout.displace(&fs, &cur, now).unwrap(), None, "a directory is left alone");
        std::fs::remove_dir(&cur).unwrap();
        symlink(&outside, &cur).unwrap();
        let d = layout.displace(&fs, &cur, now).unwrap().expect("displaced");
        assert_eq!(d.kind, FileKind::Symlink);
        assert!(cur.is_dir() && !cur.is_symlink());
        assert_eq!(layout.displace(&fs, &outside, now).unwrap(), None, "outside the root: not ours");
        let archive = layout.journal_dir().join("archive");
        std::fs::remove_dir(&archive).unwrap();
        symlink(&outside, &archive).unwrap();
        assert!(layout.displace(&fs, &archive, now).unwrap().is_some(), "the archive is not the journal");
    }
}

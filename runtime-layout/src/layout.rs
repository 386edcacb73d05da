//! Path construction for the runtime tree. Names that come from outside (agents, pools) are
//! validated by `protocol::names` before they get here; this module only joins them.

use crate::fs::{Fs, FsError};
use protocol::names;
use std::path::{Path, PathBuf};

/// A maildir: `tmp/` for files being written, `new/` for delivered files, `cur/` for held ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Maildir {
    pub root: PathBuf,
}

impl Maildir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn new_dir(&self) -> PathBuf {
        self.root.join("new")
    }
    pub fn cur(&self) -> PathBuf {
        self.root.join("cur")
    }

    /// Creates `tmp/`, `new/` and (when `with_cur`) `cur/`.
    pub fn create(&self, fs: &dyn Fs, with_cur: bool) -> Result<(), FsError> {
        fs.create_dir_all(&self.tmp())?;
        fs.create_dir_all(&self.new_dir())?;
        if with_cur {
            fs.create_dir_all(&self.cur())?;
        }
        Ok(())
    }

    /// Does this maildir exist (its `new/` is a real directory, not a symlink)?
    pub fn exists(&self, fs: &dyn Fs) -> bool {
        matches!(fs.stat(&self.new_dir()), Ok(Some(m)) if m.kind == crate::fs::FileKind::Dir)
    }
}

/// The four central boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Board {
    Backlog,
    Ready,
    Working,
    Completed,
}

impl Board {
    pub const ALL: [Board; 4] = [Self::Backlog, Self::Ready, Self::Working, Self::Completed];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Backlog => "task_backlog.json",
            Self::Ready => "task_ready_queue.json",
            Self::Working => "working_tasks.json",
            Self::Completed => "completed_tasks.json",
        }
    }
}

/// The paths of one runtime root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
    comms: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let comms = root.join("agent_comms");
        Self { root, comms }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn comms(&self) -> &Path {
        &self.comms
    }
    /// A path inside the tree as operators see it: relative to `agent_comms/` (any other path is
    /// shown whole).
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.comms).unwrap_or(p).to_string_lossy().into_owned()
    }
    pub fn broker_dir(&self) -> PathBuf {
        self.comms.join("broker")
    }
    pub fn broker_inbox(&self) -> Maildir {
        Maildir::new(self.broker_dir().join("inbox"))
    }
    pub fn journal_dir(&self) -> PathBuf {
        self.broker_dir().join("journal")
    }
    pub fn quarantine_dir(&self) -> PathBuf {
        self.broker_dir().join("quarantine")
    }
    /// `broker/spare/`: finished claims' files the broker keeps to write its next task files
    /// into (see `Fs::overwrite`); anything in it at a start is removed.
    pub fn spare_dir(&self) -> PathBuf {
        self.broker_dir().join("spare")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.broker_dir().join("broker.lock")
    }
    /// The bearer token of the broker's HTTP surface (mode 0600), unless configured elsewhere.
    pub fn http_token_file(&self) -> PathBuf {
        self.broker_dir().join("http.token")
    }
    /// The broker's local socket (`protocol::socket`), bound while a broker serves.
    pub fn socket_file(&self) -> PathBuf {
        self.broker_dir().join("broker.sock")
    }
    /// Where the running broker's HTTP surface listens (`ADDR:PORT`), while it runs.
    pub fn http_addr_file(&self) -> PathBuf {
        self.broker_dir().join("http.addr")
    }
    pub fn queues_dir(&self) -> PathBuf {
        self.comms.join("queues")
    }
    /// A pool's maildir. `pool` must have passed [`names::validate_pool`].
    pub fn queue(&self, pool: &str) -> Maildir {
        debug_assert!(names::validate_pool(pool).is_ok(), "unvalidated pool {pool:?}");
        Maildir::new(self.queues_dir().join(pool))
    }
    pub fn mailboxes_dir(&self) -> PathBuf {
        self.comms.join("mailboxes")
    }
    /// An agent's maildir. `agent` must have passed [`names::validate_agent`].
    pub fn mailbox(&self, agent: &str) -> Maildir {
        debug_assert!(names::validate_agent(agent).is_ok(), "unvalidated agent {agent:?}");
        Maildir::new(self.mailboxes_dir().join(agent))
    }
    /// `mailboxes/<agent>/agent.json`: what an agent declares about itself (its capabilities).
    pub fn agent_profile(&self, agent: &str) -> PathBuf {
        self.mailbox(agent).root.join("agent.json")
    }
    /// Where the broker writes the set of capabilities each tag stands for.
    pub fn capabilities_dir(&self) -> PathBuf {
        self.comms.join("capabilities")
    }
    /// `capabilities/<tag>.json`. `tag` must pass [`protocol::capability::is_tag`].
    pub fn capability_set(&self, tag: &str) -> PathBuf {
        debug_assert!(protocol::capability::is_tag(tag), "not a tag {tag:?}");
        self.capabilities_dir().join(format!("{tag}.json"))
    }
    pub fn drop_dir(&self) -> PathBuf {
        self.comms.join("drop")
    }
    pub fn boards_dir(&self) -> PathBuf {
        self.comms.join("central_task_boards")
    }
    pub fn board(&self, board: Board) -> PathBuf {
        self.boards_dir().join(board.file_name())
    }
    /// `central_task_boards/agents.json`: every agent, its capabilities, claims and presence.
    pub fn agents_board(&self) -> PathBuf {
        self.boards_dir().join("agents.json")
    }
    pub fn config_file(&self) -> PathBuf {
        self.comms.join("mailroom.toml")
    }

    /// Creates every directory of the tree that exists regardless of agents and pools.
    pub fn create(&self, fs: &dyn Fs) -> Result<(), FsError> {
        self.broker_inbox().create(fs, true)?;
        for d in [
            self.journal_dir(),
            self.quarantine_dir(),
            self.spare_dir(),
            self.queues_dir(),
            self.mailboxes_dir(),
            self.drop_dir(),
            self.boards_dir(),
            self.capabilities_dir(),
        ] {
            fs.create_dir_all(&d)?;
        }
        Ok(())
    }

    /// Is every directory between `agent_comms/` and `path` a real directory, so that a file
    /// written, read or removed at `path` stays inside the root? A symbolic link (or a file)
    /// where a directory belongs makes it not contained; a missing directory does not (it will
    /// be created as a real one).
    ///
    /// A check before use, so an early and friendly refusal (a submit to a mailbox that is a
    /// link is refused with that reason) but not what keeps the broker inside its root: that is
    /// [`RootFs`](crate::RootFs), which resolves every path beneath the root at the moment of use.
    pub fn is_contained(&self, fs: &dyn Fs, path: &Path) -> bool {
        self.contain(fs, path).is_ok()
    }

    /// [`Layout::is_contained`], saying why not: the first directory on the way that is not one
    /// ([`FsError::NotBeneath`]), as a [`RootFs`](crate::RootFs) would name it at the moment of
    /// use, for the broker's repair of its tree.
    pub fn contain(&self, fs: &dyn Fs, path: &Path) -> Result<(), FsError> {
        let outside = || FsError::Outside { path: path.to_path_buf(), root: self.comms.clone() };
        let rel = path.strip_prefix(&self.comms).map_err(|_| outside())?;
        let comps: Vec<_> = rel.components().collect();
        if comps.iter().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(outside());
        }
        if fs.resolves_beneath() {
            // One lookup of the deepest directory: the filesystem itself refuses a link or a
            // file anywhere on the way to it (FsError::NotBeneath, naming it).
            let dir = path.parent().unwrap_or(&self.comms);
            return match fs.stat(dir)? {
                Some(m) if m.kind != crate::fs::FileKind::Dir => Err(FsError::NotBeneath {
                    path: path.to_path_buf(),
                    at: dir.to_path_buf(),
                    kind: Some(m.kind),
                }),
                _ => Ok(()),
            };
        }
        let mut cur = self.comms.clone();
        for c in &comps[..comps.len().saturating_sub(1)] {
            match c {
                std::path::Component::Normal(n) => cur.push(n),
                _ => return Err(outside()),
            }
            match fs.stat(&cur)? {
                Some(m) if m.kind == crate::fs::FileKind::Dir => {}
                None => return Ok(()),
                Some(m) => {
                    return Err(FsError::NotBeneath {
                        path: path.to_path_buf(),
                        at: cur,
                        kind: Some(m.kind),
                    });
                }
            }
        }
        Ok(())
    }

    /// What a write or removal at `path` needs checked first so as not to leave the tree: nothing
    /// on a filesystem that resolves beneath the root (the operation itself refuses a link on
    /// the way, naming it), [`Layout::contain`] on one that follows links.
    pub fn guard(&self, fs: &dyn Fs, path: &Path) -> Result<(), FsError> {
        if fs.resolves_beneath() { Ok(()) } else { self.contain(fs, path) }
    }

    /// [`Layout::guard`] for everything a delivery into `md` touches.
    pub fn guard_maildir(&self, fs: &dyn Fs, md: &Maildir) -> Result<(), FsError> {
        if fs.resolves_beneath() { Ok(()) } else { self.contain_maildir(fs, md) }
    }

    /// [`Layout::is_contained`] for everything a delivery into `md` touches (`tmp/`, `new/`, `cur/`).
    pub fn maildir_contained(&self, fs: &dyn Fs, md: &Maildir) -> bool {
        self.contain_maildir(fs, md).is_ok()
    }

    /// [`Layout::contain`] for everything a delivery into `md` touches (`tmp/`, `new/`, `cur/`).
    pub fn contain_maildir(&self, fs: &dyn Fs, md: &Maildir) -> Result<(), FsError> {
        [md.tmp(), md.new_dir(), md.cur()].iter().try_for_each(|d| self.contain(fs, &d.join("_")))
    }

    /// Is this root initialised (the broker inbox exists)?
    pub fn is_initialised(&self, fs: &dyn Fs) -> bool {
        self.broker_inbox().exists(fs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn create_builds_the_documented_tree() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path().join("runtime"));
        assert!(!l.is_initialised(&RealFs));
        l.create(&RealFs).unwrap();
        assert!(l.is_initialised(&RealFs));
        for p in [
            "agent_comms/broker/inbox/tmp",
            "agent_comms/broker/inbox/new",
            "agent_comms/broker/inbox/cur",
            "agent_comms/broker/journal",
            "agent_comms/broker/quarantine",
            "agent_comms/queues",
            "agent_comms/mailboxes",
            "agent_comms/drop",
            "agent_comms/central_task_boards",
            "agent_comms/capabilities",
        ] {
            assert!(dir.path().join("runtime").join(p).is_dir(), "{p}");
        }
        assert_eq!(l.mailbox("Agent-5").cur(), dir.path().join("runtime/agent_comms/mailboxes/Agent-5/cur"));
        assert_eq!(l.board(Board::Ready).file_name().unwrap(), "task_ready_queue.json");
        assert_eq!(l.agent_profile("A"), dir.path().join("runtime/agent_comms/mailboxes/A/agent.json"));
        let tag = "0123456789abcdef";
        assert_eq!(
            l.capability_set(tag),
            dir.path().join(format!("runtime/agent_comms/capabilities/{tag}.json"))
        );
    }

    #[test]
    fn symlinked_directories_are_not_contained() {
        // On plain paths every directory on the way is looked at; beneath a root, the deepest
        // one (the filesystem refuses a link on the way to it): the same answers.
        for beneath in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let l = Layout::new(dir.path().join("runtime"));
            std::fs::create_dir(l.root()).unwrap();
            let root_fs = crate::fs::RootFs::open(l.root()).unwrap();
            let fs: &dyn Fs = if beneath { &root_fs } else { &RealFs };
            assert_eq!(fs.resolves_beneath(), beneath);
            l.create(fs).unwrap();
            let outside = dir.path().join("outside");
            std::fs::create_dir_all(outside.join("new")).unwrap();
            std::os::unix::fs::symlink(&outside, l.mailboxes_dir().join("Evil")).unwrap();
            std::os::unix::fs::symlink(&outside, l.queues_dir().join("evil")).unwrap();
            l.mailbox("Good").create(fs, true).unwrap();
            std::fs::remove_dir(l.mailbox("Good").cur()).unwrap();
            std::os::unix::fs::symlink(&outside, l.mailbox("Good").cur()).unwrap();
            assert!(!l.maildir_contained(fs, &l.mailbox("Evil")));
            assert!(!l.maildir_contained(fs, &l.queue("evil")));
            assert!(!l.is_contained(fs, &l.mailbox("Good").cur().join("x")));
            assert!(l.is_contained(fs, &l.mailbox("Good").new_dir().join("x")));
            assert!(l.maildir_contained(fs, &l.queue("not-yet")), "missing dirs will be created");
            assert!(!l.is_contained(fs, &outside.join("x")));
            assert!(!l.is_contained(fs, &l.comms().join("queues/../../x")));
            match l.contain(fs, &l.mailbox("Evil").new_dir().join("x")) {
                Err(FsError::NotBeneath { at, .. }) => assert_eq!(at, l.mailboxes_dir().join("Evil")),
                other => panic!("beneath={beneath}: {other:?}"),
            }
        }
    }
}

//! What wakes the broker's loop from the tree: a [`DirWatch`] on the directories whose arrivals
//! the broker acts on, read on the loop's own thread when its descriptor is readable.
//!
//! | directory | woken by | for |
//! |---|---|---|
//! | `broker/inbox/new/` | a file renamed in, or written in place | messages |
//! | `mailboxes/` and each `mailboxes/<agent>/` | a directory or file arriving | new agents, their `cur/` |
//! | `mailboxes/<agent>/cur/` | a file renamed or linked in | claims |
//! | `drop/`, `[ingest] task_dirs` | a file renamed in, or written in place | scripts' files |
//! | `[ingest] mail_dirs`, and below | a file renamed in, or written in place | scripts' mail |
//!
//! Each event says where to look: an arrival in the inbox alone makes a pass that does not list
//! any agent's `cur/` nor any drop directory, and a claim lists the claimant's `cur/` alone
//! ([`Look`]). The watch names the files that arrive, so messages renamed into the inbox are
//! read without listing it ([`Arrivals`]) unless something else happened there: a file written
//! in place, lost events, the watch made anew. A directory that is not watched (the inotify
//! limits, a directory not made yet) is looked at in every pass.
//!
//! What the broker itself does there does not wake it (its deliveries into an agent's `new/`,
//! its removals from `cur/`, its moves out of the inbox; its moves of dropped files into the
//! inbox do, once per batch), nor do heartbeats, listings or reads. A file
//! vanishing from an agent's `cur/` is found by the periodic pass, as is anything an event
//! missed: a wake-up is a hint, never the only way to find work.

use crate::config::Config;
use crate::engine::{Arrivals, Claims, Look};
use runtime_layout::{DirWatch, Drained, Fs, Interest, Layout, Skip};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::unix::AsyncFd;

/// The tags of the watched areas.
const INBOX: u8 = 0;
const CLAIMS: u8 = 1;
const DROPS: u8 = 2;

/// A directory to watch: its interest, its area's tag, and whether its subdirectories are
/// watched too (those the `Skip` does not refuse).
type Target = (PathBuf, Interest, u8, Option<Skip>);

/// The loop's watch and the directories it should cover.
pub(crate) struct Wakeups {
    watch: Option<AsyncFd<DirWatch>>,
    targets: Vec<Target>,
    /// The tags of areas with a directory not watched at the last refresh: always looked at.
    blind: AtomicU64,
    /// The tags of areas with a directory watched anew at the last refresh: what arrived before
    /// its watch began has no event, so the next look lists them.
    fresh: AtomicU64,
    /// `mailboxes/`, whose agents' `cur/` events name.
    mailboxes: PathBuf,
    /// `broker/inbox/new/`, whose arrivals events name.
    inbox: PathBuf,
}

/// In `mailboxes/`, an agent's `tmp/` (half-written files) and `new/` (what the broker delivers
/// there; agents rename out of it into `cur/`, which is watched).
fn mailbox_skip(dir: &Path) -> bool {
    runtime_layout::maildir_subdir(dir, "mailboxes", &["tmp", "new"])
}

fn skip_nothing(_: &Path) -> bool {
    false
}

impl Wakeups {
    /// Watches the tree's directories. Failure to watch (for example the inotify limits) is
    /// logged and the broker carries on with the periodic rescan alone.
    pub(crate) fn new(fs: &dyn Fs, layout: &Layout, cfg: &Config) -> Self {
        let mut targets: Vec<Target> = vec![
            (layout.broker_inbox().new_dir(), Interest::Writes, INBOX, None),
            (layout.mailboxes_dir(), Interest::Arrivals, CLAIMS, Some(mailbox_skip)),
            (layout.drop_dir(), Interest::Writes, DROPS, None),
        ];
        // Board edits are found by the periodic pass (they must settle first anyway).
        for d in &cfg.ingest.task_dirs {
            targets.push((layout.root().join(d), Interest::Writes, DROPS, None));
        }
        for d in &cfg.ingest.mail_dirs {
            targets.push((layout.root().join(d), Interest::Writes, DROPS, Some(skip_nothing)));
        }
        // The safe constructor (deprecated in favour of an `unsafe` one that asks the caller to
        // promise what `DirWatch` guarantees by construction: it owns its descriptor for its
        // whole life and always names that one).
        #[allow(deprecated)]
        let registered =
            DirWatch::new().and_then(|w| AsyncFd::with_interest(w.naming(), tokio::io::Interest::READABLE));
        let watch = match registered {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on the periodic rescan");
                None
            }
        };
        let w = Wakeups {
            watch,
            targets,
            blind: AtomicU64::new(u64::MAX),
            fresh: AtomicU64::new(0),
            mailboxes: layout.mailboxes_dir(),
            inbox: layout.broker_inbox().new_dir(),
        };
        w.refresh(fs);
        w
    }

    /// Watches every target not watched yet (one made since, or made again by a repair).
    pub(crate) fn refresh(&self, fs: &dyn Fs) {
        let Some(watch) = &self.watch else { return };
        let watch = watch.get_ref();
        watch.forget_missed();
        let mut blind = 0;
        for (dir, interest, tag, tree) in &self.targets {
            let added = match tree {
                Some(skip) => watch.add_tree(fs, dir, *interest, *tag, *skip),
                // Asked again each time: a directory made anew at the same path (its parent
                // moved away and made again) is a different one, and the old watch follows the
                // one moved away without a word about it.
                None => watch.renew(dir, *interest, *tag).map(|renewed| {
                    if renewed == Some(true) {
                        self.fresh.fetch_or(1 << tag, Ordering::Relaxed);
                    }
                    renewed.is_some()
                }),
            };
            match added {
                Ok(true) => {}
                Ok(false) => {
                    blind |= 1 << tag;
                    tracing::debug!(dir = %dir.display(), "not there yet: relying on the periodic rescan")
                }
                Err(e) => {
                    blind |= 1 << tag;
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; relying on the periodic rescan")
                }
            }
        }
        self.blind.store(blind, Ordering::Relaxed);
    }

    /// Where to look for what the events read say arrived (and in every area not watched).
    fn look(&self, d: Drained) -> Look {
        let blind = self.blind.load(Ordering::Relaxed);
        let fresh = self.fresh.swap(0, Ordering::Relaxed);
        let tags = d.tags | blind;
        let inbox = if (blind | fresh | d.wide | d.unnamed) & (1 << INBOX) != 0 {
            Arrivals::Unknown
        } else {
            Arrivals::Named(
                d.files.iter().filter(|(dir, _)| *dir == self.inbox).map(|(_, n)| n.clone()).collect(),
            )
        };
        let claims = if tags & (1 << CLAIMS) == 0 {
            Claims::Nowhere
        } else if blind & (1 << CLAIMS) != 0 {
            Claims::Everywhere
        } else if (fresh | d.wide | d.unnamed) & (1 << CLAIMS) != 0 {
            self.claimants(&d)
        } else {
            self.claimed_files(&d).unwrap_or_else(|| self.claimants(&d))
        };
        Look { inbox, claims, drops: tags & (1 << DROPS) != 0, edits: false }
    }

    /// The agents whose `cur/` had an arrival; everywhere when events were lost or one happened
    /// elsewhere under `mailboxes/` (a new agent, a `cur/` made).
    fn claimants(&self, d: &Drained) -> Claims {
        let Some(dirs) = d.dirs_of(CLAIMS) else { return Claims::Everywhere };
        let mut agents = BTreeSet::new();
        for dir in dirs {
            let Ok(rel) = dir.strip_prefix(&self.mailboxes) else { return Claims::Everywhere };
            let mut parts = rel.components().map(|c| c.as_os_str().to_str());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Some(agent)), Some(Some("cur")), None) => agents.insert(agent.to_string()),
                _ => return Claims::Everywhere,
            };
        }
        Claims::Of(agents)
    }

    /// Each file that arrived in an agent's `cur/`, when every event under `mailboxes/` was one
    /// (named, in a `cur/`); `None` otherwise (a file elsewhere under `mailboxes/`).
    fn claimed_files(&self, d: &Drained) -> Option<Claims> {
        let mut files = BTreeSet::new();
        for (dir, name) in &d.files {
            let Ok(rel) = dir.strip_prefix(&self.mailboxes) else { continue }; // Another area's.
            let mut parts = rel.components().map(|c| c.as_os_str().to_str());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Some(agent)), Some(Some("cur")), None) => {
                    files.insert((agent.to_string(), name.clone()));
                }
                _ => return None,
            }
        }
        Some(Claims::Files(files))
    }

    /// Reads the events pending now, without waiting: where the next pass should look.
    pub(crate) fn pending(&self, fs: &dyn Fs) -> Look {
        let Some(watch) = &self.watch else { return Look::EVERYWHERE };
        match watch.get_ref().drain(fs) {
            Ok(d) => self.look(d),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read file events; relying on the periodic rescan");
                Look::EVERYWHERE
            }
        }
    }

    /// Completes when something arrived (never, without a watch), with where to look. Reads
    /// every pending event.
    pub(crate) async fn arrived(&self, fs: &dyn Fs) -> Look {
        let Some(watch) = &self.watch else { return std::future::pending().await };
        loop {
            let Ok(mut ready) = watch.readable().await else { return std::future::pending().await };
            match ready.get_inner().drain(fs) {
                Ok(d) => {
                    ready.clear_ready();
                    if d.any() {
                        return self.look(d);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read file events; relying on the periodic rescan");
                    return std::future::pending().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_layout::RootFs;
    use std::time::{Duration, Instant};

    /// What the events pending within a while say, waiting for the first to be read.
    fn next_look(w: &Wakeups, fs: &dyn Fs) -> Look {
        let start = Instant::now();
        loop {
            let look = w.pending(fs);
            if look != Look::QUIET || start.elapsed() > Duration::from_secs(5) {
                // Events of one burst may be read in two drains: take what follows at once too.
                std::thread::sleep(Duration::from_millis(50));
                return look.or(w.pending(fs));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_looks_in_the_claimant_s_cur_alone_and_a_new_agent_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("runtime"));
        std::fs::create_dir_all(layout.root()).unwrap();
        let fs = RootFs::open(layout.root()).unwrap();
        layout.create(&fs).unwrap();
        for a in ["Agent-1", "Agent-2", "Agent-3"] {
            layout.mailbox(a).create(&fs, true).unwrap();
        }
        let w = Wakeups::new(&fs, &layout, &Config::default());
        assert_eq!(w.pending(&fs), Look::INBOX, "watched anew: the inbox is listed once");
        assert_eq!(w.pending(&fs), Look::QUIET, "every directory is watched: nothing to look at");
        let pool = layout.queue("tools");
        pool.create(&fs, true).unwrap();
        let claim = |agent: &str, name: &str| {
            std::fs::write(pool.new_dir().join(name), b"{}").unwrap();
            std::fs::rename(pool.new_dir().join(name), layout.mailbox(agent).cur().join(name)).unwrap();
        };

        claim("Agent-2", "t1.json");
        let of = |names: &[&str]| Claims::Of(names.iter().map(|n| n.to_string()).collect());
        let files = |f: &[(&str, &str)]| {
            Claims::Files(f.iter().map(|(a, n)| (a.to_string(), n.to_string())).collect())
        };
        // Claims are named: the pass looks at those files, and lists no cur/.
        assert_eq!(next_look(&w, &fs).claims, files(&[("Agent-2", "t1.json")]));
        claim("Agent-1", "t2.json");
        claim("Agent-3", "t3.json");
        assert_eq!(next_look(&w, &fs).claims, files(&[("Agent-1", "t2.json"), ("Agent-3", "t3.json")]));
        // Something no event names (a directory) in a cur/: that cur/ is listed.
        claim("Agent-3", "t5.json");
        std::fs::create_dir(layout.mailbox("Agent-1").cur().join("d")).unwrap();
        assert_eq!(next_look(&w, &fs).claims, of(&["Agent-1", "Agent-3"]));

        // A message alone lists no cur/, and one renamed in is named: the inbox is not listed.
        let inbox = layout.broker_inbox();
        for m in ["m2.json", "m1.json"] {
            std::fs::write(inbox.tmp().join(m), b"{}").unwrap();
            std::fs::rename(inbox.tmp().join(m), inbox.new_dir().join(m)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let named = Arrivals::Named(vec!["m2.json".into(), "m1.json".into()]);
        assert_eq!(w.pending(&fs), Look { inbox: named, ..Look::QUIET });
        // One written in place is not named (it may be half written): the inbox is listed.
        std::fs::write(inbox.new_dir().join("m.json"), b"{}").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(w.pending(&fs), Look::INBOX);
        // A watch made anew lists once more: what arrived before it has no event.
        w.watch.as_ref().unwrap().get_ref().forget_missed();
        std::fs::rename(inbox.new_dir(), layout.broker_inbox().root.join("new.moved")).unwrap();
        std::fs::create_dir(inbox.new_dir()).unwrap();
        std::fs::write(inbox.new_dir().join("early.json"), b"{}").unwrap();
        assert_eq!(next_look(&w, &fs).inbox, Arrivals::Unknown, "the watched directory moved away");
        w.refresh(&fs);
        assert_eq!(w.pending(&fs).inbox, Arrivals::Unknown, "watched anew");
        assert_eq!(w.pending(&fs), Look::QUIET);
        // The inbox's parent moved away and made again: the old watch follows the directory
        // moved away without an event about it. The refresh sees a different directory at the
        // path, and the next look lists it.
        let parent = layout.broker_inbox().root.clone();
        std::fs::rename(&parent, parent.with_file_name("inbox.moved")).unwrap();
        layout.broker_inbox().create(&fs, true).unwrap();
        std::fs::write(inbox.tmp().join("unseen.json"), b"{}").unwrap();
        std::fs::rename(inbox.tmp().join("unseen.json"), inbox.new_dir().join("unseen.json")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(w.pending(&fs), Look::QUIET, "nothing says so before the refresh");
        w.refresh(&fs);
        assert_eq!(w.pending(&fs).inbox, Arrivals::Unknown, "a different directory: listed");
        std::fs::write(inbox.tmp().join("m3.json"), b"{}").unwrap();
        std::fs::rename(inbox.tmp().join("m3.json"), inbox.new_dir().join("m3.json")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(w.pending(&fs).inbox, Arrivals::Named(vec!["m3.json".into()]), "and watched from then on");

        // A new agent's directory: its cur/ may hold claims made before it was watched.
        std::fs::create_dir_all(layout.mailbox("Agent-4").cur()).unwrap();
        assert_eq!(next_look(&w, &fs).claims, Claims::Everywhere);
        claim("Agent-4", "t4.json");
        assert_eq!(next_look(&w, &fs).claims, files(&[("Agent-4", "t4.json")]), "and watched from then on");
    }
}

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
//! every agent's `cur/` nor every drop directory ([`Look`]). A directory that is not watched
//! (the inotify limits, a directory not made yet) is looked at in every pass.
//!
//! What the broker itself does there does not wake it (its deliveries into an agent's `new/`,
//! its removals from `cur/`, its moves out of the inbox; its moves of dropped files into the
//! inbox do, once per batch), nor do heartbeats, listings or reads. A file
//! vanishing from an agent's `cur/` is found by the periodic pass, as is anything an event
//! missed: a wake-up is a hint, never the only way to find work.

use crate::config::Config;
use crate::engine::Look;
use runtime_layout::{DirWatch, Drained, Fs, Interest, Layout, Skip};
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
            DirWatch::new().and_then(|w| AsyncFd::with_interest(w, tokio::io::Interest::READABLE));
        let watch = match registered {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on the periodic rescan");
                None
            }
        };
        let w = Wakeups { watch, targets, blind: AtomicU64::new(u64::MAX) };
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
                None if watch.watches(dir) => Ok(true),
                None => watch.add(dir, *interest, *tag),
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
        let tags = d.tags | self.blind.load(Ordering::Relaxed);
        Look { claims: tags & (1 << CLAIMS) != 0, drops: tags & (1 << DROPS) != 0, edits: false }
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

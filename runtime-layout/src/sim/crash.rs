//! What a restart keeps: the three [`Crash`] modes applied to the volatile and durable halves
//! of the tree (see the durability model in the parent module).

use super::*;

/// How a simulated crash treats what was not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process dies; the kernel keeps everything it was given.
    Process,
    /// The machine loses power: everything not fsynced is gone.
    PowerLoss,
    /// A power loss in which an arbitrary subset of unsynced changes reached the disk anyway.
    Scrambled { seed: u64 },
}

impl Inner {
    pub(super) fn restart(&mut self, mode: Crash) {
        self.crashed = false;
        let renames = std::mem::take(&mut self.renames);
        self.crash_at = None;
        self.generation += 1;
        // The kernel drops a dead process's locks, whatever survives of its files.
        self.locks.clear();
        match mode {
            // The page cache survives: volatile stays volatile, for a later power loss to drop.
            Crash::Process => return,
            Crash::PowerLoss => {
                self.live = self.durable.clone();
                for ino in self.inodes.values_mut() {
                    ino.data = ino.durable.clone();
                    ino.mtime = ino.durable_mtime;
                }
            }
            Crash::Scrambled { seed } => {
                self.renames = renames;
                let mut rng = SplitMix(seed);
                let dirs: BTreeSet<PathBuf> = self.live.keys().chain(self.durable.keys()).cloned().collect();
                let mut flushed: BTreeSet<PathBuf> =
                    dirs.iter().filter(|_| rng.next() & 1 == 0).cloned().collect();
                loop {
                    let before = flushed.len();
                    for (a, b) in &self.renames {
                        if flushed.contains(a) || flushed.contains(b) {
                            flushed.insert(a.clone());
                            flushed.insert(b.clone());
                        }
                    }
                    if flushed.len() == before {
                        break;
                    }
                }
                for d in dirs {
                    let keep_live = flushed.contains(&d);
                    match (keep_live, self.live.get(&d).cloned(), self.durable.get(&d).cloned()) {
                        (true, Some(l), _) => {
                            self.durable.insert(d, l);
                        }
                        (_, _, Some(dur)) => {
                            self.live.insert(d, dur);
                        }
                        (false, Some(l), None) => {
                            self.durable.insert(d, l);
                        }
                        (_, None, None) => {}
                    }
                }
                self.live = self.durable.clone();
                let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
                inos.sort_unstable();
                for i in inos {
                    let r = rng.next();
                    let ino = self.inodes.get_mut(&i).expect("listed inode");
                    if ino.reserved && ino.data != ino.durable {
                        // Appends into a reserve overwrite its zeros, and a renewal extends it:
                        // writeback keeps each page of the file independently, the old one or
                        // the new (zeros where there was none), and the size either way.
                        let len = if r & 1 == 0 { ino.data.len() } else { ino.durable.len() };
                        let mut kept = vec![0u8; len];
                        for (i, page) in kept.chunks_mut(PAGE).enumerate() {
                            let from = if rng.next() & 1 == 0 { &ino.data } else { &ino.durable };
                            let at = i * PAGE;
                            let have = from.len().saturating_sub(at).min(page.len());
                            if have > 0 {
                                page[..have].copy_from_slice(&from[at..at + have]);
                            }
                        }
                        ino.data = kept;
                    } else if ino.data.starts_with(&ino.durable) && ino.data.len() > ino.durable.len() {
                        let extra = (r as usize) % (ino.data.len() - ino.durable.len() + 1);
                        ino.data.truncate(ino.durable.len() + extra);
                    } else if r & 1 == 0 {
                        ino.data = ino.durable.clone();
                        ino.mtime = ino.durable_mtime;
                    }
                    ino.durable = ino.data.clone();
                    ino.durable_mtime = ino.mtime;
                }
            }
        }
        self.renames.clear();
        self.prune();
    }

    /// Drops directories no longer reachable from `/` and inodes no longer named.
    fn prune(&mut self) {
        let mut reachable = BTreeSet::new();
        let mut stack = vec![PathBuf::from("/")];
        let mut named = BTreeSet::new();
        while let Some(d) = stack.pop() {
            let Some(entries) = self.live.get(&d) else { continue };
            reachable.insert(d.clone());
            for (name, node) in entries {
                match node {
                    Node::Dir => stack.push(d.join(name)),
                    Node::File(i) => {
                        named.insert(*i);
                    }
                }
            }
        }
        self.live.retain(|d, _| reachable.contains(d));
        // Subdirectories whose entry is gone lose their listings; re-create empty ones for any
        // directory entry whose own listing was never recorded.
        let missing: Vec<PathBuf> = self
            .live
            .iter()
            .flat_map(|(d, e)| e.iter().filter(|(_, n)| **n == Node::Dir).map(move |(name, _)| d.join(name)))
            .filter(|p| !self.live.contains_key(p))
            .collect();
        for p in missing {
            self.live.insert(p, Dir::new());
        }
        self.durable = self.live.clone();
        self.inodes.retain(|i, _| named.contains(i));
    }
}

/// The unit a scrambled power loss keeps or loses of a file written over (a page).
const PAGE: usize = 4096;

/// A small deterministic generator (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

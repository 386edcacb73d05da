//! The tombs: what the state remembers of each finished task (status, submit hash, pooled), by
//! id, for duplicate checks and redrives. There is one per finished task for the root's whole
//! history, so each is kept small: every id lives in one arena string, each tomb is a 16-byte
//! record (the id's place in the arena, the hash, the status and the pooled flag), and the index
//! is a table of 4-byte record numbers. About 30 bytes plus the id's length per finished task,
//! where a `HashMap<String, _>` took about 100 (the id's own allocation, a 40-byte slot and the
//! table's slack).
//!
//! A tomb removed (a redrive revives the task) leaves its bytes in the arena until more than half
//! of it is dead; then the arena and the records are rebuilt. Records stay in the order the tombs
//! were made (finish order; snapshots keep it), so the oldest are forgotten first when the state
//! keeps at most `finished_keep_count` of them.

use super::Finished;
use hashbrown::HashTable;
use protocol::Status;
use std::hash::BuildHasher;

/// One tomb: the id is `ids[off..off + len]`.
#[derive(Debug, Clone, Copy)]
struct Rec {
    off: u32,
    len: u16,
    /// `None`: removed.
    status: Option<Status>,
    pooled: bool,
    hash: u64,
}

#[derive(Debug, Default)]
pub struct Tombs {
    ids: String,
    recs: Vec<Rec>,
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
    dead: usize,
    /// Every record before this one is removed (where [`Tombs::forget_oldest`] goes on from).
    front: usize,
    /// Ids that do not fit a record (longer than 65,535 bytes, or past 4 GiB of arena): rare.
    big: std::collections::HashMap<String, Finished>,
}

impl Tombs {
    pub fn len(&self) -> usize {
        self.index.len() + self.big.len()
    }

    pub fn reserve(&mut self, n: usize) {
        self.recs.reserve(n);
        let hasher = &self.hasher;
        let (ids, recs) = (&self.ids, &self.recs);
        self.index.reserve(n, |&i| hasher.hash_one(id_of(ids, &recs[i as usize])));
    }

    pub fn get(&self, id: &str) -> Option<Finished> {
        if let Some(f) = self.big.get(id) {
            return Some(*f);
        }
        let h = self.hasher.hash_one(id);
        let i = self.index.find(h, |&i| id_of(&self.ids, &self.recs[i as usize]) == id)?;
        let r = &self.recs[*i as usize];
        Some(Finished { status: r.status?, hash: r.hash, pooled: r.pooled })
    }

    pub fn insert(&mut self, id: &str, f: Finished) {
        self.remove(id);
        let Some((off, len)) = u32::try_from(self.ids.len())
            .ok()
            .zip(u16::try_from(id.len()).ok())
            .filter(|(off, len)| off.checked_add(u32::from(*len)).is_some())
        else {
            self.big.insert(id.to_string(), f);
            return;
        };
        self.ids.push_str(id);
        let n = self.recs.len() as u32;
        self.recs.push(Rec { off, len, status: Some(f.status), pooled: f.pooled, hash: f.hash });
        let hasher = &self.hasher;
        let (ids, recs) = (&self.ids, &self.recs);
        self.index.insert_unique(hasher.hash_one(id), n, |&i| hasher.hash_one(id_of(ids, &recs[i as usize])));
    }

    pub fn remove(&mut self, id: &str) -> Option<Finished> {
        if let Some(f) = self.big.remove(id) {
            return Some(f);
        }
        let h = self.hasher.hash_one(id);
        let entry = self.index.find_entry(h, |&i| id_of(&self.ids, &self.recs[i as usize]) == id).ok()?;
        let (i, _) = entry.remove();
        let r = &mut self.recs[i as usize];
        let out = Finished { status: r.status.take()?, hash: r.hash, pooled: r.pooled };
        self.dead += 1;
        if self.dead > 1024 && self.dead * 2 > self.recs.len() {
            self.rebuild();
        }
        Some(out)
    }

    /// Forgets the `n` oldest tombs (those made first), except those `pinned` says to keep:
    /// each of those is made again as the newest, so the next call does not meet it first.
    pub fn forget_oldest(&mut self, mut n: usize, pinned: impl Fn(&str) -> bool) {
        let end = self.recs.len();
        let mut kept = Vec::new();
        while n > 0 && self.front < end {
            let i = self.front;
            self.front += 1;
            let r = self.recs[i];
            let Some(status) = r.status else { continue };
            let id = id_of(&self.ids, &r);
            if pinned(id) {
                kept.push((id.to_string(), Finished { status, hash: r.hash, pooled: r.pooled }));
            } else {
                n -= 1;
            }
            let h = self.hasher.hash_one(id);
            if let Ok(entry) = self.index.find_entry(h, |&j| j as usize == i) {
                entry.remove();
            }
            self.recs[i].status = None;
            self.dead += 1;
        }
        for (id, f) in kept {
            self.insert(&id, f);
        }
        if self.dead > 1024 && self.dead * 2 > self.recs.len() {
            self.rebuild();
        }
    }

    /// The heap the tombs hold (capacities, slack included): divided by [`Tombs::len`], what a
    /// finished task costs in memory.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity()
            + self.recs.capacity() * std::mem::size_of::<Rec>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.big.keys().map(|k| k.capacity() + 48).sum::<usize>()
    }

    /// Every tomb, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Finished)> {
        self.recs
            .iter()
            .filter_map(|r| {
                Some((id_of(&self.ids, r), Finished { status: r.status?, hash: r.hash, pooled: r.pooled }))
            })
            .chain(self.big.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Drops the removed tombs' bytes and records.
    fn rebuild(&mut self) {
        let old = std::mem::take(self);
        let mut fresh = Tombs { hasher: old.hasher.clone(), big: old.big, ..Tombs::default() };
        fresh.reserve(old.index.len());
        for r in old.recs.iter().filter(|r| r.status.is_some()) {
            let f = Finished { status: r.status.expect("filtered"), hash: r.hash, pooled: r.pooled };
            fresh.insert(id_of(&old.ids, r), f);
        }
        *self = fresh;
    }
}

fn id_of<'a>(ids: &'a str, r: &Rec) -> &'a str {
    &ids[r.off as usize..r.off as usize + r.len as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(hash: u64) -> Finished {
        Finished { status: Status::Completed, hash, pooled: hash.is_multiple_of(2) }
    }

    #[test]
    fn the_oldest_tombs_are_forgotten_first_through_removals_and_rebuilds() {
        let mut t = Tombs::default();
        for i in 0..6000u64 {
            t.insert(&format!("T-{i}"), f(i));
        }
        // Revived (removed) here and there, then made again: it is now among the newest.
        t.remove("T-10");
        t.remove("T-11");
        t.insert("T-11", f(11));
        t.forget_oldest(5000, |_| false);
        assert_eq!(t.len(), 6000 - 1 - 5000);
        assert!(t.recs.len() < 6000, "rebuilt once more than half was dead");
        // The 5,000 oldest still there: T-0 to T-9, then T-12 to T-5001.
        assert_eq!(t.get("T-5001"), None, "the 5,000 oldest still there were forgotten");
        assert_eq!(t.get("T-5002"), Some(f(5002)));
        assert_eq!(t.get("T-11"), Some(f(11)), "made again after the others: newest");
        t.forget_oldest(1, |_| false);
        assert_eq!(t.get("T-5002"), None);
        assert_eq!(t.iter().count(), t.len());
        // A pinned tomb is kept, and made again as the newest.
        t.forget_oldest(3, |id| id == "T-5003");
        let got = [t.get("T-5003"), t.get("T-5004"), t.get("T-5006"), t.get("T-5007")];
        assert_eq!(got, [Some(f(5003)), None, None, Some(f(5007))], "5004 to 5006 forgotten in its place");
        t.forget_oldest(t.len() - 1, |_| false);
        assert_eq!(t.get("T-5003"), Some(f(5003)), "made again as the newest, so forgotten last");
        t.forget_oldest(usize::MAX, |_| false);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn tombs_behave_like_a_map_through_removals_and_rebuilds() {
        let mut t = Tombs::default();
        let mut model = std::collections::HashMap::new();
        for i in 0..5000u64 {
            let id = format!("T-{i}");
            t.insert(&id, f(i));
            model.insert(id, f(i));
        }
        // A redrive revives tombs; more than half go, so the arena is rebuilt.
        for i in (0..5000u64).filter(|i| i % 3 != 0) {
            let id = format!("T-{i}");
            assert_eq!(t.remove(&id), model.remove(&id));
        }
        assert!(t.recs.len() < 5000, "rebuilt: {}", t.recs.len());
        t.insert("T-3", f(77));
        model.insert("T-3".into(), f(77));
        let long = "x".repeat(70_000);
        t.insert(&long, f(5));
        model.insert(long.clone(), f(5));
        assert_eq!(t.len(), model.len());
        for (id, v) in &model {
            assert_eq!(t.get(id), Some(*v), "{id}");
        }
        assert_eq!(t.get("T-1"), None);
        assert_eq!(t.remove("nope"), None);
        let mut all: Vec<(String, u64)> = t.iter().map(|(id, v)| (id.to_string(), v.hash)).collect();
        all.sort();
        let mut want: Vec<(String, u64)> = model.iter().map(|(k, v)| (k.clone(), v.hash)).collect();
        want.sort();
        assert_eq!(all, want);
        assert_eq!(t.remove(&long), Some(f(5)));
    }

    /// What a finished task costs: about 30 bytes and its id, slack included (BENCHMARKS.md).
    #[test]
    fn a_tomb_costs_tens_of_bytes() {
        let mut t = Tombs::default();
        let n = 1_000_000;
        for i in 0..n {
            t.insert(&format!("S-{i:08}"), f(i as u64));
        }
        let per = t.heap_bytes() as f64 / n as f64;
        println!("tombs: {n} finished tasks with 10-byte ids, {per:.1} bytes each (heap, slack included)");
        assert_eq!(std::mem::size_of::<Rec>(), 16);
        assert!(per < 50.0, "{per} bytes per tomb");
    }
}

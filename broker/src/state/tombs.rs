//! The tombs: what the state remembers of each finished task (status, submit hash, pooled), by
//! id, for duplicate checks and redrives. There can be a million of them, so each is kept small
//! and the whole stays flat under churn:
//!
//! - Every tomb has an *ordinal*, its place in finish order, counted over the root's whole
//!   history. Ordinals never change: the tomb files on disk (`journal/tombs-<first>.jsonl`) hold
//!   line `i` for ordinal `first + i`, so a compaction writes only the tombs made since the last
//!   one instead of every tomb again.
//! - Tombs live in chunks of [`CHUNK`] consecutive ordinals, each with one string holding its ids
//!   and a 16-byte record per tomb (where its id ends, the hash, the status, the pooled flag).
//!   The index is a table of ordinals. About 33 bytes plus the id's length per finished task.
//! - The oldest are forgotten first (when the state keeps at most `finished_keep_count`), so the
//!   memory of forgotten tombs goes back a whole chunk at a time from the front: under a steady
//!   limit the tombs hold the limit plus at most one chunk, never a rebuild's doubling. A chunk
//!   whose tombs were all removed (redrives revive tasks) is freed where it stands.

use super::Finished;
use hashbrown::HashTable;
use protocol::Status;
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// Tombs per chunk: 64 KiB of records, and the chunk's ids.
pub const CHUNK: usize = 4096;

/// One tomb: its id is the chunk's `ids[previous record's end..end]`.
#[derive(Debug, Clone, Copy)]
struct Rec {
    end: u32,
    /// `None`: removed, forgotten, or never a tomb (a gap in the ordinals).
    status: Option<Status>,
    pooled: bool,
    hash: u64,
}

#[derive(Debug, Default)]
struct Chunk {
    ids: String,
    /// Empty once freed (every tomb in it removed): its ordinals are all dead.
    recs: Vec<Rec>,
    live: u32,
}

impl Chunk {
    fn id(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.recs[i - 1].end as usize };
        &self.ids[start..self.recs[i].end as usize]
    }
}

#[derive(Debug, Default)]
pub struct Tombs {
    chunks: VecDeque<Chunk>,
    /// The ordinal of the first chunk's first record.
    first: u64,
    /// The ordinal the next tomb gets.
    next: u64,
    /// Every ordinal before this one is dead (where [`Tombs::forget_oldest`] goes on from).
    front: u64,
    index: HashTable<u64>,
    hasher: std::hash::RandomState,
    len: usize,
}

impl Tombs {
    /// No tombs, the next one to get `ordinal` (a state read from a snapshot whose tomb files
    /// start there).
    pub fn starting_at(ordinal: u64) -> Self {
        Self { first: ordinal, next: ordinal, front: ordinal, ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every ordinal before this one is dead.
    pub fn front(&self) -> u64 {
        self.front
    }

    /// The ordinal the next tomb gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn reserve(&mut self, n: usize) {
        let (hasher, chunks, first) = (&self.hasher, &self.chunks, self.first);
        self.index.reserve(n, |&o| hasher.hash_one(id_at(chunks, first, o)));
    }

    pub fn get(&self, id: &str) -> Option<Finished> {
        let h = self.hasher.hash_one(id);
        let o = *self.index.find(h, |&o| id_at(&self.chunks, self.first, o) == id)?;
        self.entry(o).map(|(_, f)| f)
    }

    /// The tomb with `ordinal`, if it is alive.
    pub fn entry(&self, ordinal: u64) -> Option<(&str, Finished)> {
        let (c, i) = self.locate(ordinal)?;
        let chunk = &self.chunks[c];
        let r = chunk.recs[i];
        Some((chunk.id(i), Finished { status: r.status?, hash: r.hash, pooled: r.pooled }))
    }

    pub fn insert(&mut self, id: &str, f: Finished) {
        self.remove(id);
        let o = self.push(id, Some(f));
        let (hasher, chunks, first) = (&self.hasher, &self.chunks, self.first);
        self.index.insert_unique(hasher.hash_one(id), o, |&o| hasher.hash_one(id_at(chunks, first, o)));
        self.len += 1;
    }

    /// Inserts a tomb read back with its `ordinal` (at least [`Tombs::next`]): the ordinals
    /// between are dead.
    pub fn insert_at(&mut self, ordinal: u64, id: &str, f: Finished) {
        self.skip_to(ordinal);
        self.insert(id, f);
    }

    /// Makes every ordinal before `ordinal` dead (tombs read back whose last ones were removed,
    /// or that no tomb file covered). Whole chunks of them cost no records.
    pub fn skip_to(&mut self, ordinal: u64) {
        while self.next < ordinal {
            if self.next == self.whole() && ordinal - self.next >= CHUNK as u64 {
                if self.chunks.is_empty() {
                    self.first = self.next;
                }
                self.chunks.push_back(Chunk::default());
                self.next += CHUNK as u64;
            } else {
                self.push("", None);
            }
        }
        self.pop_dead_front();
    }

    /// The ordinal after the last chunk's last place: `next` when the last chunk is full.
    fn whole(&self) -> u64 {
        if self.chunks.is_empty() { self.next } else { self.first + (self.chunks.len() * CHUNK) as u64 }
    }

    pub fn remove(&mut self, id: &str) -> Option<Finished> {
        let h = self.hasher.hash_one(id);
        let (chunks, first) = (&self.chunks, self.first);
        let entry = self.index.find_entry(h, |&o| id_at(chunks, first, o) == id).ok()?;
        let (o, _) = entry.remove();
        let out = self.kill(o);
        self.pop_dead_front();
        out
    }

    /// Forgets the `n` oldest tombs (those made first), except those `pinned` says to keep:
    /// each of those is made again as the newest, so the next call does not meet it first.
    pub fn forget_oldest(&mut self, mut n: usize, pinned: impl Fn(&str) -> bool) {
        let end = self.next;
        let mut kept = Vec::new();
        while n > 0 && self.front < end {
            let o = self.front;
            let Some((c, i)) = self.locate(o) else {
                // A freed chunk: skip it whole.
                let c = ((o - self.first) / CHUNK as u64) as usize;
                self.front = (self.first + (c as u64 + 1) * CHUNK as u64).min(end);
                continue;
            };
            self.front += 1;
            let chunk = &self.chunks[c];
            let r = chunk.recs[i];
            let Some(status) = r.status else { continue };
            let id = chunk.id(i);
            if pinned(id) {
                kept.push((id.to_string(), Finished { status, hash: r.hash, pooled: r.pooled }));
            } else {
                n -= 1;
            }
            if let Ok(e) = self.index.find_entry(self.hasher.hash_one(id), |&j| j == o) {
                e.remove();
            }
            self.kill(o);
        }
        self.pop_dead_front();
        for (id, f) in kept {
            self.insert(&id, f);
        }
    }

    /// The live tombs with ordinals from `from` on, in finish order: dead ordinals are `None`.
    pub fn ordinals_from(&self, from: u64) -> impl Iterator<Item = Option<(&str, Finished)>> {
        (from..self.next).map(|o| self.entry(o))
    }

    /// The dead ordinals in `from..to` (at or after the front).
    pub fn dead_in(&self, from: u64, to: u64) -> Vec<u64> {
        (from.max(self.front)..to.min(self.next)).filter(|&o| self.entry(o).is_none()).collect()
    }

    /// The heap the tombs hold (capacities, slack included): divided by [`Tombs::len`], what a
    /// finished task costs in memory.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.ids.capacity() + c.recs.capacity() * size_of::<Rec>()).sum::<usize>()
            + self.chunks.capacity() * size_of::<Chunk>()
            + self.index.capacity() * (size_of::<u64>() + 1)
    }

    /// Every tomb, in finish order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Finished)> {
        self.chunks.iter().flat_map(|c| {
            (0..c.recs.len()).filter_map(move |i| {
                let r = c.recs[i];
                Some((c.id(i), Finished { status: r.status?, hash: r.hash, pooled: r.pooled }))
            })
        })
    }

    /// Chunk and record of a materialised ordinal.
    fn locate(&self, ordinal: u64) -> Option<(usize, usize)> {
        if ordinal < self.first || ordinal >= self.next {
            return None;
        }
        let at = (ordinal - self.first) as usize;
        let (c, i) = (at / CHUNK, at % CHUNK);
        (i < self.chunks[c].recs.len()).then_some((c, i))
    }

    /// Appends a record (a dead one when `f` is `None`) and returns its ordinal.
    fn push(&mut self, id: &str, f: Option<Finished>) -> u64 {
        // Full: every place taken (a freed chunk too), or no room for the id's bytes.
        let full = self.next == self.whole()
            || self
                .chunks
                .back()
                .is_none_or(|c| c.ids.len().checked_add(id.len()).is_none_or(|n| n > u32::MAX as usize));
        if full {
            let whole = self.whole();
            if let Some(last) = self.chunks.back_mut() {
                // A chunk cut short by a huge id keeps its place: the rest of it is dead.
                let end = last.ids.len() as u32;
                while self.next < whole && last.recs.len() < CHUNK {
                    last.recs.push(Rec { end, status: None, pooled: false, hash: 0 });
                }
                self.next = whole;
                last.ids.shrink_to_fit();
            }
            if self.chunks.is_empty() {
                self.first = self.next;
            }
            self.chunks.push_back(Chunk { ids: String::new(), recs: Vec::with_capacity(CHUNK), live: 0 });
        }
        let last = self.chunks.back_mut().expect("pushed");
        last.ids.push_str(id);
        let rec = match f {
            Some(f) => {
                Rec { end: last.ids.len() as u32, status: Some(f.status), pooled: f.pooled, hash: f.hash }
            }
            None => Rec { end: last.ids.len() as u32, status: None, pooled: false, hash: 0 },
        };
        last.live += u32::from(rec.status.is_some());
        last.recs.push(rec);
        self.next += 1;
        self.next - 1
    }

    /// Marks the live tomb `ordinal` dead (already out of the index); frees its chunk when it
    /// was the chunk's last live tomb.
    fn kill(&mut self, ordinal: u64) -> Option<Finished> {
        let (c, i) = self.locate(ordinal)?;
        let last = c + 1 == self.chunks.len();
        let chunk = &mut self.chunks[c];
        let r = &mut chunk.recs[i];
        let out = Finished { status: r.status.take()?, hash: r.hash, pooled: r.pooled };
        chunk.live -= 1;
        self.len -= 1;
        if chunk.live == 0 && !last {
            *chunk = Chunk::default();
        }
        Some(out)
    }

    /// Drops whole chunks from the front once every ordinal in them is dead.
    fn pop_dead_front(&mut self) {
        while self.chunks.len() > 1 {
            let c = &self.chunks[0];
            if !(c.recs.is_empty() || self.first + CHUNK as u64 <= self.front) {
                break;
            }
            self.chunks.pop_front();
            self.first += CHUNK as u64;
            self.front = self.front.max(self.first);
        }
    }
}

fn id_at(chunks: &VecDeque<Chunk>, first: u64, ordinal: u64) -> &str {
    let at = (ordinal - first) as usize;
    chunks[at / CHUNK].id(at % CHUNK)
}

#[cfg(test)]
mod tests;

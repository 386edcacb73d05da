use super::*;
use crate::journal::{Journal, load};
use protocol::{Status, Timestamp};
use runtime_layout::{Durability, RealFs};

/// Tombs by ordinal from 0: `None` is dead.
#[derive(Default)]
struct Fake {
    front: u64,
    tombs: Vec<Option<String>>,
}

impl Fake {
    fn add(&mut self, n: usize) {
        for _ in 0..n {
            let o = self.tombs.len();
            self.tombs.push(Some(format!("T-{o}")));
        }
    }
    fn live(&self) -> Vec<(u64, String)> {
        (self.front..self.tombs.len() as u64)
            .filter_map(|o| self.tombs[o as usize].clone().map(|id| (o, id)))
            .collect()
    }
}

impl TombSource for Fake {
    fn front(&self) -> u64 {
        self.front
    }
    fn next(&self) -> u64 {
        self.tombs.len() as u64
    }
    fn write_lines(&self, from: u64, w: &mut dyn std::io::Write) -> serde_json::Result<()> {
        for o in from..self.next() {
            match &self.tombs[o as usize] {
                Some(id) => serde_json::to_writer(
                    &mut *w,
                    &Tomb { id: id.clone(), status: Status::Completed, hash: o, pooled: false },
                )?,
                None => w.write_all(b"null").map_err(serde_json::Error::io)?,
            }
            w.write_all(b"\n").map_err(serde_json::Error::io)?;
        }
        Ok(())
    }
}

/// Compacts with a snapshot naming `fake`'s tombs, as the state writes it.
fn compact(j: &mut Journal, fake: &Fake) {
    j.push(Timestamp::from_micros(0), crate::journal::Entry::Snapshot { through: 0 });
    let seq = j.next_seq() - 1;
    let names = NameSource::new();
    j.compact_with(&RealFs, seq, &names, fake, |w, fresh| {
        let gone: Vec<u64> =
            (fake.front..fresh.min(fake.next())).filter(|&o| fake.tombs[o as usize].is_none()).collect();
        let snap = Snapshot {
            seq,
            tombs_front: fake.front,
            tombs_next: fake.next(),
            tombs_gone: gone,
            ..Default::default()
        };
        serde_json::to_writer(w, &snap)
    })
    .unwrap();
}

fn read_back(dir: &Path) -> (Vec<(u64, String)>, Notes) {
    let l = load(&RealFs, dir).unwrap();
    let s = l.snapshot.unwrap();
    assert_eq!(s.tombs.len(), s.tomb_ordinals.len());
    (s.tomb_ordinals.iter().copied().zip(s.tombs.into_iter().map(|t| t.id)).collect(), l.notes)
}

fn tomb_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tombs-"))
        .collect();
    v.sort();
    v
}

/// Through compactions that extend the newest file, start new ones, see tombs die in files
/// already written and the front pass whole files, what is read back is exactly what lives.
#[test]
fn what_lives_is_read_back_through_merges_deaths_and_pruning() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    let mut fake = Fake::default();
    fake.add(100);
    compact(&mut j, &fake);
    assert_eq!(tomb_files(d.path()), vec![tomb_name(0)]);
    // Small: the next compaction extends the same file; a tomb in it died meanwhile.
    fake.tombs[7] = None;
    fake.add(50);
    compact(&mut j, &fake);
    assert_eq!(tomb_files(d.path()), vec![tomb_name(0)]);
    assert_eq!(read_back(d.path()).0, fake.live());
    // Past MERGE_BELOW: a new file starts.
    fake.add(30_000);
    compact(&mut j, &fake);
    fake.add(10);
    compact(&mut j, &fake);
    assert_eq!(tomb_files(d.path()).len(), 2, "{:?}", tomb_files(d.path()));
    fake.tombs[30_005] = None;
    fake.front = 150;
    fake.add(5);
    compact(&mut j, &fake);
    let (back, notes) = read_back(d.path());
    assert_eq!(back, fake.live());
    assert_eq!(notes, Notes::default());
    // The front passes the first file whole: it goes.
    fake.front = 30_160;
    fake.add(1);
    compact(&mut j, &fake);
    assert_eq!(tomb_files(d.path()).len(), 1, "{:?}", tomb_files(d.path()));
    assert_eq!(read_back(d.path()).0, fake.live());
    // A restart goes on from the snapshot's files.
    drop(j);
    let mut j = Journal::open(&RealFs, d.path(), 100, Durability::Batch).unwrap();
    j.settle_tombs(fake.next());
    fake.add(3);
    compact(&mut j, &fake);
    assert_eq!(read_back(d.path()).0, fake.live());
}

/// A crash after the tomb file is written but before the snapshot: the old snapshot reads the
/// same tombs it always did, and the leftover is removed by the next compaction.
#[test]
fn a_crash_before_the_snapshot_leaves_the_old_one_whole() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    let mut fake = Fake::default();
    fake.add(30);
    compact(&mut j, &fake);
    let before = read_back(d.path()).0;
    // Tombs die and are made; the tomb file is rewritten (extended), then the crash.
    fake.tombs[3] = None;
    fake.add(10);
    j.tombs.write(&RealFs, d.path(), &NameSource::new(), true, &fake).unwrap();
    assert_eq!(read_back(d.path()).0, before, "the old snapshot's lines are the same bytes");
    // A file beyond the snapshot's range (a new file, not an extension) is stale at restart.
    std::fs::write(d.path().join(tomb_name(35)), "{\"id\":\"X\",\"status\":\"COMPLETED\",\"hash\":1}\n")
        .unwrap();
    drop(j);
    let mut j = Journal::open(&RealFs, d.path(), 50, Durability::Batch).unwrap();
    j.settle_tombs(30);
    assert_eq!(read_back(d.path()).0, before);
    compact(&mut j, &fake);
    assert_eq!(read_back(d.path()).0, fake.live());
    assert_eq!(tomb_files(d.path()), vec![tomb_name(0)], "the leftover is gone");
}

/// A damaged line or a missing file is set aside with where and why; the rest is served.
#[test]
fn damage_is_set_aside_and_the_rest_served() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    let mut fake = Fake::default();
    fake.add(30_000);
    compact(&mut j, &fake);
    fake.add(30_000);
    compact(&mut j, &fake);
    let files = tomb_files(d.path());
    assert_eq!(files.len(), 2);
    // Line 3 of the first file damaged; the second file gone.
    let first = d.path().join(&files[0]);
    let text = std::fs::read_to_string(&first).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"id\": ";
    std::fs::write(&first, lines.join("\n") + "\n").unwrap();
    std::fs::remove_file(d.path().join(&files[1])).unwrap();
    let (back, notes) = read_back(d.path());
    let mut want = fake.live();
    want.truncate(30_000);
    want.remove(2);
    assert_eq!(back, want);
    assert_eq!(notes.set_aside.len(), 2, "{:?}", notes.set_aside);
    assert!(notes.set_aside[0].contains("line 3"), "{}", notes.set_aside[0]);
    assert!(notes.set_aside[1].contains("end at 30000"), "{}", notes.set_aside[1]);
    // The range stays as the snapshot says: a tomb made after a restart never takes an ordinal
    // the missing file may still hold (the snapshot is still the durable one).
    let snap = load(&RealFs, d.path()).unwrap().snapshot.unwrap();
    assert_eq!((snap.tombs_front, snap.tombs_next), (0, 60_000));
    let state = crate::state::State::from_snapshot(snap, 10, 0);
    assert_eq!(state.finished_count(), 29_999);
    assert_eq!(crate::journal::TombSource::next(&state), 60_000);
}

/// A snapshot whose range no tomb file could hold is not one the broker wrote: it is set aside
/// and the state rebuilt from the segments, never a table of a trillion dead ordinals.
#[test]
fn an_implausible_range_sets_the_snapshot_aside() {
    let d = tempfile::tempdir().unwrap();
    drop(Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap());
    for (front, next) in [(0u64, 1u64 << 40), (9, 3), (0, u64::MAX)] {
        let snap = Snapshot { seq: 4, tombs_front: front, tombs_next: next, ..Default::default() };
        std::fs::write(d.path().join("snapshot-0000000000000004.json"), serde_json::to_vec(&snap).unwrap())
            .unwrap();
        let l = load(&RealFs, d.path()).unwrap();
        assert!(l.snapshot.is_none(), "{front}..{next}");
        assert!(l.notes.set_aside.iter().any(|n| n.contains("rebuilt from every segment")), "{:?}", l.notes);
    }
}

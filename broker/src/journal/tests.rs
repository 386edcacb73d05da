//! The journal's own rules: numbering, torn tails, set-aside lines, snapshots, the reserve of
//! zeros appends go into, and reading every segment back.

use super::*;
use runtime_layout::RealFs;

fn stray(why: &str) -> Entry {
    Entry::Stray { reason: why.into(), path: String::new(), from: String::new() }
}

#[test]
fn records_survive_restart_and_torn_tails_are_ignored() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    for i in 0..3 {
        j.push(Timestamp::from_micros(i), stray(&format!("t{i}")));
    }
    j.commit(&RealFs).unwrap();
    // The records, then the reserve of zeros the next appends go into.
    let seg = d.path().join(segment_name(1));
    let records = segment_bytes(&RealFs, &seg).unwrap().len() as u64;
    assert!(records > 0 && std::fs::metadata(&seg).unwrap().len() >= records + RESERVE);
    // A torn append: half a line where the next records go.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, b"{\"seq\":4,\"ts\":", records))
        .unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(l.notes.torn.len(), 1);
    // A new segment after restart continues the sequence.
    let j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
    // A segment whose only record was torn is started afresh, not appended to.
    drop(j);
    std::fs::write(d.path().join(segment_name(4)), b"{\"seq\":4,\"ts").unwrap();
    assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 3);
    let mut j = Journal::open(&RealFs, d.path(), 4, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(9), stray("d"));
    j.commit(&RealFs).unwrap();
    assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 4);
}

/// Commits append into a reserve of zeros written ahead, so the segment's size (and so its
/// metadata) stays put between reserves; trimming leaves the records alone.
#[test]
fn commits_append_into_a_reserve_of_zeros_that_a_trim_cuts_off() {
    let d = tempfile::tempdir().unwrap();
    let seg = d.path().join(segment_name(1));
    let size = || std::fs::metadata(&seg).unwrap().len();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(0), stray("first"));
    j.commit(&RealFs).unwrap();
    let first = size();
    assert!(first > RESERVE, "{first} B");
    let pad = "p".repeat(1000);
    let mut sizes = std::collections::BTreeSet::new();
    for i in 0..2000 {
        j.push(Timestamp::from_micros(i), stray(&pad));
        j.commit(&RealFs).unwrap();
        sizes.insert(size());
    }
    // About 2 MB of records: the reserve was written again twice or three times, never
    // with every commit.
    assert!((2..=4).contains(&sizes.len()), "{} sizes for 2,000 commits: {sizes:?}", sizes.len());
    let records = segment_bytes(&RealFs, &seg).unwrap();
    assert!(size() > records.len() as u64);
    assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 2001);
    j.trim();
    assert_eq!(std::fs::read(&seg).unwrap(), records, "trimmed: the records alone, no zeros");
    // Appending after a trim grows the segment again, from its records' end.
    j.push(Timestamp::from_micros(0), stray("after"));
    j.commit(&RealFs).unwrap();
    assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 2002);
}

/// Without fsyncs (`never`) a reserve buys nothing: none is written.
#[test]
fn a_journal_that_never_fsyncs_writes_no_reserve() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Never).unwrap();
    j.push(Timestamp::from_micros(0), stray("s"));
    j.commit(&RealFs).unwrap();
    let seg = d.path().join(segment_name(1));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), segment_bytes(&RealFs, &seg).unwrap().len() as u64);
}

/// A segment's records end at its first zeros. A power loss keeps a commit's pages in any
/// order, so a line after zeros is the rest of a commit cut short, never acknowledged: not read
/// (the power-loss suite found the harm: a message's consumption replayed without its report).
/// A damaged line without zeros is set aside and the rest is read, as always.
#[test]
fn a_segment_s_records_end_at_its_first_zeros() {
    let d = tempfile::tempdir().unwrap();
    let line = |seq: u64| {
        serde_json::to_string(&Record { seq, ts: Timestamp::from_micros(0), entry: stray("s") }).unwrap()
    };
    let mut body = format!("{}\ngarbage\n{}\n{{\"seq\":4,\"ts", line(1), line(3)).into_bytes();
    body.extend([0u8; 4096]);
    body.extend(format!("\n{}\n{{\"seq\":6", line(5)).into_bytes());
    body.extend([0u8; 4096]);
    std::fs::write(d.path().join(segment_name(1)), &body).unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(l.notes.set_aside.len(), 1, "the garbage line: {:?}", l.notes);
    let torn = l.notes.torn.join("\n");
    assert!(torn.contains("line 4") && torn.contains("is not read"), "{torn}");
    // Zeros at the end alone (the reserve) are no damage at all.
    let mut body = format!("{}\n", line(1)).into_bytes();
    body.extend([0u8; 4096]);
    std::fs::write(d.path().join(segment_name(1)), &body).unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!((l.records.len(), l.notes.torn.len(), l.notes.set_aside.len()), (1, 0, 0), "{:?}", l.notes);
}

/// A start that crashed before its first records reached the disk left a segment of zeros:
/// the next start with that sequence number replaces it (nothing in it to keep), where a
/// segment holding bytes of a record is moved aside.
#[test]
fn a_segment_of_zeros_alone_is_started_afresh() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(segment_name(1)), vec![0u8; 8192]).unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(0), stray("s"));
    j.commit(&RealFs).unwrap();
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(!names.iter().any(|n| n.contains("displaced")), "{names:?}");
    assert_eq!(load(&RealFs, d.path()).unwrap().records.len(), 1);
}

/// Damage in the middle of a segment, a record this version cannot decode and a sequence
/// number out of order are each set aside with where and why; the rest replays.
#[test]
fn unreadable_records_are_set_aside_and_the_rest_replays() {
    let d = tempfile::tempdir().unwrap();
    let line = |seq: u64| {
        serde_json::to_string(&Record { seq, ts: Timestamp::from_micros(0), entry: stray("s") }).unwrap()
    };
    let future = r#"{"seq":3,"ts":"2026-01-01T00:00:00Z","op":"teleport","task_id":"T"}"#;
    let bad_time = r#"{"seq":4,"ts":"9999-12-31T23:30:00-01:00","op":"stray","reason":"r","path":"p"}"#;
    let body = format!("{}\ngarbage\n{future}\n{bad_time}\n{}\n{}\n{}\n", line(1), line(5), line(2), line(6));
    std::fs::write(d.path().join(segment_name(1)), body).unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 5, 6]);
    let why = l.notes.set_aside.join("\n");
    assert_eq!(l.notes.set_aside.len(), 4, "{why}");
    assert!(why.contains("line 2") && why.contains("teleport") && why.contains("0000-9999"), "{why}");
    assert!(why.contains("record 2 comes after record 5"), "{why}");
    assert!(l.notes.torn.is_empty());
}

/// A snapshot that cannot be read is set aside and the state is rebuilt from every segment.
#[test]
fn an_unreadable_snapshot_falls_back_to_every_segment() {
    let d = tempfile::tempdir().unwrap();
    let names = NameSource::new();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(0), stray("a"));
    j.push(Timestamp::from_micros(0), stray("b"));
    j.compact(&RealFs, &Snapshot { seq: 2, ..Default::default() }, &names).unwrap();
    j.push(Timestamp::from_micros(0), stray("c"));
    j.commit(&RealFs).unwrap();
    std::fs::write(d.path().join(format!("snapshot-{:016}.json", 2)), b"{\"seq\": 2, \"live\": [").unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert!(l.snapshot.is_none());
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(l.notes.set_aside[0].contains("rebuilt from every segment"), "{:?}", l.notes);
}

#[test]
fn compaction_archives_old_segments_and_replays_only_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let names = NameSource::new();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(0), stray("a"));
    j.push(Timestamp::from_micros(0), stray("b"));
    let snap = Snapshot { seq: 2, ..Default::default() };
    j.compact(&RealFs, &snap, &names).unwrap();
    j.push(Timestamp::from_micros(0), stray("c"));
    j.commit(&RealFs).unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!(l.snapshot.unwrap().seq, 2);
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(all_segments(&RealFs, d.path()).unwrap().len(), 2);
    assert!(d.path().join("archive").join(segment_name(1)).exists());
}

#[test]
fn a_segment_is_created_at_the_first_commit_and_only_then() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.commit(&RealFs).unwrap();
    assert!(all_segments(&RealFs, d.path()).unwrap().is_empty(), "nothing recorded, no segment");
    j.push(Timestamp::from_micros(0), stray("a"));
    j.commit(&RealFs).unwrap();
    assert_eq!(all_segments(&RealFs, d.path()).unwrap(), [d.path().join(segment_name(1))]);
    let mut ro = Journal::read_only(d.path(), 2);
    ro.commit(&RealFs).unwrap();
    ro.push(Timestamp::from_micros(0), stray("b"));
    assert!(ro.commit(&RealFs).is_err(), "a read-only journal refuses records");
}

/// A hard link to a file outside the journal (or a symlink), planted at the name of the next
/// segment, is moved aside untouched; the records go into a segment of the journal's own.
#[test]
fn a_file_planted_at_the_next_segment_name_is_never_appended_to() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let (dir, outside) = (d.path().join("journal"), d.path().join("outside"));
    std::fs::create_dir_all(&outside).unwrap();
    let bait = outside.join("bait");
    std::fs::write(&bait, b"someone else's").unwrap();
    let mut j = Journal::open(&RealFs, &dir, 1, Durability::Batch).unwrap();
    std::fs::hard_link(&bait, dir.join(segment_name(1))).unwrap();
    j.push(Timestamp::from_micros(0), stray("a"));
    j.commit(&RealFs).unwrap();
    let snap = Snapshot { seq: 1, ..Default::default() };
    std::os::unix::fs::symlink(&bait, dir.join(segment_name(2))).unwrap();
    j.compact(&RealFs, &snap, &NameSource::new()).unwrap();
    j.push(Timestamp::from_micros(0), stray("b"));
    j.commit(&RealFs).unwrap();
    assert_eq!(std::fs::read(&bait).unwrap(), b"someone else's");
    assert_eq!(std::fs::metadata(&bait).unwrap().nlink(), 2, "the link was moved, not removed");
    let l = load(&RealFs, &dir).unwrap();
    assert_eq!(l.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    let displaced = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".displaced-"));
    assert_eq!(displaced.count(), 2);
}

#[test]
fn trace_reads_compressed_and_plain_segments_alike_each_once() {
    let d = tempfile::tempdir().unwrap();
    let names = NameSource::new();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Batch).unwrap();
    j.push(Timestamp::from_micros(0), stray("a"));
    j.push(Timestamp::from_micros(0), stray("b"));
    j.compact(&RealFs, &Snapshot { seq: 2, ..Default::default() }, &names).unwrap();
    j.push(Timestamp::from_micros(0), stray("c"));
    j.commit(&RealFs).unwrap();
    let plain = d.path().join("archive").join(segment_name(1));
    let mut c = archive::Compressor::start(&RealFs, &plain, true).unwrap();
    assert!(matches!(c.step(&RealFs, 1 << 20).unwrap(), archive::Progress::Done { .. }));
    assert!(
        !plain.exists() && d.path().join("archive").join(archive::compressed_name(&segment_name(1))).exists()
    );
    let seqs = |d: &Path| {
        let mut out = Vec::new();
        for s in all_segments(&RealFs, d).unwrap() {
            read_segment(&RealFs, &s, |r, _, _| out.push(r.seq), &mut Notes::default()).unwrap();
        }
        out
    };
    assert_eq!(seqs(d.path()), vec![1, 2, 3]);
    // A crash between the rename and the removal leaves both forms: read once.
    std::fs::write(&plain, segment_bytes(&RealFs, &all_segments(&RealFs, d.path()).unwrap()[0]).unwrap())
        .unwrap();
    assert_eq!(seqs(d.path()), vec![1, 2, 3]);
    assert_eq!(all_segments(&RealFs, d.path()).unwrap()[0], plain, "the plain copy is the one read");
    // Listed plain, then compressed before it is read (a reader beside a running broker):
    // the compressed form is read in its place.
    let listed = all_segments(&RealFs, d.path()).unwrap();
    std::fs::remove_file(&plain).unwrap();
    let mut out = Vec::new();
    read_segment(&RealFs, &listed[0], |r, _, _| out.push(r.seq), &mut Notes::default()).unwrap();
    assert_eq!(out, vec![1, 2], "segment 1 holds records 1 and 2");
    // Replay never reads the archive.
    assert_eq!(load(&RealFs, d.path()).unwrap().records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
}

/// One piece of a segment's bytes for [`a_segment_reads_the_same_plain_and_compressed`].
#[derive(Debug, Clone)]
enum Piece {
    Record,
    Garbage,
    Empty,
    Zeros(usize),
    Torn,
}

fn piece() -> impl proptest::strategy::Strategy<Value = Piece> {
    use proptest::prelude::*;
    prop_oneof![
        6 => Just(Piece::Record),
        1 => Just(Piece::Garbage),
        1 => Just(Piece::Empty),
        1 => (1usize..300).prop_map(Piece::Zeros),
        1 => Just(Piece::Torn),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// A compressed segment is read as a stream, a plain one from its bytes: whatever the bytes
    /// (records, damaged lines, empty lines, zeros anywhere, a torn tail), both give the same
    /// records, with the same line numbers, and the same notes.
    #[test]
    fn a_segment_reads_the_same_plain_and_compressed(pieces in proptest::collection::vec(piece(), 0..40)) {
        let mut body = Vec::new();
        let mut seq = 0;
        for p in &pieces {
            match p {
                Piece::Record => {
                    seq += 1;
                    let r = Record { seq, ts: Timestamp::from_micros(0), entry: stray("s") };
                    body.extend(serde_json::to_vec(&r).unwrap());
                    body.push(b'\n');
                }
                Piece::Garbage => body.extend(b"{not a record}\n"),
                Piece::Empty => body.push(b'\n'),
                Piece::Zeros(n) => body.extend(std::iter::repeat_n(0u8, *n)),
                Piece::Torn => body.extend(b"{\"seq\":9"),
            }
        }
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join(segment_name(1));
        let zst = d.path().join(archive::compressed_name(&segment_name(1)));
        std::fs::write(&plain, &body).unwrap();
        std::fs::write(&zst, zstd::encode_all(&body[..], 3).unwrap()).unwrap();
        let read = |path: &Path| {
            let (mut out, mut notes) = (Vec::new(), Notes::default());
            read_segment(&RealFs, path, |r, line, _| out.push((r.seq, line)), &mut notes).unwrap();
            // The notes name their file: compared without it.
            let name = path.display().to_string();
            for n in notes.torn.iter_mut().chain(notes.set_aside.iter_mut()) {
                *n = n.replace(&name, "");
            }
            (out, notes)
        };
        proptest::prop_assert_eq!(read(&plain), read(&zst));
    }
}

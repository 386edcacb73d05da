use super::*;

fn f(hash: u64) -> Finished {
    Finished { status: Status::Completed, hash, pooled: hash.is_multiple_of(2) }
}

#[test]
fn the_oldest_tombs_are_forgotten_first_through_removals() {
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
    assert_eq!(t.chunks.len(), 1, "the first chunk, all dead, was dropped");
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
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn tombs_behave_like_a_map_through_removals_and_freed_chunks() {
    let mut t = Tombs::default();
    let mut model = std::collections::HashMap::new();
    for i in 0..20_000u64 {
        let id = format!("T-{i}");
        t.insert(&id, f(i));
        model.insert(id, f(i));
    }
    // A redrive revives tombs: every tomb of the second chunk, and a third of the others.
    for i in (0..20_000u64).filter(|i| (CHUNK as u64..2 * CHUNK as u64).contains(i) || i % 3 == 0) {
        let id = format!("T-{i}");
        assert_eq!(t.remove(&id), model.remove(&id));
    }
    assert!(t.chunks[1].recs.is_empty(), "a chunk with no tomb left is freed");
    t.insert("T-3", f(77));
    model.insert("T-3".into(), f(77));
    let long = "x".repeat(70_000);
    t.insert(&long, f(5));
    model.insert(long.clone(), f(5));
    assert_eq!(t.len(), model.len());
    for (id, v) in &model {
        assert_eq!(t.get(id), Some(*v), "{id}");
    }
    assert_eq!(t.get("T-1"), Some(f(1)));
    assert_eq!(t.get("T-0"), None);
    assert_eq!(t.remove("nope"), None);
    let mut all: Vec<(String, u64)> = t.iter().map(|(id, v)| (id.to_string(), v.hash)).collect();
    all.sort();
    let mut want: Vec<(String, u64)> = model.iter().map(|(k, v)| (k.clone(), v.hash)).collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(t.remove(&long), Some(f(5)));
    // Forgetting goes through the freed chunk.
    t.forget_oldest(usize::MAX, |_| false);
    assert_eq!((t.len(), t.chunks.len()), (0, 1));
}

/// Ordinals never change: what is read back at its ordinal is what was written there, and the
/// ordinals in between are dead.
#[test]
fn ordinals_are_stable_and_read_back_in_place() {
    let mut t = Tombs::default();
    for i in 0..10u64 {
        t.insert(&format!("T-{i}"), f(i));
    }
    t.remove("T-4");
    t.forget_oldest(2, |_| false);
    assert_eq!((t.front(), t.next()), (2, 10));
    assert_eq!(t.dead_in(0, 10), vec![4]);
    let lines: Vec<Option<String>> =
        t.ordinals_from(t.front()).map(|e| e.map(|(id, _)| id.to_string())).collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[2], None, "T-4, removed");
    // Read back as a snapshot would: from the front, the removed one skipped.
    let mut back = Tombs::starting_at(t.front());
    for (o, e) in (t.front()..).zip(t.ordinals_from(t.front())) {
        if let Some((id, v)) = e {
            back.insert_at(o, id, v);
        }
    }
    back.skip_to(t.next());
    assert_eq!((back.front(), back.next(), back.len()), (t.front(), t.next(), t.len()));
    for o in t.front()..t.next() {
        assert_eq!(back.entry(o), t.entry(o), "ordinal {o}");
    }
    // Both go on alike.
    t.insert("U", f(1));
    back.insert("U", f(1));
    assert_eq!(t.entry(10), back.entry(10));
    assert_eq!(t.entry(10).map(|e| e.0), Some("U"));
}

/// Read back across a long run of dead ordinals (a tomb file missing), the gap costs no records.
#[test]
fn a_long_gap_costs_no_records() {
    let mut t = Tombs::starting_at(10);
    t.insert_at(12, "A", f(1));
    t.insert_at(1_000_000, "B", f(2));
    t.skip_to(3_000_000);
    assert_eq!((t.front(), t.next(), t.len()), (10, 3_000_000, 2));
    assert!(t.heap_bytes() < 400_000, "{} bytes", t.heap_bytes());
    assert_eq!((t.get("A"), t.get("B")), (Some(f(1)), Some(f(2))));
    assert_eq!(t.entry(1_000_000).map(|e| e.0), Some("B"));
    t.insert("C", f(3));
    assert_eq!(t.entry(3_000_000).map(|e| e.0), Some("C"));
    t.forget_oldest(2, |_| false);
    assert_eq!((t.get("A"), t.get("B"), t.get("C")), (None, None, Some(f(3))));
    assert!(t.chunks.len() <= 2, "{} chunks", t.chunks.len());
}

/// Under a steady limit the tombs hold the limit and at most a chunk: the memory of forgotten
/// tombs comes back a chunk at a time, never a rebuild's doubling.
#[test]
fn memory_stays_flat_under_a_steady_limit() {
    let mut t = Tombs::default();
    let limit = 50_000;
    let mut samples = Vec::new();
    for i in 0..400_000u64 {
        t.insert(&format!("S-{i:08}"), f(i));
        if t.len() > limit {
            t.forget_oldest(t.len() - limit, |_| false);
        }
        if i % 50_000 == 49_999 && i >= 100_000 {
            samples.push(t.heap_bytes());
        }
    }
    let (lo, hi) = (*samples.iter().min().unwrap(), *samples.iter().max().unwrap());
    println!("tombs at a 50,000 limit: heap {lo} to {hi} bytes over {} samples", samples.len());
    assert!(t.chunks.len() <= limit / CHUNK + 2, "{} chunks", t.chunks.len());
    assert!((hi - lo) * 10 < hi, "heap spread {lo}..{hi}");
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

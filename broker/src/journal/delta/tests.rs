use super::*;
use crate::journal::{Admitted, Entry, Journal, Report, Snapshot, load, read_segment, segment_name};
use proptest::prelude::*;
use protocol::task::HistoryEntry;
use protocol::{Status, Timestamp};
use runtime_layout::{Durability, NameSource, RealFs};
use serde_json::json;

fn at(us: i64) -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000 + us)
}

fn queued() -> Place {
    Place::Queued { dir: "queues/work".into(), name: "2-x-T.json".into() }
}

fn submit(task: &Task) -> Entry {
    Entry::Submit(Admitted {
        task_id: task.task_id.clone(),
        task: task.clone(),
        place: Place::Backlog,
        msg: "m".into(),
        hash: 7,
        path: "p".into(),
    })
}

fn report(task: &Task, place: Place) -> Entry {
    Entry::Complete(Report {
        task_id: task.task_id.clone(),
        task: task.clone(),
        place,
        msg: "m".into(),
        agent: "Agent-1".into(),
        claim: "c".into(),
    })
}

/// A task taken one step on: status, a time, an attempt, a history entry.
fn step(task: &mut Task, us: i64, to: Status) {
    let from = task.status;
    task.status = to;
    task.updated_at = Some(at(us));
    task.attempts += u32::from(to == Status::InProgress);
    task.history.push(HistoryEntry {
        timestamp: at(us),
        actor: "mailroom".into(),
        action: "step".into(),
        from: Some(from),
        to: Some(to),
        details: Some(json!({"z": 1, "a": [1, 2]})),
    });
}

/// Writes `entries` through a journal the way the ledger does (each with the task before it),
/// and reads the segment back.
fn round_trip(entries: Vec<Entry>) -> (Vec<Record>, Vec<Record>, u64) {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Never).unwrap();
    let mut live: HashMap<String, Task> = HashMap::new();
    let mut written = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let prev = e.change().and_then(|(t, _)| live.get(&t.task_id)).cloned();
        let rec = j.push_change(at(i as i64), e, prev.as_ref());
        if let Some((t, p)) = rec.entry.change() {
            if *p == Place::Done {
                live.remove(&t.task_id);
            } else {
                live.insert(t.task_id.clone(), t.clone());
            }
        }
        written.push(rec);
    }
    j.commit(&RealFs).unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert!(l.notes.set_aside.is_empty() && l.notes.torn.is_empty(), "{:?}", l.notes);
    (written, l.records, j.written())
}

fn lifecycle(task: &Task) -> Vec<Entry> {
    let mut t = task.clone();
    let mut out = vec![submit(&t)];
    step(&mut t, 1, Status::Pending);
    out.push(Entry::Dispatch { task_id: t.task_id.clone(), task: t.clone(), place: queued() });
    step(&mut t, 2, Status::InProgress);
    out.push(Entry::Claim {
        task_id: t.task_id.clone(),
        task: t.clone(),
        place: queued(),
        agent: "A".into(),
    });
    step(&mut t, 3, Status::Completed);
    t.result = json!({"ok": true});
    out.push(report(&t, Place::Done));
    out
}

fn a_task(id: &str) -> Task {
    let mut t: Task = serde_json::from_value(json!({
        "task_id": id, "description": "x".repeat(600), "params": {"b": 1, "a": 2},
        "zeta": "kept first", "alpha": {"nested": [1, {"y": 2, "x": 1}]},
    }))
    .unwrap();
    step(&mut t, 0, Status::Pending);
    t
}

#[test]
fn a_lifecycle_reads_back_exactly_and_costs_a_fraction_of_whole_records() {
    let (written, read, bytes) = round_trip(lifecycle(&a_task("T-1")));
    assert_eq!(read, written);
    for (w, r) in written.iter().zip(&read) {
        let (a, b) = (w.entry.change().unwrap().0, r.entry.change().unwrap().0);
        assert_eq!(serde_json::to_vec(a).unwrap(), serde_json::to_vec(b).unwrap(), "byte for byte");
    }
    let whole: usize = written.iter().map(|r| serde_json::to_vec(r).unwrap().len() + 1).sum();
    assert!((bytes as usize) * 2 < whole, "{bytes} bytes with deltas, {whole} whole");
}

#[test]
fn a_change_that_would_reorder_unknown_fields_is_written_whole() {
    let base = a_task("T-2");
    // A field the protocol does not know added between two others (a board edit can do that).
    let mut v = serde_json::to_value(&base).unwrap();
    let m = v.as_object_mut().unwrap();
    let alpha = m.shift_remove("alpha").unwrap();
    m.insert("middle".into(), json!(1));
    m.insert("alpha".into(), alpha);
    let edited: Task = serde_json::from_value(v).unwrap();
    let (b, e) = (serde_json::to_value(&base).unwrap(), serde_json::to_value(&edited).unwrap());
    assert_eq!(Delta::between(b.as_object().unwrap(), e.as_object().unwrap()), None);
    let entries =
        vec![submit(&base), Entry::Dispatch { task_id: "T-2".into(), task: edited.clone(), place: queued() }];
    let (written, read, _) = round_trip(entries);
    assert_eq!(read, written);
    let bytes = serde_json::to_vec(read[1].entry.change().unwrap().0).unwrap();
    assert_eq!(bytes, serde_json::to_vec(&edited).unwrap());
    // Appended last, it is a delta.
    let mut later = edited.clone();
    later.extra.insert("omega".into(), json!(null));
    later.error = Some("e".into());
    let (l, e2) = (serde_json::to_value(&later).unwrap(), serde_json::to_value(&edited).unwrap());
    let d = Delta::between(e2.as_object().unwrap(), l.as_object().unwrap()).expect("a delta");
    let mut applied = e2.as_object().unwrap().clone();
    d.apply(&mut applied).unwrap();
    let back: Task = serde_json::from_value(Value::Object(applied)).unwrap();
    assert_eq!(serde_json::to_vec(&back).unwrap(), serde_json::to_vec(&later).unwrap());
}

#[test]
fn a_retried_task_and_a_new_segment_begin_whole() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Never).unwrap();
    let mut t = a_task("T-3");
    j.push_change(at(0), submit(&t), None);
    let before = t.clone();
    step(&mut t, 1, Status::Failed);
    j.push_change(at(1), report(&t, Place::Done), Some(&before));
    // Finished: the writer's state no longer holds it, so the retry is whole.
    step(&mut t, 2, Status::Pending);
    let retry = |t: &Task| Entry::Retry {
        task_id: t.task_id.clone(),
        task: t.clone(),
        place: Place::Backlog,
        msg: "r".into(),
    };
    j.push_change(at(2), retry(&t), None);
    j.commit(&RealFs).unwrap();
    let seg = std::fs::read_to_string(d.path().join(segment_name(1))).unwrap();
    let has_task: Vec<bool> =
        seg.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().get("task").is_some()).collect();
    assert_eq!(has_task, [true, false, true], "{seg}");
    // After compaction the next segment holds the task whole again, and reads on its own.
    j.compact(&RealFs, &Snapshot { seq: 3, ..Default::default() }, &NameSource::new()).unwrap();
    let before = t.clone();
    step(&mut t, 3, Status::Pending);
    j.push_change(at(3), retry(&t), Some(&before));
    j.commit(&RealFs).unwrap();
    let mut seen = Vec::new();
    read_segment(&RealFs, &d.path().join(segment_name(4)), |r, _, _| seen.push(r), &mut Default::default())
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].entry.change().unwrap().0, &t);
}

#[test]
fn a_change_whose_earlier_record_is_damaged_is_set_aside_with_why() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Never).unwrap();
    let mut live = a_task("T-4");
    for e in lifecycle(&live).into_iter().take(3) {
        let prev = live.clone();
        let rec = j.push_change(at(0), e, Some(&prev));
        live = rec.entry.change().unwrap().0.clone();
    }
    // A readable record after them: what comes before it is damage, not a torn tail.
    j.push(at(1), Entry::Stray { reason: "r".into(), path: "p".into(), from: String::new() });
    j.commit(&RealFs).unwrap();
    let path = d.path().join(segment_name(1));
    let seg = std::fs::read_to_string(&path).unwrap();
    let damaged: Vec<String> =
        seg.lines().enumerate().map(|(i, l)| if i == 0 { "garbage".into() } else { l.to_string() }).collect();
    std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
    let l = load(&RealFs, d.path()).unwrap();
    assert_eq!(l.records.len(), 1, "only the stray reads");
    let why = l.notes.set_aside.join("\n");
    assert!(why.contains("task `T-4` whose earlier record in this segment could not be read"), "{why}");
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-e]", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A task image: known fields and unknown ones in any order, any values.
fn image() -> impl Strategy<Value = Map<String, Value>> {
    let known = prop::collection::vec(prop::sample::select(vec!["params", "result", "error", "tags"]), 0..3);
    let unknown = prop::collection::vec(("[p-z]{1,2}", value()), 0..5);
    let history = prop::collection::vec(value(), 0..4);
    (known, unknown, history).prop_map(|(known, unknown, history)| {
        let mut m = Map::new();
        m.insert("task_id".into(), json!("T"));
        for k in known {
            m.insert(k.into(), if k == "tags" { json!(["a"]) } else { json!(k) });
        }
        m.insert("history".into(), Value::Array(history));
        for (k, v) in unknown {
            m.insert(k, v);
        }
        m
    })
}

/// The next image: fields changed, removed, added (unknown ones anywhere), history grown or not.
fn next(base: Map<String, Value>) -> impl Strategy<Value = (Map<String, Value>, Map<String, Value>)> {
    let n = base.len();
    (prop::collection::vec((0..n.max(1), 0..4u8, value()), 0..5), prop::collection::vec(value(), 0..3))
        .prop_map(move |(edits, more)| {
            let mut new = base.clone();
            for (i, what, v) in edits {
                let Some(k) = new.keys().nth(i % new.len().max(1)).cloned() else { continue };
                if k == "task_id" || k == "history" {
                    continue;
                }
                match what {
                    0 => {
                        new.shift_remove(&k);
                    }
                    1 => {
                        new.insert(k, v);
                    }
                    2 => {
                        new.insert(format!("{k}n"), v);
                    }
                    _ => {
                        let at = i % new.len();
                        new.shift_insert(at, format!("{k}m"), v);
                    }
                }
            }
            if let Some(Value::Array(h)) = new.get_mut("history") {
                h.extend(more);
            }
            (base.clone(), new)
        })
}

proptest! {
    /// Whenever a delta is made, applying it gives the new image with every key in its place.
    #[test]
    fn a_delta_applied_gives_the_new_image_exactly((base, new) in image().prop_flat_map(next)) {
        if let Some(d) = Delta::between(&base, &new) {
            let back = Delta::from_value(d.to_value()).unwrap();
            let mut applied = base.clone();
            back.apply(&mut applied).unwrap();
            let extra = |m: &Map<String, Value>| -> Vec<(String, Value)> {
                m.iter().filter(|(k, _)| !CANONICAL_FIELDS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            prop_assert_eq!(serde_json::to_string(&extra(&applied)).unwrap(), serde_json::to_string(&extra(&new)).unwrap());
            let canonical = |m: &Map<String, Value>| -> std::collections::BTreeMap<String, String> {
                m.iter().filter(|(k, _)| CANONICAL_FIELDS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.to_string())).collect()
            };
            prop_assert_eq!(canonical(&applied), canonical(&new));
        }
    }
}

fn entry() -> impl Strategy<Value = HistoryEntry> {
    // `details: Some(null)` reads back as `None` whatever the journal does: not generated.
    let details = prop::option::of(value().prop_filter("not null", |v| !v.is_null()));
    (0..3i64, "[a-c]", details).prop_map(|(t, action, details)| HistoryEntry {
        timestamp: at(t),
        actor: "mailroom".into(),
        action,
        from: None,
        to: Some(Status::Pending),
        details,
    })
}

/// A task with any of the fields a change touches, unknown fields in any order.
fn task() -> impl Strategy<Value = Task> {
    (
        prop::option::of("[a-z]{1,4}"),
        prop::sample::select(vec![Status::Pending, Status::InProgress, Status::Completed]),
        0..3u32,
        value(),
        value(),
        prop::option::of("[a-z]{1,4}"),
        prop::collection::vec(entry(), 0..3),
        prop::collection::vec(("[p-z]{1,2}", value()), 0..4),
        prop::collection::vec("[a-b]", 0..2),
    )
        .prop_map(|(name, status, attempts, params, result, error, history, extra, tags)| {
            let mut t = Task::new("T");
            (t.name, t.status, t.attempts, t.params, t.result, t.error, t.history, t.tags) =
                (name, status, attempts, params, result, error, history, tags);
            t.extra = extra.into_iter().collect();
            t
        })
}

proptest! {
    /// The writer's typed delta, applied the way a reader does, gives the new task byte for
    /// byte — whatever changed between two tasks, including a history that grew from the old.
    #[test]
    fn a_typed_delta_resolves_to_the_task_byte_for_byte(a in task(), b in task(), grow in any::<bool>()) {
        let mut b = b;
        if grow {
            let more = std::mem::take(&mut b.history);
            b.history = a.history.iter().cloned().chain(more).collect();
        }
        if let Some(d) = Delta::of(&a, &b) {
            let Value::Object(mut m) = serde_json::to_value(&a).unwrap() else { unreachable!() };
            Delta::from_value(d.to_value()).unwrap().apply(&mut m).unwrap();
            let back: Task = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            prop_assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&b).unwrap());
        } else {
            prop_assert!(a.extra.keys().ne(b.extra.keys()), "only a reordering of unknown fields is refused");
        }
    }
}

#[test]
fn a_top_level_field_is_found_past_strings_and_nested_values_that_look_like_it() {
    let line = br#"{"seq":1,"s":"\"task\":{\\","o":{"task":{"a":[1,{"b":"}]"}]}},"u":"\u0022task\u0022:","task":{"task_id":"T","x":[]},"n":-2.5e3,"z":null}"#;
    let at = field_span(line, b"task").unwrap();
    assert_eq!(&line[at.clone()], br#"{"task_id":"T","x":[]}"#);
    assert_eq!(&line[at.start - 7..at.start], br#""task":"#);
    assert_eq!(&line[field_span(line, b"n").unwrap()], b"-2.5e3");
    assert_eq!(&line[field_span(line, b"z").unwrap()], b"null");
    assert_eq!(&line[field_span(line, b"s").unwrap()], br#""\"task\":{\\""#);
    assert!(field_span(line, b"missing").is_none());
    for broken in [&b"[1]"[..], b"{\"task\"", b"{\"task\":{", b"{\"a\":1 \"task\":2}", b""] {
        assert!(field_span(broken, b"task").is_none(), "{}", String::from_utf8_lossy(broken));
    }
}

proptest! {
    /// The task's bytes found in a record's line are the task serialised alone: what the delta
    /// replaces is the task, whatever its strings and values hold.
    #[test]
    fn the_task_field_found_in_a_record_is_the_task_serialised(
        mut t in task(),
        text in any::<String>(),
        f in -1e300f64..1e300,
    ) {
        // Strings with quotes, backslashes, brackets and any Unicode; floats with exponents.
        t.name = Some(text.clone());
        t.params = json!({"text": text, "f": f, "tricky": ["\\\"}]", {"task": "{\"task\":"}], "u": "\u{1}\u{7f}é"});
        let rec = Record { seq: 7, ts: at(1), entry: Entry::Dispatch { task_id: t.task_id.clone(), task: t.clone(), place: queued() } };
        let line = serde_json::to_vec(&rec).unwrap();
        let span = field_span(&line, b"task").unwrap();
        let alone = serde_json::to_vec(&t).unwrap();
        prop_assert_eq!(&line[span], alone.as_slice());
    }
}

/// `trace` reads a segment a line at a time and parses only the lines that name its task: the
/// task's changes still resolve against its own earlier records, compressed or not, and a line
/// after a cut commit's zeros is not read in either form.
#[test]
fn a_segment_read_for_one_task_resolves_its_changes_alone() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&RealFs, d.path(), 1, Durability::Never).unwrap();
    let mut live: HashMap<String, Task> = HashMap::new();
    let (one, two) = (lifecycle(&a_task("T-1")), lifecycle(&a_task("T-2")));
    let mut written = Vec::new();
    for e in one.into_iter().zip(two).flat_map(|(a, b)| [a, b]) {
        let prev = e.change().and_then(|(t, _)| live.get(&t.task_id)).cloned();
        let rec = j.push_change(at(written.len() as i64), e, prev.as_ref());
        if let Some((t, _)) = rec.entry.change() {
            live.insert(t.task_id.clone(), t.clone());
        }
        written.push(rec);
    }
    j.commit(&RealFs).unwrap();
    let plain = d.path().join(segment_name(1));
    // A cut commit: zeros, then a line that must not be read.
    let mut tail = vec![0u8; 64];
    tail.extend(b"\n{\"seq\":99}\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&plain)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &tail))
        .unwrap();
    let wanted: Vec<&Record> = written.iter().filter(|r| r.entry.task_id() == Some("T-1")).collect();
    assert_eq!(wanted.len(), 4);
    let read_one = |path: &std::path::Path| {
        let (mut out, mut notes, mut parsed) = (Vec::new(), crate::journal::Notes::default(), 0);
        let keep = |line: &[u8]| line.windows(5).any(|w| w == b"\"T-1\"");
        crate::journal::read_segment_where(
            &RealFs,
            path,
            keep,
            |r, _, _| {
                parsed += 1;
                out.push(r)
            },
            &mut notes,
        )
        .unwrap();
        assert_eq!(parsed, 4, "only the task's own lines are parsed");
        assert!(notes.set_aside.is_empty(), "{notes:?}");
        assert!(notes.torn.iter().any(|t| t.contains("is not read")), "{notes:?}");
        out
    };
    let got = read_one(&plain);
    assert_eq!(got.iter().collect::<Vec<_>>(), wanted, "plain");
    let mut c = crate::journal::archive::Compressor::start(&RealFs, &plain, true).unwrap();
    while !matches!(c.step(&RealFs, 1 << 20).unwrap(), crate::journal::archive::Progress::Done { .. }) {}
    let zst = d.path().join(crate::journal::archive::compressed_name(&segment_name(1)));
    assert!(zst.exists() && !plain.exists());
    assert_eq!(read_one(&zst).iter().collect::<Vec<_>>(), wanted, "compressed, read as a stream");
}

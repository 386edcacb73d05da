//! The observer fed by hand-made records: windows, waits, agents, the state and its samples.

use super::*;
use mailroom::engine::commands::Census;
use mailroom::journal::{Admitted, Report};
use protocol::{Task, Timestamp};

const S: i64 = 1_000_000;
/// A fixed "now" (µs): records are placed relative to it.
const NOW: i64 = 1_800_000_000 * S;

fn task(id: &str, status: Status) -> Task {
    let mut t = Task::new(id);
    t.task_type = Some("build".into());
    t.status = status;
    t
}

fn rec(seq: u64, at: i64, entry: Entry) -> Record {
    Record { seq, ts: Timestamp::from_micros(at), entry }
}

fn queued(id: &str) -> Place {
    Place::Queued { dir: "queues/build".into(), name: format!("1-{id}.json") }
}

fn held(id: &str, agent: &str) -> Place {
    Place::Held {
        agent: agent.into(),
        name: format!("1-{id}.json"),
        seen_at: Timestamp::from_micros(NOW),
        from: "queues/build".into(),
    }
}

/// Submit, dispatch at `at`, claim `wait` seconds later, complete `work` seconds after that.
fn lifecycle(o: &Observer, seq: u64, id: &str, at: i64, wait: i64, work: i64) {
    let admitted = Admitted {
        task_id: id.into(),
        task: task(id, Status::Pending),
        place: Place::Backlog,
        msg: format!("m-{id}"),
        hash: 1,
        path: String::new(),
    };
    o.observe(&rec(seq, at, Entry::Submit(admitted)), true);
    let dispatch = Entry::Dispatch { task_id: id.into(), task: task(id, Status::Pending), place: queued(id) };
    o.observe(&rec(seq + 1, at, dispatch), true);
    let claim = Entry::Claim {
        task_id: id.into(),
        task: task(id, Status::InProgress),
        place: held(id, "A-1"),
        agent: "A-1".into(),
    };
    o.observe(&rec(seq + 2, at + wait * S, claim), true);
    let report = Report {
        task_id: id.into(),
        task: task(id, Status::Completed),
        place: Place::Done,
        msg: format!("c-{id}"),
        agent: "A-1".into(),
        claim: String::new(),
    };
    o.observe(&rec(seq + 3, at + (wait + work) * S, Entry::Complete(report)), true);
}

fn empty_census(next_seq: u64) -> Census {
    Census { next_seq, tasks: Vec::new() }
}

#[test]
fn waits_rates_and_agents_come_from_the_records() {
    let o = Observer::new(Config::default());
    o.seed(&empty_census(1));
    // Ten tasks over the last two minutes, each waiting i seconds; one left queued.
    for i in 0..10 {
        lifecycle(&o, 1 + 4 * i as u64, &format!("T-{i}"), NOW - 120 * S + i * S, i + 1, 2);
    }
    let d = task("Q", Status::Pending);
    o.observe(
        &rec(100, NOW - 30 * S, Entry::Dispatch { task_id: "Q".into(), task: d, place: queued("Q") }),
        true,
    );
    let pools = o.pools(NOW);
    let build = &pools["build"];
    assert_eq!(build.in_per_min, 11.0 / 5.0, "eleven arrivals in the last five minutes");
    assert_eq!(build.out_per_min, 10.0 / 5.0);
    assert_eq!((build.wait_p50_secs, build.wait_p95_secs), (Some(5.0), Some(10.0)));
    assert_eq!(build.oldest_wait_secs, Some(30.0), "Q has waited since its dispatch");
    let agents = o.agents(NOW);
    assert_eq!(agents["A-1"].completions_per_min, 2.0);
    assert!(agents["A-1"].last_seen.is_some());
    // Counters (live records only) and histograms.
    let claims =
        o.counters.transitions.get_or_create(&[("op", "claim".into()), ("pool", "build".into())]).get();
    assert_eq!(claims, 10);
    // The state: Q queued, ten finished; a sample records both.
    o.sample(NOW);
    let s = o.samples();
    assert_eq!(s[0].depth.get("build"), Some(&1));
    assert_eq!(s[0].finished.get("COMPLETED"), Some(&10));
    assert_eq!(s[0].live.get("PENDING"), Some(&1));
}

#[test]
fn windows_forget_what_is_older_than_the_window_and_history_counts_nowhere() {
    let o = Observer::new(Config::default());
    o.seed(&empty_census(1000));
    // Read from the journal at start (not live): windows yes, counters no, state no (the
    // snapshot at seq 1000 has it already).
    lifecycle(&o, 1, "OLD", NOW - (WINDOW_SECS + 60) * S, 1, 1);
    lifecycle(&o, 10, "H", NOW - 60 * S, 3, 1);
    let claims =
        o.counters.transitions.get_or_create(&[("op", "claim".into()), ("pool", "build".into())]).get();
    assert_eq!(claims, 2, "these were fed as live records");
    let o2 = Observer::new(Config::default());
    o2.seed(&empty_census(1000));
    for (seq, at) in [(1, NOW - (WINDOW_SECS + 60) * S), (10, NOW - 60 * S)] {
        let d = task("X", Status::Pending);
        o2.observe(
            &rec(seq, at, Entry::Dispatch { task_id: "X".into(), task: d, place: queued("X") }),
            false,
        );
    }
    assert_eq!(
        o2.counters.transitions.get_or_create(&[("op", "dispatch".into()), ("pool", "build".into())]).get(),
        0
    );
    o2.sample(NOW);
    assert_eq!(
        o2.samples()[0].depth.get("build"),
        None,
        "records before the snapshot do not change the state"
    );
    let p = &o.pools(NOW)["build"];
    assert_eq!(p.waits_sampled, 1, "the wait older than the window is forgotten");
    assert_eq!(p.wait_p50_secs, Some(3.0));
}

#[test]
fn quantiles_take_the_nearest_rank() {
    assert_eq!(quantile(&mut [], 0.5), None);
    assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), Some(2.0));
    assert_eq!(quantile(&mut [1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
    assert_eq!(quantile(&mut [7.0], 0.95), Some(7.0));
}

/// A rate costs a bucket per second of the window, whatever the load: a million events over
/// twenty minutes leave at most the window's seconds, and the rate still counts every event.
#[test]
fn a_rate_is_bounded_by_the_window_not_the_load() {
    let mut r = Rate::default();
    let start = NOW - 20 * 60 * S;
    for i in 0..1_200_000i64 {
        // A thousand a second; now and then one a little late.
        let ts = start + i * 1_000 - if i % 997 == 0 { 3 * S } else { 0 };
        r.add(ts);
        if i % 10_000 == 0 {
            r.prune(ts - WINDOW_SECS * S);
        }
    }
    r.prune(NOW - WINDOW_SECS * S);
    assert!(r.buckets.len() <= WINDOW_SECS as usize + 1, "{} buckets", r.buckets.len());
    assert!(
        r.buckets.iter().zip(r.buckets.iter().skip(1)).all(|(a, b)| a.0 < b.0),
        "in order, one per second"
    );
    let per_min = r.per_min(NOW - RATE_SECS * S);
    assert!((per_min - 60_000.0).abs() < 100.0, "{per_min} per minute");
}

/// The history read at start stops at the first segment last written before the window, without
/// reading it: segments are read whole, and an old archived one can be hundreds of megabytes.
#[test]
fn history_skips_segments_older_than_the_window_unread() {
    let d = tempfile::tempdir().unwrap();
    let fs = runtime_layout::RootFs::open(d.path()).unwrap();
    let layout = Layout::new(d.path());
    layout.create(&fs).unwrap();
    let dir = layout.journal_dir();
    let now = micros(runtime_layout::now());
    let dispatch =
        |id: &str| Entry::Dispatch { task_id: id.into(), task: task(id, Status::Pending), place: queued(id) };
    // An old segment (two hours ago), then a recent one.
    let mut j = mailroom::journal::Journal::open(&fs, &dir, 1, runtime_layout::Durability::Never).unwrap();
    j.push(Timestamp::from_micros(now - 7200 * S), dispatch("OLD"));
    j.commit(&fs).unwrap();
    let old = dir.join("segment-0000000000000001.jsonl");
    fs.set_mtime(&old, Timestamp::from_micros(now - 7200 * S)).unwrap();
    let mut j = mailroom::journal::Journal::open(&fs, &dir, 2, runtime_layout::Durability::Never).unwrap();
    j.push(Timestamp::from_micros(now - 60 * S), dispatch("NEW"));
    j.commit(&fs).unwrap();
    let o = Observer::new(Config::default());
    o.seed(&empty_census(3));
    let before = fs.counts().unwrap().reads;
    o.read_history(&fs, &layout, 3).unwrap();
    assert_eq!(fs.counts().unwrap().reads - before, 1, "only the recent segment was read");
    assert_eq!(o.pools(now)["build"].in_per_min, 1.0 / 5.0, "its dispatch is in the window");
}

//! Priority aging against starvation: a LOW task waits in a pool while a constant stream of
//! higher-priority work arrives and one task is claimed per second, the one whose dispatch name
//! sorts first. The names are the broker's: the rank of the aged priority
//! (`Priority::aged`), the creation time and a sequence number (the broker renames a queued
//! task when its aged rank changes, at most once a second, which this model does every second).
//!
//! With aging every `N` seconds the LOW task reaches CRITICAL after `3N` seconds; then only the
//! tasks created before it can come first, so it is claimed within `3N + backlog + 1` seconds
//! whatever arrives. Without aging it starves for as long as the stream lasts.

use mailroom_protocol::names::DispatchName;
use mailroom_protocol::{Priority, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Waiting {
    id: String,
    base: Priority,
    created: Timestamp,
    queued_at: u64,
}

/// Runs the model for `secs` seconds; returns the second the task `LOW` was claimed, if it was.
fn run(aging_secs: u64, backlog: &[Priority], arrivals: &[Vec<Priority>], secs: u64) -> Option<u64> {
    let t0 = 1_700_000_000u64;
    let at = |s: u64| Timestamp::from_micros(((t0 + s) * 1_000_000) as i64);
    let mut seq = 0u64;
    let mut queue: Vec<Waiting> = backlog
        .iter()
        .enumerate()
        .map(|(i, p)| Waiting {
            id: format!("old-{i}"),
            base: *p,
            // Created before the LOW task, queued with it.
            created: Timestamp::from_micros(at(0).as_micros() - 1_000_000 * (backlog.len() - i) as i64),
            queued_at: 0,
        })
        .collect();
    queue.push(Waiting { id: "LOW".into(), base: Priority::Low, created: at(0), queued_at: 0 });
    for now in 0..secs {
        for (i, p) in arrivals[now as usize % arrivals.len()].iter().enumerate() {
            queue.push(Waiting { id: format!("t{now}-{i}"), base: *p, created: at(now), queued_at: now });
        }
        // Every queued task under the name it has now: the next claim takes the first.
        let names: Vec<(String, usize)> = queue
            .iter()
            .enumerate()
            .map(|(i, w)| {
                seq += 1;
                let p = w.base.aged(now - w.queued_at, aging_secs);
                (DispatchName::new(p, w.created, seq, &w.id).file_name(), i)
            })
            .collect();
        let first = names.iter().min().map(|(_, i)| *i).expect("the queue is never empty");
        if queue.remove(first).id == "LOW" {
            return Some(now);
        }
    }
    None
}

fn higher() -> impl Strategy<Value = Priority> {
    prop::sample::select(vec![Priority::Critical, Priority::High, Priority::Medium])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// At least one higher-priority task arrives every second (as many as are claimed, or more):
    /// the LOW task is still claimed, within the bound.
    #[test]
    fn no_task_starves_under_a_stream_of_higher_priority_work(
        aging in 1u64..15,
        backlog in prop::collection::vec(higher(), 0..10),
        arrivals in prop::collection::vec(prop::collection::vec(higher(), 1..4), 1..20),
    ) {
        let bound = 3 * aging + backlog.len() as u64 + 1;
        let claimed = run(aging, &backlog, &arrivals, bound + 50);
        prop_assert!(claimed.is_some_and(|t| t <= bound), "claimed at {:?}, bound {}", claimed, bound);
    }
}

/// The same stream without aging: the LOW task never gets a turn, which is what aging is for.
#[test]
fn without_aging_the_low_task_starves() {
    let stream = vec![vec![Priority::Medium]];
    assert_eq!(run(0, &[], &stream, 1000), None);
    assert_eq!(run(10, &[], &stream, 1000), Some(10), "aged to MEDIUM at 10 s, and older than any MEDIUM");
}

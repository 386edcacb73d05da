//! Accepted means replayable: for arbitrary messages — tasks with every canonical field in odd
//! but valid forms (timestamps at the edges of the range and with offsets, numbers beyond 64
//! bits, decimals written any way, unicode, deep params, unknown fields) and reports, cancels and
//! retries on them — whatever the broker accepts, it can read back from its own journal into
//! exactly the state it holds. No record is set aside, and a broker restarted on the journal has
//! the same state and writes the same boards.

use mailroom::config::Config;
use mailroom::engine::Engine;
use mailroom::journal;
use mailroom::state::State;
use proptest::prelude::*;
use protocol::Timestamp;
use runtime_layout::sim::SimFs;
use runtime_layout::{Board, Durability, Fs, Layout, ManualClock, deliver};
use serde_json::{Value, json};
use std::sync::Arc;

/// A timestamp string in RFC 3339, often at the edges of the range, often with an offset.
fn arb_time() -> impl Strategy<Value = String> {
    let edge = prop_oneof![
        Just("0000-01-01T00:00:00Z".to_string()),
        Just("0000-01-01T00:30:00-01:00".to_string()),
        Just("9999-12-31T23:59:59.999999Z".to_string()),
        Just("9999-12-31T22:00:00-01:00".to_string()),
        Just("1970-01-01T00:00:00+14:00".to_string()),
        // Out of range once in UTC: refused at admission, so never in the journal to trip on.
        Just("9999-12-31T23:30:00-01:00".to_string()),
    ];
    let any = (0i64..253_402_300_799, 0u32..1_000_000, -12i32..=14).prop_map(|(s, us, off)| {
        let t = Timestamp::from_micros(s * 1_000_000 + i64::from(us));
        let shifted = Timestamp::from_micros(t.as_micros() + i64::from(off) * 3_600_000_000);
        let local = shifted.datetime().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        format!("{local}{:+03}:00", off)
    });
    prop_oneof![edge, any]
}

/// JSON numbers as a producer might write them: big, negative, decimal, with exponents.
fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        "-?[1-9][0-9]{18,40}".prop_map(|s| serde_json::from_str::<Value>(&s).unwrap()),
        "-?(0|[1-9][0-9]{0,4})\\.[0-9]{1,8}0{0,3}".prop_map(|s| serde_json::from_str::<Value>(&s).unwrap()),
        "[1-9]e[0-9]{1,2}".prop_map(|s| serde_json::from_str::<Value>(&s).unwrap()),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn arb_params() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![arb_number(), "\\PC{0,12}".prop_map(Value::String), any::<bool>().prop_map(Value::Bool)];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_task(i: usize) -> impl Strategy<Value = Value> {
    (
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(prop_oneof![Just("CRITICAL"), Just("high"), Just("Medium"), Just("LOW")]),
        prop::option::of("\\PC{0,20}"),
        arb_params(),
        prop::option::of(arb_number()),
        prop::option::of(1u64..5),
    )
        .prop_map(move |(created, updated, priority, name, params, extra, attempts)| {
            let mut t = json!({"task_id": format!("P-{i}"), "params": params});
            if let Some(c) = created {
                t["created_at"] = json!(c);
            }
            if let Some(u) = updated {
                t["updated_at"] = json!(u);
            }
            if let Some(p) = priority {
                t["priority"] = json!(p);
            }
            if let Some(n) = name {
                t["name"] = json!(n);
            }
            if let Some(x) = extra {
                t["unknown_field"] = x;
            }
            if let Some(a) = attempts {
                t["max_attempts"] = json!(a);
            }
            t
        })
}

/// What happens to a task after it is submitted.
#[derive(Debug, Clone)]
enum Then {
    Nothing,
    Complete(Value),
    Fail(bool),
    Release,
    Cancel,
    CancelThenRetry,
}

fn arb_then() -> impl Strategy<Value = Then> {
    prop_oneof![
        Just(Then::Nothing),
        arb_params().prop_map(Then::Complete),
        any::<bool>().prop_map(Then::Fail),
        Just(Then::Release),
        Just(Then::Cancel),
        Just(Then::CancelThenRetry),
    ]
}

struct Sim {
    fs: SimFs,
    layout: Layout,
    clock: ManualClock,
    n: u64,
}

impl Sim {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_micros(1_790_000_000_000_000));
        let fs = SimFs::with_clock(clock.clock());
        let layout = Layout::new("/sim/runtime");
        layout.create(&fs).unwrap();
        layout.mailbox("A").create(&fs, true).unwrap();
        Self { fs, layout, clock, n: 0 }
    }

    fn engine(&self) -> Engine {
        let mut cfg = Config::default();
        cfg.broker.compact_after_records = 7; // snapshots in the middle of the script too
        let mut e = Engine::open(Arc::new(self.fs.clone()), self.layout.clone(), cfg).unwrap();
        e.set_clock(self.clock.clock());
        e.reconcile().unwrap();
        e
    }

    fn send(&mut self, v: Value) {
        self.n += 1;
        let name = format!("msg-{:08}.json", self.n);
        deliver(&self.fs, &self.layout.broker_inbox(), &name, v.to_string().as_bytes(), Durability::Always)
            .unwrap();
    }

    /// Claims the first queued file into A's cur/ like an agent; returns the claim.
    fn claim(&self) -> Option<String> {
        let pool = self.layout.queue("default").new_dir();
        let mut names: Vec<String> =
            self.fs.list(&pool).ok()?.into_iter().filter_map(|e| e.name_str().map(str::to_string)).collect();
        names.sort();
        let name = names.into_iter().next()?;
        self.fs.rename(&pool.join(&name), &self.layout.mailbox("A").cur().join(&name)).ok()?;
        Some(name)
    }
}

fn step(e: &mut Engine) {
    while e.step().unwrap().more {}
}

/// The state rebuilt from the journal alone, and whatever reading it set aside.
fn replayed(sim: &Sim) -> (State, Vec<String>) {
    let loaded = journal::load(&sim.fs, &sim.layout.journal_dir()).unwrap();
    let mut s = match loaded.snapshot {
        Some(snap) => State::from_snapshot(
            snap,
            Config::default().broker.completed_board_limit,
            Config::default().broker.finished_keep_count,
        ),
        None => State::new(
            Config::default().broker.completed_board_limit,
            Config::default().broker.finished_keep_count,
        ),
    };
    for r in &loaded.records {
        s.apply(r);
    }
    (s, loaded.notes.set_aside)
}

fn boards(sim: &Sim) -> Vec<Vec<u8>> {
    Board::ALL.iter().map(|b| sim.fs.read(&sim.layout.board(*b), 1 << 26).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn whatever_is_accepted_replays_to_the_same_state(
        script in prop::collection::vec((0usize..1000).prop_flat_map(|i| (arb_task(i), arb_then())), 1..6)
    ) {
        let mut sim = Sim::new();
        let mut e = sim.engine();
        for (i, (task, then)) in script.iter().enumerate() {
            let id = format!("P-{i}");
            let mut task = task.clone();
            task["task_id"] = json!(id);
            sim.send(json!({"kind": "submit", "task": task}));
            step(&mut e);
            match then {
                Then::Nothing => {}
                Then::Cancel | Then::CancelThenRetry => {
                    sim.send(json!({"kind": "cancel", "task_id": id}));
                    if matches!(then, Then::CancelThenRetry) {
                        sim.send(json!({"kind": "retry", "task_id": id}));
                    }
                }
                report => {
                    if let Some(claim) = sim.claim() {
                        step(&mut e);
                        let mut m = json!({"agent": "A", "claim": claim});
                        match report {
                            Then::Complete(result) => {
                                m["kind"] = json!("complete");
                                m["result"] = result.clone();
                            }
                            Then::Fail(retryable) => {
                                m["kind"] = json!("fail");
                                m["retryable"] = json!(retryable);
                            }
                            _ => m["kind"] = json!("release"),
                        }
                        sim.send(m);
                    }
                }
            }
            step(&mut e);
            sim.clock.advance_secs(1);
        }
        e.write_boards(true).unwrap();
        let seq = e.state().snapshot(0);
        let (rebuilt, set_aside) = replayed(&sim);
        prop_assert!(set_aside.is_empty(), "records set aside: {set_aside:?}");
        prop_assert_eq!(rebuilt.snapshot(0), seq);
        // A broker restarted on this journal holds the same state and writes the same boards.
        let before = boards(&sim);
        drop(e);
        let mut again = sim.engine();
        again.write_boards(true).unwrap();
        prop_assert_eq!(again.state().snapshot(0), rebuilt.snapshot(0));
        prop_assert_eq!(boards(&sim), before);
    }
}

//! Power loss at every step: each scenario drives the broker `Engine` and the real SDK (a
//! producer `Client` and two `Agent`s, claiming and reporting with the very code agents run) over
//! `SimFs`, counts the mutating filesystem operations of a clean run, then replays it crashing
//! after every one of them (power loss, which drops everything not fsynced, and process crash,
//! which keeps it), recovers, lets the workload finish, and checks the invariants: nothing
//! acknowledged is lost, nothing is duplicated, every task is in one place, the boards match the
//! journal, and quarantine holds only genuinely bad input. `MAILROOM_CRASH_LONG=1` adds scrambled
//! power losses (a random subset of unsynced changes reaches the disk) and more seeds.
//!
//! Time is a `ManualClock` owned by each `World`, shared by the engine, the filesystem's mtimes
//! and the names of the messages the SDK sends (one name source for the producer and the agents),
//! and it moves only when a scenario says so: every run of a scenario sends the same messages, and
//! the broker reads them in the same order, whatever the wall clock does. What the suite reads from
//! the journal is all in `journal_view/mod.rs`; the simulated machine and its checks are in
//! `sim_world/mod.rs`.

mod journal_view;
mod sim_world;

use mailroom::config::Config;
use runtime_layout::sim::{Crash, Fault, FaultOn};
use runtime_layout::{Durability, Fs};
use serde_json::{Value, json};
use sim_world::*;

// ------------------------------------------------------------------------------- scenarios

fn cfg() -> Config {
    let mut c = Config::default();
    c.broker.lease_secs = 30;
    c.broker.settle_ms = 0;
    c.broker.backoff_base_secs = 5;
    // A reserve of zeros small enough to be renewed within a scenario, so that power losses fall
    // on renewals too.
    c.journal.reserve_bytes = 4096;
    c
}

fn task(id: &str) -> Value {
    json!({"task_id": id, "name": format!("task {id}"), "max_attempts": 5})
}

struct Scenario {
    name: &'static str,
    cfg: fn() -> Config,
    script: fn(&mut World) -> R,
}

fn sc_submit(w: &mut World) -> R {
    w.start()?;
    w.submit(task("S1"))?;
    w.submit(task("S2"))?;
    w.step()
}

fn sc_dispatch(w: &mut World) -> R {
    w.start()?;
    w.submit(json!({"task_id": "D1", "priority": "HIGH"}))?;
    w.submit(json!({"task_id": "D2", "assigned_to": "A2"}))?;
    w.step()?;
    w.step()
}

fn sc_claim(w: &mut World) -> R {
    w.start()?;
    w.submit(task("C1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()
}

/// A completion, then a task whose file the broker writes into the finished claim's file (kept
/// in `broker/spare/`): the rename out of `cur/`, the rewrite in place and the rename into `new/`.
fn sc_complete(w: &mut World) -> R {
    w.start()?;
    w.submit(task("K1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.submit(task("K2"))?;
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.step()?;
        w.complete("A2", &c)?;
        w.step()?;
    }
    Ok(())
}

fn sc_fail_retry(w: &mut World) -> R {
    w.start()?;
    w.submit(task("F1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.report("A1", &c, Outcome::Fail)?;
    w.step()?;
    w.advance(6);
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn sc_lease_expiry(w: &mut World) -> R {
    w.start()?;
    w.submit(task("L1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()?;
    w.advance(31);
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn sc_cancel_held(w: &mut World) -> R {
    w.start()?;
    w.submit(task("X1"))?;
    w.step()?;
    w.claim("A1")?;
    w.step()?;
    w.cancel("X1")?;
    w.step()
}

fn sc_release(w: &mut World) -> R {
    w.start()?;
    w.submit(task("R1"))?;
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.report("A1", &c, Outcome::Release)?;
    w.step()?;
    w.claim("A2")?;
    w.step()
}

fn sc_boards(w: &mut World) -> R {
    w.start()?;
    w.submit(task("B1"))?;
    w.step()?;
    w.boards()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.boards()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.boards()
}

fn sc_compaction(w: &mut World) -> R {
    w.start()?;
    for id in ["P1", "P2"] {
        w.submit(task(id))?;
    }
    w.step()?;
    let c = w.claim("A1")?.expect("dispatched");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()?;
    w.claim("A2")?;
    w.step()?;
    // P1 is finished and, compacted, remembered in a tomb file: the same submit again is a
    // duplicate, never a second task, whichever operation of the compaction the crash cut.
    w.submit(task("P1"))?;
    w.step()
}

fn sc_duplicate(w: &mut World) -> R {
    w.start()?;
    w.submit(task("U1"))?;
    w.step()?;
    w.submit(task("U1"))?;
    w.submit_bad(json!({"task_id": "U1", "name": "different"}))?;
    w.step()
}

fn sc_dependencies(w: &mut World) -> R {
    w.start()?;
    w.submit(task("Q1"))?;
    w.submit(json!({"task_id": "Q2", "depends_on": ["Q1"]}))?;
    w.step()?;
    let c = w.claim("A1")?.expect("the parent is ready");
    w.complete("A1", &c)?;
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

/// A ready window of two: the third LOW task waits without a file, the CRITICAL one takes the
/// place of the last LOW file (withdrawn), and claims make room for the waiting ones.
fn sc_window(w: &mut World) -> R {
    w.start()?;
    for id in ["W1", "W2", "W3"] {
        w.submit(json!({"task_id": id, "priority": "LOW", "max_attempts": 5}))?;
    }
    w.step()?;
    w.submit(json!({"task_id": "W4", "priority": "CRITICAL", "max_attempts": 5}))?;
    w.step()?;
    let c = w.claim("A1")?.expect("a task is ready");
    w.step()?;
    w.complete("A1", &c)?;
    w.step()?;
    if let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

fn mixed_cfg() -> Config {
    let mut c = cfg();
    c.broker.compact_after_records = 7;
    c
}

/// Long mode only: several tasks at once, two agents, a failure, a cancel, an expiry, a duplicate
/// and compactions, so that crashes land between unrelated operations of one batch.
fn sc_mixed(w: &mut World) -> R {
    w.start()?;
    w.submit(json!({"task_id": "M1", "priority": "HIGH", "max_attempts": 5}))?;
    w.submit(task("M2"))?;
    w.submit(json!({"task_id": "M3", "depends_on": ["M1"], "max_attempts": 5}))?;
    w.submit(json!({"task_id": "M4", "assigned_to": "A2", "max_attempts": 5}))?;
    w.step()?;
    let a = w.claim("A1")?.expect("M1 is ready");
    let b = w.claim("A2")?.expect("M4 or M2 is ready");
    w.step()?;
    w.submit(task("M2"))?;
    w.complete("A1", &a)?;
    w.report("A2", &b, Outcome::Fail)?;
    w.cancel("M2")?;
    w.step()?;
    if let Some(c) = w.claim("A1")? {
        w.step()?;
        w.advance(31);
        w.step()?;
        let _ = c;
    }
    w.advance(10);
    w.step()?;
    while let Some(c) = w.claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

/// Claims the broker makes for agents waiting on its socket: the broker's rename into the agent's
/// `cur/`, the answer, then the claim's record in the next pass; the agent completes it.
fn sc_grant(w: &mut World) -> R {
    w.start()?;
    w.submit(task("G1"))?;
    w.submit(task("G2"))?;
    w.step()?;
    let c = w.await_claim("A1")?.expect("a task is ready");
    w.step()?;
    w.complete("A1", &c)?;
    if let Some(c) = w.await_claim("A2")? {
        w.complete("A2", &c)?;
    }
    w.step()
}

/// Reports carried in the await for the next claim: the await is answered only once its report
/// is journaled, so the answer acknowledges the report; a crash before it leaves the report to be
/// sent again as a file under its name.
fn sc_report_then_claim(w: &mut World) -> R {
    w.start()?;
    for id in ["H1", "H2", "H3"] {
        w.submit(task(id))?;
    }
    w.step()?;
    let mut next = w.await_claim("A1")?;
    while let Some(c) = next {
        next = w.complete_then_claim("A1", &c)?;
    }
    w.step()
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "submit", cfg, script: sc_submit },
        Scenario { name: "dispatch", cfg, script: sc_dispatch },
        Scenario { name: "claim observed", cfg, script: sc_claim },
        Scenario { name: "complete, then a task file in the claim's file", cfg, script: sc_complete },
        Scenario { name: "fail, retry after backoff", cfg, script: sc_fail_retry },
        Scenario { name: "lease expiry", cfg, script: sc_lease_expiry },
        Scenario { name: "cancel of a held task", cfg, script: sc_cancel_held },
        Scenario { name: "release", cfg, script: sc_release },
        Scenario { name: "board rewrite", cfg, script: sc_boards },
        Scenario {
            name: "journal compaction",
            cfg: || {
                let mut c = cfg();
                c.broker.compact_after_records = 3;
                c
            },
            script: sc_compaction,
        },
        Scenario { name: "duplicate submit", cfg, script: sc_duplicate },
        Scenario { name: "claim made by the broker for a waiting agent", cfg, script: sc_grant },
        Scenario {
            name: "report carried in the await for the next claim",
            cfg,
            script: sc_report_then_claim,
        },
        Scenario { name: "dependencies", cfg, script: sc_dependencies },
        Scenario {
            name: "ready window",
            cfg: || {
                let mut c = cfg();
                c.dispatch.ready_window = 2;
                c.broker.compact_after_records = 9;
                c
            },
            script: sc_window,
        },
    ]
}

/// Runs a scenario, crashing after `k` mutating operations (none: run to the end), restarts as
/// `mode` says, recovers, finishes the workload and checks. Returns the operations the script did.
fn run_one(sc: &Scenario, setup: Setup, crash: Option<u64>, mode: Crash) -> u64 {
    run_twice(sc, setup, crash, mode, None).0
}

/// The broker's durability and how clients make sure of their messages.
type Setup = (Durability, Clients);

/// Like [`run_one`], and when `again` is set, loses power a second time after that many operations
/// of the recovery (opening, reconciling, the first pass): recovery must survive its own crash.
/// Also returns whether that second power loss struck (the recovery may finish first).
fn run_twice(
    sc: &Scenario,
    setup: Setup,
    crash: Option<u64>,
    mode: Crash,
    again: Option<u64>,
) -> (u64, bool) {
    let (durability, clients) = setup;
    let ctx = format!(
        "{} ({durability:?}, {clients:?}) crashed after {crash:?} ops ({mode:?}), again after {again:?}",
        sc.name
    );
    let mut cfg = (sc.cfg)();
    cfg.broker.durability = durability;
    let mut w = World::new(cfg, clients);
    let base = w.fs.ops();
    if let Some(k) = crash {
        w.fs.crash_after(k);
    }
    let result = (sc.script)(&mut w);
    let ops = w.fs.ops() - base;
    match (&result, w.fs.crashed()) {
        (Ok(()), _) | (Err(_), true) => {}
        (Err(e), false) => panic!("{ctx}: failed without a crash: {e:?}"),
    }
    w.engine = None;
    w.restart(mode);
    let mut struck_twice = false;
    if let Some(j) = again {
        w.fs.crash_after(j);
        let recovered = w.start().and_then(|()| w.step());
        if w.fs.crashed() {
            struck_twice = true;
            w.engine = None;
            w.restart(Crash::PowerLoss);
        } else {
            recovered.unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            w.fs.disarm();
        }
    }
    if w.engine.is_none() {
        w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
    }
    w.finish(&ctx);
    check_final(&w, &ctx);
    (ops, struck_twice)
}

fn long_mode() -> bool {
    std::env::var_os("MAILROOM_CRASH_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Scrambled seeds per crash point: none in CI; `MAILROOM_CRASH_LONG=1` gives 32, and a larger
/// number gives that many.
fn scrambled_seeds() -> u64 {
    match std::env::var("MAILROOM_CRASH_LONG").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) if n > 1 => n,
        _ if long_mode() => 32,
        _ => 0,
    }
}

#[test]
fn power_loss_at_every_crash_point() {
    let mut scenarios = scenarios();
    if long_mode() {
        scenarios.push(Scenario { name: "mixed workload", cfg: mixed_cfg, script: sc_mixed });
    }
    let seeds = scrambled_seeds();
    let lossy: Vec<Crash> = [Crash::PowerLoss, Crash::Process]
        .into_iter()
        .chain((0..seeds).map(|seed| Crash::Scrambled { seed }))
        .collect();
    // `never` gives up power-loss durability by design: only process crashes are checked there.
    // Clients that wait for the broker's answer instead of fsyncing: under the default `batch`.
    let mut work: Vec<(&Scenario, Setup, &[Crash])> = Vec::new();
    for sc in &scenarios {
        work.push((sc, (Durability::Batch, Clients::Fsync), &lossy));
        work.push((sc, (Durability::Batch, Clients::Ack), &lossy));
        work.push((sc, (Durability::Batch, Clients::Socket), &lossy));
        work.push((sc, (Durability::Always, Clients::Fsync), &lossy));
        work.push((sc, (Durability::Never, Clients::Fsync), &[Crash::Process]));
    }
    let mut seconds = 0;
    let results: Vec<(String, Setup, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let mine: Vec<_> = work.iter().skip(i).step_by(2).cloned().collect();
                s.spawn(move || {
                    let (mut out, mut second) = (Vec::new(), 0);
                    for (sc, setup, modes) in mine {
                        let durability = setup.0;
                        let total = run_one(sc, setup, None, Crash::Process);
                        let mut points = 0;
                        for k in 0..=total {
                            for mode in modes {
                                let mode = match *mode {
                                    Crash::Scrambled { seed } => {
                                        Crash::Scrambled { seed: seed * 1_000_003 + k }
                                    }
                                    m => m,
                                };
                                run_one(sc, setup, Some(k), mode);
                                points += 1;
                            }
                            if durability != Durability::Never {
                                // A second power loss during the recovery from this one.
                                let again = Some(k * 7 % 40);
                                second += u64::from(run_twice(sc, setup, Some(k), Crash::PowerLoss, again).1);
                                points += 1;
                            }
                        }
                        out.push((sc.name.to_string(), setup, total, points));
                    }
                    (out, second)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let (out, second) = h.join().unwrap();
            all.extend(out);
            seconds += second;
        }
        all
    });
    let order = |name: &str| scenarios.iter().position(|s| s.name == name);
    let mut results = results;
    results.sort_by_key(|r| (order(&r.0), format!("{:?}", r.1)));
    let points: u64 = results.iter().map(|r| r.3).sum();
    for (name, (durability, clients), ops, pts) in &results {
        println!(
            "powerloss: {name:<28} {durability:<7?} {clients:<6?} {ops:>4} mutating operations, {pts:>5} crash points"
        );
    }
    println!(
        "powerloss: {} scenarios x 5 setups (batch with fsyncing clients, clients answered by a file's move or on the socket; always; never), {points} simulated crash points \
         (power loss, process crash, power loss during recovery{}; {seconds} of them struck a recovery \
         a second time), lost 0, duplicated 0",
        scenarios.len(),
        if seeds > 0 { format!(", {seeds} scrambled seeds") } else { String::new() }
    );
}

#[test]
fn a_failed_journal_fsync_stops_the_broker_and_loses_nothing_acknowledged() {
    // A new segment's first write is its reserve of zeros (out of space for it is not fatal:
    // the next test); the append is the second.
    for (what, fault) in [
        ("fsync EIO", Fault::eio(FaultOn::Sync, 1).on_path("journal/segment")),
        ("reserve EIO", Fault::eio(FaultOn::Write, 1).on_path("journal/segment")),
        ("append EIO", Fault::eio(FaultOn::Write, 2).on_path("journal/segment")),
        ("append ENOSPC", Fault::enospc(FaultOn::Write, 1).on_path("journal/segment")),
    ] {
        let mut w = World::new(cfg(), Clients::Fsync);
        w.start().unwrap();
        w.submit(task("J1")).unwrap();
        w.fs.inject(fault);
        let err = w.step();
        assert!(err.is_err(), "{what}: the engine must stop");
        let inbox_new = w.layout.broker_inbox().new_dir();
        assert_eq!(w.fs.list(&inbox_new).unwrap().len(), 1, "{what}: the message was not consumed");
        // Whatever the loop does next (it flushes on the way out), nothing moves.
        assert!(w.engine().flush().is_err(), "{what}: a broken journal stays broken");
        assert!(w.engine().step().is_err(), "{what}: no further pass");
        assert_eq!(w.fs.list(&inbox_new).unwrap().len(), 1, "{what}: still not consumed");
        assert!(task_files(&w).is_empty(), "{what}: nothing dispatched past a failed journal write");
        w.fs.clear_faults();
        w.engine = None;
        w.restart(Crash::PowerLoss);
        w.start().unwrap();
        w.finish(what);
        check_final(&w, what);
    }
}

/// The journal's reserve of zeros is a speed-up, not a promise: when there is no space for it,
/// the broker goes on appending without one, and a power loss after that loses nothing
/// acknowledged.
#[test]
fn a_journal_reserve_without_space_is_done_without() {
    let mut w = World::new(cfg(), Clients::Fsync);
    w.start().unwrap();
    let no_space_once = Fault { sticky: false, ..Fault::enospc(FaultOn::Write, 1) };
    w.fs.inject(no_space_once.on_path("journal/segment"));
    w.submit(task("R1")).unwrap();
    w.step().expect("a failed reserve never stops the broker");
    assert_eq!(w.fs.list(&w.layout.broker_inbox().new_dir()).unwrap().len(), 0, "consumed");
    assert_eq!(task_files(&w).len(), 1, "dispatched");
    w.fs.clear_faults();
    w.engine = None;
    w.restart(Crash::PowerLoss);
    w.start().unwrap();
    w.finish("no reserve");
    check_final(&w, "no reserve");
}

#[test]
fn faults_anywhere_stop_the_broker_cleanly_and_recovery_loses_nothing() {
    // The n-th mutating operation of the complete scenario fails (EIO, then ENOSPC): the run
    // stops with an error (never a panic), and after a power loss recovery is whole.
    let sc = Scenario { name: "complete with a fault", cfg, script: sc_complete };
    let total = run_one(&sc, (Durability::Batch, Clients::Fsync), None, Crash::Process);
    println!("powerloss: {} single-operation faults (EIO and ENOSPC at each of {total})", 2 * total);
    for n in 1..=total {
        for fault in [Fault::eio(FaultOn::Any, n), Fault::enospc(FaultOn::Any, n)] {
            let ctx = format!("fault {fault:?}");
            let mut w = World::new(cfg(), Clients::Fsync);
            w.fs.inject(fault);
            let _ = sc_complete(&mut w);
            w.fs.clear_faults();
            w.engine = None;
            w.restart(Crash::PowerLoss);
            w.start().unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e:?}"));
            w.finish(&ctx);
            check_final(&w, &ctx);
        }
    }
}

#[test]
fn a_message_or_dropped_file_that_cannot_be_read_is_refused_with_its_error_and_the_broker_serves_on() {
    // A bad block under one message: reading it fails with EIO. That is the file's fault, not
    // the journal's: the message is quarantined with the error, and the rest is served.
    let mut w = World::new(cfg(), Clients::Fsync);
    w.start().unwrap();
    let name = w.submit_bad(task("UNREAD")).unwrap();
    w.fs.inject(Fault::eio(FaultOn::Read, 1).on_path(&name));
    // And one that cannot even be opened (its inode unreadable) while the inbox lists fine.
    let unopened = w.submit_bad(task("UNOPENED")).unwrap();
    w.fs.inject(Fault::eio(FaultOn::Open, 1).on_path(&unopened));
    // The same under a file dropped in the old spellings.
    w.fs.inject(Fault::eio(FaultOn::Read, 1).on_path("drop/lead.json"));
    w.expected_bad.insert("lead.json".into());
    w.fs.create_new(&w.layout.drop_dir().join("lead.json"), br#"{"id": 7}"#, true).unwrap();
    w.submit(task("R1")).unwrap();
    w.step().expect("a message that cannot be read stops nothing");
    w.advance(5);
    w.step().expect("nor does a dropped file");
    assert!(w.fs.list(&w.layout.drop_dir()).unwrap().is_empty(), "the dropped file was taken");
    let quarantine = w.layout.quarantine_dir();
    let reason = w.fs.list(&quarantine).unwrap().into_iter().find_map(|e| {
        let n = e.name_str()?.to_string();
        n.ends_with(&format!("{name}.error.json")).then(|| w.fs.read(&quarantine.join(n), 1 << 20).unwrap())
    });
    let reason: Value = serde_json::from_slice(&reason.expect("quarantined with its reason")).unwrap();
    assert!(reason["reason"].as_str().unwrap().contains("cannot be read"), "{reason}");
    assert!(w.engine().live("UNREAD").is_none());
    assert!(w.engine().live("UNOPENED").is_none());
    let quarantined = w.fs.list(&quarantine).unwrap();
    assert!(
        quarantined
            .iter()
            .any(|e| e.name_str().is_some_and(|n| n.ends_with(&format!("{unopened}.error.json")))),
        "{unopened} quarantined with its reason"
    );
    w.finish("unreadable message");
    check_final(&w, "unreadable message");
}

#[test]
fn a_claim_that_cannot_be_read_for_a_moment_is_looked_at_again() {
    let mut w = World::new(cfg(), Clients::Fsync);
    w.start().unwrap();
    w.submit(task("C1")).unwrap();
    w.step().unwrap();
    // The agent reads its claim (the first read there); the broker's check of it is the second,
    // and fails once (EIO): a warning, and the next look adopts it.
    w.fs.inject(Fault::eio(FaultOn::Read, 2).on_path("mailboxes/A1/cur/"));
    let claim = w.claim("A1").unwrap().expect("C1 claimed");
    w.step().expect("a claim that cannot be read stops nothing");
    w.step().unwrap();
    assert!(w.complete("A1", &claim).unwrap(), "the claim was adopted, not taken back");
    w.finish("unreadable claim");
    check_final(&w, "unreadable claim");
}

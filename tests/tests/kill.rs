//! Process crashes: a real workload (SDK producer and agent processes, CLI producers and agents)
//! runs while the broker is SIGKILLed at random moments, agents too, each restarted at once. Then,
//! from the journal files, the tree and the boards: every submitted task exists exactly once,
//! none is lost, none completed twice, every acknowledged completion of a claim still held is on
//! the completed board, and the boards equal what a fresh broker rebuilds from the tree.
//!
//! `MAILROOM_KILLS` (default 100) sets the number of broker kills, `MAILROOM_KILL_TASKS` (default
//! 1200) the number of tasks, `MAILROOM_SEED` replays a run (the seed is printed).

use mailroom_tests::{AgentProfile, Broker, Proc, Rng, Root, env_usize, read_json_lines, spawn_load_agent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_mailroom-load");

fn spawn_agent(root: &Root, name: &str, log: &Path, stop: &Path, seed: u64) -> Proc {
    spawn_load_agent(
        LOAD,
        root,
        name,
        log,
        stop,
        seed,
        &AgentProfile { pool: "work", work_ms: 15, fail_pct: 4, release_pct: 4 },
    )
}

fn last_component(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// A CLI agent: `mailroom claim`, sometimes `heartbeat`, then `complete`; acks are recorded.
fn cli_agent(root: &Root, name: &str, stop: &Path, acks: &Mutex<Vec<Value>>, seed: u64) {
    let mut rng = Rng::new(seed);
    assert!(root.run(&["agent", "add", name]).status.success());
    loop {
        let out = root.run(&["claim", "--agent", name, "--pool", "work", "--wait", "0.3"]);
        let t: Value = match out.status.code() {
            Some(0) => serde_json::from_slice(&out.stdout).expect("claim prints JSON"),
            Some(3) if stop.exists() => return,
            Some(3) => continue,
            other => panic!("cli claim exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        };
        let claim = t["claim"].as_str().unwrap().to_string();
        if rng.chance(40) {
            let hb = root.run(&["heartbeat", "--agent", name, "--claim", &claim]);
            assert!(matches!(hb.status.code(), Some(0 | 5)), "heartbeat: {hb:?}");
        }
        let out = root.run(&["complete", "--agent", name, "--claim", &claim]);
        match out.status.code() {
            Some(0) => acks
                .lock()
                .unwrap()
                .push(json!({"op": "complete", "task_id": t["task_id"], "claim": claim, "agent": name})),
            // Lost, or not answered while the broker was down: not acknowledged.
            Some(5 | 10) => {}
            other => panic!("cli complete exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

#[test]
fn sigkill_broker_and_agents_at_random_moments_loses_and_duplicates_nothing() {
    let seed = Rng::seed_from_env("MAILROOM_SEED");
    let mut rng = Rng::new(seed);
    let kills = env_usize("MAILROOM_KILLS", 100);
    let tasks = env_usize("MAILROOM_KILL_TASKS", 1200).max(20);
    let started = Instant::now();
    let root = Arc::new(Root::new());
    root.write_config(
        "[broker]\ntick_ms = 50\nlease_secs = 2\nbackoff_base_secs = 1\nbackoff_max_secs = 2\n\
         completed_board_limit = 10000000\ncompact_after_records = 1000\n",
    );
    let logs = root.scratch().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let stop = root.scratch().join("stop");
    // Producers: two SDK processes and a CLI thread; together about `tasks` tasks, spread over
    // roughly the time the kills take.
    let cli_tasks = (tasks / 10).max(5);
    let per_sdk = (tasks - cli_tasks) / 2;
    let gap_us = (kills as u64 * 90_000 / per_sdk.max(1) as u64).clamp(200, 50_000);
    let producers: Vec<Proc> = (0..2)
        .map(|p| {
            Proc(
                Command::new(LOAD)
                    .args(["produce", "--root", root.path.to_str().unwrap(), "--prefix", &format!("S{p}")])
                    .args(["--count", &per_sdk.to_string(), "--gap-us", &gap_us.to_string()])
                    .args(["--log", logs.join(format!("producer-{p}.jsonl")).to_str().unwrap()])
                    .args(["--seed", &rng.next_u64().to_string()])
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start producer"),
            )
        })
        .collect();
    let cli_submitted = Arc::new(Mutex::new(Vec::<String>::new()));
    let cli_producer = {
        let (root, sent) = (root.clone(), cli_submitted.clone());
        std::thread::spawn(move || {
            for i in 0..cli_tasks {
                let id = format!("C-{i:06}");
                let task = json!({"task_id": id, "task_type": "work", "max_attempts": 1000});
                let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
                // Exit 10: not answered (no broker seen during the grace, or the wait ran out).
                // The message waits in the inbox, so the task must still be done: it counts.
                assert!(
                    matches!(out.status.code(), Some(0 | 10)),
                    "cli submit: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                sent.lock().unwrap().push(id);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Agents: three SDK processes and one CLI thread.
    let agent_names = ["Sdk-1", "Sdk-2", "Sdk-3"];
    let agent_log = |i: usize, g: usize| logs.join(format!("{}-{g}.jsonl", agent_names[i]));
    let mut generation = [0usize; 3];
    let mut agents: Vec<Proc> =
        (0..3).map(|i| spawn_agent(&root, agent_names[i], &agent_log(i, 0), &stop, rng.next_u64())).collect();
    let cli_acks = Arc::new(Mutex::new(Vec::<Value>::new()));
    let cli_done = Arc::new(AtomicBool::new(false));
    let cli_agent_thread = {
        let (root, acks, stop, done) = (root.clone(), cli_acks.clone(), stop.clone(), cli_done.clone());
        let s = rng.next_u64();
        std::thread::spawn(move || {
            cli_agent(&root, "Cli-1", &stop, &acks, s);
            done.store(true, Ordering::SeqCst);
        })
    };

    // The kills.
    let mut broker = root.spawn_broker();
    let (mut early_kills, mut agent_kills) = (0, 0);
    for k in 0..kills {
        // Mostly while serving; sometimes during startup (replay, reconcile, first pass).
        let early = rng.chance(20);
        if early {
            early_kills += 1;
        } else {
            assert!(
                broker.wait_serving(Duration::from_secs(30)),
                "broker {k} never served:\n{}",
                broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, if early { 40 } else { 120 })));
        if let Some(status) = broker.exit_status() {
            panic!("broker exited on its own ({status}) before kill {k} (seed {seed}):\n{}", broker.log());
        }
        broker.kill9();
        if rng.chance(15) {
            let i = rng.range(0, 3) as usize;
            agents[i].kill9();
            generation[i] += 1;
            agent_kills += 1;
            agents[i] =
                spawn_agent(&root, agent_names[i], &agent_log(i, generation[i]), &stop, rng.next_u64());
        }
        broker = root.spawn_broker();
    }
    let kill_phase = started.elapsed();

    // Let the work finish.
    for mut p in producers {
        assert!(p.wait().success(), "a producer failed");
    }
    cli_producer.join().expect("cli producer");
    let mut submitted: BTreeSet<String> = cli_submitted.lock().unwrap().iter().cloned().collect();
    for p in 0..2 {
        for r in read_json_lines(&logs.join(format!("producer-{p}.jsonl"))) {
            assert!(submitted.insert(r["task_id"].as_str().unwrap().to_string()), "submitted twice: {r}");
        }
    }
    assert!(broker.wait_serving(Duration::from_secs(30)), "final broker:\n{}", broker.log());
    let completed_ids = |root: &Root| -> BTreeSet<String> {
        root.board("completed_tasks").iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while completed_ids(&root).len() < submitted.len() {
        if Instant::now() > deadline {
            let missing: Vec<_> = submitted.difference(&completed_ids(&root)).take(10).cloned().collect();
            panic!("not every task completed (seed {seed}); missing e.g. {missing:?}");
        }
        assert!(broker.is_running(), "broker exited:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&stop, b"").unwrap();
    for mut a in agents {
        assert!(a.wait().success(), "an agent failed");
    }
    cli_agent_thread.join().expect("cli agent");
    assert!(cli_done.load(Ordering::SeqCst));

    // A clean stop, then what a fresh broker rebuilds from the tree must equal the boards.
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "clean stop:\n{log}");
    let boards_before = root.all_boards();
    let again: Broker = root.broker();
    std::thread::sleep(Duration::from_millis(300));
    let (code, log) = again.terminate();
    assert_eq!(code, Some(0), "clean stop after rebuild:\n{log}");
    assert_eq!(root.all_boards(), boards_before, "boards rebuilt from the journal and tree differ");

    // Every task exactly once on the boards, all COMPLETED, each completed once.
    let mut on_boards: BTreeMap<String, String> = BTreeMap::new();
    for (board, t) in &boards_before {
        let id = t["task_id"].as_str().unwrap().to_string();
        assert!(on_boards.insert(id.clone(), board.clone()).is_none(), "task {id} is on two boards");
        assert_eq!(board, "completed_tasks", "task {id} is not finished: {t}");
        assert_eq!(t["status"], "COMPLETED", "{t}");
        let completes = t["history"].as_array().unwrap().iter().filter(|h| h["action"] == "complete").count();
        assert_eq!(completes, 1, "task {id} history has {completes} completions");
    }
    let ids: BTreeSet<String> = on_boards.keys().cloned().collect();
    assert_eq!(ids, submitted, "the boards hold exactly the submitted tasks");

    // From the journal alone: one submit and one completion per task.
    let journal = root.journal();
    let mut submits: HashMap<String, usize> = HashMap::new();
    let mut completes: HashMap<String, String> = HashMap::new();
    let mut taken_back: BTreeSet<String> = BTreeSet::new();
    let mut stats: BTreeMap<String, usize> = BTreeMap::new();
    for r in &journal {
        let op = r["op"].as_str().unwrap();
        *stats.entry(op.to_string()).or_default() += 1;
        let id = r["task_id"].as_str().map(str::to_string);
        match op {
            "submit" => *submits.entry(id.unwrap()).or_default() += 1,
            "complete" => {
                let claim = last_component(r["path"].as_str().unwrap()).to_string();
                if let Some(first) = completes.insert(id.clone().unwrap(), claim) {
                    panic!("task {id:?} completed twice (first by claim {first})");
                }
            }
            "expire" | "vanish" => {
                taken_back.insert(last_component(r["path"].as_str().unwrap()).to_string());
            }
            _ => {}
        }
    }
    for id in &submitted {
        assert_eq!(submits.get(id), Some(&1), "task {id}: journaled submits");
        assert!(completes.contains_key(id), "task {id}: no journaled completion");
    }
    assert_eq!(submits.len(), submitted.len(), "journal has submits nobody made");

    // Every acknowledged completion whose claim was not taken back is the one that counted.
    let mut acks: Vec<Value> = cli_acks.lock().unwrap().clone();
    for (i, gens) in generation.iter().enumerate() {
        for g in 0..=*gens {
            acks.extend(read_json_lines(&agent_log(i, g)).into_iter().filter(|r| r["op"] == "complete"));
        }
    }
    // No claim name was ever held by two agents (a task delivered twice under one name).
    let mut claimed_by: HashMap<String, String> = HashMap::new();
    for (i, gens) in generation.iter().enumerate() {
        for g in 0..=*gens {
            for r in read_json_lines(&agent_log(i, g)).into_iter().filter(|r| r["op"] == "claim") {
                let (claim, agent) = (r["claim"].as_str().unwrap(), r["agent"].as_str().unwrap());
                if let Some(other) = claimed_by.insert(claim.to_string(), agent.to_string()) {
                    assert_eq!(other, agent, "claim {claim} was held by {other} and by {agent}");
                }
            }
        }
    }
    for a in cli_acks.lock().unwrap().iter() {
        let claim = a["claim"].as_str().unwrap();
        if let Some(other) = claimed_by.insert(claim.to_string(), "Cli-1".into()) {
            assert_eq!(other, "Cli-1", "claim {claim} was held by {other} and by Cli-1");
        }
    }
    let mut honoured = 0;
    let mut seen_acks = BTreeSet::new();
    for a in &acks {
        assert!(
            seen_acks.insert(a["claim"].as_str().unwrap().to_string()),
            "one claim acknowledged twice: {a}"
        );
        let (id, claim) = (a["task_id"].as_str().unwrap(), a["claim"].as_str().unwrap());
        assert!(ids.contains(id), "acknowledged completion of an unknown task {a}");
        if !taken_back.contains(claim) {
            assert_eq!(
                completes[id], claim,
                "acknowledged completion {a} of a held claim was not the one recorded"
            );
            honoured += 1;
        }
    }

    // Nothing left behind in the tree; quarantine holds only stale reports.
    for dir in [
        "queues/work/new",
        "mailboxes/Sdk-1/cur",
        "mailboxes/Sdk-2/cur",
        "mailboxes/Sdk-3/cur",
        "mailboxes/Cli-1/cur",
    ] {
        let left: Vec<String> =
            root.ls(dir).into_iter().filter(|n| n.starts_with(|c: char| c.is_ascii_digit())).collect();
        assert!(left.is_empty(), "task files left in {dir}: {left:?}");
    }
    let mut stale = 0;
    for n in root.ls("broker/quarantine").iter().filter(|n| n.ends_with(".error.json")) {
        let e: Value =
            serde_json::from_slice(&std::fs::read(root.comms().join("broker/quarantine").join(n)).unwrap())
                .unwrap();
        // A rejection journaled just before a kill is quarantined on restart with a generic
        // reason; the journal holds the precise one.
        let field = if e["field"].is_null() {
            let msg = last_component(e["file"].as_str().unwrap());
            let rec = journal
                .iter()
                .find(|r| r["op"] == "reject" && r["msg"] == msg)
                .unwrap_or_else(|| panic!("quarantined without a journaled rejection: {e}"));
            rec["field"].clone()
        } else {
            e["field"].clone()
        };
        assert_eq!(field, "claim", "only stale reports may be refused: {e}");
        stale += 1;
    }
    let mut panicked = 0;
    for e in std::fs::read_dir(root.scratch()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("broker-") {
            let log = std::fs::read_to_string(e.path()).unwrap_or_default();
            if log.contains("panicked") {
                panicked += 1;
                eprintln!("{log}");
            }
        }
    }
    assert_eq!(panicked, 0, "a broker panicked");
    eprintln!(
        "kill suite (seed {seed}): {kills} broker kills ({early_kills} during startup), {agent_kills} agent kills, \
         {} tasks, {} acknowledged completions ({honoured} of held claims, all on the board), \
         {stale} stale reports refused; lost 0, duplicated 0; journal {stats:?}; kill phase {:.1?}, total {:.1?}",
        submitted.len(),
        acks.len(),
        kill_phase,
        started.elapsed()
    );
}

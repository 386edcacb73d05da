//! Races: 16 agent processes claim from one pool and from their own mailboxes (a quarter of the
//! tasks are addressed to a given agent), while some are SIGKILLed mid-task and restarted. No
//! task is completed twice, no claim is held by two agents, none is lost: the claims a killed
//! agent held come back through their leases. And listing a directory while others rename files
//! in and out of it never misses a file that stayed.
//!
//! `MAILROOM_RACE_TASKS` (default 1000 in CI; 20000 for the full run) sets the number of tasks,
//! `MAILROOM_SEED` replays a run.

use mailroom_tests::{AgentProfile, Proc, Rng, Root, env_usize, read_json_lines, spawn_load_agent};
use runtime_layout::{Fs, RealFs};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_mailroom-load");
const AGENTS: usize = 16;

fn spawn_agent(root: &Root, name: &str, log: &Path, stop: &Path, seed: u64) -> Proc {
    spawn_load_agent(
        LOAD,
        root,
        name,
        log,
        stop,
        seed,
        &AgentProfile { pool: "race", work_ms: 40, fail_pct: 1, release_pct: 1 },
    )
}

#[test]
fn sixteen_agents_race_on_a_pool_and_mailboxes_with_kills() {
    let seed = Rng::seed_from_env("MAILROOM_SEED");
    let mut rng = Rng::new(seed);
    let tasks = env_usize("MAILROOM_RACE_TASKS", 1000).max(100);
    let started = Instant::now();
    let root = Root::new();
    root.write_config(
        "[broker]\ntick_ms = 50\nlease_secs = 3\nbackoff_base_secs = 1\nbackoff_max_secs = 2\n\
         completed_board_limit = 10000000\n",
    );
    let logs = root.scratch().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let stop = root.scratch().join("stop");
    let names: Vec<String> = (1..=AGENTS).map(|i| format!("Agent-{i:02}")).collect();
    let log_of = |i: usize, g: usize| logs.join(format!("{}-{g}.jsonl", names[i]));
    let mut generation = [0usize; AGENTS];
    let mut agents: Vec<Proc> =
        (0..AGENTS).map(|i| spawn_agent(&root, &names[i], &log_of(i, 0), &stop, rng.next_u64())).collect();
    for n in &names {
        let md = root.comms().join("mailboxes").join(n).join("new");
        mailroom_tests::wait_for(Duration::from_secs(30), || md.exists());
    }
    let broker = root.broker();
    let producers: Vec<Proc> = (0..2)
        .map(|p| {
            Proc(
                Command::new(LOAD)
                    .args(["produce", "--root", root.path.to_str().unwrap(), "--prefix", &format!("R{p}")])
                    .args(["--count", &(tasks / 2).to_string(), "--pool", "race"])
                    .args(["--assign", &names.join(","), "--assign-pct", "25"])
                    .args(["--log", logs.join(format!("producer-{p}.jsonl")).to_str().unwrap()])
                    .args(["--seed", &rng.next_u64().to_string()])
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start producer"),
            )
        })
        .collect();
    let submitted_count = (tasks / 2) * 2;
    // A ghost agent claims a task and is never heard from again: its lease must hand the task
    // back, and another agent completes it.
    let task = serde_json::json!({"task_id": "GHOST-TASK", "task_type": "ghost"}).to_string();
    assert!(root.run_with_input(&["submit", "-"], task.as_bytes()).status.success());
    let claim_as = |agent: &str| -> Value {
        assert!(root.run(&["agent", "add", agent]).status.success());
        let out = root.run(&["claim", "--agent", agent, "--pool", "ghost", "--wait", "30"]);
        assert!(out.status.success(), "{agent} claim: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let ghost = claim_as("Ghost");
    let ghost_claim = ghost["claim"].as_str().unwrap().to_string();
    let again = claim_as("Ghost-Buster");
    assert_ne!(again["claim"], ghost["claim"]);
    let out = root.run(&["complete", "--agent", "Ghost-Buster", "--claim", again["claim"].as_str().unwrap()]);
    assert!(out.status.success());
    let submitted_count = submitted_count + 1;

    // Kill agents mid-task while the work runs; note what each held when it died.
    let completed = |root: &Root| root.board("completed_tasks").len();
    let mut held_at_kill: BTreeSet<(String, String)> = BTreeSet::new();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(90 + tasks as u64 / 20);
    while completed(&root) < submitted_count {
        if Instant::now() > deadline {
            let pending: Vec<String> = root
                .all_boards()
                .into_iter()
                .filter(|(b, _)| b != "completed_tasks")
                .take(5)
                .map(|(b, t)| format!("{b}: {} {} {}", t["task_id"], t["assigned_to"], t["history"]))
                .collect();
            panic!(
                "not every task completed (seed {seed}): {} of {submitted_count}; e.g. {pending:#?}\n{}",
                completed(&root),
                broker.log().lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(rng.range(50, 150)));
        if kills < 8 + tasks / 1000 && rng.chance(60) {
            // Mid-task: prefer an agent that holds a claim right now.
            let holding: Vec<usize> = (0..AGENTS)
                .filter(|&i| {
                    root.ls(&format!("mailboxes/{}/cur", names[i])).iter().any(|n| {
                        n.starts_with(|c: char| c.is_ascii_digit())
                            && !held_at_kill.contains(&(names[i].clone(), n.clone()))
                    })
                })
                .collect();
            let i = if holding.is_empty() {
                rng.range(0, AGENTS as u64) as usize
            } else {
                holding[rng.range(0, holding.len() as u64) as usize]
            };
            agents[i].kill9();
            kills += 1;
            let cur = root.comms().join("mailboxes").join(&names[i]).join("cur");
            for e in std::fs::read_dir(&cur).unwrap().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(|c: char| c.is_ascii_digit()) {
                    held_at_kill.insert((names[i].clone(), n));
                }
            }
            generation[i] += 1;
            agents[i] = spawn_agent(&root, &names[i], &log_of(i, generation[i]), &stop, rng.next_u64());
        }
    }
    for mut p in producers {
        assert!(p.wait().success());
    }
    std::fs::write(&stop, b"").unwrap();
    for a in &mut agents {
        assert!(a.wait().success(), "an agent failed");
    }
    let work_time = started.elapsed();
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");

    // Every task completed exactly once, by its addressee when it had one.
    let mut submitted: BTreeMap<String, Option<String>> = BTreeMap::new();
    for p in 0..2 {
        for r in read_json_lines(&logs.join(format!("producer-{p}.jsonl"))) {
            let to = r["assigned_to"].as_str().map(str::to_string);
            submitted.insert(r["task_id"].as_str().unwrap().to_string(), to);
        }
    }
    submitted.insert("GHOST-TASK".into(), None);
    assert_eq!(submitted.len(), submitted_count);
    let board = root.board("completed_tasks");
    assert_eq!(board.len(), submitted_count, "each task once on the completed board");
    for t in &board {
        let id = t["task_id"].as_str().unwrap();
        assert_eq!(t["status"], "COMPLETED", "{t}");
        assert!(submitted.contains_key(id));
    }
    let journal = root.journal();
    let mut completes: HashMap<String, (String, String)> = HashMap::new();
    let mut taken_back: BTreeSet<String> = BTreeSet::new();
    let mut stats: BTreeMap<String, usize> = BTreeMap::new();
    for r in &journal {
        let op = r["op"].as_str().unwrap();
        *stats.entry(op.to_string()).or_default() += 1;
        let claim = r["path"].as_str().map(|p| p.rsplit('/').next().unwrap().to_string());
        match op {
            "complete" => {
                let id = r["task_id"].as_str().unwrap().to_string();
                let prev =
                    completes.insert(id.clone(), (r["actor"].as_str().unwrap().into(), claim.unwrap()));
                assert!(prev.is_none(), "task {id} completed twice");
            }
            "expire" | "vanish" => {
                taken_back.insert(claim.unwrap());
            }
            _ => {}
        }
    }
    let mut addressed = 0;
    for (id, to) in &submitted {
        let (by, _) = completes.get(id).unwrap_or_else(|| panic!("task {id} has no journaled completion"));
        if let Some(to) = to {
            addressed += 1;
            assert_eq!(by, to, "task {id} addressed to {to} was completed by {by}");
        }
    }
    // No claim name ever held by two agents.
    let mut holder: HashMap<String, String> = HashMap::new();
    for (i, gens) in generation.iter().enumerate() {
        for g in 0..=*gens {
            for r in read_json_lines(&log_of(i, g)).into_iter().filter(|r| r["op"] == "claim") {
                let c = r["claim"].as_str().unwrap().to_string();
                if let Some(other) = holder.insert(c.clone(), names[i].clone()) {
                    assert_eq!(other, names[i], "claim {c} held by {other} and {}", names[i]);
                }
            }
        }
    }
    // The claims killed agents held came back by lease (or had been reported just before).
    let finished_claims: BTreeSet<&String> = completes.values().map(|(_, c)| c).collect();
    for (agent, c) in &held_at_kill {
        assert!(
            taken_back.contains(c)
                || finished_claims.contains(c)
                || journal.iter().any(|r| {
                    matches!(r["op"].as_str(), Some("fail" | "release"))
                        && r["path"].as_str().is_some_and(|p| p.ends_with(c))
                }),
            "claim {c} held by killed {agent} was neither taken back nor reported"
        );
    }
    let expired = stats.get("expire").copied().unwrap_or(0);
    assert!(taken_back.contains(&ghost_claim), "the ghost's lease did not hand its task back");
    let ghost_id = ghost["task_id"].as_str().unwrap();
    assert_eq!(completes[ghost_id].0, "Ghost-Buster");
    let by_lease = held_at_kill.iter().filter(|(_, c)| taken_back.contains(c)).count();
    for n in &names {
        let left = root.ls(&format!("mailboxes/{n}/cur"));
        assert!(
            left.iter().all(|f| !f.starts_with(|c: char| c.is_ascii_digit())),
            "{n} still holds {left:?}"
        );
    }
    eprintln!(
        "race suite (seed {seed}): {AGENTS} agents, {submitted_count} tasks ({addressed} addressed to one agent), \
         {kills} agent kills with {} claims in their cur/ ({by_lease} handed back by lease, the rest already reported), {expired} leases expired (the ghost's included); completed twice 0, claims held twice 0, \
         lost 0; journal {stats:?}; work {:.1?}",
        held_at_kill.len(),
        work_time
    );
}

/// The readdir pitfall (peers.md §4.2): listing a directory while other processes rename files
/// in and out of it must still return every file that stayed in it the whole time, and a file
/// renamed in is seen by the next full listing. The broker relies on both: its rescans list, and
/// it infers that a claim vanished only from a stat, never from a listing.
#[test]
fn listing_during_renames_never_misses_a_file_that_stayed() {
    let d = tempfile::tempdir().unwrap();
    let (dir, side) = (d.path().join("new"), d.path().join("tmp"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&side).unwrap();
    let stable: BTreeSet<String> = (0..2000).map(|i| format!("stable-{i:05}.json")).collect();
    for n in &stable {
        std::fs::write(dir.join(n), b"{}").unwrap();
    }
    let churn = env_usize("MAILROOM_RENAME_CHURN", 20_000);
    let done = Arc::new(AtomicBool::new(false));
    let renamers: Vec<_> = (0..2)
        .map(|t| {
            let (dir, side, done) = (dir.clone(), side.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..churn / 2 {
                    let n = format!("churn-{t}-{i:06}.json");
                    std::fs::write(side.join(&n), b"{}").unwrap();
                    std::fs::rename(side.join(&n), dir.join(&n)).unwrap();
                    // Half of them leave again (claimed), half stay (new arrivals).
                    if i % 2 == 0 {
                        std::fs::rename(dir.join(&n), side.join(&n)).unwrap();
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
        })
        .collect();
    let mut listings = 0;
    while !renamers.iter().all(|r| r.is_finished()) {
        let seen: BTreeSet<String> =
            RealFs.list(&dir).unwrap().into_iter().filter_map(|e| e.name_str().map(str::to_string)).collect();
        let missing = stable.difference(&seen).count();
        assert_eq!(missing, 0, "a listing during renames missed {missing} files that never moved");
        listings += 1;
    }
    for r in renamers {
        r.join().unwrap();
    }
    let seen: BTreeSet<String> =
        RealFs.list(&dir).unwrap().into_iter().filter_map(|e| e.name_str().map(str::to_string)).collect();
    let arrived = (0..2)
        .flat_map(|t| (0..churn / 2).filter(|i| i % 2 == 1).map(move |i| format!("churn-{t}-{i:06}.json")));
    for n in stable.iter().cloned().chain(arrived) {
        assert!(seen.contains(&n), "{n} is in the directory but the listing after the renames missed it");
    }
    eprintln!(
        "readdir race: {listings} listings during {churn} renames in and {} out, none missed a file",
        churn / 2
    );
}

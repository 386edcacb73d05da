//! Agents waiting on the broker's socket, end to end with a real broker process: each task is
//! claimed by the broker for one waiting agent; every task is claimed once; the broker's metrics
//! count the claims; an agent that only asks to be named a file (no `claim`) is named one; and
//! an agent waiting on a broker that has nothing it may claim hears so at its deadline and finds
//! nothing.

use agent_sdk::{Agent, Client};
use mailroom_tests::http::Api;
use mailroom_tests::{Broker, Root, wait_for};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A broker serving `root`, its HTTP surface, and its socket once it is bound.
fn serving(root: &Root) -> (Broker, Api, PathBuf) {
    let broker = root.broker();
    let api = root.api();
    let socket = root.comms().join("broker/broker.sock");
    wait_for(T, || std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    (broker, api, socket)
}

#[test]
fn waiting_agents_each_hold_one_task_the_broker_claimed_for_them() {
    let root = Root::new();
    let (_broker, api, _) = serving(&root);
    let agents: Vec<Agent> =
        (1..=4).map(|i| Agent::register(&root.path, &format!("W-{i}")).unwrap()).collect();
    let waiting: Vec<_> = agents
        .into_iter()
        .map(|a| {
            std::thread::spawn(move || a.claim_wait(&["jobs".into()], T).unwrap().map(|c| c.task.task_id))
        })
        .collect();
    // Each is waiting on the socket before the tasks come.
    wait_for(T, || sample(&api.get("/metrics").text, "mailroom_socket_awaiting") == Some(4.0));
    let client = Client::open(&root.path).unwrap();
    for (i, prio) in ["LOW", "CRITICAL", "MEDIUM", "HIGH"].iter().enumerate() {
        client.submit(&json!({"task_id": format!("J-{i}"), "task_type": "jobs", "priority": prio})).unwrap();
    }
    let claimed: Vec<String> =
        waiting.into_iter().map(|t| t.join().unwrap().expect("a task for each")).collect();
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), 4, "each task claimed once: {claimed:?}");
    let text = api.get("/metrics").text;
    let grants = sample(&text, "mailroom_socket_requests_total{verdict=\"claimed\"}").unwrap_or(0.0);
    assert!(grants >= 1.0, "the claims were made by the broker: {text}");
    // The broker agrees: each task held by one of them, no two by the same.
    let holder = |id: &str| {
        let r = api.get(&format!("/api/tasks/{id}"));
        let t = &r.json["current"]["task"];
        (t["status"].as_str() == Some("IN_PROGRESS"))
            .then(|| t["assigned_to"].as_str().unwrap_or_default().to_string())
    };
    wait_for(T, || (0..4).all(|i| holder(&format!("J-{i}")).is_some()));
    let holders: HashSet<String> = (0..4).filter_map(|i| holder(&format!("J-{i}"))).collect();
    assert_eq!(holders.len(), 4, "{holders:?}");
}

#[test]
fn an_agent_offered_nothing_it_may_claim_hears_so_at_its_deadline() {
    let root = Root::new();
    let (_broker, api, _) = serving(&root);
    Client::open(&root.path)
        .unwrap()
        .submit(&json!({"task_id": "G-1", "task_type": "gpu", "required_capabilities": ["cuda"]}))
        .unwrap();
    let plain = Agent::register(&root.path, "Plain").unwrap();
    let started = Instant::now();
    assert!(plain.claim_wait(&["gpu".into()], Duration::from_millis(700)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(700), "it waited its whole wait");
    let text = api.get("/metrics").text;
    let nothing = sample(&text, "mailroom_socket_requests_total{verdict=\"nothing\"}").unwrap_or(0.0);
    // Answered at the end of each wait (at most half a second), not at once again and again.
    assert!((1.0..=3.0).contains(&nothing), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"offered\"}"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"claimed\"}"), Some(0.0), "{text}");
}

/// An agent that hangs up while it waits is not named the next file: the one still waiting is.
#[test]
fn an_agent_that_hangs_up_while_waiting_is_named_nothing() {
    let root = Root::new();
    let (_broker, api, socket) = serving(&root);
    let mut gone = UnixStream::connect(&socket).unwrap();
    gone.write_all(b"await {\"agent\":\"Gone\",\"pools\":[\"jobs\"],\"wait_ms\":10000}\n").unwrap();
    wait_for(T, || sample(&api.get("/metrics").text, "mailroom_socket_awaiting") == Some(1.0));
    drop(gone);
    // Seen at once, well before its wait of 10 s would have ended.
    wait_for(Duration::from_secs(5), || {
        sample(&api.get("/metrics").text, "mailroom_socket_awaiting") == Some(0.0)
    });
    let live = Agent::register(&root.path, "Live").unwrap();
    let waiting =
        std::thread::spawn(move || live.claim_wait(&["jobs".into()], T).unwrap().map(|c| c.task.task_id));
    wait_for(T, || sample(&api.get("/metrics").text, "mailroom_socket_awaiting") == Some(1.0));
    Client::open(&root.path).unwrap().submit(&json!({"task_id": "H-1", "task_type": "jobs"})).unwrap();
    assert_eq!(waiting.join().unwrap().as_deref(), Some("H-1"));
    let text = api.get("/metrics").text;
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"claimed\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"offered\"}"), Some(0.0), "{text}");
}

/// An await without `claim` (a client that renames files itself) is named the file, which stays
/// in its queue until the agent's own rename.
#[test]
fn an_await_without_claim_is_named_the_file_and_nothing_moves() {
    use std::io::{BufRead, BufReader};
    let root = Root::new();
    let (_broker, api, socket) = serving(&root);
    Agent::register(&root.path, "Namer").unwrap();
    Client::open(&root.path).unwrap().submit(&json!({"task_id": "N-1", "task_type": "jobs"})).unwrap();
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(b"await {\"agent\":\"Namer\",\"pools\":[\"jobs\"],\"wait_ms\":5000}\n").unwrap();
    let mut line = String::new();
    BufReader::new(conn.try_clone().unwrap()).read_line(&mut line).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["verdict"], "offered", "{line}");
    let name = answer["name"].as_str().unwrap();
    assert!(root.comms().join("queues/jobs/new").join(name).is_file(), "still queued: {line}");
    let text = api.get("/metrics").text;
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"offered\"}"), Some(1.0), "{text}");
}

/// Agents that report and ask for their next claim in one exchange (`complete_then_claim`)
/// finish every task once, the broker claiming each for them; a report the broker refuses (on a
/// claim finished already) is the caller's error, and nothing is claimed for it then.
#[test]
fn agents_that_report_as_they_ask_finish_every_task_once() {
    let root = Root::new();
    let (_broker, api, _) = serving(&root);
    let client = Client::open(&root.path).unwrap();
    for i in 0..20 {
        client.submit(&json!({"task_id": format!("R-{i}"), "task_type": "jobs"})).unwrap();
    }
    let pools = vec!["jobs".to_string()];
    let workers: Vec<_> = (1..=2)
        .map(|i| {
            let agent = Agent::register(&root.path, &format!("R-{i}")).unwrap();
            let pools = pools.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut next = agent.claim_wait(&pools, T).unwrap();
                while let Some(c) = next {
                    done.push((c.task.task_id.clone(), c.name.clone()));
                    let result = json!({"by": agent.name()});
                    next = agent
                        .complete_then_claim(&c.name, result, &pools, Duration::from_millis(500))
                        .unwrap();
                }
                (agent, done)
            })
        })
        .collect();
    let mut finished = Vec::new();
    let mut last = None;
    for w in workers {
        let (agent, done) = w.join().unwrap();
        last = done.last().map(|(_, claim)| claim.clone()).map(|c| (agent, c));
        finished.extend(done.into_iter().map(|(id, _)| id));
    }
    finished.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("R-{i}")).collect();
    expected.sort();
    assert_eq!(finished, expected, "each task claimed once");
    for id in &expected {
        let r = api.get(&format!("/api/tasks/{id}"));
        assert_eq!(r.json["current"]["task"]["status"], "COMPLETED", "{id}: {}", r.json);
    }
    let text = api.get("/metrics").text;
    let grants = sample(&text, "mailroom_socket_requests_total{verdict=\"claimed\"}").unwrap_or(0.0);
    assert!(grants >= 19.0, "the broker claimed after each report: {text}");
    // The last claim of an agent, reported again: refused, and a task waiting is not claimed.
    client.submit(&json!({"task_id": "R-late", "task_type": "jobs"})).unwrap();
    let (agent, claim) = last.expect("an agent finished a task");
    match agent.complete_then_claim(&claim, json!({}), &pools, Duration::from_millis(500)) {
        Err(agent_sdk::Error::ClaimLost { .. } | agent_sdk::Error::Refused { .. }) => {}
        other => panic!("a report on a finished claim: {other:?}"),
    }
    let r = api.get("/api/tasks/R-late");
    assert_eq!(r.json["current"]["task"]["status"], "PENDING", "{}", r.json);
}

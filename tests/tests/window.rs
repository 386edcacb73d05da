//! The ready window against a real broker: a pool keeps at most `[dispatch] ready_window` task
//! files however deep its queue, the boards still show every ready task, a CRITICAL task
//! submitted behind a queue of LOW ones is the next one claimed, and every task is claimed once,
//! in dispatch order.

use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn client(root: &Root) -> agent_sdk::Client {
    agent_sdk::Client::open(&root.path).unwrap()
}

#[test]
fn a_deep_pool_keeps_a_window_of_files_in_priority_order() {
    let root = Root::new();
    root.write_config("[dispatch]\nready_window = 4\n");
    let _broker = root.broker();
    assert!(root.run(&["agent", "add", "Agent-1"]).status.success());
    let c = client(&root);
    for i in 0..12 {
        c.submit(&json!({"task_id": format!("low-{i:02}"), "task_type": "build", "priority": "LOW"}))
            .unwrap();
    }
    wait_for(T, || root.board("task_ready_queue").len() == 12);
    let files = root.ls("queues/build/new");
    assert_eq!(files.len(), 4, "a window of four files, not {files:?}");

    // Behind 12 LOW tasks (8 of them without a file), a CRITICAL one is next.
    c.submit(&json!({"task_id": "urgent", "task_type": "build", "priority": "CRITICAL"})).unwrap();
    wait_for(T, || root.board("task_ready_queue").len() == 13);
    assert_eq!(root.ls("queues/build/new").len(), 4, "the CRITICAL task took a LOW file's place");
    let trace = root.run(&["trace", "low-11", "--json"]);
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    assert!(trace["now"].as_str().unwrap().contains("waiting for room"), "{trace}");

    let agent = agent_sdk::Agent::open(&root.path, "Agent-1").unwrap();
    let mut order = Vec::new();
    while order.len() < 13 {
        let claim = wait_claim(&agent);
        order.push(claim.task.task_id.clone());
        agent.complete(&claim.name, json!({})).unwrap();
    }
    let mut want = vec!["urgent".to_string()];
    want.extend((0..12).map(|i| format!("low-{i:02}")));
    assert_eq!(order, want, "claimed once each, in dispatch order");
    wait_for(T, || root.board("completed_tasks").len() == 13);
    assert!(root.board("task_ready_queue").is_empty());
    assert!(root.ls("queues/build/new").is_empty());
}

/// The next claim, waiting for the broker to hand the window's room to a waiting task.
fn wait_claim(agent: &agent_sdk::Agent) -> agent_sdk::Claim {
    agent.claim_wait(&["build".to_string()], T).unwrap().expect("a task within the timeout")
}

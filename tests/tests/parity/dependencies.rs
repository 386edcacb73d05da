//! Dependency dead ends on a real broker: a dependency that does not exist is shown by `board`
//! and `trace` and BLOCKs the task after `[dispatch] missing_dependency_secs`; a cycle is refused
//! when it would close, named in the refusal and in `trace`; BLOCKED cascades to every
//! transitive dependent; `retry` of the failed dependency unblocks them.

use super::{T, agent_add, claim, notices, submit};
use mailroom_tests::{Root, stdout, wait_for};
use serde_json::{Value, json};

fn status(root: &Root, id: &str) -> Option<Value> {
    root.all_boards().into_iter().map(|(_, t)| t).find(|t| t["task_id"] == id).map(|t| t["status"].clone())
}

#[test]
fn a_dependency_that_does_not_exist_is_shown_then_blocks() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n[dispatch]\nmissing_dependency_secs = 3\n");
    let _b = root.broker();
    submit(&root, &json!({"task_id": "WAITER", "depends_on": ["NO-SUCH-TASK"]}));
    submit(&root, &json!({"task_id": "AFTER", "depends_on": ["WAITER"]}));
    wait_for(T, || stdout(&root.run(&["board"])).contains("waiting for unknown task NO-SUCH-TASK"));
    let json: Vec<Value> = serde_json::from_slice(&root.run(&["board", "--json"]).stdout).unwrap();
    let w = json.iter().find(|t| t["task_id"] == "WAITER").unwrap();
    assert_eq!(w["note"], "waiting for unknown task NO-SUCH-TASK", "{w}");
    let trace = stdout(&root.run(&["trace", "WAITER"]));
    assert!(trace.contains("waiting for unknown task NO-SUCH-TASK"), "{trace}");
    // The HTTP API says so too: in the task and in its trace.
    let api = root.api().get("/api/tasks/WAITER");
    assert_eq!(api.json["current"]["note"], "waiting for unknown task NO-SUCH-TASK", "{}", api.text);
    assert!(api.json["trace"]["now"].as_str().unwrap().contains("waiting for unknown task"), "{}", api.text);
    wait_for(T, || status(&root, "WAITER") == Some(json!("BLOCKED")));
    wait_for(T, || status(&root, "AFTER") == Some(json!("BLOCKED")));
    let trace = stdout(&root.run(&["trace", "WAITER"]));
    assert!(trace.contains("`NO-SUCH-TASK` does not exist"), "{trace}");
}

#[test]
fn a_cycle_is_refused_and_named_and_a_retry_unblocks_the_cascade() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n");
    agent_add(&root, "Agent-1", &[]);
    let _b = root.broker();
    submit(&root, &json!({"task_id": "BASE", "task_type": "base"}));
    submit(&root, &json!({"task_id": "MID", "depends_on": ["BASE"]}));
    submit(&root, &json!({"task_id": "TOP", "depends_on": ["MID", "LOOP"]}));
    // LOOP depends on TOP, which depends on LOOP: refused when it would close; `submit` waits
    // for the verdict and says why.
    let out = root.run_with_input(
        &["submit", "-"],
        json!({"task_id": "LOOP", "depends_on": ["TOP"]}).to_string().as_bytes(),
    );
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LOOP -> TOP -> LOOP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = stdout(&root.run(&["trace", "LOOP"]));
    assert!(trace.contains("dependency cycle: LOOP -> TOP -> LOOP"), "{trace}");
    assert_eq!(status(&root, "LOOP"), None, "never accepted");
    wait_for(T, || root.ls("broker/quarantine").iter().any(|n| n.ends_with(".error.json")));
    let why: Value = {
        let q = root.ls("broker/quarantine");
        let f = q.iter().find(|n| n.ends_with(".error.json")).expect("the refused message, quarantined");
        serde_json::from_slice(&std::fs::read(root.comms().join("broker/quarantine").join(f)).unwrap())
            .unwrap()
    };
    assert!(why["reason"].as_str().unwrap().contains("LOOP -> TOP -> LOOP"), "{why}");

    // BASE fails for good: MID and, through it, TOP are BLOCKED.
    wait_for(T, || root.board("task_ready_queue").len() == 1);
    let t = claim(&root, "Agent-1", &[]).expect("BASE");
    let out = root.run(&[
        "fail",
        "--agent",
        "Agent-1",
        "--claim",
        t["claim"].as_str().unwrap(),
        "--error",
        "x",
        "--no-retry",
    ]);
    assert!(out.status.success());
    wait_for(T, || status(&root, "TOP") == Some(json!("BLOCKED")));
    assert_eq!(status(&root, "MID"), Some(json!("BLOCKED")));
    // A retry of BASE unblocks both; TOP goes on waiting (for MID, and for LOOP, unknown).
    assert!(root.run(&["retry", "BASE"]).status.success());
    wait_for(T, || {
        status(&root, "TOP") == Some(json!("PENDING")) && status(&root, "MID") == Some(json!("PENDING"))
    });
    wait_for(T, || stdout(&root.run(&["board"])).contains("waiting for unknown task LOOP"));
    assert!(notices(&root, "Agent-1").is_empty(), "{:?}", notices(&root, "Agent-1"));
}

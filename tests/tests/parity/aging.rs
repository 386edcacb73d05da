//! Priority aging on a real broker: `[dispatch] aging_secs` renames a waiting task one level up
//! per period, never above CRITICAL, each change once in its history and in `trace`; and a LOW
//! task is claimed before the HIGH work that keeps arriving once it has waited long enough.

use super::{T, agent_add, claim, submit};
use mailroom_tests::{Root, stdout, wait_for};
use serde_json::{Value, json};

fn ready(root: &Root, id: &str) -> Option<Value> {
    root.board("task_ready_queue").into_iter().find(|t| t["task_id"] == id)
}

#[test]
fn a_waiting_task_rises_to_critical_and_is_claimed_before_newer_urgent_work() {
    let root = Root::new();
    root.write_config("[broker]\ntick_ms = 50\n[dispatch]\naging_secs = 1\n");
    agent_add(&root, "Agent-1", &[]);
    let _b = root.broker();
    submit(&root, &json!({"task_id": "OLD-LOW", "priority": "LOW", "task_type": "work"}));
    wait_for(T, || root.ls("queues/work/new").iter().any(|n| n.starts_with("0-")));
    let ages = |t: &Value| -> Vec<(String, String)> {
        t["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["action"] == "age")
            .map(|h| (h["details"]["was"].to_string(), h["details"]["dispatched_as"].to_string()))
            .collect()
    };
    wait_for(T, || {
        ready(&root, "OLD-LOW").is_some_and(|t| ages(&t).last().is_some_and(|a| a.1 == "\"CRITICAL\""))
    });
    let t = ready(&root, "OLD-LOW").unwrap();
    assert_eq!(t["priority"], "LOW", "its own priority never changes");
    // One entry per change, each from the level the last one reached: MEDIUM, HIGH, CRITICAL one
    // second apart, or fewer entries when a busy broker looked late and found it two levels up.
    let raised = ages(&t);
    let mut level = "\"LOW\"".to_string();
    for (was, to) in &raised {
        assert_eq!(was, &level, "{raised:?}");
        level = to.clone();
    }
    assert!((1..=3).contains(&raised.len()), "{raised:?}");
    let trace = stdout(&root.run(&["trace", "OLD-LOW"]));
    assert_eq!(trace.matches(" age ").count(), raised.len(), "{trace}");

    // Newer urgent work arrives; the aged task, CRITICAL and older, is claimed first.
    for i in 0..3 {
        submit(&root, &json!({"task_id": format!("NEW-HIGH-{i}"), "priority": "HIGH", "task_type": "work"}));
    }
    wait_for(T, || root.ls("queues/work/new").len() == 4);
    assert_eq!(claim(&root, "Agent-1", &[]).expect("a task")["task_id"], "OLD-LOW");
}

//! What the cluster tests do to their nodes: a root configured as one node of a cluster sharing
//! the pool `leads` (tasks of type `LEAD` go there), and the CLI calls they check it with.

use crate::Root;
use serde_json::Value;

/// A root configured as node `name` of the cluster at `url`, sharing `leads`, with a redelivery
/// deadline of `ack_wait_secs`.
pub fn node(url: &str, name: &str, ack_wait_secs: u64) -> Root {
    let root = Root::new();
    root.write_config(&format!(
        "[routes]\nLEAD = \"pool:leads\"\n\n[cluster]\nnats = \"{url}\"\nnode = \"{name}\"\nshared_pools = [\"leads\"]\nack_wait_secs = {ack_wait_secs}\n"
    ));
    root
}

/// Runs `mailroom ARGS` on `root` and asserts it succeeded.
pub fn ok(root: &Root, args: &[&str]) {
    let out = root.run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `mailroom claim`: the claimed task, or `None` when nothing came within `wait` seconds.
pub fn claim(root: &Root, agent: &str, wait: &str) -> Option<Value> {
    let out = root.run(&["claim", "--agent", agent, "--wait", wait]);
    match out.status.code() {
        Some(0) => Some(serde_json::from_slice(&out.stdout).expect("claim prints JSON")),
        Some(3) => None,
        other => panic!("claim exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// The cluster-wide board, as `mailroom board --cluster --json` prints it on `root`.
pub fn cluster_board(root: &Root) -> Vec<Value> {
    let out = root.run(&["board", "--cluster", "--json"]);
    assert!(out.status.success(), "board --cluster: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

/// The records of `root`'s journal with operation `op` about task `id`.
pub fn task_ops(root: &Root, op: &str, id: &str) -> Vec<Value> {
    root.journal().into_iter().filter(|r| r["op"] == op && r["task_id"] == id).collect()
}

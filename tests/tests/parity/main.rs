//! Dream.OS parity end to end (issue 13), on real broker processes: broadcast and group mail,
//! an honest import report, capability routing, priority aging, dependency dead ends and agent
//! presence. One module per item; the helpers they share are here.

mod aging;
mod broadcast;
mod capabilities;
mod dependencies;
mod import_report;
mod presence;

use mailroom_tests::Root;
use serde_json::Value;
use std::time::Duration;

/// How long a test waits for the broker to do something (a bound on a wait, never a measure).
pub const T: Duration = Duration::from_secs(60);

/// Submits a task through the CLI.
pub fn submit(root: &Root, task: &Value) {
    let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
    assert!(out.status.success(), "submit failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `mailroom claim --agent A [extra]`: the task claimed, or `None` when the command exits 3.
pub fn claim(root: &Root, agent: &str, extra: &[&str]) -> Option<Value> {
    let mut args = vec!["claim", "--agent", agent];
    args.extend_from_slice(extra);
    let out = root.run(&args);
    match out.status.code() {
        Some(0) => Some(serde_json::from_slice(&out.stdout).expect("claim prints JSON")),
        Some(3) => None,
        other => panic!("claim exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// `mailroom agent add NAME [extra]`, which must succeed.
pub fn agent_add(root: &Root, name: &str, extra: &[&str]) {
    let mut args = vec!["agent", "add", name];
    args.extend_from_slice(extra);
    let out = root.run(&args);
    assert!(out.status.success(), "agent add failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The mail files in `mailboxes/<agent>/<sub>/` (`new` or `cur`), parsed, oldest first.
pub fn mail(root: &Root, agent: &str, sub: &str) -> Vec<Value> {
    let rel = format!("mailboxes/{agent}/{sub}");
    root.ls(&rel)
        .into_iter()
        .filter(|n| n.starts_with("mail-"))
        .map(|n| {
            let bytes = std::fs::read(root.comms().join(&rel).join(&n)).expect("read a mail file");
            serde_json::from_slice(&bytes).expect("a mail file is JSON")
        })
        .collect()
}

/// The notices in `mailboxes/<agent>/new/`, parsed.
pub fn notices(root: &Root, agent: &str) -> Vec<Value> {
    let rel = format!("mailboxes/{agent}/new");
    root.ls(&rel)
        .into_iter()
        .filter(|n| n.starts_with("notice-"))
        .map(|n| {
            let bytes = std::fs::read(root.comms().join(&rel).join(&n)).expect("read a notice");
            serde_json::from_slice(&bytes).expect("a notice is JSON")
        })
        .collect()
}

/// Every journal record of one operation (`mail`, `claim`, ...).
pub fn records(root: &Root, op: &str) -> Vec<Value> {
    root.journal().into_iter().filter(|r| r["op"] == op).collect()
}

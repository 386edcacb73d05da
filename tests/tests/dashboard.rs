//! The dashboard in a real headless Chromium, driven over the DevTools protocol, against a real
//! broker: the page loads and goes live, a task submitted through the API appears on the board
//! without a reload, a retry asks for the token once and goes through, a quarantined message is
//! requeued, a hook's deliveries are shown, and a screenshot is kept
//! as a test artifact (`target/mailroom-artifacts/dashboard.png`, and `dashboard-deliveries.png`
//! of the deliveries view; with `MAILROOM_SCREENSHOT_DOCS=1` also `docs/dashboard.png`).

use mailroom_tests::cdp::{self, Chromium};
use mailroom_tests::{Root, skip_unless_required, wait_for, workspace};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// How long a submitted task may take to show. The page follows the event stream, so it takes
/// milliseconds; the deadline is generous so that a loaded machine does not fail the test.
const APPEARS: Duration = Duration::from_secs(5);

fn claim(root: &Root, agent: &str) -> String {
    let out = root.run(&["claim", "--agent", agent, "--wait", "10"]);
    assert!(out.status.success(), "claim: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["claim"].as_str().unwrap().to_string()
}

/// Where test artifacts go: `target/mailroom-artifacts/`.
fn artifacts() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps/<exe>").to_path_buf();
    let dir = target.join("mailroom-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_dashboard_is_live_retries_with_the_token_and_is_photographed() {
    let Some(bin) = cdp::find() else {
        return skip_unless_required(
            "dashboard",
            "no chromium here (apt-get install chromium, or MAILROOM_CHROMIUM=/path/to/it)",
        );
    };
    let root = Root::new();
    // A hook on every completion, so the deliveries view has a sink with attempts to show.
    root.write_config("[[hooks]]\non = [\"COMPLETED\"]\nrun = [\"/bin/true\", \"{task_id}\"]\n");
    let _b = root.broker();
    let api = root.api();
    // Some history, so the page has something to show: pools, an agent, work done and failed.
    for a in ["Agent-1", "Agent-2"] {
        root.run(&["agent", "add", a]);
    }
    let types = [
        "build", "build", "docs", "leads", "leads", "leads", "review", "build", "leads", "docs", "build",
        "leads",
    ];
    let priorities = ["HIGH", "MEDIUM", "CRITICAL", "LOW", "MEDIUM", "HIGH"];
    for (i, ty) in types.iter().enumerate() {
        let t = json!({"task_id": format!("W-{i}"), "name": format!("{ty} job {i}"), "task_type": ty,
            "priority": priorities[i % priorities.len()], "max_attempts": 1});
        assert_eq!(api.post("/api/tasks", &t).status, 201);
    }
    api.post(
        "/api/tasks",
        &json!({"task_id": "REPORT", "name": "weekly report", "task_type": "docs", "depends_on": ["W-0"]}),
    );
    let done = claim(&root, "Agent-1");
    assert!(root.run(&["complete", "--agent", "Agent-1", "--claim", &done]).status.success());
    let done_id = root.journal().iter().rev().find(|r| r["op"] == "complete").unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = claim(&root, "Agent-2");
    let out = root.run(&[
        "fail",
        "--agent",
        "Agent-2",
        "--claim",
        &failed,
        "--error",
        "upstream 503",
        "--no-retry",
    ]);
    assert!(out.status.success());
    let _working = claim(&root, "Agent-1");
    wait_for(T, || api.get("/api/tasks?status=FAILED").json["total"] == 1);
    let dead =
        api.get("/api/tasks?status=FAILED").json["tasks"][0]["task"]["task_id"].as_str().unwrap().to_string();
    // A task held back by the failed one, and a refused message: the bottleneck and quarantine views.
    api.post(
        "/api/tasks",
        &json!({"task_id": "DIGEST", "name": "daily digest", "task_type": "docs", "depends_on": [dead]}),
    );
    let tmp = root.comms().join("broker/inbox/tmp/msg-junk.json");
    std::fs::write(&tmp, br#"{"kind":"complete","agent":"Agent-2"}"#).unwrap();
    std::fs::rename(&tmp, root.comms().join("broker/inbox/new/msg-junk.json")).unwrap();

    let mut page = Chromium::launch(&bin, 1440, 1000).expect("chromium starts");
    page.navigate(&format!("{}/", api.base)).unwrap();
    let live = "document.querySelector('#live.on') !== null && document.querySelectorAll('#board .column').length === 6";
    assert!(page.wait_until(live, T).unwrap(), "the page loads and follows the event stream");
    let on_board = |id: &str| format!("document.querySelector('#board [data-task-id=\"{id}\"]') !== null");
    assert!(
        page.wait_until(&on_board("W-5"), T).unwrap(),
        "tasks held before the page loaded are on the board"
    );

    // A task submitted now appears without a reload.
    let marker = page.eval("window.__loaded = performance.timeOrigin; true").unwrap();
    assert_eq!(marker, json!(true));
    assert_eq!(
        api.post("/api/tasks", &json!({"task_id": "LIVE-1", "name": "fresh", "task_type": "docs"})).status,
        201
    );
    assert!(page.wait_until(&on_board("LIVE-1"), APPEARS).unwrap(), "a submitted task appears on the board");
    assert_eq!(page.eval("window.__loaded !== undefined").unwrap(), json!(true), "without a reload");

    // The overview, photographed once the periodic figures (pools, agents, blockers) are in.
    let ready = "document.querySelector('#pools table') !== null && document.querySelector('#agents table') !== null \
                 && document.querySelector('#bottlenecks li') !== null && document.querySelector('.toast') === null";
    assert!(page.wait_until(ready, T).unwrap());
    let for_docs = std::env::var_os("MAILROOM_SCREENSHOT_DOCS").is_some_and(|v| v == "1");
    if for_docs {
        // The docs' picture waits for the flow diagram's first two samples (one every 5 s).
        assert!(page.wait_until("document.querySelector('#cfd svg') !== null", T).unwrap());
    }
    let png = page.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real picture");
    let shot = artifacts().join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    if for_docs {
        std::fs::write(workspace().join("docs/dashboard.png"), &png).unwrap();
    }

    // Retry the failed task from the Failed view: the page asks for the token, once.
    page.eval("location.hash = '#/failed'; true").unwrap();
    let button = format!("document.querySelector('[data-action=\"retry\"][data-task=\"{dead}\"]')");
    assert!(page.wait_until(&format!("{button} !== null"), T).unwrap(), "the failed task has a retry button");
    page.eval(&format!("{button}.click(); true")).unwrap();
    assert!(
        page.wait_until("document.querySelector('#token-dialog').open", T).unwrap(),
        "the token is asked for"
    );
    page.eval(&format!(
        "document.querySelector('#token-input').value = {}; document.querySelector('#token-save').click(); true",
        json!(api.token)
    ))
    .unwrap();
    wait_for(T, || api.get(&format!("/api/tasks/{dead}")).json["current"]["task"]["status"] != "FAILED");
    assert_eq!(
        page.eval("sessionStorage.getItem('mailroom.token') !== null").unwrap(),
        json!(true),
        "kept for the session"
    );
    let gone = format!("{button} === null");
    assert!(page.wait_until(&gone, T).unwrap(), "the retried task leaves the failed list, live");

    // A second change does not ask again: cancel the dependent task through the task page.
    page.eval("location.hash = '#/task/REPORT'; true").unwrap();
    let cancel = "document.querySelector('[data-action=\"cancel\"][data-task=\"REPORT\"]')";
    assert!(
        page.wait_until(&format!("{cancel} !== null && document.querySelector('#timeline li') !== null"), T)
            .unwrap()
    );
    page.eval(&format!("{cancel}.click(); true")).unwrap();
    assert!(page.wait_until("document.querySelector('#confirm-dialog').open", T).unwrap());
    page.eval("document.querySelector('#confirm-yes').click(); true").unwrap();
    wait_for(T, || api.get("/api/tasks/REPORT").json["current"]["task"]["status"] == "CANCELLED");
    assert_eq!(page.eval("document.querySelector('#token-dialog').open").unwrap(), json!(false));

    // Requeue the refused message from the Quarantine view: the broker takes it back into its
    // inbox, refuses it again (it is still a completion without a claim), and the view follows.
    let entry = api.get("/api/quarantine").json["entries"][0]["name"].as_str().unwrap().to_string();
    page.eval("location.hash = '#/quarantine'; true").unwrap();
    let requeue = format!("document.querySelector('[data-action=\"requeue\"][data-entry={}]')", json!(entry));
    assert!(page.wait_until(&format!("{requeue} !== null"), T).unwrap(), "the entry has a requeue button");
    page.eval(&format!("{requeue}.click(); true")).unwrap();
    assert!(page.wait_until("document.querySelector('#confirm-dialog').open", T).unwrap());
    page.eval("document.querySelector('#confirm-yes').click(); true").unwrap();
    wait_for(T, || root.journal().iter().any(|r| r["op"] == "requeue" && r["name"] == entry.as_str()));
    assert!(
        page.wait_until(
            &format!("{requeue} === null && document.querySelector('[data-action=\"requeue\"]') !== null"),
            T
        )
        .unwrap(),
        "the requeued entry leaves the list and its second refusal takes its place"
    );

    // The deliveries view: the hook ran for the completed task, and says so.
    page.eval("location.hash = '#/deliveries'; true").unwrap();
    let hook_row = "[...document.querySelectorAll('#sinks tr[data-sink]')].some((r) => r.dataset.sink.startsWith('hook:/bin/true'))";
    let attempt = format!("document.querySelector('#attempts a[href=\"#/task/{done_id}\"]') !== null");
    assert!(
        page.wait_until(&format!("{hook_row} && {attempt}"), T).unwrap(),
        "the hook and its attempt are shown"
    );
    let png = page.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    std::fs::write(artifacts().join("dashboard-deliveries.png"), &png).unwrap();
}

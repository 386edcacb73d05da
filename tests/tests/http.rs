//! The broker's HTTP surface against real `mailroom run` processes: every endpoint, the token
//! (401 without it, on every change), the verdict of a refused submit, quarantine requeue through
//! the broker, body limits and CORS, the event stream resumed with `Last-Event-ID` (no gap, no duplicate, archived segments included), the metrics parsed as
//! Prometheus text, and the rules about where the surface may listen.

use mailroom_tests::http::Api;
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Claims the next task as `agent` with the CLI; returns the claim's name.
fn claim(root: &Root, agent: &str) -> String {
    let out = root.run(&["claim", "--agent", agent, "--wait", "10"]);
    assert!(out.status.success(), "claim: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["claim"].as_str().unwrap().to_string()
}

/// Delivers a message into the broker's inbox the way the protocol says: through `tmp/`.
fn deliver(root: &Root, name: &str, bytes: &[u8]) {
    let tmp = root.comms().join("broker/inbox/tmp").join(name);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, root.comms().join("broker/inbox/new").join(name)).unwrap();
}

fn task_status(api: &Api, id: &str) -> String {
    let r = api.get(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["current"]["task"]["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn every_endpoint_answers_and_every_change_needs_the_token() {
    let root = Root::new();
    let _b = root.broker();
    let api = root.api();
    let token_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.comms().join("broker/http.token")).unwrap().permissions(),
    );
    assert_eq!(token_mode & 0o777, 0o600, "the token is its owner's only");

    // Changes: 401 without the token or with a wrong one, and nothing happens.
    let task =
        json!({"task_id": "H-1", "name": "index the archive", "task_type": "build", "priority": "HIGH"});
    for auth in [None, Some("Bearer wrong"), Some("Basic x"), Some(&*format!("Bearer {}x", api.token))] {
        for path in ["/api/tasks", "/api/tasks/H-1/cancel", "/api/tasks/H-1/retry", "/api/retry"] {
            let r = api.post_as(path, &task, auth);
            assert_eq!(r.status, 401, "{path} with {auth:?}: {}", r.text);
            assert_eq!(r.json["error"], "unauthorized");
        }
    }
    assert_eq!(api.get("/api/tasks").json["total"], 0, "nothing was submitted");

    // Submit: accepted (201), refused with the field and the rule (422), malformed (422).
    let r = api.post("/api/tasks", &task);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["verdict"], "accepted");
    assert!(r.json["seq"].as_u64().unwrap() > 0);
    let r =
        api.post("/api/tasks", &json!({"kind": "submit", "task": {"task_id": "H-2", "task_type": "docs"}}));
    assert_eq!(r.status, 201, "a submit message is accepted too: {}", r.text);
    let r = api.post("/api/tasks", &json!({"task_id": "H-3", "priority": "URGENT"}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json["verdict"], "refused");
    assert_eq!(r.json["field"], "task.priority");
    assert!(r.json["rule"].as_str().unwrap().contains("CRITICAL"), "{}", r.text);
    let r = api.post("/api/tasks", &json!({"name": "no id"}));
    assert_eq!((r.status, r.json["field"].as_str()), (422, Some("task.task_id")), "{}", r.text);

    // The list, its filters and its cursor.
    let r = api.get("/api/tasks");
    assert_eq!(r.status, 200);
    assert_eq!(r.json["total"], 2);
    let t = &r.json["tasks"][0];
    assert_eq!(t["task"]["task_id"], "H-1");
    assert_eq!(t["pool"], "build");
    let path = t["path"].as_str().expect("a queued task has a file");
    assert!(std::path::Path::new(path).is_file(), "the path on disk is the task's file: {path}");
    assert_eq!(api.get("/api/tasks?type=docs").json["total"], 1);
    assert_eq!(api.get("/api/tasks?pool=build&status=pending").json["total"], 1);
    assert_eq!(api.get("/api/tasks?q=ARCHIVE").json["tasks"][0]["task"]["task_id"], "H-1");
    assert_eq!(api.get("/api/tasks?status=FAILED").json["total"], 0);
    assert_eq!(api.get("/api/tasks?status=NOPE").status, 400);
    assert_eq!(api.get("/api/tasks?colour=red").status, 400, "an unknown filter is an error, not ignored");
    let page = api.get("/api/tasks?limit=1");
    assert_eq!(page.json["tasks"].as_array().unwrap().len(), 1);
    let next = page.json["next_cursor"].as_str().expect("a second page");
    let second = api.get(&format!("/api/tasks?limit=1&cursor={next}"));
    assert_eq!(second.json["tasks"][0]["task"]["task_id"], "H-2");
    assert!(second.json["next_cursor"].is_null());

    // A claim, then the agents and pools views.
    root.run(&["agent", "add", "Agent-1"]);
    let name = claim(&root, "Agent-1");
    wait_for(T, || task_status(&api, "H-1") == "IN_PROGRESS");
    let agents = api.get("/api/agents");
    let a =
        agents.json["agents"].as_array().unwrap().iter().find(|a| a["agent"] == "Agent-1").unwrap().clone();
    assert_eq!(a["state"], "busy", "{a}");
    assert_eq!(a["held"][0]["task_id"], "H-1");
    assert_eq!(a["held"][0]["claim"], name.as_str());
    let mine = api.get("/api/tasks?agent=Agent-1");
    assert_eq!(
        (mine.json["total"].as_u64(), mine.json["tasks"][0]["task"]["task_id"].as_str()),
        (Some(1), Some("H-1"))
    );
    assert_eq!(api.get("/api/tasks?agent=Agent-2").json["total"], 0);
    let left = a["held"][0]["lease_left_secs"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 300.0, "{left}");
    let pools = api.get("/api/pools");
    let build =
        pools.json["pools"].as_array().unwrap().iter().find(|p| p["pool"] == "build").unwrap().clone();
    assert_eq!((build["depth"].as_u64(), build["in_progress"].as_u64()), (Some(0), Some(1)), "{build}");
    assert!(build["wait_p50_secs"].as_f64().is_some(), "the claim's wait was measured: {build}");

    // Fail it for good, then retry it singly; cancel; and a refused cancel.
    let out =
        root.run(&["fail", "--agent", "Agent-1", "--claim", &name, "--error", "disk full", "--no-retry"]);
    assert!(out.status.success());
    wait_for(T, || task_status(&api, "H-1") == "FAILED");
    let r = api.post("/api/tasks/H-1/retry", &json!({}));
    assert_eq!((r.status, r.json["verdict"].as_str()), (200, Some("accepted")), "{}", r.text);
    assert_eq!(task_status(&api, "H-1"), "PENDING");
    let r = api.post("/api/tasks/H-2/cancel", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post("/api/tasks/H-2/cancel", &json!({}));
    assert_eq!((r.status, r.json["verdict"].as_str()), (409, Some("refused")), "{}", r.text);
    assert!(r.json["reason"].as_str().unwrap().contains("CANCELLED"));

    // Bulk retry, scoped: only the cancelled docs task.
    let r = api.post("/api/retry", &json!({"status": ["CANCELLED"], "type": "build"}));
    assert_eq!((r.status, r.json["count"].as_u64()), (200, Some(0)), "{}", r.text);
    let r = api.post("/api/retry", &json!({"status": ["CANCELLED"], "pool": "docs"}));
    assert_eq!((r.json["count"].as_u64(), r.json["matched"].as_u64()), (Some(1), Some(1)), "{}", r.text);
    assert_eq!(task_status(&api, "H-2"), "PENDING");
    assert_eq!(api.post("/api/retry", &json!({"status": ["PENDING"]})).status, 422);

    // One task: its whole trace.
    let r = api.get("/api/tasks/H-1");
    let ops: Vec<&str> =
        r.json["trace"]["steps"].as_array().unwrap().iter().map(|s| s["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["submit", "dispatch", "claim", "fail", "retry", "dispatch"], "{}", r.text);
    assert_eq!(api.get("/api/tasks/NOPE").status, 404);

    // Quarantine: a refused message, with its reason, and its content.
    deliver(&root, "msg-bad.json", br#"{"kind":"cancel"}"#);
    wait_for(T, || api.get("/api/quarantine").json["total"] == 1);
    let q = api.get("/api/quarantine");
    let e = &q.json["entries"][0];
    assert_eq!(e["field"], "task_id", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("task_id"), "{e}");
    let one = api.get(&format!("/api/quarantine/{}", e["name"].as_str().unwrap()));
    assert_eq!(one.status, 200);
    assert!(one.json["content"].as_str().unwrap().contains("cancel"));
    assert_eq!(api.get("/api/quarantine/..").status, 400);
    assert_eq!(api.get("/api/quarantine/none.json").status, 404);

    // Requeue: the token, then the broker moves the entry back into its inbox. Still a cancel
    // without a task id, it is refused again: a new entry, and the first one's reason kept aside.
    let first = e["name"].as_str().unwrap().to_string();
    let requeue = format!("/api/quarantine/{first}/requeue");
    for auth in [None, Some("Bearer wrong")] {
        assert_eq!(api.post_as(&requeue, &json!({}), auth).status, 401);
    }
    assert_eq!(api.get("/api/quarantine").json["entries"][0]["name"], first.as_str(), "nothing moved");
    let r = api.post(&requeue, &json!({}));
    assert_eq!((r.status, r.json["verdict"].as_str()), (200, Some("accepted")), "{}", r.text);
    assert!(root.journal().iter().any(|rec| rec["op"] == "requeue"), "the requeue is journaled");
    wait_for(T, || {
        let q = api.get("/api/quarantine");
        q.json["total"] == 1 && q.json["entries"][0]["name"] != first.as_str()
    });
    let again = api.get("/api/quarantine").json["entries"][0]["name"].as_str().unwrap().to_string();
    assert!(root.comms().join(format!("broker/quarantine/requeued/{first}.error.json")).is_file());
    assert_eq!(api.post(&requeue, &json!({})).status, 404, "requeued already: gone from the quarantine");
    assert_eq!(api.post(&format!("/api/quarantine/{again}.error.json/requeue"), &json!({})).status, 400);
    assert_eq!(api.post("/api/quarantine/.hidden/requeue", &json!({})).status, 400);

    // Stats, the OpenAPI document, the dashboard.
    let s = api.get("/api/stats");
    assert_eq!(s.status, 200);
    assert_eq!(s.json["by_status"]["PENDING"], 2, "{}", s.text);
    assert_eq!(s.json["quarantined"], 1);
    assert!(s.json["engine"]["commits"].as_u64().unwrap() > 0);
    let doc = api.get("/api/openapi.json");
    for p in ["/api/tasks", "/api/tasks/{id}", "/api/retry", "/api/events", "/metrics"] {
        assert!(doc.json["paths"][p].is_object(), "{p} is documented");
    }
    let page = api.get("/");
    assert!(page.content_type.starts_with("text/html") && page.text.contains("/assets/app.js"));
    for asset in ["/assets/app.js", "/assets/views.js", "/assets/charts.js", "/assets/app.css"] {
        assert_eq!(api.get(asset).status, 200, "{asset}");
    }
    assert_eq!(api.get("/api/nothing").status, 404);

    // No CORS unless configured: no Access-Control header, even for a cross-origin preflight.
    let pre = api.request(
        "OPTIONS",
        "/api/tasks",
        &[("origin", "https://evil.example"), ("access-control-request-method", "POST")],
    );
    assert!(pre.header("access-control-allow-origin").is_none(), "{:?}", pre.headers);
    let r = api.get_with("/api/tasks", &[("origin", "https://evil.example")]);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
}

#[test]
fn bodies_are_limited_and_cors_is_only_for_configured_origins() {
    let root = Root::new();
    root.write_config(
        "[broker]\nmax_message_bytes = 4096\n\n[http]\ncors_origins = [\"https://ops.example\"]\n",
    );
    let _b = root.broker();
    let api = root.api();
    // Beyond the limit: 413, and nothing is submitted.
    let big = json!({"task_id": "BIG", "params": {"blob": "x".repeat(8192)}});
    let r = api.post("/api/tasks", &big);
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(api.get("/api/tasks/BIG").status, 404);
    assert_eq!(api.post("/api/tasks", &json!({"task_id": "SMALL"})).status, 201);
    // The configured origin may read and ask; any other gets no CORS header.
    let ok = api.request(
        "OPTIONS",
        "/api/tasks",
        &[
            ("origin", "https://ops.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
    );
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://ops.example"),
        "{:?}",
        ok.headers
    );
    let other = api.get_with("/api/tasks", &[("origin", "https://evil.example")]);
    assert!(other.header("access-control-allow-origin").is_none(), "{:?}", other.headers);
    // A request whose token is wrong is 401 before its body is read, whatever its size.
    assert_eq!(api.post_as("/api/tasks", &big, Some("Bearer nope")).status, 401);
}

/// Reads events until one with `id` ≥ `upto`; every id must be the previous one plus one.
fn read_through(ev: &mut mailroom_tests::http::Events, mut last: u64, upto: u64) -> u64 {
    while last < upto {
        let e = ev.next_event();
        let id = e.id.expect("every event has an id");
        assert_eq!(id, last + 1, "no gap and no duplicate: after {last} came {id}");
        assert_eq!(e.data["seq"], id, "the id is the record's journal sequence");
        last = id;
    }
    last
}

fn last_seq(root: &Root) -> u64 {
    root.journal().last().and_then(|r| r["seq"].as_u64()).unwrap_or(0)
}

#[test]
fn the_event_stream_resumes_after_last_event_id_without_gap_or_duplicate() {
    let root = Root::new();
    // Compacting every few records archives segments: a resume must read those too.
    root.write_config("[broker]\ncompact_after_records = 8\n");
    let _b = root.broker();
    let api = root.api();
    for i in 0..6 {
        assert_eq!(api.post("/api/tasks", &json!({"task_id": format!("E-{i}")})).status, 201);
    }
    let upto = last_seq(&root);
    assert!(
        root.comms().join("broker/journal/archive").read_dir().unwrap().count() > 0,
        "segments were archived"
    );
    // From the very start: everything the journal holds, in order.
    let mut ev = api.events(Some(0));
    let mut last = read_through(&mut ev, 0, upto);
    // Live: what is committed next follows without a gap.
    for i in 6..9 {
        api.post("/api/tasks", &json!({"task_id": format!("E-{i}")}));
    }
    last = read_through(&mut ev, last, last_seq(&root));
    drop(ev);
    // Missed while away: a reconnect with Last-Event-ID gets exactly those, then live.
    for i in 9..12 {
        api.post("/api/tasks", &json!({"task_id": format!("E-{i}")}));
    }
    let missed = last_seq(&root);
    assert!(missed > last);
    let mut ev = api.events(Some(last));
    last = read_through(&mut ev, last, missed);
    api.post("/api/tasks", &json!({"task_id": "E-live"}));
    let e = ev.next_event();
    assert_eq!(e.id, Some(last + 1));
    let seen: BTreeSet<String> =
        root.journal().iter().filter_map(|r| r["task_id"].as_str().map(str::to_string)).collect();
    assert!(seen.contains("E-live"));
    // Without Last-Event-ID the stream starts with what comes next.
    let mut fresh = api.events(None);
    api.post("/api/tasks", &json!({"task_id": "E-next"}));
    let e = fresh.next_event();
    assert!(e.id.unwrap() > last + 1, "nothing old is replayed");
    assert_eq!(e.data["task_id"], "E-next");
}

/// Checks the exposition is Prometheus/OpenMetrics text: every sample belongs to a declared
/// family, names and labels are well formed, values parse, and it ends with `# EOF`. Returns the
/// families with their type.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut families = std::collections::BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics text ends with # EOF");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().expect("a family name"));
            assert!(name_ok(name), "{line}");
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            if kind == "TYPE" {
                let ty = parts.next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "info", "unknown"].contains(&ty),
                    "{line}"
                );
                families.insert(name.to_string(), ty.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
        assert!(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value), "{line}");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("closed labels: {line}"))),
            None => (series, ""),
        };
        assert!(name_ok(name), "{line}");
        assert!(name.starts_with("mailroom_"), "every name starts mailroom_: {line}");
        if !labels.is_empty() {
            for pair in labels.split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("label pair in {line}"));
                assert!(name_ok(k), "{line}");
                assert!(!v.trim_end_matches('"').contains('"') || v.contains("\\\""), "{line}");
            }
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains_key(*f)))
            .unwrap_or(name);
        assert!(families.contains_key(family), "{name} belongs to a declared family");
    }
    families
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let root = Root::new();
    root.write_config("[broker]\nlease_secs = 1\n");
    let _b = root.broker();
    let api = root.api();
    root.run(&["agent", "add", "Agent-9"]);
    api.post("/api/tasks", &json!({"task_id": "M-1", "task_type": "build"}));
    api.post("/api/tasks", &json!({"task_id": "M-2", "task_type": "build"}));
    let first = claim(&root, "Agent-9");
    root.run(&["complete", "--agent", "Agent-9", "--claim", &first]);
    let _held = claim(&root, "Agent-9"); // never heartbeated: its 1 s lease runs out
    deliver(&root, "msg-bad.json", b"not json");
    wait_for(T, || {
        let m = api.get("/metrics").text;
        m.contains("mailroom_lease_expiries_total{pool=\"build\"} 1")
            && m.contains("mailroom_quarantines_total")
    });
    let r = api.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/openmetrics-text"), "{}", r.content_type);
    let families = parse_exposition(&r.text);
    for (name, ty) in [
        ("mailroom_transitions", "counter"),
        ("mailroom_tasks", "gauge"),
        ("mailroom_held_claims", "gauge"),
        ("mailroom_submit_to_claim_seconds", "histogram"),
        ("mailroom_claim_to_finish_seconds", "histogram"),
        ("mailroom_lease_expiries", "counter"),
        ("mailroom_quarantines", "counter"),
        ("mailroom_journal_commit_seconds", "histogram"),
        ("mailroom_pass_duration_seconds", "histogram"),
        ("mailroom_inbox_backlog", "gauge"),
        ("mailroom_queue_depth", "gauge"),
        ("mailroom_footprint_files", "gauge"),
        ("mailroom_footprint_bytes", "gauge"),
        ("mailroom_fs_operations", "counter"),
        ("mailroom_fs_written_bytes", "counter"),
        ("mailroom_fs_read_bytes", "counter"),
    ] {
        assert_eq!(
            families.get(name).map(String::as_str),
            Some(ty),
            "{name} is exposed as a {ty}\n{}",
            r.text
        );
    }
    let text = &r.text;
    assert!(text.contains("mailroom_transitions_total{op=\"claim\",pool=\"build\"} "), "{text}");
    assert!(text.contains("mailroom_submit_to_claim_seconds_count 2"), "two claims waited: {text}");
    assert!(text.contains("mailroom_claim_to_finish_seconds_count 1"), "{text}");
    assert!(text.contains("mailroom_journal_commit_seconds_count "), "{text}");
    assert!(!text.contains("mailroom_journal_commit_seconds_count 0\n"), "commits were timed: {text}");
    assert!(text.contains("mailroom_footprint_files{area=\"inbox_kept\"} "), "{text}");
    assert!(text.contains("mailroom_footprint_bytes{area=\"journal_live\"} "), "{text}");
    // The broker's own filesystem work: it journaled, created task files, moved messages.
    let sample = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("{series}: {text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    for op in ["create", "rename", "unlink", "fsync_file", "fsync_dir", "append", "read", "list"] {
        assert!(sample(&format!("mailroom_fs_operations_total{{op=\"{op}\"}}")) > 0.0, "{op}: {text}");
    }
    let appended = sample("mailroom_fs_written_bytes_total{what=\"appended\"}");
    assert!(appended >= sample("mailroom_fs_operations_total{op=\"append\"}"), "{text}");
}

#[test]
fn the_surface_listens_only_where_it_may() {
    // Beyond loopback without a token chosen by the operator: refused before anything starts.
    let root = Root::new();
    let out = root.cmd(&["run"]).env("MAILROOM_HTTP", "0.0.0.0:0").output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_file"));
    // With one: it serves, and then reads need the token too.
    std::fs::write(root.scratch().join("secret"), "open-sesame\n").unwrap();
    root.write_config(&format!("[http]\ntoken_file = \"{}\"\n", root.scratch().join("secret").display()));
    let mut b = root.spawn_broker_with(&[("MAILROOM_HTTP", "0.0.0.0:0")]);
    let addr = root.comms().join("broker/http.addr");
    wait_for(T, || addr.exists() || !b.is_running());
    let port = std::fs::read_to_string(&addr).unwrap().trim().rsplit(':').next().unwrap().to_string();
    let api = Api::new(format!("http://127.0.0.1:{port}"), "open-sesame".into());
    assert_eq!(api.get("/api/tasks").status, 401, "reads need the token beyond loopback");
    assert_eq!(api.get_as("/api/tasks", Some("Bearer open-sesame")).status, 200);
    assert_eq!(api.get("/").status, 200, "the page itself loads, then asks for the token");
    drop(b);
    // An address that was asked for and is busy: the broker does not run without its surface.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root = Root::new();
    let out =
        root.cmd(&["run"]).env("MAILROOM_HTTP", busy.local_addr().unwrap().to_string()).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!root.comms().join("broker/http.addr").exists());
    // `off`: no surface, the broker runs.
    let b = root.spawn_broker_with(&[("MAILROOM_HTTP", "off")]);
    let mut b = b;
    assert!(b.wait_serving(T));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!root.comms().join("broker/http.addr").exists());
    assert!(b.is_running());
}

//! The broker's local socket (`broker/broker.sock`) end to end, with real broker processes: SDK
//! calls answered on it, refusals with their field and rule, a message taken once whether it
//! comes on the socket or again as a file of the same name, the fallback to files when no broker
//! serves the socket, and the socket's name beneath the root that nothing planted there can
//! turn against the broker.

use agent_sdk::{Ack, Client, Error};
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn socket(root: &Root) -> PathBuf {
    root.comms().join("broker/broker.sock")
}

fn serving_socket(root: &Root) -> PathBuf {
    let s = socket(root);
    wait_for(T, || std::fs::symlink_metadata(&s).is_ok_and(|m| m.file_type().is_socket()));
    s
}

fn trace(root: &Root, id: &str) -> Value {
    let out = root.run(&["trace", id, "--json"]);
    assert!(out.status.success(), "trace {id}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One request on a raw connection, and its answer.
fn ask(conn: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    conn.get_mut().write_all(line).unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[test]
fn sdk_messages_are_answered_on_the_socket_and_refusals_say_why() {
    let root = Root::new();
    // The inbox's `new/` given a group of its own and a mode that lets that group write: the
    // socket gets both (the tests run as root, who may give any group).
    let new = root.comms().join("broker/inbox/new");
    let group =
        if rustix::process::geteuid().is_root() { 65534 } else { std::fs::metadata(&new).unwrap().gid() };
    std::os::unix::fs::chown(&new, None, Some(group)).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o770)).unwrap();
    let _broker = root.broker();
    let s = serving_socket(&root);
    let meta = std::fs::metadata(&s).unwrap();
    assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o770, group), "the inbox's mode and group");

    let client = Client::open(&root.path).unwrap();
    let name = client.submit(&json!({"task_id": "K-1", "task_type": "k"})).unwrap();
    assert!(root.ls("broker/inbox/cur").is_empty() && root.ls("broker/inbox/new").is_empty(), "no file");
    let t = trace(&root, "K-1");
    assert_eq!(t["status"], "PENDING", "{t}");
    assert!(t.to_string().contains(&name), "the trace names the message: {t}");
    let submit = &t["steps"][0];
    assert_eq!(submit["paths"][0], "broker/broker.sock", "taken on the socket, not from the inbox: {t}");

    match client.cancel("NOPE") {
        Err(Error::Refused { field, rule, .. }) => {
            assert_eq!((field.as_str(), rule.as_str()), ("task_id", "no task `NOPE`"))
        }
        other => panic!("{other:?}"),
    }
    // The same message as a file, with the socket turned off: the same verdicts.
    let files = Client::open(&root.path).unwrap().with_socket(false);
    files.cancel("K-1").unwrap();
    assert_eq!(root.ls("broker/inbox/cur").len(), 1, "delivered as a file");
    assert_eq!(trace(&root, "K-1")["status"], "CANCELLED");
}

#[test]
fn a_message_is_taken_once_on_the_socket_or_again_as_a_file_of_its_name() {
    let root = Root::new();
    let _broker = root.broker();
    let mut conn = BufReader::new(UnixStream::connect(serving_socket(&root)).unwrap());
    let name = "msg-20261201T000000000001.P1Q1R00000001.test.json";
    let submit = format!("{name} {}\n", json!({"task_id": "O-1"}));
    assert_eq!(ask(&mut conn, submit.as_bytes())["verdict"], "accepted");
    // Its client lost the answer and sends the message again, on the socket, then as a file.
    assert_eq!(ask(&mut conn, submit.as_bytes())["verdict"], "accepted");
    std::fs::write(
        root.comms().join("broker/inbox/new").join(name),
        json!({"kind": "cancel", "task_id": "O-1"}).to_string(),
    )
    .unwrap();
    wait_for(T, || root.ls("broker/inbox/new").is_empty());
    assert_eq!(root.ls("broker/inbox/cur"), vec![name.to_string()]);
    let t = trace(&root, "O-1");
    assert_eq!(t["status"], "PENDING", "taken once, the cancel under its name not handled: {t}");

    // Requests that cannot be taken are answered, and the connection goes on.
    let bad = ask(&mut conn, b"not-a-name {}\n");
    assert_eq!((bad["verdict"].as_str(), bad["field"].as_str()), (Some("refused"), Some("name")), "{bad}");
    let bad = ask(&mut conn, b"msg-2.json {\"kind\":\"nope\"}\n");
    assert_eq!(bad["field"], "kind", "{bad}");
    let ok = ask(&mut conn, format!("msg-3.json {}\n", json!({"task_id": "O-2"})).as_bytes());
    assert_eq!(ok["verdict"], "accepted", "{ok}");
    // A line over the largest message is refused and ends the connection.
    let huge = format!("msg-4.json {{\"task_id\":\"O-3\",\"x\":\"{}\"}}\n", "a".repeat(2 << 20));
    // The broker stops reading at the limit: the rest of the write may find the connection shut.
    let _ = conn.get_mut().write_all(huge.as_bytes());
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    let over: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(over["verdict"], "refused", "{over}");
    let mut rest = String::new();
    assert_eq!(conn.read_line(&mut rest).unwrap_or(0), 0, "closed after a line too long");
}

#[test]
fn with_no_broker_on_the_socket_messages_go_as_files_and_nothing_is_lost() {
    let root = Root::new();
    let broker = root.broker();
    let s = serving_socket(&root);
    broker.kill9();
    assert!(s.exists(), "a killed broker leaves its socket");
    let client = Client::open(&root.path).unwrap().with_ack(Ack::Wait(Duration::from_millis(300)));
    match client.submit(&json!({"task_id": "N-1"})) {
        Err(Error::Unanswered { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(root.ls("broker/inbox/new").len(), 1, "delivered as a file");
    let broker = root.broker();
    wait_for(T, || root.ls("broker/inbox/new").is_empty());
    assert_eq!(trace(&root, "N-1")["status"], "PENDING");
    serving_socket(&root);
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(!s.exists(), "a clean stop removes the socket");
}

#[test]
fn nothing_planted_at_the_socket_s_name_is_followed_or_removed() {
    let root = Root::new();
    let outside = root.scratch().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let s = socket(&root);
    std::os::unix::fs::symlink(outside.join("sock"), &s).unwrap();
    let broker = root.broker();
    let client = Client::open(&root.path).unwrap();
    client.submit(&json!({"task_id": "P-1"})).unwrap();
    assert_eq!(root.ls("broker/inbox/cur").len(), 1, "taken as a file: no socket was offered");
    assert!(std::fs::symlink_metadata(&s).unwrap().file_type().is_symlink(), "the link is left alone");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing made outside the root");
    assert!(broker.log().contains("no local socket"), "{}", broker.log());
    let (code, _) = broker.terminate();
    assert_eq!(code, Some(0));
    assert!(std::fs::symlink_metadata(&s).unwrap().file_type().is_symlink(), "not removed at stop");

    std::fs::remove_file(&s).unwrap();
    std::fs::write(&s, b"an operator's file").unwrap();
    let broker = root.broker();
    Client::open(&root.path).unwrap().submit(&json!({"task_id": "P-2"})).unwrap();
    let (code, _) = broker.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read(&s).unwrap(), b"an operator's file");
}

/// What the socket served shows in the broker's metrics: its connections and its answers by
/// verdict.
#[test]
fn the_socket_s_connections_and_answers_are_in_the_metrics() {
    let root = Root::new();
    let _broker = root.broker();
    let api = root.api();
    let mut conn = BufReader::new(UnixStream::connect(serving_socket(&root)).unwrap());
    let name = "msg-20261201T000000000002.P1Q1R00000002.test.json";
    assert_eq!(
        ask(&mut conn, format!("{name} {}\n", json!({"task_id": "Q-1"})).as_bytes())["verdict"],
        "accepted"
    );
    assert_eq!(ask(&mut conn, b"not-a-name {}\n")["verdict"], "refused");
    let sample = |text: &str, series: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let text = api.get("/metrics").text;
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"accepted\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_requests_total{verdict=\"refused\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_connections"), Some(1.0), "the one open: {text}");
    assert!(sample(&text, "mailroom_socket_accepted_connections_total") >= Some(1.0), "{text}");
    assert_eq!(sample(&text, "mailroom_socket_turned_away_connections_total"), Some(0.0), "{text}");
    drop(conn);
    wait_for(T, || sample(&api.get("/metrics").text, "mailroom_socket_connections") == Some(0.0));
}

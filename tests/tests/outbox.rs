//! End-to-end: webhooks and hooks against a real broker. A receiver on loopback checks every
//! signature, is down for a while and comes back (every delivery arrives), and sees the broker
//! SIGKILLed in the middle of a stream and restarted (nothing lost, repeats bounded by
//! `delivery_journal_every`); a hook script records its calls (arguments never through a shell),
//! and a hook that runs past its timeout is killed, retried, given up, and does not hold the rest.
//! What each sink did is read back from the broker's `GET /api/deliveries`.

use hmac::{Hmac, Mac};
use mailroom_tests::{Root, wait_for};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const SECRET: &[u8] = b"correct horse battery staple";
/// The `delivery_journal_every` of these tests: the most a crash may make a sink deliver again.
const EVERY: usize = 3;

/// What the receiver saw: each delivery's `X-Mailroom-Delivery` and body, and the requests whose
/// signature did not check (or that lacked a header).
#[derive(Default)]
struct Seen {
    deliveries: Vec<(u64, Value)>,
    bad: Vec<String>,
}

/// A webhook endpoint on a loopback port that can go down and come back on the same port.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Receiver {
    fn new() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, seen: Arc::default(), running: None }
    }

    fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("the port again");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, seen) = (stop.clone(), self.seen.clone());
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &seen),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some((stop, t));
    }

    /// Closed: connections are refused until `up` again.
    fn down(&mut self) {
        if let Some((stop, t)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            t.join().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/mailroom?token=abc", self.port)
    }

    /// Task ids delivered, with how many times each.
    fn counts(&self) -> BTreeMap<String, usize> {
        let seen = self.seen.lock().unwrap();
        assert!(seen.bad.is_empty(), "bad requests: {:?}", seen.bad);
        let mut out = BTreeMap::new();
        for (_, body) in &seen.deliveries {
            *out.entry(body["task_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
        out
    }

    fn deliveries(&self) -> usize {
        self.seen.lock().unwrap().deliveries.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// One request: read, check, record, answer 200 and close.
fn serve(mut conn: TcpStream, seen: &Mutex<Seen>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    // Closed before a byte was sent: a broker killed (`kill -9` below) between connecting and
    // writing its request. Not a request at all; the delivery is retried after the restart.
    if matches!(reader.read_line(&mut line), Ok(0)) {
        return;
    }
    if !line.starts_with("POST /hooks/mailroom?token=abc ") {
        seen.lock().unwrap().bad.push(format!("request line {line:?}"));
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(&body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delivery: Option<u64> = headers.get("x-mailroom-delivery").and_then(|d| d.parse().ok());
    {
        let mut s = seen.lock().unwrap();
        if headers.get("x-mailroom-signature") != Some(&format!("sha256={hex}")) {
            s.bad.push(format!("signature of {value}"));
        } else if delivery.is_none() || value["delivery"].as_u64() != delivery {
            s.bad.push(format!("delivery header {delivery:?} for {value}"));
        } else if headers.get("content-type").map(String::as_str) != Some("application/json") {
            s.bad.push("content type".into());
        } else {
            s.deliveries.push((delivery.unwrap(), value));
        }
    }
    // A receiver that takes its time: a stream of deliveries lasts long enough to be cut.
    std::thread::sleep(Duration::from_millis(15));
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

fn submit(root: &Root, id: &str, task_type: &str) {
    let out = root.run_with_input(
        &["submit", "-"],
        json!({"task_id": id, "task_type": task_type}).to_string().as_bytes(),
    );
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

#[test]
fn webhook_deliveries_survive_a_dead_endpoint_and_a_killed_broker() {
    let root = Root::new();
    let mut rx = Receiver::new();
    std::fs::write(root.path.join("webhook.secret"), [SECRET, b"\n"].concat()).unwrap();
    root.write_config(&format!(
        "[broker]\ndelivery_journal_every = {EVERY}\n\n[[webhooks]]\nurl = \"{}\"\nevents = [\"PENDING\"]\n\
         pools = [\"hooked\"]\nsecret_file = \"webhook.secret\"\nretry_base_ms = 20\nretry_max_ms = 200\ntimeout_secs = 5\n",
        rx.url()
    ));
    let b = root.broker();

    // Down from the start: nothing arrives, the broker goes on, the failures are logged.
    let first = ids("W", 5);
    for id in &first {
        submit(&root, id, "hooked");
    }
    submit(&root, "OTHER-1", "elsewhere");
    wait_for(T, || root.board("task_ready_queue").len() == 6);
    wait_for(T, || b.log().contains("delivery failed"));
    assert!(b.log().contains("cannot connect"), "{}", b.log());
    assert!(!b.log().contains("token=abc"), "the URL's token is never logged");
    // The failures are visible in the API: the sink is failing, its attempts say why.
    let api = root.api();
    let d = api.get("/api/deliveries");
    assert_eq!(d.status, 200, "{}", d.text);
    let sink = d.json["sinks"][0].clone();
    let id = sink["sink"].as_str().unwrap().to_string();
    assert!(id.starts_with("webhook:http://127.0.0.1:") && !id.contains("token=abc"), "{sink}");
    assert_eq!(d.json["failing"], json!([id]), "{}", d.text);
    assert!(sink["failing_since"].is_string() && sink["last_error"].as_str().unwrap().contains("connect"));
    assert_eq!((sink["kind"].as_str(), sink["delivered"].as_u64()), (Some("webhook"), Some(0)), "{sink}");
    let recent = d.json["recent"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.iter().all(|a| a["ok"] == false && a["sink"] == id.as_str()));
    assert_eq!(api.get("/api/deliveries?sink=webhook:nope").status, 404);
    rx.up();
    wait_for(T, || rx.counts().len() == 5);
    // Then the deliveries: the streak is over, the newest attempt went through.
    wait_for(T, || api.get("/api/deliveries").json["sinks"][0]["delivered"].as_u64() >= Some(5));
    let d = api.get("/api/deliveries");
    assert_eq!(d.json["failing"], json!([]), "{}", d.text);
    assert_eq!(d.json["recent"][0]["ok"], true, "{}", d.text);
    assert!(first.iter().any(|t| d.json["recent"][0]["task_id"] == t.as_str()), "{}", d.text);
    let failed = api.get("/api/deliveries?failed=true");
    let failed = failed.json["recent"].as_array().unwrap();
    assert!(!failed.is_empty() && failed.iter().all(|a| a["ok"] == false), "the failures stay listed");
    let counts = rx.counts();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), first, "every one, and only the pool's");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    {
        let seen = rx.seen.lock().unwrap();
        let seqs: Vec<u64> = seen.deliveries.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in journal order: {seqs:?}");
        let body = &seen.deliveries[0].1;
        assert_eq!((body["event"].as_str(), body["op"].as_str()), (Some("PENDING"), Some("submit")));
        assert_eq!(body["pool"], "hooked");
        assert_eq!(body["task"]["task_id"], body["task_id"]);
    }

    // Killed in the middle of a stream, then restarted: nothing lost, few repeats.
    let second = ids("K", 20);
    for id in &second {
        submit(&root, id, "hooked");
    }
    wait_for(T, || rx.deliveries() >= 5 + 6);
    b.kill9();
    let b = root.broker();
    wait_for(T, || second.iter().all(|id| rx.counts().contains_key(id)));
    let repeats: usize = rx.counts().values().map(|n| n - 1).sum();
    assert!(repeats <= EVERY, "{repeats} repeats after one crash, more than delivery_journal_every");

    // A clean stop journals every position: at most the delivery in flight is repeated.
    let (code, _) = b.terminate();
    assert_eq!(code, Some(0));
    let _b = root.broker();
    let third = ids("C", 3);
    for id in &third {
        submit(&root, id, "hooked");
    }
    wait_for(T, || third.iter().all(|id| rx.counts().contains_key(id)));
    let all: BTreeSet<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let counts = rx.counts();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), all);
    let after_clean: usize = counts.values().map(|n| n - 1).sum::<usize>() - repeats;
    assert!(after_clean <= 1, "{after_clean} repeats after a clean restart");
    let journaled = root.journal().iter().filter(|r| r["op"] == "delivered").count();
    assert!(journaled >= 2, "positions are journaled ({journaled})");
}

#[test]
fn hooks_record_their_calls_and_one_that_hangs_is_killed_and_given_up() {
    let root = Root::new();
    let calls = root.scratch().join("calls.log");
    let started = root.scratch().join("started.log");
    let script = root.scratch().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = SLOW ]; then echo \"$1 $MAILROOM_DELIVERY\" >> '{started}'; sleep 30; fi\n\
             input=$(cat)\nprintf '%s|%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$3\" \"$MAILROOM_EVENT\" \"$input\" >> '{calls}'\n\
             echo ran for \"$1\"\n",
            started = started.display(),
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    root.write_config(&format!(
        "[[hooks]]\non = [\"CANCELLED\"]\nrun = [\"{}\", \"{{task_id}}\", \"{{status}}\", \"{{pool}}\"]\n\
         timeout_secs = 1\nmax_attempts = 2\nretry_base_ms = 20\n",
        script.display()
    ));
    let b = root.broker();
    let tricky = "H 1; echo pwned $(id) {status}";
    for (id, t) in [(tricky, "tools"), ("SLOW", "tools"), ("FAST", "tools")] {
        submit(&root, id, t);
    }
    wait_for(T, || root.board("task_ready_queue").len() == 3);
    for id in [tricky, "SLOW", "FAST"] {
        assert!(root.run(&["cancel", id]).status.success());
    }
    let lines = || std::fs::read_to_string(&calls).unwrap_or_default();
    wait_for(T, || lines().contains("FAST|"));
    let lines = lines();
    let rows: Vec<Vec<&str>> = lines.lines().map(|l| l.splitn(5, '|').collect()).collect();
    assert_eq!(rows.len(), 2, "{lines}");
    assert_eq!(rows[0][..4], [tricky, "CANCELLED", "tools", "CANCELLED"], "one argument each, verbatim");
    let stdin: Value = serde_json::from_str(rows[0][4]).unwrap();
    assert_eq!((stdin["task_id"].as_str(), stdin["status"].as_str()), (Some(tricky), Some("CANCELLED")));
    assert_eq!(rows[1][0], "FAST");
    // SLOW held FAST back until its two attempts ran out, each killed at the timeout.
    let slow = std::fs::read_to_string(&started).unwrap();
    assert_eq!(slow.lines().count(), 2, "{slow}");
    // The hook writes its call before it exits; the broker logs its output after.
    wait_for(T, || b.log().contains("ran for FAST"));
    let log = b.log();
    assert!(log.contains("timed out after 1 s: killed"), "{log}");
    assert!(log.contains("delivery given up after max_attempts"), "{log}");
    assert!(log.contains("ran for FAST"), "the hook's output is logged: {log}");
    // The API counts the same: two tries delivered, SLOW's two timed out and were given up.
    let api = root.api();
    wait_for(T, || api.get("/api/deliveries").json["sinks"][0]["delivered"] == 2);
    let d = api.get("/api/deliveries");
    let sink = &d.json["sinks"][0];
    assert_eq!(sink["kind"], "hook", "{}", d.text);
    assert_eq!(
        (sink["delivered"].as_u64(), sink["failures"].as_u64(), sink["given_up"].as_u64()),
        (Some(2), Some(2), Some(1)),
        "{sink}"
    );
    let timed_out = d.json["recent"].as_array().unwrap().iter().filter(|a| a["task_id"] == "SLOW").count();
    assert_eq!(timed_out, 2, "{}", d.text);
}

//! Resource faults: a root on a small filesystem that fills up (ENOSPC), a flood of files past
//! the inotify queue (`max_queued_events`), and an idle broker and agent that must not spin.
//! The ENOSPC test needs permission to mount a tmpfs (root); without it, it prints `SKIPPED:`
//! and returns, or fails under `MAILROOM_REQUIRE_ALL` (set by CI, which runs as root).
//! A journal fsync or write error other than ENOSPC stops the broker with exit code 8; that is
//! exercised with the fault-injecting `Fs` of the power-loss suite, since a real filesystem
//! cannot be made to fail an fsync on demand.

use mailroom_tests::{Root, skip_unless_required, wait_for};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// Unmounts when dropped (declared before the root and broker, so dropped after them).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` on `dir`, or says why it could not.
fn mount_small_tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(Mount(dir.to_path_buf()))
    } else {
        Err(format!("cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Writes into `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 16 * 1024];
    let mut n = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    n
}

fn board_ids(root: &Root) -> Vec<String> {
    let mut v: Vec<String> =
        root.all_boards().iter().map(|(_, t)| t["task_id"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[test]
fn full_disk_refuses_new_work_keeps_what_was_acknowledged_and_resumes() {
    let scratch = tempfile::tempdir().unwrap();
    let _mount = match mount_small_tmpfs(&scratch.path().join("small"), "4m") {
        Ok(m) => m,
        Err(why) => return skip_unless_required("full_disk_refuses_new_work", &why),
    };
    let root = Root::new_in(&scratch.path().join("small"), scratch.path());
    root.write_config("[broker]\ntick_ms = 50\n");
    let mut broker = root.broker();
    let submit = |id: &str| {
        root.run_with_input(&["submit", "-"], json!({"task_id": id, "task_type": "w"}).to_string().as_bytes())
    };
    let mut acked: Vec<String> = Vec::new();
    for i in 0..20 {
        let id = format!("BEFORE-{i:02}");
        assert!(submit(&id).status.success());
        acked.push(id);
    }
    wait_for(T, || board_ids(&root).len() == 20);
    // Messages written in full before the disk fills, published (a rename needs no space) after.
    let inbox = root.comms().join("broker/inbox");
    let mut staged = Vec::new();
    for i in 0..50 {
        let n = format!("staged-{i:02}.json");
        let body = json!({"task_id": format!("STAGED-{i:02}"), "task_type": "w", "params": "x".repeat(2000)});
        std::fs::write(inbox.join("tmp").join(&n), body.to_string()).unwrap();
        staged.push(n);
    }
    let ballast = root.path.parent().unwrap().join("ballast");
    let filled = fill(&ballast);
    // New work is refused at the door with a clear error...
    let refused = submit("DURING");
    assert!(!refused.status.success(), "a submit succeeded on a full disk");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("No space left on device"), "unclear error: {err}");
    // ...and the broker, made to journal on a full disk, waits instead of crashing or losing.
    for n in &staged {
        std::fs::rename(inbox.join("tmp").join(n), inbox.join("new").join(n)).unwrap();
    }
    wait_for(T, || broker.log().contains("out of space"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(broker.is_running(), "the broker stopped on a full disk:\n{}", broker.log());
    for id in &acked {
        assert!(board_ids(&root).contains(id), "acknowledged task {id} is gone");
    }
    // Space returns: the broker resumes by itself and takes the staged messages.
    std::fs::remove_file(&ballast).unwrap();
    wait_for(T, || broker.log().contains("space is back"));
    wait_for(T, || board_ids(&root).len() == 70);
    let mut want: Vec<String> = acked.clone();
    want.extend((0..50).map(|i| format!("STAGED-{i:02}")));
    want.sort();
    assert_eq!(board_ids(&root), want, "every acknowledged task exactly once");
    assert!(submit("AFTER").status.success());
    wait_for(T, || board_ids(&root).contains(&"AFTER".to_string()));
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"));
    eprintln!("ENOSPC: filled {filled} bytes; submit refused with ENOSPC; broker waited and resumed; lost 0");
}

#[test]
fn a_flood_past_the_inotify_queue_misses_nothing() {
    let max_queued: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let n = (max_queued + max_queued / 4).clamp(1000, 40_000);
    let root = Root::new();
    // A tick far longer than the test: only watcher events (and the rescan an overflow asks
    // for) can drive the broker.
    root.write_config("[broker]\ntick_ms = 600000\n");
    assert!(root.run(&["agent", "add", "To"]).status.success());
    let broker = root.broker();
    let inbox = root.comms().join("broker/inbox");
    let started = Instant::now();
    for i in 0..n {
        let name = format!("flood-{i:06}.json");
        let m = json!({"kind": "send", "from": "From", "to": "To", "body": i});
        std::fs::write(inbox.join("tmp").join(&name), m.to_string()).unwrap();
        std::fs::rename(inbox.join("tmp").join(&name), inbox.join("new").join(&name)).unwrap();
    }
    let mailbox = root.comms().join("mailboxes/To/new");
    let count = || std::fs::read_dir(&mailbox).map(|r| r.count()).unwrap_or(0);
    wait_for(Duration::from_secs(240), || count() >= n);
    assert_eq!(count(), n, "every flooded message delivered exactly once");
    assert!(root.ls("broker/inbox/new").is_empty());
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");
    eprintln!(
        "inotify flood: {n} messages (max_queued_events {max_queued}), all delivered in {:.1?}",
        started.elapsed()
    );
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_broker_and_a_waiting_agent_do_not_spin() {
    let root = Root::new();
    let broker = root.broker();
    let mut agent = root
        .cmd(&["claim", "--agent", "Idle", "--pool", "none", "--wait", "30"])
        .spawn()
        .map(mailroom_tests::Proc)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (b0, a0) = (cpu_ticks(broker.pid()), cpu_ticks(agent.0.id() as i32));
    std::thread::sleep(Duration::from_secs(3));
    let (b1, a1) = (cpu_ticks(broker.pid()), cpu_ticks(agent.0.id() as i32));
    agent.kill9();
    // Before the fix each burned most of a core (hundreds of ticks in 3 s).
    assert!(b1 - b0 < 60, "idle broker used {} ticks in 3 s", b1 - b0);
    assert!(a1 - a0 < 60, "waiting claim used {} ticks in 3 s", a1 - a0);
}

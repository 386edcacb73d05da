//! The board writer's pace: live boards follow a change within a rewrite interval, the completed
//! board (the largest) at most every 500 ms, and a forced rewrite (start, clean stop) writes
//! every board whatever the pace.

use super::Root;
use protocol::Timestamp;
use runtime_layout::{Board, Clock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

fn ids(board: Vec<Value>) -> Vec<String> {
    let mut v: Vec<String> = board.iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_completed_board_follows_at_its_own_slower_pace_unless_forced() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    // A clock that moves only when the test moves it.
    let at = Arc::new(AtomicI64::new(runtime_layout::now().as_micros()));
    let a = at.clone();
    e.set_clock(Clock::from_fn(move || Timestamp::from_micros(a.load(Ordering::SeqCst))));
    let advance_ms = |ms: i64| at.fetch_add(ms * 1000, Ordering::SeqCst);
    let pool = r.layout.queue("default").new_dir();
    let finish = |e: &mut crate::engine::Engine, id: &str| {
        r.send(json!({"task_id": id}));
        e.step().unwrap();
        let claim = r.claim(&pool, "A");
        e.step().unwrap();
        r.send(json!({"kind": "complete", "agent": "A", "claim": claim, "result": {}}));
        e.step().unwrap();
    };
    finish(&mut e, "T1");
    advance_ms(1000);
    e.write_boards(false).unwrap();
    assert_eq!(ids(r.board(Board::Completed)), ["T1"]);

    // 300 ms later: the live boards are rewritten (T2 is no longer held), the completed board
    // waits for its turn.
    finish(&mut e, "T2");
    advance_ms(300);
    e.write_boards(false).unwrap();
    assert!(r.board(Board::Working).is_empty());
    assert_eq!(ids(r.board(Board::Completed)), ["T1"], "not yet its turn");
    // 500 ms after its last rewrite it is.
    advance_ms(250);
    e.write_boards(false).unwrap();
    assert_eq!(ids(r.board(Board::Completed)), ["T1", "T2"]);

    // A forced rewrite does not wait.
    finish(&mut e, "T3");
    e.write_boards(true).unwrap();
    assert_eq!(ids(r.board(Board::Completed)), ["T1", "T2", "T3"]);
}

/// A board larger than a piece is written into a temporary a piece per pass, each pass asking
/// to come back soon, and renamed into place once whole; a temporary a crash left is removed.
#[test]
fn a_large_board_is_written_a_piece_per_pass_and_replaced_whole() {
    let r = Root::new();
    let boards = r.layout.boards_dir();
    let temporaries = || r.list(&boards).into_iter().filter(|n| n.contains(".tmp-")).collect::<Vec<_>>();
    std::fs::write(boards.join(".task_ready_queue.json.tmp-999999-7"), b"[\n{\"torn").unwrap();
    let mut e = r.engine();
    assert_eq!(temporaries(), Vec::<String>::new(), "a crash's temporary is removed at the first write");
    assert_eq!(ids(r.board(Board::Ready)), Vec::<String>::new());

    // About 6 MB of ready tasks: more than one piece.
    let pad = "p".repeat(100_000);
    for i in 0..60 {
        r.send(json!({"task_id": format!("L{i:02}"), "params": {"pad": pad}}));
    }
    // Past the rewrite interval since the start's forced write, however fast the sends were.
    let (clock, skew) = super::skewed();
    e.set_clock(clock);
    skew.store(1, Ordering::SeqCst);
    let report = e.step().unwrap();
    assert!(report.housekeeping, "a large board under way asks for another pass soon");
    assert_eq!(temporaries().len(), 1, "being written beside the board");
    assert_eq!(ids(r.board(Board::Ready)), Vec::<String>::new(), "the old board stays whole meanwhile");
    let mut passes = 1;
    while !temporaries().is_empty() {
        assert!(passes < 20, "still writing after {passes} passes");
        e.step().unwrap();
        passes += 1;
    }
    assert!(passes >= 3, "{passes} passes: started, then a piece a pass");
    let ready = ids(r.board(Board::Ready));
    assert_eq!(ready.len(), 60);
    assert_eq!(ready[0], "L00");
    assert!(!e.step().unwrap().housekeeping, "nothing under way once in place");
}

#[test]
fn the_ready_board_lists_every_ready_task_in_dispatch_order_across_maildirs() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = crate::config::Config::default();
    cfg.dispatch.ready_window = 1;
    let mut e = r.engine_with(cfg);
    // Two pools and a mailbox, a window of one file each: most tasks wait for room.
    let tasks = [
        ("L1", "LOW", "tools", None),
        ("M1", "MEDIUM", "docs", None),
        ("H1", "HIGH", "tools", None),
        ("L2", "LOW", "docs", None),
        ("C1", "CRITICAL", "docs", None),
        ("H2", "HIGH", "tools", Some("A")),
        ("M2", "MEDIUM", "tools", None),
        ("C2", "CRITICAL", "tools", None),
    ];
    for (id, priority, kind, to) in tasks {
        r.send(json!({"task_id": id, "priority": priority, "task_type": kind, "assigned_to": to}));
        e.step().unwrap();
    }
    e.write_boards(true).unwrap();
    let order: Vec<String> =
        r.board(Board::Ready).iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect();
    // Priority first, then the order they were submitted in, whatever their maildir.
    assert_eq!(order, ["C1", "C2", "H1", "H2", "M1", "M2", "L1", "L2"]);
    let files =
        r.list(&r.layout.queue("tools").new_dir()).len() + r.list(&r.layout.queue("docs").new_dir()).len();
    assert_eq!(files, 2, "one file per pool, the rest waiting");
}

/// The live boards are kept row by row as records change tasks (`engine/board_rows.rs`): after
/// submissions, dependencies, failures that block and retries that unblock, claims, cancels and
/// completions, they are byte for byte what a broker building them from the whole state at its
/// start writes.
#[test]
fn live_boards_kept_row_by_row_match_boards_built_from_the_whole_state() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = crate::config::Config::default();
    cfg.dispatch.ready_window = 2;
    let mut e = r.engine_with(cfg.clone());
    let pool = r.layout.queue("default").new_dir();
    let live = [Board::Backlog, Board::Ready, Board::Working];
    let read = |b: Board| std::fs::read(r.layout.board(b)).unwrap();
    e.write_boards(true).unwrap();
    let empty: Vec<Vec<u8>> = live.iter().map(|b| read(*b)).collect();
    r.send(json!({"task_id": "parent", "priority": "LOW"}));
    r.send(json!({"task_id": "child", "depends_on": ["parent"]}));
    for i in 0..6 {
        r.send(json!({"task_id": format!("Q{i}"), "priority": "HIGH"}));
    }
    e.step().unwrap();
    let failing = r.claim(&pool, "A");
    e.step().unwrap();
    let failed = e.state().task_named(&failing).expect("claimed").to_string();
    e.write_boards(true).unwrap();
    let mut done = Vec::new();
    for _ in 0..2 {
        done.push(r.claim(&pool, "A"));
        e.step().unwrap();
    }
    for c in &done {
        r.send(json!({"kind": "complete", "agent": "A", "claim": c}));
    }
    r.send(json!({"kind": "fail", "agent": "A", "claim": failing, "error": "no", "retryable": false}));
    r.send(json!({"kind": "cancel", "task_id": "Q5"}));
    e.step().unwrap();
    e.write_boards(true).unwrap();
    r.send(json!({"kind": "retry", "task_id": failed}));
    e.step().unwrap();
    r.claim(&pool, "A");
    e.step().unwrap();
    e.write_boards(true).unwrap();
    let kept: Vec<Vec<u8>> = live.iter().map(|b| read(*b)).collect();
    assert!(kept.iter().zip(&empty).all(|(k, e)| k != e), "every live board has rows");
    drop(e);
    let mut fresh = r.engine_with(cfg);
    fresh.write_boards(true).unwrap();
    for (b, k) in live.iter().zip(&kept) {
        assert_eq!(String::from_utf8_lossy(&read(*b)), String::from_utf8_lossy(k), "{b:?}");
    }
}

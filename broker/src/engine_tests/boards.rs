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

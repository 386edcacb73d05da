//! The ready window's refill mark (`engine/window.rs`): waiting tasks get files again only once
//! claims have drained the window to three quarters of its size, so a task arriving meanwhile
//! takes the room without withdrawing anything.

use super::*;

fn place(e: &Engine, id: &str) -> Place {
    e.state().live(id).expect("live").place.clone()
}

#[test]
fn a_window_is_refilled_once_drained_to_its_mark_and_an_arrival_takes_the_room_between() {
    let r = Root::new();
    r.agent("A");
    let mut cfg = Config::default();
    cfg.dispatch.ready_window = 4;
    let mut e = r.engine_with(cfg);
    let pool = r.layout.queue("default").new_dir();
    for i in 0..6 {
        r.send(json!({"task_id": format!("L{i}"), "priority": "LOW"}));
    }
    e.step().unwrap();
    assert_eq!(r.list(&pool).len(), 4, "a window of four files");
    // One claim leaves three files, the mark: nothing is promoted yet.
    r.claim(&pool, "A");
    e.step().unwrap();
    assert_eq!(r.list(&pool).len(), 3, "refilled before the window drained to its mark");
    assert!(matches!(place(&e, "L4"), Place::Waiting { .. }));
    // A HIGH task takes the room: no LOW file is withdrawn for it, and it is claimed next.
    r.send(json!({"task_id": "H0", "priority": "HIGH"}));
    e.step().unwrap();
    assert_eq!(r.list(&pool).len(), 4);
    assert!(matches!(place(&e, "L3"), Place::Queued { .. }), "L3 withdrawn: {:?}", place(&e, "L3"));
    let next = r.claim(&pool, "A");
    assert!(next.ends_with("-H0.json"), "{next}");
    e.step().unwrap();
    // Below the mark (two files): filled to its size with the waiting tasks, in order.
    r.claim(&pool, "A");
    e.step().unwrap();
    let files = r.list(&pool);
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        matches!(place(&e, "L4"), Place::Queued { .. }) && matches!(place(&e, "L5"), Place::Queued { .. })
    );
}

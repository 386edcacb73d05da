//! Engine tests of the cluster's records on a temporary root: a shared pool's task is held for the
//! cluster (no file) while local pools dispatch as always; `forwarded`, `pull` and `settled` change
//! the state as the link asks, and a restart (replay) rebuilds the same state.

use crate::config::Config;
use crate::engine::Engine;
use crate::engine::commands::{ClusterOp, ClusterView, Command, Verdict};
use crate::journal::Place;
use protocol::Task;
use runtime_layout::{Layout, RealFs};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::oneshot;

const CFG: &str = "[routes]\nLEAD = \"pool:leads\"\n[cluster]\nnats = \"nats://127.0.0.1:1\"\nnode = \"a\"\nshared_pools = [\"leads\"]\n";

fn open(layout: &Layout) -> Engine {
    let mut e = Engine::open(Arc::new(RealFs), layout.clone(), Config::parse(CFG).unwrap()).unwrap();
    e.reconcile().unwrap();
    e
}

fn ask(e: &mut Engine, make: impl FnOnce(oneshot::Sender<Verdict>) -> Command) -> Verdict {
    let (reply, mut answer) = oneshot::channel();
    e.serve([make(reply)]).unwrap();
    answer.try_recv().expect("a verdict once served")
}

fn view(e: &mut Engine) -> ClusterView {
    let (reply, mut answer) = oneshot::channel();
    e.serve([Command::ClusterView(reply)]).unwrap();
    answer.try_recv().unwrap()
}

fn accepted(v: &Verdict) -> bool {
    matches!(v, Verdict::Accepted { .. })
}

fn files(layout: &Layout, pool: &str) -> usize {
    std::fs::read_dir(layout.queue(pool).new_dir()).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn shared_tasks_are_held_forwarded_pulled_and_settled_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("runtime"));
    layout.create(&RealFs).unwrap();
    std::fs::create_dir_all(layout.mailbox("Agent-1").root.join("cur")).unwrap();
    let mut e = open(&layout);

    let shared = json!({"task_id": "S", "task_type": "LEAD"});
    assert!(accepted(&ask(&mut e, |reply| Command::Submit { task: shared, reply })));
    let local = json!({"task_id": "L", "task_type": "build"});
    assert!(accepted(&ask(&mut e, |reply| Command::Submit { task: local, reply })));
    // The shared task is held for the cluster, no file; the local one is dispatched as always.
    assert_eq!(e.live("S").unwrap().place, Place::Outbound { pool: "leads".into() });
    assert_eq!((files(&layout, "leads"), files(&layout, "build")), (0, 1));
    let v = view(&mut e);
    assert_eq!(v.outbound.len(), 1);
    assert_eq!((v.outbound[0].0.task_id.as_str(), v.outbound[0].1.as_str()), ("S", "leads"));

    let fwd = ClusterOp::Forwarded { task_id: "S".into() };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: fwd, reply })));
    assert_eq!(e.live("S").unwrap().place, Place::Forwarded { pool: "leads".into() });
    assert!(view(&mut e).outbound.is_empty());
    // A forwarded task is cancelled where it runs, not on its origin.
    let cancel = ask(&mut e, |reply| Command::Cancel { task_id: "S".into(), reply });
    assert!(matches!(&cancel, Verdict::Refused { reason, .. } if reason.contains("forwarded")), "{cancel:?}");

    // A task pulled from the cluster is queued as a file here, with its revision remembered.
    let pull = ClusterOp::Pull { task: Box::new(Task::new("P")), pool: "leads".into(), revision: 7 };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: pull, reply })));
    assert_eq!(files(&layout, "leads"), 1);
    assert_eq!(e.state().pulled("P"), Some(7));
    let v = view(&mut e);
    assert_eq!(v.pulled.len(), 1);
    assert!(!v.pulled[0].finished);
    // One idle agent, one task already waiting in the pool: nothing more to pull.
    assert_eq!(v.window["leads"], 0);
    drop(e);

    // A restart replays the journal to the same state.
    let mut e = open(&layout);
    assert_eq!(e.live("S").unwrap().place, Place::Forwarded { pool: "leads".into() });
    assert_eq!(e.state().pulled("P"), Some(7));
    let settle = ClusterOp::Settled { task_id: "P".into(), revision: 7, fenced: false };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: settle, reply })));
    assert_eq!(e.state().pulled("P"), None);
    drop(e);
    assert_eq!(open(&layout).state().pulled("P"), None);
}

#[test]
fn the_pull_window_counts_tasks_waiting_for_room_in_the_ready_window() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("runtime"));
    layout.create(&RealFs).unwrap();
    for a in ["Agent-1", "Agent-2", "Agent-3"] {
        std::fs::create_dir_all(layout.mailbox(a).root.join("cur")).unwrap();
    }
    // A ready window of one file per pool: a second ready task waits without a file.
    let cfg = format!("[dispatch]\nready_window = 1\n{CFG}");
    let mut e = Engine::open(Arc::new(RealFs), layout.clone(), Config::parse(&cfg).unwrap()).unwrap();
    e.reconcile().unwrap();
    assert_eq!(view(&mut e).window["leads"], 3, "three idle agents, nothing ready");
    for id in ["P1", "P2"] {
        let pull = ClusterOp::Pull { task: Box::new(Task::new(id)), pool: "leads".into(), revision: 1 };
        assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: pull, reply })));
    }
    assert_eq!(files(&layout, "leads"), 1, "one file in the window");
    assert!(matches!(e.live("P2").unwrap().place, Place::Waiting { .. }));
    // Two of the three idle agents' turns are already taken: one file, one waiting for room.
    assert_eq!(view(&mut e).window["leads"], 1);

    // Cancelled cluster-wide: the copy here is cancelled (its file removed) and settled.
    let cancelled = ClusterOp::Cancelled { task_id: "P1".into(), revision: 9 };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: cancelled, reply })));
    assert_eq!(e.state().status_of("P1"), Some(protocol::Status::Cancelled));
    assert_eq!(e.state().pulled("P1"), None);
    assert_eq!(e.state().pulled("P2"), Some(1));
}

#[test]
fn a_task_finished_and_settled_here_runs_again_when_the_cluster_offers_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("runtime"));
    layout.create(&RealFs).unwrap();
    let mut e = open(&layout);
    let pull = |revision| ClusterOp::Pull { task: Box::new(Task::new("R")), pool: "leads".into(), revision };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: pull(1), reply })));
    // Finished here (cancelled cluster-wide) and settled: the task is no longer this node's.
    let cancelled = ClusterOp::Cancelled { task_id: "R".into(), revision: 2 };
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: cancelled, reply })));
    assert_eq!((files(&layout, "leads"), e.state().pulled("R")), (0, None));
    assert!(e.state().finished("R").is_some());

    // Retried cluster-wide and pulled here again: a new life, queued for the agents.
    assert!(accepted(&ask(&mut e, |reply| Command::Cluster { op: pull(5), reply })));
    assert_eq!(files(&layout, "leads"), 1);
    assert_eq!(e.state().pulled("R"), Some(5));
    assert_eq!(e.state().status_of("R"), Some(protocol::Status::Pending));
    assert!(!view(&mut e).pulled[0].finished);
    drop(e);
    let e = open(&layout);
    assert_eq!((e.state().pulled("R"), e.state().status_of("R")), (Some(5), Some(protocol::Status::Pending)));
}

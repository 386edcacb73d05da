//! The command channel against the real broker loop (`run::serve` on a temporary root, through
//! the `RootFs` that `mailroom run` uses): verdicts of submit, cancel and retry, a snapshot of the state, and the stream of
//! committed records, all without writing a file behind the broker's back.

use mailroom::engine::commands::{self, Handle, Stopped, Verdict};
use mailroom::journal::{Entry, Place};
use mailroom::run;
use runtime_layout::{Layout, RootFs};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Runs `body` against a broker serving a fresh root; stops the broker afterwards.
fn with_broker<F, Fut>(body: F)
where
    F: FnOnce(Handle, Layout) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("runtime"));
    std::fs::create_dir(layout.root()).unwrap();
    let fs = RootFs::open(layout.root()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (handle, rx) = commands::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let broker = tokio::spawn(run::serve(
            Arc::new(fs),
            layout.clone(),
            async {
                let _ = stopped.await;
            },
            Some(rx),
        ));
        body(handle.clone(), layout).await;
        stop.send(()).unwrap();
        broker.await.unwrap().unwrap();
        assert_eq!(handle.snapshot().await.unwrap_err(), Stopped, "a stopped broker answers nothing");
    });
}

#[test]
fn submit_cancel_and_retry_get_verdicts_and_change_the_tree_through_the_broker() {
    with_broker(|h, layout| async move {
        let v = h.submit(json!({"task_id": "C-1", "task_type": "build", "priority": "HIGH"})).await.unwrap();
        let Verdict::Accepted { task_id, seq } = v else { panic!("refused: {v:?}") };
        assert_eq!(task_id, "C-1");
        assert!(seq >= 1);
        // Accepted means journaled and dispatched: the queued file is there already.
        let queued: Vec<_> = std::fs::read_dir(layout.queue("build").new_dir()).unwrap().collect();
        assert_eq!(queued.len(), 1);

        let view = h.snapshot().await.unwrap();
        let t = view.tasks.iter().find(|t| t.task.task_id == "C-1").expect("in the snapshot");
        assert!(matches!(t.place, Place::Queued { .. }), "{:?}", t.place);
        assert_eq!(view.queues.iter().find(|q| q.dir == "queues/build").map(|q| q.queued), Some(1));

        // Refusals name the field and the rule, and change nothing.
        let bad = h.submit(json!({"task_id": "C-2", "priority": "URGENTISSIMO"})).await.unwrap();
        let Verdict::Refused { field, rule, .. } = bad else { panic!("accepted a bad priority") };
        assert_eq!(field, "task.priority");
        assert!(rule.contains("CRITICAL"), "{rule}");
        let clash = h.submit(json!({"task_id": "C-1", "name": "other"})).await.unwrap();
        assert!(
            matches!(&clash, Verdict::Refused { reason, .. } if reason.contains("duplicate")),
            "{clash:?}"
        );
        let nobody = h.cancel("NOPE").await.unwrap();
        assert!(matches!(&nobody, Verdict::Refused { reason, .. } if reason.contains("no task `NOPE`")));
        assert!(h.snapshot().await.unwrap().tasks.iter().all(|t| t.task.task_id != "C-2"));

        assert!(matches!(h.cancel("C-1").await.unwrap(), Verdict::Accepted { .. }));
        assert_eq!(std::fs::read_dir(layout.queue("build").new_dir()).unwrap().count(), 0, "revoked");
        let again = h.cancel("C-1").await.unwrap();
        assert!(matches!(&again, Verdict::Refused { reason, .. } if reason.contains("CANCELLED")));
        assert!(matches!(h.retry("C-1").await.unwrap(), Verdict::Accepted { .. }));
        assert_eq!(
            std::fs::read_dir(layout.queue("build").new_dir()).unwrap().count(),
            1,
            "dispatched again"
        );
    });
}

#[test]
fn subscribers_see_every_committed_record_in_order() {
    with_broker(|h, layout| async move {
        let mut sub = h.subscribe().await.unwrap();
        h.submit(json!({"task_id": "S-1"})).await.unwrap();
        // A message dropped into the inbox by any client shows up on the same stream.
        let client = agent_sdk::Client::open(layout.root()).unwrap();
        client.submit(&json!({"task_id": "S-2"})).unwrap();
        let mut seen = Vec::new();
        let mut last = 0;
        while seen.len() < 4 {
            let rec = tokio::time::timeout(Duration::from_secs(10), sub.records.recv())
                .await
                .expect("records arrive")
                .unwrap();
            assert!(rec.seq >= sub.from_seq && rec.seq > last, "in order, from where it started");
            last = rec.seq;
            if matches!(rec.entry, Entry::Submit(_) | Entry::Dispatch { .. }) {
                seen.push((rec.entry.op(), rec.entry.task_id().unwrap().to_string()));
            }
        }
        assert_eq!(
            seen,
            [
                ("submit", "S-1".into()),
                ("dispatch", "S-1".into()),
                ("submit", "S-2".into()),
                ("dispatch", "S-2".into())
            ]
        );
    });
}

//! The command channel against the real broker loop (`run::serve` on a temporary root, through
//! the `RootFs` that `mailroom run` uses): verdicts of submit, cancel and retry, a snapshot of the
//! state, and the stream of committed records, a scoped bulk retry and the loop's own figures,
//! all without writing a file behind the broker's back.

use mailroom::engine::Engine;
use mailroom::engine::commands::{self, Command, Handle, RetryScope, Stopped, Verdict};
use mailroom::journal::{self, Entry, Place};
use mailroom::run;
use protocol::Status;
use runtime_layout::{Layout, RealFs, RootFs};
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
        // The census says the same in brief.
        let census = h.census().await.unwrap();
        let b = census.tasks.iter().find(|b| b.task_id == "C-1").expect("in the census");
        assert!(b.queued && !b.held && b.status == Status::Pending, "{b:?}");
        assert_eq!(b.pool.as_deref(), Some("build"));
        assert_eq!(census.next_seq, view.next_seq);

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
        // Not waiting for the answer: this test's one thread also runs the broker.
        let client = agent_sdk::Client::open(layout.root()).unwrap().with_ack(agent_sdk::Ack::None);
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

/// The API-facing view says what a task waits for when its dependency does not exist, refuses a
/// cycle with the cycle named, and lists the agents with their presence.
#[test]
fn the_snapshot_shows_dead_ends_and_agents() {
    with_broker(|h, layout| async move {
        layout.mailbox("Agent-1").create(&RealFs, true).unwrap();
        let v = h.submit(json!({"task_id": "D-1", "depends_on": ["NOWHERE"]})).await.unwrap();
        assert!(matches!(v, Verdict::Accepted { .. }), "{v:?}");
        let view = h.snapshot().await.unwrap();
        let t = view.tasks.iter().find(|t| t.task.task_id == "D-1").expect("in the snapshot");
        assert_eq!(t.note.as_deref(), Some("waiting for unknown task NOWHERE"));
        let v = h.submit(json!({"task_id": "NOWHERE", "depends_on": ["D-1"]})).await.unwrap();
        let Verdict::Refused { reason, .. } = v else { panic!("a cycle was accepted") };
        assert!(reason.contains("NOWHERE -> D-1 -> NOWHERE"), "{reason}");
        let agents = h.snapshot().await.unwrap().agents;
        assert_eq!(
            agents.iter().map(|a| (a.name.as_str(), a.state.as_str())).collect::<Vec<_>>(),
            [("Agent-1", "stale")]
        );
    });
}

#[test]
fn a_scoped_bulk_retry_redrives_only_what_its_filters_select_and_says_how_many() {
    with_broker(|h, _layout| async move {
        for (id, ty) in [("B-1", "build"), ("B-2", "build"), ("B-3", "build"), ("D-1", "docs")] {
            assert!(matches!(
                h.submit(json!({"task_id": id, "task_type": ty})).await.unwrap(),
                Verdict::Accepted { .. }
            ));
            assert!(matches!(h.cancel(id).await.unwrap(), Verdict::Accepted { .. }));
        }
        let scope =
            |statuses, limit| RetryScope { statuses, pool: Some("build".into()), task_type: None, limit };
        // FAILED selects none of them: nothing changes.
        let none = h.retry_where(scope(vec![Status::Failed], 100)).await.unwrap();
        assert_eq!((none.matched, none.retried.len(), none.seq), (0, 0, 0));
        let two = h.retry_where(scope(vec![Status::Cancelled], 2)).await.unwrap();
        assert_eq!((two.matched, two.retried.clone()), (3, vec!["B-1".to_string(), "B-2".to_string()]));
        assert!(two.refused.is_empty() && two.seq > 0);
        let view = h.snapshot().await.unwrap();
        let status = |id: &str| view.tasks.iter().find(|t| t.task.task_id == id).map(|t| t.task.status);
        assert_eq!(status("B-1"), Some(Status::Pending));
        assert_eq!(status("B-3"), Some(Status::Cancelled), "beyond the limit");
        assert_eq!(status("D-1"), Some(Status::Cancelled), "another pool");
        assert_eq!(
            view.tasks.iter().find(|t| t.task.task_id == "D-1").unwrap().pool.as_deref(),
            Some("docs")
        );
        // The loop counted its commits and passes.
        let stats = h.stats().await.unwrap();
        assert!(stats.commits.count > 0 && stats.passes.count > 0 && stats.records > 0, "{stats:?}");
    });
}

/// An engine (not a running broker: its commands are served by hand) on a fresh root.
fn engine_on_fresh_root() -> (tempfile::TempDir, Layout, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("runtime"));
    let mut engine =
        Engine::open(Arc::new(RealFs), layout.clone(), mailroom::config::Config::default()).unwrap();
    engine.reconcile().unwrap();
    (dir, layout, engine)
}

#[test]
fn a_subscription_answered_with_changes_starts_after_them_and_the_journal_holds_them() {
    let (_dir, layout, mut engine) = engine_on_fresh_root();
    let (verdict, verdict_rx) = oneshot::channel();
    let (sub, sub_rx) = oneshot::channel();
    let (other, other_rx) = oneshot::channel();
    // An earlier subscriber makes the batch's records published; the new one must still be
    // able to tell them from what it has to read in the journal.
    engine.serve(vec![Command::Subscribe(other)]).unwrap();
    let mut other = other_rx.blocking_recv().unwrap();
    engine
        .serve(vec![
            Command::Submit { task: json!({"task_id": "J-1"}), reply: verdict },
            Command::Subscribe(sub),
        ])
        .unwrap();
    let Verdict::Accepted { seq, .. } = verdict_rx.blocking_recv().unwrap() else { panic!("refused") };
    let mut sub = sub_rx.blocking_recv().unwrap();
    assert!(sub.from_seq > seq, "the subscription starts after the batch it was answered in");
    let loaded = journal::load(&RealFs, &layout.journal_dir()).unwrap();
    assert_eq!(loaded.records.last().map(|r| r.seq), Some(sub.from_seq - 1), "all before it is durable");
    // The live stream may repeat those records; a reader skips what is below `from_seq`.
    while let Ok(r) = sub.records.try_recv() {
        assert!(r.seq < sub.from_seq);
    }
    assert!(other.records.try_recv().is_ok());
}

#[test]
fn requeue_and_the_deliveries_handle_answer_over_the_channel() {
    with_broker(|h, layout| async move {
        // Without webhooks or hooks the handle is there, and empty.
        assert!(h.deliveries().await.unwrap().sinks().is_empty());
        let v = h.requeue("../journal").await.unwrap();
        assert!(matches!(&v, Verdict::Refused { field, .. } if field == "name"), "{v:?}");
        let v = h.requeue("nope.json").await.unwrap();
        assert!(
            matches!(&v, Verdict::Refused { reason, .. } if reason.contains("no quarantine entry")),
            "{v:?}"
        );
        // A refused submit leaves nothing in quarantine (a verdict, not a file): make an entry.
        let inbox = layout.broker_inbox();
        std::fs::write(inbox.tmp().join("bad.json"), b"{").unwrap();
        std::fs::rename(inbox.tmp().join("bad.json"), inbox.new_dir().join("bad.json")).unwrap();
        let quarantined = async {
            loop {
                let found = std::fs::read_dir(layout.quarantine_dir())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .find(|n| !n.ends_with(".error.json"));
                if let Some(n) = found {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let entry = tokio::time::timeout(Duration::from_secs(20), quarantined).await.expect("quarantined");
        let v = h.requeue(&entry).await.unwrap();
        assert!(matches!(v, Verdict::Accepted { .. }), "{v:?}");
        assert!(!layout.quarantine_dir().join(&entry).exists(), "accepted means moved");
        assert_eq!(h.position("webhook:none").await.unwrap(), None);
    });
}

/// A commit larger than one batch reaches a subscriber whole and in order; a subscriber that
/// falls more than the backlog behind is told so, and a [`Feed`] over it still hands out every
/// record, in order and without a gap, reading what it missed from the journal.
#[test]
fn a_reader_that_falls_behind_gets_every_record_through_the_feed() {
    use commands::Records;
    use mailroom::feed::Feed;
    let (_dir, layout, mut engine) = engine_on_fresh_root();
    let subscribe = |engine: &mut Engine| {
        let (tx, rx) = oneshot::channel();
        engine.serve(vec![Command::Subscribe(tx)]).unwrap();
        rx.blocking_recv().unwrap()
    };
    let (mut live, lagging) = (subscribe(&mut engine), subscribe(&mut engine));
    let mut witness = subscribe(&mut engine);
    let from = live.from_seq;
    // One commit of more records than a batch holds.
    let submit = |id: String| {
        let (tx, _rx) = oneshot::channel();
        Command::Submit { task: json!({"task_id": id, "task_type": "bulk"}), reply: tx }
    };
    engine.serve((0..Records::BATCH + 100).map(|i| submit(format!("BIG-{i}")))).unwrap();
    let mut seqs = Vec::new();
    while let Ok(r) = live.records.try_recv() {
        seqs.push(r.seq);
    }
    assert!(seqs.len() > Records::BATCH, "the whole commit arrived: {} records", seqs.len());
    assert_eq!(seqs, (from..from + seqs.len() as u64).collect::<Vec<_>>(), "in order, no gap");
    // Then more commits than the backlog holds, none of them read by `lagging`.
    for i in 0..Records::BACKLOG + 8 {
        engine.serve([submit(format!("ONE-{i}"))]).unwrap();
    }
    let end = journal::load(&RealFs, &layout.journal_dir()).unwrap().records.last().unwrap().seq;
    // `witness`, subscribed with `lagging` and read no more than it, lagged.
    let missed = witness.records.try_recv();
    assert!(matches!(missed, Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))), "{missed:?}");
    // (A fresh subscription sees nothing old: only the old ones lag.)
    assert!(subscribe(&mut engine).records.try_recv().is_err());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut feed = Feed::new(Arc::new(RealFs), layout.journal_dir(), lagging, from - 1);
        let mut next = from;
        while next <= end {
            let r = tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await
                .expect("the feed answers")
                .unwrap()
                .expect("the broker still publishes");
            assert_eq!(r.seq, next, "every record, in order");
            next += 1;
        }
    });
}

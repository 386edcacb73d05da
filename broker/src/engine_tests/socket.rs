//! Messages taken on the broker's socket ([`Command::Message`]): handled as the same message in
//! the inbox would be, answered after their commit, taken once under their name whether they
//! come again on the socket or as a file, and joined into the commit of the pass that follows.

use super::Root;
use crate::engine::Look;
use crate::engine::commands::{Command, Verdict};
use protocol::{Message, Status};
use serde_json::json;
use tokio::sync::oneshot;

fn message(name: &str, v: serde_json::Value) -> (Command, oneshot::Receiver<Verdict>) {
    let (reply, answer) = oneshot::channel();
    let msg = Message::from_value(v).unwrap();
    (Command::Message { name: name.into(), msg, reply, file_waits: None }, answer)
}

fn commits(e: &mut crate::engine::Engine) -> u64 {
    let (reply, mut stats) = oneshot::channel();
    e.take([Command::Stats(reply)]);
    stats.try_recv().unwrap().commits.count
}

#[test]
fn a_message_on_the_socket_is_handled_once_under_its_name_and_answered_after_its_commit() {
    let r = Root::new();
    let mut e = r.engine();
    let (cmd, mut answer) = message("msg-1.a.json", json!({"kind": "submit", "task": {"task_id": "S-1"}}));
    e.take([cmd]);
    assert!(answer.try_recv().is_err(), "no answer before the commit");
    e.step_looking(Look::QUIET).unwrap();
    assert!(matches!(answer.try_recv(), Ok(Verdict::Accepted { .. })));
    assert!(e.state().status_of("S-1") == Some(Status::Pending));
    let records = e.state().consumed("msg-1.a.json").map(|d| d.into_owned());
    assert_eq!(records.as_deref(), Some(protocol::socket::SOCKET), "journaled as taken on the socket");

    // Sent again under the same name (its client lost the answer): accepted, not handled again.
    let (cmd, mut again) = message("msg-1.a.json", json!({"kind": "cancel", "task_id": "S-1"}));
    e.serve([cmd]).unwrap();
    assert!(matches!(again.try_recv(), Ok(Verdict::Accepted { .. })));
    assert!(e.state().status_of("S-1") == Some(Status::Pending), "the cancel was not handled");

    // And as a file of that name: moved to `inbox/cur/`, not handled.
    let inbox = r.layout.broker_inbox();
    std::fs::write(inbox.new_dir().join("msg-1.a.json"), r#"{"kind":"cancel","task_id":"S-1"}"#).unwrap();
    e.step().unwrap();
    assert_eq!(r.list(&inbox.new_dir()), Vec::<String>::new());
    assert_eq!(r.list(&inbox.cur()), vec!["msg-1.a.json".to_string()]);
    assert!(e.state().status_of("S-1") == Some(Status::Pending), "the file was not handled");
}

#[test]
fn a_refusal_on_the_socket_is_journaled_answered_after_its_commit_and_holds_for_its_name() {
    let r = Root::new();
    r.agent("A");
    let mut e = r.engine();
    let before = e.state().live_count();
    let stale =
        json!({"kind": "complete", "agent": "A", "claim": "1-20260101T000000000000-000000000001-X.json"});
    let (cmd, mut answer) = message("msg-2.a.json", stale.clone());
    e.take([cmd]);
    assert!(answer.try_recv().is_err(), "no answer before the commit");
    e.step_looking(Look::QUIET).unwrap();
    match answer.try_recv() {
        Ok(Verdict::Refused { field, .. }) => assert_eq!(field, "claim"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.state().live_count(), before, "nothing changed");
    assert!(e.state().refusal("msg-2.a.json").is_some(), "the refusal is journaled");
    assert_eq!(r.list(&r.layout.mailbox("A").new_dir()).len(), 1, "the sender has its notice, as for a file");

    // Sent again on the socket: refused again. As a file of that name: quarantined with why.
    let (cmd, mut again) = message("msg-2.a.json", stale.clone());
    e.serve([cmd]).unwrap();
    assert!(matches!(again.try_recv(), Ok(Verdict::Refused { .. })));
    let inbox = r.layout.broker_inbox();
    std::fs::write(inbox.new_dir().join("msg-2.a.json"), stale.to_string()).unwrap();
    e.step().unwrap();
    assert!(r.list(&inbox.new_dir()).is_empty() && r.list(&inbox.cur()).is_empty());
    let q = r.list(&r.layout.quarantine_dir());
    assert!(q.iter().any(|n| n.ends_with("-msg-2.a.json")), "{q:?}");
}

#[test]
fn messages_taken_between_passes_share_the_pass_s_commit() {
    let r = Root::new();
    let mut e = r.engine();
    r.send(json!({"task_id": "F-1"}));
    let mut answers = Vec::new();
    for i in 0..5 {
        let (cmd, answer) = message(&format!("msg-{i}.b.json"), json!({"task_id": format!("S-{i}")}));
        e.take([cmd]);
        answers.push(answer);
    }
    let commits = commits(&mut e);
    e.step().unwrap();
    assert_eq!(self::commits(&mut e), commits + 1, "one commit for the pass and the commands");
    for mut a in answers {
        assert!(matches!(a.try_recv(), Ok(Verdict::Accepted { .. })));
    }
    assert!(e.state().status_of("F-1").is_some());
}

/// Commands that arrive while a pass reads and handles join its commit: answered with the pass's
/// own messages, never before the commit.
#[test]
fn messages_taken_late_in_a_pass_share_its_commit() {
    let r = Root::new();
    let mut e = r.engine();
    r.send(json!({"task_id": "F-1"}));
    let (cmd, mut answer) = message("msg-late.c.json", json!({"task_id": "L-1"}));
    let commits = commits(&mut e);
    let report = e.step_taking(Look::EVERYWHERE, || vec![cmd]).unwrap();
    assert_eq!(self::commits(&mut e), commits + 1, "one commit for the pass and the late command");
    assert_eq!(report.messages, 1);
    assert!(matches!(answer.try_recv(), Ok(Verdict::Accepted { .. })));
    assert!(e.state().status_of("L-1").is_some() && e.state().status_of("F-1").is_some());
    assert!(e.state().consumed("msg-late.c.json").is_some(), "journaled as taken");
}

/// A read taken while records wait for their commit (a change before it in the batch, or a late
/// command) is answered after that commit, from committed state: a view never shows what a
/// failed commit would take back.
#[test]
fn a_read_taken_while_records_wait_for_a_commit_is_answered_after_it() {
    let r = Root::new();
    let mut e = r.engine();
    let ids = |c: crate::engine::commands::Census| {
        let mut ids = c.tasks.into_iter().map(|b| b.task_id).collect::<Vec<_>>();
        ids.sort(); // A census lists tasks in no particular order.
        ids
    };
    let (submit, _a) = message("msg-v.e.json", json!({"task_id": "V-1"}));
    let (reply, mut census) = oneshot::channel();
    e.take([submit, Command::Census(reply)]);
    assert!(census.try_recv().is_err(), "held while V-1 waits for its commit");
    e.step_looking(Look::QUIET).unwrap();
    assert_eq!(ids(census.try_recv().unwrap()), vec!["V-1"]);

    let (late, _b) = message("msg-w.e.json", json!({"task_id": "V-2"}));
    let (reply, mut census) = oneshot::channel();
    e.step_taking(Look::QUIET, || vec![late, Command::Census(reply)]).unwrap();
    assert_eq!(
        ids(census.try_recv().unwrap()),
        vec!["V-1", "V-2"],
        "answered after the late command's commit"
    );

    // With nothing waiting for a commit, a read is answered at once.
    let (reply, mut census) = oneshot::channel();
    e.take([Command::Census(reply)]);
    assert_eq!(ids(census.try_recv().unwrap()).len(), 2);
}

/// An accepted submit is answered once the commit is durable, before the moves: a move that
/// fails after the commit (here, a file message's move into an `inbox/cur/` replaced by a file
/// once the message was read) stops the pass with the submit answered and every other answer
/// unsent.
#[test]
fn an_accepted_submit_is_answered_before_the_moves_and_other_answers_after_them() {
    let r = Root::new();
    let mut e = r.engine();
    r.send(json!({"task_id": "F-1"}));
    let (submit, mut acknowledged) = message("msg-s.d.json", json!({"task_id": "E-1", "task_type": "ek"}));
    let (cancel, mut refused) = message("msg-c.d.json", json!({"kind": "cancel", "task_id": "NOPE"}));
    // Taken before the pass: its answer came before the failing move when answers were sent in
    // the order of the effects; now every answer but an acknowledgement waits for the moves.
    let (early, mut first) = message("msg-b.d.json", json!({"kind": "cancel", "task_id": "NOPE-2"}));
    e.take([early]);
    let cur = r.layout.broker_inbox().cur();
    let failed = e.step_taking(Look::EVERYWHERE, || {
        std::fs::remove_dir(&cur).unwrap();
        std::fs::write(&cur, "in the way").unwrap();
        vec![submit, cancel]
    });
    assert!(failed.is_err(), "the message's move fails the pass");
    assert!(matches!(acknowledged.try_recv(), Ok(Verdict::Accepted { .. })), "answered before the moves");
    assert!(refused.try_recv().is_err(), "the other answers wait for the moves");
    assert!(first.try_recv().is_err(), "even one whose message came first");
}

/// The answer to a message taken on the socket goes out after its pass, and that pass may have
/// compacted the journal: the snapshot carries the name, so the file its client may send when no
/// answer came (a broker killed right then, restarted from that snapshot) is known as taken.
#[test]
fn a_name_taken_on_the_socket_outlives_the_next_snapshot_and_a_restart_from_it() {
    let r = Root::new();
    let mut cfg = crate::config::Config::default();
    cfg.broker.compact_after_records = 1;
    let mut e = r.engine_with(cfg.clone());
    let (cmd, _answer) = message("msg-5.a.json", json!({"task_id": "C-1", "name": "carried"}));
    e.take([cmd]);
    e.step_looking(Look::QUIET).unwrap();
    drop(e);
    let mut e = r.engine_with(cfg);
    let inbox = r.layout.broker_inbox();
    let again = json!({"kind": "submit", "task": {"task_id": "C-1", "name": "other"}});
    std::fs::write(inbox.new_dir().join("msg-5.a.json"), again.to_string()).unwrap();
    e.step().unwrap();
    assert_eq!(
        r.list(&inbox.cur()),
        vec!["msg-5.a.json".to_string()],
        "moved, not handled: {:?} {:?}",
        r.list(&r.layout.quarantine_dir()),
        r.list(&r.layout.journal_dir())
    );
    assert!(r.list(&r.layout.quarantine_dir()).is_empty(), "not refused as a conflicting submit");
    assert_eq!(e.state().live("C-1").unwrap().task.name.as_deref(), Some("carried"));
}

/// A request under the name of a file waiting in `inbox/new/` is refused: the message is the
/// file's, and a client cannot take another's message by naming it.
#[test]
fn a_request_under_the_name_of_a_waiting_file_is_refused_and_the_file_is_taken() {
    let r = Root::new();
    let mut e = r.engine();
    let name = r.send(json!({"task_id": "W-1", "name": "the file's"}));
    let (cmd, mut answer) = message(&name, json!({"task_id": "W-1", "name": "someone else's"}));
    e.take([cmd]);
    e.step().unwrap();
    match answer.try_recv() {
        Ok(Verdict::Refused { field, .. }) => assert_eq!(field, "name"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.state().live("W-1").unwrap().task.name.as_deref(), Some("the file's"));
    assert_eq!(r.list(&r.layout.broker_inbox().cur()), vec![name]);
}

/// The socket's thread looks the name up as the message arrives (`file_waits`), and the loop
/// takes its word without a lookup of its own: a file delivered after that lookup (its client
/// gave up on the socket meanwhile) is the same message taken again, not handled twice.
#[test]
fn the_lookup_made_as_a_message_arrives_is_the_one_that_counts() {
    let r = Root::new();
    let mut e = r.engine();
    let with = |name: &str, v: serde_json::Value, file_waits| {
        let (cmd, answer) = message(name, v);
        let Command::Message { name, msg, reply, .. } = cmd else { unreachable!() };
        (Command::Message { name, msg, reply, file_waits: Some(file_waits) }, answer)
    };
    // Said to wait: refused, though no file is there.
    let (cmd, mut refused) =
        with("msg-2.a.json", json!({"kind": "submit", "task": {"task_id": "L-1"}}), true);
    e.take([cmd]);
    e.step().unwrap();
    assert!(matches!(refused.try_recv(), Ok(Verdict::Refused { ref field, .. }) if field == "name"));
    assert!(e.state().live("L-1").is_none());

    // Said not to wait, though the file came meanwhile: the socket's message is the one taken.
    let name = r.send(json!({"task_id": "L-2", "name": "the file's"}));
    let (cmd, mut taken) =
        with(&name, json!({"kind": "submit", "task": {"task_id": "L-2", "name": "sent"}}), false);
    e.take([cmd]);
    e.step().unwrap();
    assert!(matches!(taken.try_recv(), Ok(Verdict::Accepted { .. })));
    e.step().unwrap();
    assert_eq!(e.state().live("L-2").unwrap().task.name.as_deref(), Some("sent"));
    assert_eq!(r.list(&r.layout.broker_inbox().cur()), vec![name], "the file taken as the same message");
    assert!(r.list(&r.layout.broker_inbox().new_dir()).is_empty());
}

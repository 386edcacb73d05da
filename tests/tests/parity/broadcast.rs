//! Broadcast and group mail: `--to ALL` reaches every registered agent but the sender, `--to
//! @group` the group's members, each in one journal record with its fan-out; the legacy spellings
//! of a broadcast arriving through `[ingest] mail_dirs` are broadcasts too, and legacy mail marked
//! read lands in `cur/`.

use super::{T, agent_add, mail, notices, records};
use mailroom_tests::{Root, wait_for};
use serde_json::json;

#[test]
fn send_to_all_reaches_every_agent_but_the_sender_in_one_record() {
    let root = Root::new();
    for a in ["Agent-1", "Agent-2", "Agent-3"] {
        agent_add(&root, a, &[]);
    }
    let _b = root.broker();
    let out = root.run_with_input(
        &["send", "--from", "Agent-1", "--to", "ALL", "--subject", "standup", "-"],
        b"{\"at\":\"09:00\"}",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(T, || mail(&root, "Agent-2", "new").len() == 1 && mail(&root, "Agent-3", "new").len() == 1);
    for a in ["Agent-2", "Agent-3"] {
        let m = &mail(&root, a, "new")[0];
        assert_eq!(
            (&m["from"], &m["to"], &m["sent_to"]),
            (&json!("Agent-1"), &json!(a), &json!("ALL")),
            "{m}"
        );
        assert_eq!((&m["subject"], &m["body"]), (&json!("standup"), &json!({"at": "09:00"})));
    }
    let sent = records(&root, "mail");
    assert_eq!(sent.len(), 1, "one record for the whole fan-out: {sent:?}");
    assert_eq!((&sent[0]["to"], &sent[0]["fanout"]), (&json!("ALL"), &json!(["Agent-2", "Agent-3"])));
    assert!(mail(&root, "Agent-1", "new").is_empty(), "the sender gets no copy of its own broadcast");

    // `ALL` is an address, never an agent.
    assert_eq!(root.run(&["agent", "add", "ALL"]).status.code(), Some(6));
    assert_eq!(root.run(&["agent", "add", "all"]).status.code(), Some(6));
    assert!(!root.comms().join("mailboxes/ALL").exists());
}

#[test]
fn group_mail_goes_to_the_members_and_an_unknown_group_is_refused() {
    let root = Root::new();
    root.write_config(
        "[broker]\ntick_ms = 50\n[groups]\nreviewers = [\"Agent-2\", \"Agent-5\", \"Agent-1\"]\n",
    );
    for a in ["Agent-1", "Agent-2", "Agent-3", "Agent-5"] {
        agent_add(&root, a, &[]);
    }
    let _b = root.broker();
    let send =
        |to: &str| root.run_with_input(&["send", "--from", "Agent-1", "--to", to, "-"], b"\"please review\"");
    let out = send("@reviewers");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(T, || mail(&root, "Agent-2", "new").len() == 1 && mail(&root, "Agent-5", "new").len() == 1);
    assert_eq!(mail(&root, "Agent-5", "new")[0]["sent_to"], "@reviewers");
    let sent = records(&root, "mail");
    assert_eq!(sent.len(), 1);
    assert_eq!((&sent[0]["to"], &sent[0]["fanout"]), (&json!("@reviewers"), &json!(["Agent-2", "Agent-5"])));

    // The broker refuses it, and the sender hears why: from the command (which waits for the
    // verdict) and by a notice.
    let out = send("@nobody");
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group `nobody`"));
    wait_for(T, || notices(&root, "Agent-1").iter().any(|n| n["notice"] == "rejected"));
    let n = notices(&root, "Agent-1").into_iter().find(|n| n["notice"] == "rejected").unwrap();
    assert!(n["reason"].as_str().unwrap().contains("no group `nobody`"), "{n}");
    assert!(mail(&root, "Agent-3", "new").is_empty(), "not a member: nothing for Agent-3");
    assert!(mail(&root, "Agent-1", "new").is_empty(), "the sender, a member, gets no copy");
}

#[test]
fn legacy_broadcasts_and_read_mail_arrive_through_mail_dirs() {
    let root = Root::new();
    root.write_config(
        "[broker]\ntick_ms = 50\nsettle_ms = 100\n[ingest]\nmail_dirs = [\"agent_mailboxes\"]\n",
    );
    for a in ["Agent-1", "Agent-2", "Agent-3"] {
        agent_add(&root, a, &[]);
    }
    let inbox = root.path.join("agent_mailboxes/Agent-2/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let _b = root.broker();
    let broadcast = json!({"sender_agent_id": "Agent-1", "recipient_agent_id": "ALL_AGENTS", "subject": "outage", "body": "22:00"});
    std::fs::write(inbox.join("bc.json"), broadcast.to_string()).unwrap();
    let seen =
        json!({"sender": "Agent-3", "recipient": "Agent-2", "content": "old news", "read_status": true});
    std::fs::write(inbox.join("seen.json"), seen.to_string()).unwrap();
    wait_for(T, || {
        mail(&root, "Agent-2", "new").len() == 1
            && mail(&root, "Agent-3", "new").len() == 1
            && mail(&root, "Agent-2", "cur").len() == 1
    });
    assert_eq!(mail(&root, "Agent-3", "new")[0]["sent_to"], "ALL");
    assert_eq!(mail(&root, "Agent-2", "new")[0]["subject"], "outage");
    assert_eq!(mail(&root, "Agent-2", "cur")[0]["body"], "old news", "marked read: into cur/, not new/");
    assert!(mail(&root, "Agent-1", "new").is_empty());
    assert!(root.ls("broker/quarantine").is_empty(), "{:?}", root.ls("broker/quarantine"));
    let read: Vec<_> = records(&root, "mail").into_iter().filter(|r| r["read"] == true).collect();
    assert_eq!(read.len(), 1, "the journal says it went in as read");
}

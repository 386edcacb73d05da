//! `mailroom gc` as an operator runs it: refused (exit 4) while a broker holds the root, a dry run
//! that changes nothing (and may run beside the broker), then the retention rules applied to the
//! stopped root, with a JSON report a script can read; `mailroom status` shows what it left.

use mailroom_tests::Root;
use serde_json::{Value, json};

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn gc_waits_for_the_broker_to_stop_then_prunes_what_the_limits_allow() {
    let root = Root::new();
    let mut broker = root.broker();
    for i in 0..5 {
        let task = json!({"task_id": format!("G-{i}"), "name": "gc"});
        let out = root.run_with_input(&["submit", "-"], task.to_string().as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(root.ls("broker/inbox/cur").len(), 5, "each acknowledged submit is kept");
    let refused = root.run(&["gc"]);
    assert_eq!(refused.status.code(), Some(4), "{}", String::from_utf8_lossy(&refused.stderr));
    let dry = json_of(&root.run(&["gc", "--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["inbox_removed"]["files"], 0, "the default limits keep all five: {dry}");
    assert!(broker.is_running());
    let (code, log) = broker.terminate();
    assert_eq!(code, Some(0), "{log}");

    root.write_config("[broker]\ninbox_keep_count = 2\n");
    let dry = json_of(&root.run(&["gc", "--dry-run", "--json"]));
    assert_eq!(dry["inbox_removed"]["files"], 3);
    assert_eq!(root.ls("broker/inbox/cur").len(), 5, "a dry run removes nothing");
    let done = json_of(&root.run(&["gc", "--json"]));
    assert_eq!((done["dry_run"].clone(), done["inbox_removed"]["files"].clone()), (json!(false), json!(3)));
    assert_eq!(root.ls("broker/inbox/cur").len(), 2);
    let (before, after) = (&done["before"]["inbox_kept"]["files"], &done["after"]["inbox_kept"]["files"]);
    assert_eq!((before, after), (&json!(5), &json!(2)), "{done}");
    // `status` shows the footprint per area (it exits 3 here: no broker runs).
    let st = root.run(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&st.stdout).expect("status --json prints JSON");
    assert_eq!(st["footprint"]["inbox_kept"]["files"], 2, "{st}");
    assert!(st["footprint"]["snapshot"]["bytes"].as_u64().is_some(), "{st}");
    let st = String::from_utf8_lossy(&root.run(&["status"]).stdout).into_owned();
    assert!(st.contains("FOOTPRINT") && st.contains("inbox_kept"), "{st}");
    let text = root.run(&["gc"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("inbox/cur: removed 0 kept messages"));
    // The root still serves, with what it kept.
    let mut again = root.broker();
    assert!(again.is_running());
    let (code, log) = again.terminate();
    assert_eq!(code, Some(0), "{log}");
}

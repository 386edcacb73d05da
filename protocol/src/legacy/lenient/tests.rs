//! Tests of `parse_lenient`, repair by repair.

use super::*;

#[test]
fn whitespace_left_by_a_merge_marker_repair_is_an_error_not_a_panic() {
    // Found by the `legacy_normalise` fuzz target: only the "theirs" side of a conflict, so
    // nothing but line breaks is left once the markers are resolved.
    for input in ["<<<<<<< a\n=======\nx\n>>>>>>> b\n", "\n\n", "  \t\n"] {
        assert!(parse_lenient(input.as_bytes()).is_err(), "{input:?}");
    }
}
use serde_json::json;

fn ok(s: &str) -> Lenient {
    parse_lenient(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn has(l: &Lenient, name: &str) -> bool {
    l.repairs.iter().any(|r| r.starts_with(name))
}

#[test]
fn strict_json_needs_no_repair() {
    let l = ok(r#"{"a": [1, 2]}"#);
    assert_eq!(l.value, json!({"a": [1, 2]}));
    assert!(l.repairs.is_empty());
}

#[test]
fn bom() {
    let l = ok("\u{feff}{\"a\":1}");
    assert_eq!(l.value, json!({"a": 1}));
    assert!(has(&l, repair::BOM));
}

#[test]
fn line_and_hash_and_block_comments() {
    let l = ok("{\n \"a\": \"x//y\", // note\n # another\n \"b\": /* inline */ 2\n}");
    assert_eq!(l.value, json!({"a": "x//y", "b": 2}));
    assert!(has(&l, repair::COMMENTS));
    assert_eq!(l.repairs.len(), 1);
}

#[test]
fn trailing_commas() {
    let l = ok("{\"a\": [1, 2,], \"b\": 3,\n}");
    assert_eq!(l.value, json!({"a": [1, 2], "b": 3}));
    assert!(has(&l, repair::TRAILING_COMMAS));
}

#[test]
fn template_wrapper() {
    let l = ok("{{\n{\n  \"task_id\": \"T1\"\n}\n}}\n");
    assert_eq!(l.value, json!({"task_id": "T1"}));
    assert!(has(&l, repair::TEMPLATE_WRAPPER));
    let l = ok("{{\"task_id\": \"T1\", \"x\": {\"y\": 1}}}");
    assert_eq!(l.value, json!({"task_id": "T1", "x": {"y": 1}}));
    let l = ok("{{\n[1, 2]\n}}");
    assert_eq!(l.value, json!([1, 2]));
}

#[test]
fn placeholders_as_values() {
    let l = ok("{\"priority\": {{priority}}, \"n\": 1}");
    assert_eq!(l.value, json!({"priority": "{{priority}}", "n": 1}));
    assert!(has(&l, repair::PLACEHOLDER_VALUES));
    let l = ok("{\"t\": [AUTO_TIMESTAMP], \"a\": <agent name>, \"l\": [true, null], \"m\": [\"x\"]}");
    assert_eq!(l.value, json!({"t": "[AUTO_TIMESTAMP]", "a": "<agent name>", "l": [true, null], "m": ["x"]}));
}

#[test]
fn bare_words_and_python_literals() {
    let l = ok("{\"status\": PENDING, owner: Agent-2, \"n\": 1e5, \"x\": -2.5E-3}");
    // Numbers keep the form they were written in (arbitrary precision: nothing is rounded).
    let want: Value =
        serde_json::from_str(r#"{"status": "PENDING", "owner": "Agent-2", "n": 1e5, "x": -2.5E-3}"#).unwrap();
    assert_eq!(l.value, want);
    assert!(has(&l, repair::BARE_WORDS));
    let l = ok("{'task_id': 'T1', 'done': True, 'x': None, 'q': 'it\\'s \"q\"', 'f': False}");
    assert_eq!(l.value, json!({"task_id": "T1", "done": true, "x": null, "q": "it's \"q\"", "f": false}));
    assert!(has(&l, repair::PYTHON_LITERALS));
    assert!(!has(&l, repair::BARE_WORDS));
}

#[test]
fn text_encodings() {
    let mut le = vec![0xFF, 0xFE];
    le.extend("{\"a\": \"é\"}".encode_utf16().flat_map(u16::to_le_bytes));
    let l = parse_lenient(&le).unwrap();
    assert_eq!(l.value, json!({"a": "é"}));
    assert!(has(&l, repair::UTF16));
    let mut be = vec![0xFE, 0xFF];
    be.extend("[1]".encode_utf16().flat_map(u16::to_be_bytes));
    assert_eq!(parse_lenient(&be).unwrap().value, json!([1]));
    let l = parse_lenient(b"{\"a\": \"caf\xe9\"}").unwrap();
    assert_eq!(l.value, json!({"a": "caf\u{fffd}"}));
    assert_eq!(l.repairs, vec![format!("{}: 1", repair::INVALID_UTF8)]);
}

#[test]
fn merge_markers_keep_ours() {
    let text =
        "{\n<<<<<<< HEAD\n  \"status\": \"ours\"\n=======\n  \"status\": \"theirs\"\n>>>>>>> branch\n}\n";
    let l = ok(text);
    assert_eq!(l.value, json!({"status": "ours"}));
    assert!(has(&l, repair::MERGE_MARKERS));
    let diff3 = "{\n<<<<<<< ours\n\"a\": 1\n||||||| base\n\"a\": 0\n=======\n\"a\": 2\n>>>>>>> theirs\n}";
    assert_eq!(ok(diff3).value, json!({"a": 1}));
}

#[test]
fn json_lines_become_a_list() {
    let l = ok("{\"task_id\": \"A\"}\n{\"task_id\": \"B\"}\n");
    assert_eq!(l.value, json!([{"task_id": "A"}, {"task_id": "B"}]));
    assert!(has(&l, repair::JSON_LINES));
}

#[test]
fn markdown_messages() {
    let text = "# 🚨 INBOX MESSAGE - TEXT\n\n**From**: DISCORD\n**To**: yall\n**Priority**: regular\n**Message Type**: text\n- **Timestamp**: 2025-12-08T16:59:21.033064\n\n---\n\nplease post this\n\n---\n*footer*\n";
    let l = ok(text);
    assert!(has(&l, repair::MARKDOWN));
    let v = &l.value;
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str(), v["message_type"].as_str()),
        (Some("DISCORD"), Some("yall"), Some("text"))
    );
    assert_eq!(v["timestamp"], "2025-12-08T16:59:21.033064");
    assert_eq!(v["title"], "🚨 INBOX MESSAGE - TEXT");
    assert!(v["body"].as_str().unwrap().starts_with("please post this"));
    assert!(parse_lenient(b"# Notes\n\nJust prose, **bold** words.\n").is_err());
}

#[test]
fn trailing_garbage() {
    let l = ok("{\"a\": 1}\n{\"a\": 2}garbage");
    assert_eq!(l.value, json!({"a": 1}));
    assert!(has(&l, repair::TRAILING_DATA));
    assert!(l.repairs[0].contains("line 2"));
}

#[test]
fn list_that_breaks_off_keeps_complete_items() {
    let l = ok("[\n {\"id\": 1},\n {\"id\": 2}\n  import json\nx = 1\n");
    assert_eq!(l.value, json!([{"id": 1}, {"id": 2}]));
    assert!(has(&l, repair::SALVAGED_LIST));
    assert!(l.repairs[0].contains("2 items"), "{:?}", l.repairs);
}

#[test]
fn yaml_documents() {
    let l = ok("id: t-1\nstatus: active\nsource:\n  - a.py\n  - b.py\nmeta:\n  owner: Agent-2\n  n: 3\n");
    assert_eq!(
        l.value,
        json!({"id": "t-1", "status": "active", "source": ["a.py", "b.py"], "meta": {"owner": "Agent-2", "n": 3}})
    );
    assert!(has(&l, repair::YAML));
    let l = ok("- task_id: A\n  priority: HIGH\n- task_id: B\n");
    assert_eq!(l.value, json!([{"task_id": "A", "priority": "HIGH"}, {"task_id": "B"}]));
}

#[test]
fn repairs_compose() {
    let l = ok("{{\n{\n  \"a\": 1, // one\n  \"b\": [2,],\n}\n}}");
    assert_eq!(l.value, json!({"a": 1, "b": [2]}));
    assert_eq!(l.repairs.len(), 3, "{:?}", l.repairs);
}

#[test]
fn failures_name_rule_line_and_column() {
    let e = parse_lenient(b"{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
    assert!(e.rule.starts_with("not JSON"), "{e}");
    assert_eq!(e.line, 3);
    let e = parse_lenient(b"").unwrap_err();
    assert_eq!(e.rule, "empty file");
    let e = parse_lenient(b"{\n\"a\": 1\x00}").unwrap_err();
    assert_eq!((e.rule.as_str(), e.line, e.column), ("not text: contains NUL bytes", 2, 7));
    let e = parse_lenient("# Title\n\n**Note**: not a message\n".as_bytes()).unwrap_err();
    assert!(e.rule.starts_with("neither JSON nor simple YAML"), "{e}");
    assert_eq!(e.line, 3);
    assert!(e.to_string().contains("line 3"));
}

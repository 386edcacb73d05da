//! Property tests (stable, run in CI): whatever bytes or JSON arrive, `Message::parse`,
//! `Message::from_value` and `Task::from_value` return a value or a reasoned error, never panic.
//! The coverage-guided counterparts are the cargo-fuzz targets in `protocol/fuzz/`. And every
//! message of every kind, serialised, parses back to itself.

use mailroom_protocol::{Message, Task};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

/// A validator for each kind's derived schema.
static SCHEMAS: LazyLock<HashMap<String, jsonschema::Validator>> = LazyLock::new(|| {
    let all = mailroom_protocol::schema::messages();
    Message::kinds()
        .iter()
        .map(|k| {
            let v = jsonschema::options().should_validate_formats(true).build(&all[k]).expect("a schema");
            (k.to_string(), v)
        })
        .collect()
});

/// Arbitrary JSON, biased towards the fields and values the parsers look at.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("kind".to_string()),
        Just("task".to_string()),
        Just("task_id".to_string()),
        Just("agent".to_string()),
        Just("claim".to_string()),
        Just("priority".to_string()),
        Just("status".to_string()),
        Just("history".to_string()),
        Just("created_at".to_string()),
        Just("not_before".to_string()),
        Just("depends_on".to_string()),
        Just("max_attempts".to_string()),
        Just("attempts".to_string()),
        Just("lease_secs".to_string()),
        Just("retryable".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop_oneof![
            Just("submit"),
            Just("complete"),
            Just("fail"),
            Just("release"),
            Just("cancel"),
            Just("retry"),
            Just("send"),
            Just("HIGH"),
            Just("COMPLETED"),
            Just("2026-11-26T00:00:00Z"),
            Just("../../etc/passwd"),
            Just("1-20261126T004958123456-000000000042-X.json"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_agent() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,20}(\\.[A-Za-z0-9_-]{1,8})?"
}

fn arb_task_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9][ A-Za-z0-9./:_-]{0,40}", any::<u64>().prop_map(|n| n.to_string())]
}

/// A valid message of any kind (the strategy lists every variant: a new one fails to compile in
/// `Message::kind`, and belongs here too).
fn arb_message() -> impl Strategy<Value = Message> {
    let claim = ".{1,40}";
    prop_oneof![
        prop::collection::vec((".{0,12}", arb_json()), 0..6)
            .prop_map(|kv| Message::Submit { task: Value::Object(kv.into_iter().collect()) }),
        (arb_agent(), claim, arb_json()).prop_map(|(agent, claim, result)| Message::Complete {
            agent,
            claim,
            result
        }),
        (arb_agent(), claim, ".{0,40}", any::<bool>())
            .prop_map(|(agent, claim, error, retryable)| Message::Fail { agent, claim, error, retryable }),
        (arb_agent(), claim).prop_map(|(agent, claim)| Message::Release { agent, claim }),
        arb_task_id().prop_map(|task_id| Message::Cancel { task_id }),
        arb_task_id().prop_map(|task_id| Message::Retry { task_id }),
        (arb_agent(), arb_agent(), prop::option::of(".{0,20}"), arb_json())
            .prop_map(|(from, to, subject, body)| Message::Send { from, to, subject, body }),
        "[0-9A-Za-z_-][^/\\x00]{0,60}[0-9A-Za-z]"
            .prop_map(|name| Message::Requeue { name })
            .prop_filter("an entry, not a reason file", |m| {
                matches!(m, Message::Requeue { name } if !name.ends_with(".error.json"))
            }),
    ]
}

fn valid_messages() -> Vec<Vec<u8>> {
    [
        json!({"kind":"submit","task":{"task_id":"T-1","priority":"HIGH","depends_on":["A"],"created_at":"2026-11-26T00:00:00Z"}}),
        json!({"task_id": 7, "name": "bare", "tags": ["x"], "max_attempts": 3, "lease_secs": 2}),
        json!({"kind":"complete","agent":"Agent-1","claim":"1-20261126T004958123456-000000000042-T.json","result":{"a":[1,2]}}),
        json!({"kind":"fail","agent":"Agent-1","claim":"c","error":"boom","retryable":false}),
        json!({"kind":"send","from":"A","to":"B","subject":"s","body":[1,{"x":null}]}),
        json!({"kind":"cancel","task_id":"T-1"}),
        json!({"task_id":"H","history":[{"timestamp":"2026-11-26T00:00:00Z","actor":"a","action":"submit","from":null,"to":"PENDING"}]}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap())
    .collect()
}

fn check_value(v: &Value) {
    let _ = Message::from_value(v.clone());
    if let Ok(t) = Task::from_value(v.clone()) {
        // What was accepted round-trips through the canonical form.
        let again = Task::from_value(t.to_value()).expect("a canonical task re-parses");
        assert_eq!(again.task_id, t.task_id);
    }
}

/// The long way `Message::parse` takes when its one-pass reading does not succeed: a JSON
/// value, then `Message::from_value`. Both ways must agree on everything (what is read and what
/// is refused, with the same words).
fn parsed_the_long_way(bytes: &[u8]) -> Option<Result<Message, mailroom_protocol::ValidationError>> {
    let v = serde_json::from_slice::<Value>(bytes).ok()?;
    Some(Message::from_value(v))
}

/// `parse` agrees with the long way wherever the bytes are JSON.
fn agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(long) = parsed_the_long_way(bytes) {
        prop_assert_eq!(Message::parse(bytes), long, "{}", String::from_utf8_lossy(bytes));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn one_reading_agrees_with_the_long_way(v in arb_json(), m in arb_message(), kind in 0usize..12) {
        agrees(&serde_json::to_vec(&v).unwrap())?;
        agrees(&serde_json::to_vec(&m.to_value()).unwrap())?;
        // Arbitrary fields under each kind (and under none, and an unknown one).
        if let Value::Object(mut o) = v {
            let kinds = Message::kinds();
            match kinds.get(kind) {
                Some(k) => { o.insert("kind".into(), json!(k)); }
                None if kind % 2 == 0 => { o.insert("kind".into(), json!("nope")); }
                None => {}
            }
            agrees(&serde_json::to_vec(&Value::Object(o)).unwrap())?;
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            check_value(&v);
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        check_value(&v);
        let _ = Message::parse(&serde_json::to_vec(&v).unwrap());
        check_value(&json!({"kind": "submit", "task": v.clone()}));
        if let Value::Object(mut m) = v {
            m.insert("task_id".into(), json!("T"));
            check_value(&Value::Object(m));
        }
    }

    #[test]
    fn every_message_round_trips(m in arb_message()) {
        let bytes = serde_json::to_vec(&m.to_value()).unwrap();
        prop_assert_eq!(Message::parse(&bytes).unwrap(), m);
    }

    /// A submit's task is raw JSON in a `Message` (the broker validates it); the schema asks for
    /// a valid task, so a submit is checked with its task made canonical.
    #[test]
    fn every_message_fits_the_schema_of_its_kind(m in arb_message()) {
        let mut value = m.to_value();
        if let Message::Submit { task } = &m {
            let mut task = task.clone();
            task["task_id"] = json!("T");
            match Task::from_value(task) {
                Ok(t) => value["task"] = t.to_value(),
                Err(_) => return Ok(()),
            }
        }
        let errors: Vec<String> = SCHEMAS[m.kind()].iter_errors(&value).map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "{}: {:?}", value, errors);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..7,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = valid_messages()[which].clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        if let Ok(m) = Message::parse(&bytes) {
            // An accepted message serialises and parses back to itself.
            let again = Message::parse(&serde_json::to_vec(&m.to_value()).unwrap()).expect("re-parses");
            prop_assert_eq!(again, m);
        }
    }
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    for open in ["[", "{\"a\":"] {
        let depth = 100_000;
        let mut s = String::with_capacity(depth * 5);
        s.push_str("{\"task_id\":\"D\",\"params\":");
        for _ in 0..depth {
            s.push_str(open);
        }
        let err = Message::parse(s.as_bytes()).expect_err("100,000 levels are refused");
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}

/// Found by cargo-fuzz: without serde_json's `float_roundtrip`, a large number came back one ulp
/// off after a serialise/parse round trip, so a task's data drifted each time the broker wrote it
/// (journal, task file, board) and read it back.
#[test]
fn numbers_survive_the_round_trip_exactly() {
    for text in [
        r#"{"":-1111111111111111111111}"#,
        r#"{"task_id":"F","params":[0.1,1e308,-2.2250738585072014e-308,123456789.123456789]}"#,
        r#"{"kind":"complete","agent":"A","claim":"c","result":{"n":123456789012345678901234567890}}"#,
        r#"{"kind":"submit","task":{"task_id":"B","budget":-98765432109876543210987654321.5}}"#,
    ] {
        let m = Message::parse(text.as_bytes()).unwrap();
        let written = serde_json::to_vec(&m.to_value()).unwrap();
        let again = Message::parse(&written).unwrap();
        assert_eq!(again, m, "{text}");
        // Every digit is kept: integers beyond 64 bits are not turned into floats.
        for digits in
            ["1111111111111111111111", "123456789012345678901234567890", "98765432109876543210987654321.5"]
        {
            if text.contains(digits) {
                assert!(String::from_utf8_lossy(&written).contains(digits), "{text}");
            }
        }
    }
}

#[test]
fn valid_messages_parse() {
    for m in valid_messages() {
        Message::parse(&m).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&m)));
    }
}

/// Texts a JSON value cannot stand for: keys written twice (a value keeps the last), an array
/// where serde would read a tagged enum from its first element, space before the object.
#[test]
fn one_reading_agrees_with_the_long_way_where_texts_differ_from_values() {
    let texts = [
        r#"{"kind":"cancel","task_id":"A","task_id":"B"}"#,
        r#"{"kind":"cancel","kind":"retry","task_id":"A"}"#,
        r#"{"kind":"complete","agent":"A","claim":"c","result":1,"result":{"x":2}}"#,
        r#"["cancel","A"]"#,
        r#"["cancel",{"task_id":"A"}]"#,
        " \n\t{\"kind\":\"retry\",\"task_id\":\"A\"} ",
        r#"{"kind":"send","from":"A","to":"B","body":123456789012345678901234567890}"#,
        r#"{"task_id":"T","kind":"submit","task":{"task_id":"T2"}}"#,
        r#"{"kind":"submit"}"#,
        r#"{"kind":null,"task_id":"A"}"#,
    ];
    for t in texts {
        agrees(t.as_bytes()).unwrap();
    }
    // The first three are read as the long way reads them: the last of each key.
    assert_eq!(Message::parse(texts[0].as_bytes()).unwrap(), Message::Cancel { task_id: "B".into() });
    assert_eq!(Message::parse(texts[1].as_bytes()).unwrap(), Message::Retry { task_id: "A".into() });
    assert_eq!(
        Message::parse(texts[2].as_bytes()).unwrap(),
        Message::Complete { agent: "A".into(), claim: "c".into(), result: json!({"x": 2}) }
    );
    assert!(Message::parse(texts[3].as_bytes()).is_err(), "an array is not a message");
}

//! `Message::from_value` against a frozen copy of the hand-written parser it replaced (`oracle`
//! below, verbatim apart from its name): on every single-defect message, built by changing or
//! removing one field of a valid message of each kind, both must give the same message or the
//! same `ValidationError` (field and rule, word for word). On arbitrary JSON they must agree on
//! what is accepted and on what it parses to; when a message breaks several rules at once, which
//! rule is reported first may differ, so those errors are not compared. Every accepted message
//! must also serialise to the same bytes as the hand-written `to_value` wrote (key order included).
//!
//! The oracle knows seven kinds. A new kind changes the text of the unknown-kind error, so
//! `top_level_rules_are_the_same` fails until the oracle's list names it too. Kinds added since
//! (`requeue`) are in that list and nowhere else: the oracle never parses them, and the derived
//! parser's own tests cover them.

use mailroom_protocol::{Message, ValidationError};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The parser as it was before `Message` derived its `Deserialize`. Do not edit: it is the
/// reference the derived one is held to.
mod oracle {
    use mailroom_protocol::names::validate_agent;
    use mailroom_protocol::{Message, ValidationError};
    use serde_json::{Map, Value};

    pub fn from_value(value: Value) -> Result<Message, ValidationError> {
        let Value::Object(mut map) = value else {
            return Err(ValidationError::new("", "a message must be a JSON object"));
        };
        let kind = match map.remove("kind") {
            None => {
                return Ok(Message::Submit { task: Value::Object(map) });
            }
            Some(Value::String(k)) => k,
            Some(_) => return Err(ValidationError::new("kind", "must be a string")),
        };
        let msg = match kind.as_str() {
            "submit" => match map.remove("task") {
                Some(task @ Value::Object(_)) => Message::Submit { task },
                Some(_) => return Err(ValidationError::new("task", "must be a JSON object")),
                None => {
                    return Err(ValidationError::new("task", "is required for kind `submit`"));
                }
            },
            "complete" => Message::Complete {
                agent: agent(&mut map, "agent")?,
                claim: string(&mut map, "claim")?,
                result: map.remove("result").unwrap_or(Value::Null),
            },
            "fail" => Message::Fail {
                agent: agent(&mut map, "agent")?,
                claim: string(&mut map, "claim")?,
                error: match map.remove("error") {
                    Some(Value::String(s)) => s,
                    None | Some(Value::Null) => "failed".to_string(),
                    Some(other) => other.to_string(),
                },
                retryable: match map.remove("retryable") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => b,
                    Some(_) => {
                        return Err(ValidationError::new("retryable", "must be true or false"));
                    }
                },
            },
            "release" => {
                Message::Release { agent: agent(&mut map, "agent")?, claim: string(&mut map, "claim")? }
            }
            "cancel" => Message::Cancel { task_id: task_id(&mut map)? },
            "retry" => Message::Retry { task_id: task_id(&mut map)? },
            "send" => Message::Send {
                from: agent(&mut map, "from")?,
                to: agent(&mut map, "to")?,
                subject: match map.remove("subject") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(_) => return Err(ValidationError::new("subject", "must be a string")),
                },
                body: map.remove("body").unwrap_or(Value::Null),
            },
            other => {
                return Err(ValidationError::new(
                    "kind",
                    format!(
                        "unknown kind `{other}` (expected submit, complete, fail, release, cancel, retry, send or requeue)"
                    ),
                ));
            }
        };
        Ok(msg)
    }

    pub fn to_value(m: &Message) -> Value {
        let mut map = Map::new();
        map.insert("kind".into(), m.kind().into());
        match m {
            Message::Submit { task } => {
                map.insert("task".into(), task.clone());
            }
            Message::Complete { agent, claim, result } => {
                map.insert("agent".into(), agent.as_str().into());
                map.insert("claim".into(), claim.as_str().into());
                map.insert("result".into(), result.clone());
            }
            Message::Fail { agent, claim, error, retryable } => {
                map.insert("agent".into(), agent.as_str().into());
                map.insert("claim".into(), claim.as_str().into());
                map.insert("error".into(), error.as_str().into());
                map.insert("retryable".into(), (*retryable).into());
            }
            Message::Release { agent, claim } => {
                map.insert("agent".into(), agent.as_str().into());
                map.insert("claim".into(), claim.as_str().into());
            }
            Message::Cancel { task_id } | Message::Retry { task_id } => {
                map.insert("task_id".into(), task_id.as_str().into());
            }
            Message::Send { from, to, subject, body } => {
                map.insert("from".into(), from.as_str().into());
                map.insert("to".into(), to.as_str().into());
                if let Some(s) = subject {
                    map.insert("subject".into(), s.as_str().into());
                }
                map.insert("body".into(), body.clone());
            }
            Message::Requeue { .. } => unreachable!("the oracle never parses a kind added after it"),
        }
        Value::Object(map)
    }

    fn string(map: &mut Map<String, Value>, field: &str) -> Result<String, ValidationError> {
        match map.remove(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(ValidationError::new(field, "must not be empty")),
            Some(_) => Err(ValidationError::new(field, "must be a string")),
            None => Err(ValidationError::new(field, "is required")),
        }
    }

    fn agent(map: &mut Map<String, Value>, field: &str) -> Result<String, ValidationError> {
        let s = string(map, field)?;
        validate_agent(&s).map_err(|e| ValidationError::new(field, e.rule))?;
        Ok(s)
    }

    fn task_id(map: &mut Map<String, Value>) -> Result<String, ValidationError> {
        let id = match map.remove("task_id") {
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(other) => {
                map.insert("task_id".into(), other);
                string(map, "task_id")?
            }
            None => return Err(ValidationError::new("task_id", "is required")),
        };
        mailroom_protocol::task::validate_task_id(&id)?;
        Ok(id)
    }
}

/// One valid message of every kind the oracle knows, fields in the order it reads them.
fn valid() -> Vec<Value> {
    vec![
        json!({"kind": "submit", "task": {"task_id": "T-1", "priority": "HIGH"}}),
        json!({"kind": "complete", "agent": "Agent-1", "claim": "c.json", "result": {"ok": [1, 2.5]}}),
        json!({"kind": "fail", "agent": "Agent-1", "claim": "c.json", "error": "boom", "retryable": false}),
        json!({"kind": "release", "agent": "Agent-1", "claim": "c.json"}),
        json!({"kind": "cancel", "task_id": "T-1"}),
        json!({"kind": "retry", "task_id": "T-1"}),
        json!({"kind": "send", "from": "A", "to": "B", "subject": "s", "body": [1, {"x": null}]}),
    ]
}

/// Values a field might wrongly (or rightly) hold.
fn replacements() -> Vec<Value> {
    let mut v = vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(12),
        json!(-3),
        json!(u64::MAX),
        json!(1.5),
        json!(-1e300),
        json!(""),
        json!(" "),
        json!("x"),
        json!("Agent-2"),
        json!("../x"),
        json!("a..b"),
        json!(".hidden"),
        json!("a/b"),
        json!("a\u{1}b"),
        json!("a\nb"),
        json!("x".repeat(64)),
        json!("x".repeat(65)),
        json!("y".repeat(200)),
        json!("y".repeat(201)),
        json!("submit"),
        json!("explode"),
        json!([]),
        json!(["a"]),
        json!({}),
        json!({"task_id": "T-2"}),
    ];
    v.push(json!({"nested": v.clone()}));
    v
}

fn both(v: &Value) -> (Result<Message, ValidationError>, Result<Message, ValidationError>) {
    (oracle::from_value(v.clone()), Message::from_value(v.clone()))
}

/// The bytes each serialisation writes (a `Value` comparison would ignore key order).
fn wire(m: &Message) -> (String, String) {
    (serde_json::to_string(&oracle::to_value(m)).unwrap(), serde_json::to_string(&m.to_value()).unwrap())
}

fn assert_same(v: &Value) {
    let (old, new) = both(v);
    assert_eq!(new, old, "input: {v}");
    if let Ok(m) = new {
        let (old, new) = wire(&m);
        assert_eq!(new, old, "input: {v}");
    }
}

fn reversed(v: &Value) -> Value {
    let Value::Object(m) = v else { return v.clone() };
    let mut pairs: Vec<(String, Value)> = m.clone().into_iter().collect();
    pairs.reverse();
    Value::Object(pairs.into_iter().collect::<Map<_, _>>())
}

#[test]
fn valid_messages_parse_the_same() {
    for v in valid() {
        let (old, new) = both(&v);
        assert!(old.is_ok(), "{v}: {old:?}");
        assert_eq!(new, old, "{v}");
        assert_same(&reversed(&v));
    }
}

#[test]
fn every_single_defect_gives_the_same_error() {
    let mut compared = 0;
    for base in valid() {
        let Value::Object(fields) = &base else { unreachable!() };
        let mut keys: Vec<String> = fields.keys().cloned().collect();
        // A field no kind reads, and one that only some kinds read, must change nothing.
        keys.extend(["extra".to_string(), "task_id".to_string(), "agent".to_string(), "task".to_string()]);
        for key in keys {
            let mut removed = fields.clone();
            removed.remove(&key);
            for v in [Value::Object(removed.clone()), reversed(&Value::Object(removed))] {
                assert_same(&v);
                compared += 1;
            }
            for r in replacements() {
                let mut changed = fields.clone();
                changed.insert(key.clone(), r);
                let v = Value::Object(changed);
                assert_same(&v);
                assert_same(&reversed(&v));
                compared += 2;
            }
        }
    }
    assert!(compared > 1000, "only {compared} cases");
}

#[test]
fn top_level_rules_are_the_same() {
    for v in [
        json!(null),
        json!([1, 2]),
        json!("submit"),
        json!(3),
        json!({}),
        json!({"task_id": 7, "name": "bare"}),
        json!({"kind": null}),
        json!({"kind": 7}),
        json!({"kind": ["submit"]}),
        json!({"kind": ""}),
        json!({"kind": "Submit"}),
        json!({"kind": "rm -rf /", "task_id": "X"}),
        json!({"kind": "notice", "notice": "stale"}),
        json!({"kind": "mail", "from": "A", "to": "B"}),
    ] {
        assert_same(&v);
    }
}

/// JSON shaped like messages: a known kind (or none, or a wrong one) and fields drawn from the
/// names and values the parser looks at.
fn arb_message() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(None),
        Just(Some(json!(1))),
        Just(Some(json!("nope"))),
        prop::sample::select(vec!["submit", "complete", "fail", "release", "cancel", "retry", "send"])
            .prop_map(|k| Some(json!(k))),
    ];
    let key = prop::sample::select(vec![
        "task",
        "agent",
        "claim",
        "result",
        "error",
        "retryable",
        "task_id",
        "from",
        "to",
        "subject",
        "body",
        "other",
    ]);
    let value = prop::sample::select(replacements());
    (kind, prop::collection::vec((key, value), 0..8)).prop_map(|(kind, fields)| {
        let mut m = Map::new();
        if let Some(k) = kind {
            m.insert("kind".into(), k);
        }
        for (k, v) in fields {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_messages_are_accepted_alike(v in arb_message()) {
        let (old, new) = both(&v);
        prop_assert_eq!(old.is_ok(), new.is_ok(), "input: {}; old {:?}; new {:?}", v, old, new);
        if let (Ok(old), Ok(new)) = (old, new) {
            let (old_wire, new_wire) = wire(&new);
            prop_assert_eq!(new, old);
            prop_assert_eq!(new_wire, old_wire);
        }
    }
}

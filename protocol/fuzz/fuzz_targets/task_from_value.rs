//! Fuzz target: `Task::from_value` on any JSON the bytes parse to (and on the same value wrapped
//! as a submit's task) must not panic; an accepted task must survive its canonical round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_protocol::Task;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    for candidate in [v.clone(), serde_json::json!({"task_id": "F", "params": v.clone()})] {
        if let Ok(t) = Task::from_value(candidate) {
            let again = Task::from_value(t.to_value()).expect("a canonical task re-parses");
            assert_eq!(again.task_id, t.task_id);
            assert_eq!(again.to_value(), t.to_value());
        }
    }
    // The same object with an id added exercises every other field's checks.
    if let Value::Object(mut m) = v {
        m.insert("task_id".into(), Value::String("F".into()));
        let _ = Task::from_value(Value::Object(m));
    }
});

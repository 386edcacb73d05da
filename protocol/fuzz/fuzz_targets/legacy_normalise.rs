//! Fuzz target: the lenient front door on any bytes. `parse_lenient`, `extract_tasks`,
//! `normalise_task` and `normalise_mail` must not panic, and a normalised task must be canonical:
//! it re-parses strictly and normalising it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_protocol::legacy::{extract_tasks, normalise_mail, normalise_task, parse_lenient};
use mailroom_protocol::{Task, Timestamp};

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_micros(1_764_000_000_000_000);
    let Ok(lenient) = parse_lenient(data) else { return };
    let _ = normalise_mail(&lenient.value, now);
    let Ok(extracted) = extract_tasks(&lenient.value) else { return };
    for raw in extracted.tasks {
        if let Ok(n) = normalise_task(&raw, now) {
            let v = n.task.to_value();
            let strict = Task::from_value(v.clone()).expect("a normalised task is canonical");
            assert_eq!(strict.task_id, n.task.task_id);
            let again = normalise_task(&v, now).expect("a canonical task normalises");
            assert!(again.changes.is_empty(), "normalisation is idempotent: {:?}", again.changes);
        }
    }
});

//! Producers' and operators' verbs: submit, cancel, retry. Each drops a message into the
//! broker's inbox through the SDK.

use super::answer::answered;
use super::exit::{self, Failure};
use super::io::{emit, read_input};
use agent_sdk::Ack;
use serde_json::Value;
use std::path::Path;

/// `mailroom submit`: a task in the canonical schema is sent as it is; one in a legacy spelling
/// (what `drop/` accepts: `P1`, `id`, `title`, naive times, ...) is normalised by the same rules
/// first, each change said on stderr. So the CLI takes the spellings `drop/` maps, and the
/// broker's inbox still only ever sees canonical tasks.
pub fn submit(root: &Path, ack: Ack, file: &str) -> Result<(), Failure> {
    let bytes = read_input(file)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::new(exit::INVALID, format!("{file}: not JSON: {e}")))?;
    let msg =
        protocol::Message::from_value(v).map_err(|e| Failure::new(exit::INVALID, format!("{file}: {e}")))?;
    let protocol::Message::Submit { task } = msg else {
        return Err(Failure::new(exit::INVALID, format!("{file}: field `kind`: submit expects a task")));
    };
    let task = match protocol::Task::from_value(task.clone()) {
        Ok(_) => task,
        Err(strict) => {
            // Only spellings the tables map: a value no table understands (kept aside with a
            // warning when it arrives through `drop/`) is refused here with the strict rule.
            let strict = strict.within("task");
            let refused = || Failure::new(exit::INVALID, format!("{file}: {strict}"));
            let n = protocol::legacy::normalise_task(&task, runtime_layout::now()).map_err(|_| refused())?;
            if n.changes.iter().any(|c| c.warning) {
                return Err(refused());
            }
            for c in &n.changes {
                eprintln!("mailroom: {file}: normalised `{}` ({})", c.field, c.kind.as_str());
            }
            n.task.to_value()
        }
    };
    let id = task["task_id"].as_str().unwrap_or_default().to_string();
    let name = answered(root, ack, |ack| {
        agent_sdk::Client::open(root)?.with_ack(ack).with_socket(false).submit(&task)
    })?;
    emit(&format!("{}\n", serde_json::json!({"task_id": id, "message": name})))
}

pub fn cancel(root: &Path, ack: Ack, task_id: &str) -> Result<(), Failure> {
    answered(root, ack, |ack| {
        agent_sdk::Client::open(root)?.with_ack(ack).with_socket(false).cancel(task_id)
    })?;
    Ok(())
}

pub fn retry(root: &Path, ack: Ack, task_id: &str) -> Result<(), Failure> {
    answered(root, ack, |ack| {
        agent_sdk::Client::open(root)?.with_ack(ack).with_socket(false).retry(task_id)
    })?;
    Ok(())
}

//! Producers' and operators' verbs: submit, cancel, retry. Each drops a message into the
//! broker's inbox through the SDK.

use super::exit::{self, Failure};
use super::io::read_input;
use serde_json::Value;
use std::path::Path;

pub fn submit(root: &Path, file: &str) -> Result<(), Failure> {
    let bytes = read_input(file)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::new(exit::INVALID, format!("{file}: not JSON: {e}")))?;
    let msg =
        protocol::Message::from_value(v).map_err(|e| Failure::new(exit::INVALID, format!("{file}: {e}")))?;
    let protocol::Message::Submit { task } = msg else {
        return Err(Failure::new(exit::INVALID, format!("{file}: field `kind`: submit expects a task")));
    };
    let t = protocol::Task::from_value(task.clone())
        .map_err(|e| Failure::new(exit::INVALID, format!("{file}: {}", e.within("task"))))?;
    let client = agent_sdk::Client::open(root)?;
    let name = client.submit(&task)?;
    println!("{}", serde_json::json!({"task_id": t.task_id, "message": name}));
    Ok(())
}

pub fn cancel(root: &Path, task_id: &str) -> Result<(), Failure> {
    agent_sdk::Client::open(root)?.cancel(task_id)?;
    Ok(())
}

pub fn retry(root: &Path, task_id: &str) -> Result<(), Failure> {
    agent_sdk::Client::open(root)?.retry(task_id)?;
    Ok(())
}

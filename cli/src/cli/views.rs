//! Read-only views for operators: a task's trace, the JSON Schemas (the boards are `board.rs`).

use super::exit::{self, Failure};
use super::io::{emit, print_json};
use mailroom::trace as tracing_view;
use runtime_layout::{Fs, Layout};

pub fn trace(fs: &dyn Fs, layout: &Layout, task_id: &str, json: bool) -> Result<(), Failure> {
    match tracing_view::trace(fs, layout, task_id) {
        Ok(Some(t)) => {
            if json {
                print_json(&t.to_json())
            } else {
                emit(&t.render())
            }
        }
        Ok(None) => Err(Failure::new(exit::NOTHING, format!("no task `{task_id}` in the journal"))),
        Err(e) => Err(Failure::new(exit::ERROR, e)),
    }
}

pub fn schema() -> Result<(), Failure> {
    print_json(&protocol::schema::all())
}

//! Read-only views for operators: the boards, a task's trace, the agents, the JSON Schemas.

use super::exit::{self, Failure};
use super::io::{emit, print_json};
use mailroom::{agents, board, trace as tracing_view};
use protocol::Status;
use runtime_layout::{Fs, Layout};
use serde_json::Value;

pub fn board(fs: &dyn Fs, layout: &Layout, status: Option<String>, json: bool) -> Result<(), Failure> {
    let status = status
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(|e| Failure::new(exit::USAGE, format!("--status: {}", e.rule)))?;
    let rows = board::read(fs, layout, status).map_err(|e| Failure::new(exit::ERROR, e))?;
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(b, t)| {
                let mut v = t.to_value();
                if let Value::Object(m) = &mut v {
                    m.insert("board".into(), board::board_name(*b).into());
                    if let Some(n) = board::note(t) {
                        m.insert("note".into(), n.into());
                    }
                }
                v
            })
            .collect();
        print_json(&Value::Array(v))
    } else {
        let mut text = board::render(&rows);
        if status.is_none() {
            let cfg =
                mailroom::config::Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
            let list = agents::list(fs, layout, &cfg, runtime_layout::now())
                .map_err(|e| Failure::new(exit::ERROR, e))?;
            if !list.is_empty() {
                text.push('\n');
                text.push_str(&agents::render(&list));
            }
        }
        emit(&text)
    }
}

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

/// `mailroom agent list`: every agent, its capabilities, claims, last-seen time and state.
pub fn agents(fs: &dyn Fs, layout: &Layout, json: bool) -> Result<(), Failure> {
    if !layout.is_initialised(fs) {
        return Err(exit::not_initialised(layout.root()));
    }
    let cfg = mailroom::config::Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let list =
        agents::list(fs, layout, &cfg, runtime_layout::now()).map_err(|e| Failure::new(exit::ERROR, e))?;
    if json {
        print_json(&serde_json::to_value(&list).expect("agent statuses serialise"))
    } else {
        emit(&agents::render(&list))
    }
}

pub fn schema() -> Result<(), Failure> {
    print_json(&protocol::schema::all())
}

//! `mailroom quarantine list|show|requeue`: the entries of `broker/quarantine/` with their
//! reasons (the library's `views::quarantine`), and a requeue, which is a message to the broker:
//! the broker owns the quarantine and moves the entry back into its inbox itself.

use super::answer::answered;
use super::exit::{self, Failure};
use super::io::{emit, print_json, to_json};
use mailroom::views::quarantine;
use runtime_layout::{Fs, Layout};
use serde_json::{Value, json};

pub fn list(fs: &dyn Fs, layout: &Layout, json: bool) -> Result<(), Failure> {
    let entries = quarantine::list(fs, layout)?;
    if json { print_json(&to_json(&entries)?) } else { emit(&quarantine::render(&entries)) }
}

pub fn show(fs: &dyn Fs, layout: &Layout, name: &str, json: bool) -> Result<(), Failure> {
    let Some(shown) = quarantine::show(fs, layout, name)? else {
        return Err(Failure::new(exit::NOTHING, format!("no quarantine entry `{name}`")));
    };
    if json {
        return print_json(&to_json(&shown)?);
    }
    let e = &shown.entry;
    let line = |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("{k:<15}{v}\n")).unwrap_or_default();
    let mut out = format!("{:<15}{}\n{:<15}{} bytes\n", "entry", e.name, "size", e.bytes);
    for (k, v) in [
        ("quarantined", &e.quarantined_at),
        ("from", &e.file),
        ("kind", &e.kind),
        ("task", &e.task_id),
        ("field", &e.field),
        ("rule", &e.rule),
        ("reason", &e.reason),
    ] {
        out.push_str(&line(k, v));
    }
    let content = match &shown.content {
        Value::String(s) => s.clone(),
        Value::Null => format!("(over {} bytes: not shown)", quarantine::MAX_SHOWN_BYTES),
        v => serde_json::to_string_pretty(v).map_err(|e| Failure::new(exit::ERROR, e))?,
    };
    emit(&format!("{out}\n{content}\n"))
}

/// Sends a `requeue` message: the broker moves the entry back into its inbox. Like every message
/// verb, it waits for the broker's verdict unless `--no-wait`.
pub fn requeue(fs: &dyn Fs, layout: &Layout, ack: agent_sdk::Ack, name: &str) -> Result<(), Failure> {
    protocol::names::validate_quarantine_entry(name).map_err(|e| Failure::new(exit::INVALID, e))?;
    // Said at once rather than found in quarantine later (the broker checks again).
    if quarantine::show(fs, layout, name)?.is_none() {
        return Err(Failure::new(exit::NOTHING, format!("no quarantine entry `{name}`")));
    }
    let message = answered(layout.root(), ack, |ack| {
        agent_sdk::Client::open(layout.root())?.with_ack(ack).with_socket(false).requeue(name)
    })?;
    emit(&format!("{}\n", json!({"entry": name, "message": message})))
}

//! Agents' verbs: claim, heartbeat, complete, fail, release, send, and `agent add|list` (`add`
//! with the capabilities an agent declares; the list is the library's `views::agents`, shared
//! with the HTTP API).

use super::answer::answered;
use super::exit::{self, Failure, not_initialised};
use super::io::{emit, json_or_text, print_json, read_input, to_json};
use agent_sdk::Ack;
use mailroom::config::Config;
use mailroom::views::agents;
use runtime_layout::{Fs, Layout};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn claim(root: &Path, agent: &str, pools: &[String], wait: Option<f64>) -> Result<(), Failure> {
    let a = agent_sdk::Agent::open(root, agent)?;
    let claim = match wait {
        Some(secs) => a.claim_wait(pools, Duration::from_secs_f64(secs.max(0.0)))?,
        None => a.claim(pools)?,
    };
    let Some(c) = claim else { return Err(Failure::new(exit::NOTHING, "")) };
    let mut v = c.task.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("claim".into(), Value::String(c.name.clone()));
    }
    print_json(&v)
}

pub fn heartbeat(root: &Path, agent: &str, claim: &str) -> Result<(), Failure> {
    Ok(agent_sdk::Agent::open(root, agent)?.heartbeat(claim)?)
}

pub fn complete(
    root: &Path,
    ack: Ack,
    agent: &str,
    claim: &str,
    result: Option<&str>,
) -> Result<(), Failure> {
    let result = match result {
        Some(f) => json_or_text(read_input(f)?),
        None => Value::Null,
    };
    answered(root, ack, |ack| {
        agent_sdk::Agent::open(root, agent)?.with_ack(ack).with_socket(false).complete(claim, result)
    })?;
    Ok(())
}

pub fn fail(
    root: &Path,
    ack: Ack,
    agent: &str,
    claim: &str,
    error: &str,
    retryable: bool,
) -> Result<(), Failure> {
    answered(root, ack, |ack| {
        agent_sdk::Agent::open(root, agent)?.with_ack(ack).with_socket(false).fail(claim, error, retryable)
    })?;
    Ok(())
}

pub fn release(root: &Path, ack: Ack, agent: &str, claim: &str) -> Result<(), Failure> {
    answered(root, ack, |ack| {
        agent_sdk::Agent::open(root, agent)?.with_ack(ack).with_socket(false).release(claim)
    })?;
    Ok(())
}

pub fn send(
    root: &Path,
    ack: Ack,
    from: &str,
    to: &str,
    subject: Option<&str>,
    file: &str,
) -> Result<(), Failure> {
    protocol::names::Recipient::parse(to).map_err(|e| Failure::new(exit::INVALID, e))?;
    let body = json_or_text(read_input(file)?);
    answered(root, ack, |ack| {
        agent_sdk::Agent::open(root, from)?.with_ack(ack).with_socket(false).send(to, subject, body)
    })?;
    Ok(())
}

pub fn add(fs: Arc<dyn Fs>, layout: &Layout, name: &str, capabilities: &[String]) -> Result<(), Failure> {
    protocol::names::validate_agent(name).map_err(|e| Failure::new(exit::INVALID, e))?;
    if !layout.is_initialised(fs.as_ref()) {
        return Err(not_initialised(layout.root()));
    }
    let agent = agent_sdk::Agent::register_with(fs, layout.root(), name)?;
    if !capabilities.is_empty() {
        agent.set_capabilities(capabilities)?;
    }
    emit(&format!("{}\n", layout.mailbox(name).root.display()))
}

pub fn agent_list(fs: &dyn Fs, layout: &Layout, json: bool) -> Result<(), Failure> {
    if !layout.is_initialised(fs) {
        return Err(not_initialised(layout.root()));
    }
    let cfg = Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let now = runtime_layout::now();
    let list = agents::list(fs, layout, &cfg, now)?;
    if json { print_json(&to_json(&list)?) } else { emit(&agents::render(&list, now)) }
}

//! `mailroom mail read --agent A`: an agent's mail and notices, through the SDK's `read_mail`.

use super::exit::{self, Failure, not_initialised};
use super::io::{emit, print_json, to_json};
use runtime_layout::{Fs, Layout};
use serde_json::{Value, json};

/// `mailroom mail read --agent A`: takes the agent's mail and notices (they move to its `cur/`,
/// so each is read once), oldest first.
pub fn read(fs: &dyn Fs, layout: &Layout, agent: &str, json: bool) -> Result<(), Failure> {
    protocol::names::validate_agent(agent).map_err(|e| Failure::new(exit::INVALID, e))?;
    if !layout.is_initialised(fs) {
        return Err(not_initialised(layout.root()));
    }
    if !layout.mailbox(agent).exists(fs) {
        return Err(Failure::new(
            exit::INVALID,
            format!("no agent `{agent}` (no mailbox; `mailroom agent add {agent}`)"),
        ));
    }
    let items = agent_sdk::Agent::open(layout.root(), agent)?.read_mail()?;
    let values: Vec<Value> = items
        .iter()
        .map(|i| match i {
            agent_sdk::Inbound::Mail(m) => to_json(m),
            agent_sdk::Inbound::Notice(n) => to_json(n),
            agent_sdk::Inbound::Other { name, value } => {
                Ok(json!({"kind": "other", "name": name, "value": value}))
            }
        })
        .collect::<Result<_, _>>()?;
    if json {
        return print_json(&Value::Array(values));
    }
    let mut text = String::new();
    for v in &values {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let line = match v["kind"].as_str() {
            Some("mail") => {
                let body = match &v["body"] {
                    Value::String(b) => b.clone(),
                    b => b.to_string(),
                };
                format!("{}  mail from {}  {}: {body}", s("sent_at"), s("from"), s("subject"))
            }
            Some("notice") => {
                format!("{}  notice {}  {}  {}", s("timestamp"), s("notice"), s("task_id"), s("reason"))
            }
            _ => format!("other {}: {}", s("name"), v["value"]),
        };
        text.push_str(&line);
        text.push('\n');
    }
    emit(&text)
}

//! The broker's local socket, `broker/broker.sock`: the messages of `broker/inbox/new/`, for a
//! client on the same machine that would rather not write a file per message.
//!
//! A message sent here is handled exactly as the same message read from the inbox under the same
//! name: the same validation, the same handlers, the same journal. The answer comes back on the
//! connection once the broker's journal holds what it did (the acknowledgement a file's client
//! gets by watching its file leave `inbox/new/`). The inbox stays the protocol every client can
//! speak; the socket saves a client (and the broker) a file's creation, its moves and its
//! removal.
//!
//! The wire, one request and one answer per line, in order on a connection:
//!
//! ```text
//! → msg-20261201T013000123456.P42Q7R0a1b2c3d.box.json {"kind":"submit","task":{...}}
//! ← {"verdict":"accepted","seq":1234}
//! → msg-20261201T013000124001.P42Q8R9f8e7d6c.box.json {"kind":"cancel","task_id":"NOPE"}
//! ← {"verdict":"refused","field":"task_id","rule":"...","reason":"..."}
//! ```
//!
//! A request is the message's name (the name its file would have: [`validate_message_name`]), one
//! space, and the message's JSON on one line. The name is how the broker knows a message it has
//! taken already: a client that lost its connection before the answer may send the same message
//! again, over the socket or as a file of that name in `inbox/new/`, and it is taken once.
//!
//! One request is not a message: an agent waiting for work asks the broker for the next task
//! file it may claim ([`Await`]), instead of every waiting agent's watch waking at each file that
//! lands in a shared pool and all of them racing for it. With `"claim":true` the broker claims
//! the file for the agent: the same rename an agent makes (from the queue's `new/` into the
//! agent's `cur/`), made by the broker, which journals the claim as it journals one it observes;
//! the answer names the claim. Without it the broker only names the file, and the claim is still
//! the agent's rename, which it may lose to an agent claiming by listing:
//!
//! ```text
//! → await {"agent":"Agent-3","pools":["bench"],"wait_ms":500,"claim":true}
//! ← {"verdict":"claimed","maildir":"queues/bench","name":"1-20261201T013000123456-000000000042-T-9.json"}
//! → await {"agent":"Agent-3","pools":["bench"],"wait_ms":500}
//! ← {"verdict":"offered","maildir":"queues/bench","name":"1-20261201T013000123456-000000000043-T-10.json"}
//! → await {"agent":"Agent-3","pools":["bench"],"wait_ms":500,"claim":true}
//! ← {"verdict":"nothing"}
//! ```
//!
//! An agent that has just finished a claim may put its report in the await that asks for the
//! next one (`after`: the message's name and the message, a `complete`, `fail` or `release` of
//! its own). The broker handles the report exactly as the same message sent alone, and only once
//! the report is journaled does the await begin: its answer (`claimed`, `offered` or `nothing`)
//! says that the report was accepted, so one exchange does what a report and an await did in two.
//! A report refused is the answer itself (`refused`, with its field and rule), and nothing is
//! awaited:
//!
//! ```text
//! → await {"agent":"Agent-3","pools":["bench"],"wait_ms":500,"claim":true,"after":{"name":"msg-20261201T013000125002.P42Q9R1a2b3c4d.box.json","message":{"kind":"complete","agent":"Agent-3","claim":"1-20261201T013000123456-000000000042-T-9.json","result":{}}}}
//! ← {"verdict":"claimed","maildir":"queues/bench","name":"1-20261201T013000123456-000000000043-T-10.json"}
//! ```
//!
//! A broker older than `after` refuses the whole request (field `await`: a field it does not
//! know), having done nothing; the agent then sends the report alone.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

/// The socket's path beneath `agent_comms/`, as the journal names it for messages taken there.
pub const SOCKET: &str = "broker/broker.sock";

/// The broker's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Answer {
    /// Journaled durably; `seq` is the journal sequence of the last record it caused.
    Accepted { seq: u64 },
    /// Refused: nothing changed. `reason` says `field` and `rule` in one sentence.
    Refused { field: String, rule: String, reason: String },
    /// To an [`Await`]: the task file `name` waits in `maildir`'s `new/` (`maildir` relative to
    /// `agent_comms/`, e.g. `queues/bench`); no other waiting agent is named it for a moment.
    Offered { maildir: String, name: String },
    /// To an [`Await`] with `claim`: the broker moved the task file `name` from `maildir`'s
    /// `new/` into the agent's `cur/`; the agent holds the claim `name`.
    Claimed { maildir: String, name: String },
    /// To an [`Await`]: no task file for the agent came within its wait.
    Nothing,
}

/// The word that starts an [`Await`] request line (a message's name never is this).
pub const AWAIT: &str = "await";

/// Longest wait an [`Await`] may ask for, in milliseconds.
pub const MAX_AWAIT_MS: u64 = 10_000;

/// Most pools an [`Await`] may name (none names every pool).
pub const MAX_AWAIT_POOLS: usize = 64;

/// An agent's request for the next task file it may claim: from its own mailbox and from
/// `pools` (every pool when empty), in dispatch order, within `wait_ms`. Answered
/// [`Answer::Claimed`] (with `claim`) or [`Answer::Offered`] (without), or [`Answer::Nothing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Await {
    pub agent: String,
    #[serde(default)]
    pub pools: Vec<String>,
    pub wait_ms: u64,
    /// The broker claims the file for the agent (renames it into the agent's `cur/`), rather
    /// than naming it for the agent to rename.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claim: bool,
    /// A report of the agent's, handled first: the await begins once it is journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<After>,
}

/// The report an [`Await`] carries (`after`): a message, under the name its file would have.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    pub name: String,
    /// The message's JSON as it came (parsed by [`After::report`]).
    pub message: Box<serde_json::value::RawValue>,
}

impl PartialEq for After {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.message.get() == other.message.get()
    }
}

impl Eq for After {}

impl After {
    /// The report `msg` of `agent`, under the message name `name`.
    pub fn new(name: &str, msg: &crate::Message) -> Self {
        let json = serde_json::to_string(&msg.to_value()).expect("a JSON value always serialises");
        let message = serde_json::value::RawValue::from_string(json).expect("serialised JSON is JSON");
        Self { name: name.to_string(), message }
    }

    /// The message, checked: its name is a message file's, and it is a report (`complete`,
    /// `fail` or `release`) by `agent`. The report's own fields are the broker's to judge, as
    /// for the same message sent alone.
    pub fn report(&self, agent: &str) -> Result<crate::Message, ValidationError> {
        validate_message_name(&self.name)?;
        let msg = crate::Message::parse(self.message.get().as_bytes())?;
        match &msg {
            crate::Message::Complete { agent: a, .. }
            | crate::Message::Fail { agent: a, .. }
            | crate::Message::Release { agent: a, .. }
                if a == agent =>
            {
                Ok(msg)
            }
            _ => Err(ValidationError::new(
                "after",
                "must be a report of the awaiting agent's (complete, fail or release, by the same agent)",
            )),
        }
    }
}

impl Await {
    /// Its request line: `await`, a space, its JSON, the newline.
    pub fn line(&self) -> Vec<u8> {
        let mut line = format!("{AWAIT} ").into_bytes();
        serde_json::to_writer(&mut line, self).expect("an await always serialises");
        line.push(b'\n');
        line
    }

    /// Checks the agent's and the pools' names and the wait's bound.
    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::names::validate_agent(&self.agent).map_err(|e| ValidationError::new("agent", e.rule))?;
        if self.pools.len() > MAX_AWAIT_POOLS {
            return Err(ValidationError::new("pools", format!("must name at most {MAX_AWAIT_POOLS} pools")));
        }
        for (i, p) in self.pools.iter().enumerate() {
            crate::names::validate_pool(p).map_err(|e| ValidationError::new("pools", e.rule))?;
            if self.pools[..i].contains(p) {
                return Err(ValidationError::new("pools", format!("must not name `{p}` twice")));
            }
        }
        if self.wait_ms > MAX_AWAIT_MS {
            return Err(ValidationError::new("wait_ms", format!("must be at most {MAX_AWAIT_MS}")));
        }
        Ok(())
    }
}

/// One request line (without its newline): a message, or an [`Await`].
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Message { name: &'a str, json: &'a [u8] },
    Await(Await),
}

/// Reads one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, ValidationError> {
    if let Some(json) = line.strip_prefix(AWAIT.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
        let req: Await = serde_json::from_slice(json)
            .map_err(|e| ValidationError::new("await", format!("must be an await request's JSON: {e}")))?;
        req.validate()?;
        return Ok(Request::Await(req));
    }
    let (name, json) = split_request(line)?;
    Ok(Request::Message { name, json })
}

/// A message name a client may use on the socket: the shape of the names clients give their
/// files in `inbox/new/` (`msg-…​.json`, ASCII letters, digits, `.`, `_` and `-`, at most 255
/// bytes), so that the same message may also be delivered as that file.
pub fn validate_message_name(name: &str) -> Result<(), ValidationError> {
    let shaped = name.len() <= 255
        && name.starts_with("msg-")
        && name.ends_with(".json")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if shaped {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            "must be a message file's name: `msg-`, then ASCII letters, digits, `.`, `_` or `-`, \
             ending in `.json`, at most 255 bytes",
        ))
    }
}

/// One request line: `name`, a space, the message's JSON (which must hold no newline: compact
/// JSON never does), and the newline.
pub fn request_line(name: &str, message_json: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(name.len() + message_json.len() + 2);
    line.extend_from_slice(name.as_bytes());
    line.push(b' ');
    line.extend_from_slice(message_json);
    line.push(b'\n');
    line
}

/// A request line (without its newline) split into the message's name and JSON.
pub fn split_request(line: &[u8]) -> Result<(&str, &[u8]), ValidationError> {
    let at = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let name = std::str::from_utf8(&line[..at]).unwrap_or_default();
    validate_message_name(name)?;
    Ok((name, line.get(at + 1..).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_splits_back_into_its_name_and_message() {
        let name = "msg-20261201T013000123456.P42Q7R0a1b2c3d.box.json";
        let line = request_line(name, br#"{"kind":"cancel","task_id":"T 1"}"#);
        assert_eq!(line.last(), Some(&b'\n'));
        let (n, json) = split_request(&line[..line.len() - 1]).unwrap();
        assert_eq!((n, json), (name, &br#"{"kind":"cancel","task_id":"T 1"}"#[..]));
    }

    #[test]
    fn only_names_a_message_file_could_have_are_taken() {
        for bad in ["", "msg-.txt", "x.json", "msg-a/b.json", "msg-a b.json", "../msg-a.json", "msg-é.json"]
        {
            assert!(validate_message_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_message_name(&format!("msg-{}.json", "a".repeat(251))).is_err(), "too long");
        assert!(validate_message_name("msg-1.P1Q1R1.h-o_st.json").is_ok());
        let err = split_request(b"{\"kind\":\"submit\"}").unwrap_err();
        assert_eq!(err.field, "name");
    }

    #[test]
    fn an_await_line_reads_back_and_its_names_are_checked() {
        let req = Await {
            agent: "Agent-3".into(),
            pools: vec!["bench".into()],
            wait_ms: 500,
            claim: false,
            after: None,
        };
        let line = req.line();
        assert!(line.starts_with(b"await {"));
        assert!(!String::from_utf8_lossy(&line).contains("claim"), "left out when false");
        assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), Request::Await(req));
        let claiming = Await { agent: "A".into(), pools: vec![], wait_ms: 9, claim: true, after: None };
        let line = claiming.line();
        assert!(String::from_utf8_lossy(&line).contains(r#""claim":true"#));
        assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), Request::Await(claiming));
        let no_pools = parse_request(br#"await {"agent":"A","wait_ms":0}"#).unwrap();
        assert_eq!(
            no_pools,
            Request::Await(Await { agent: "A".into(), pools: vec![], wait_ms: 0, claim: false, after: None })
        );
        for (bad, field) in [
            (&br#"await {"agent":"../x","wait_ms":1}"#[..], "agent"),
            (br#"await {"agent":"A","pools":["a/b"],"wait_ms":1}"#, "pools"),
            (br#"await {"agent":"A","wait_ms":10001}"#, "wait_ms"),
            (br#"await {"agent":"A","pools":["p","p"],"wait_ms":1}"#, "pools"),
            (br#"await {"agent":"A"}"#, "await"),
            (br#"await {"agent":"A","wait_ms":1,"extra":1}"#, "await"),
        ] {
            assert_eq!(parse_request(bad).unwrap_err().field, field, "{}", String::from_utf8_lossy(bad));
        }
        let many = Await {
            agent: "A".into(),
            pools: (0..65).map(|i| format!("p{i}")).collect(),
            wait_ms: 1,
            claim: false,
            after: None,
        };
        assert_eq!(parse_request(&many.line()[..many.line().len() - 1]).unwrap_err().field, "pools");
        // A message is still a message; `await` without its space is not a name.
        let name = "msg-20261201T013000123456.P42Q7R0a1b2c3d.box.json";
        let line = request_line(name, b"{}");
        assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), Request::Message { name, json: b"{}" });
        assert_eq!(parse_request(b"await").unwrap_err().field, "name");
    }

    #[test]
    fn an_await_carries_a_report_of_its_agent_and_nothing_else() {
        let claim = "1-20261201T013000123456-000000000042-T-9.json";
        let name = "msg-20261201T013000125002.P42Q9R1a2b3c4d.box.json";
        let report = crate::Message::Complete {
            agent: "A".into(),
            claim: claim.into(),
            result: serde_json::json!({"n": 1.5}),
        };
        let req = Await {
            agent: "A".into(),
            pools: vec!["bench".into()],
            wait_ms: 500,
            claim: true,
            after: Some(After::new(name, &report)),
        };
        let line = req.line();
        assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
        let Request::Await(back) = parse_request(&line[..line.len() - 1]).unwrap() else {
            panic!("an await")
        };
        assert_eq!(back, req);
        assert_eq!(back.after.as_ref().unwrap().report("A").unwrap(), report);
        // Not its own report, not a report at all, not a message's name, not a message.
        let others = After::new(name, &crate::Message::Release { agent: "B".into(), claim: claim.into() });
        assert_eq!(others.report("A").unwrap_err().field, "after");
        let cancel = After::new(name, &crate::Message::Cancel { task_id: "T".into() });
        assert_eq!(cancel.report("A").unwrap_err().field, "after");
        assert_eq!(After::new("x.json", &report).report("A").unwrap_err().field, "name");
        let line = format!(
            r#"await {{"agent":"A","wait_ms":1,"after":{{"name":"{name}","message":{{"kind":"complete"}}}}}}"#
        );
        let Request::Await(bad) = parse_request(line.as_bytes()).unwrap() else { panic!("an await") };
        assert_ne!(bad.after.unwrap().report("A").unwrap_err().field, "after", "refused for its own fields");
        let unknown =
            format!(r#"await {{"agent":"A","wait_ms":1,"after":{{"name":"{name}","message":{{}},"x":1}}}}"#);
        assert_eq!(parse_request(unknown.as_bytes()).unwrap_err().field, "await");
    }

    #[test]
    fn answers_are_tagged_by_their_verdict() {
        let o = Answer::Offered { maildir: "queues/bench".into(), name: "1-x.json".into() };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"verdict":"offered","maildir":"queues/bench","name":"1-x.json"}"#
        );
        assert_eq!(serde_json::to_string(&Answer::Nothing).unwrap(), r#"{"verdict":"nothing"}"#);
        let c = Answer::Claimed { maildir: "queues/bench".into(), name: "1-x.json".into() };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"verdict":"claimed","maildir":"queues/bench","name":"1-x.json"}"#
        );
        let a: Answer = serde_json::from_str(r#"{"verdict":"accepted","seq":7,"task_id":"T"}"#).unwrap();
        assert_eq!(a, Answer::Accepted { seq: 7 });
        let r = Answer::Refused { field: "f".into(), rule: "r".into(), reason: "f: r".into() };
        let back: Answer = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

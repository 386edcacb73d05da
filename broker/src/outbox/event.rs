//! Which committed records a sink wants, and what it is given for each: an [`Event`] built from
//! the record alone (never from the broker's live state), so that a record delivered again after
//! a restart is delivered with the very same body.
//!
//! The body a webhook POSTs (a hook gets the task itself on stdin):
//!
//! ```json
//! {"delivery":42,"event":"COMPLETED","op":"complete","ts":"…","task_id":"T-1",
//!  "status":"COMPLETED","pool":"build","actor":"Agent-1","task":{…the canonical task…}}
//! ```
//!
//! `reason` and `path` are added for records that have them (a `reject` says why and where the
//! input went); `task`, `status` and `pool` are absent for records about no task.

use crate::config::{Config, Events};
use crate::journal::Record;
use protocol::Status;
use serde_json::{Map, Value, json};

/// One record a sink wants.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub seq: u64,
    /// The status the record set, if the sink asked for it; else the operation.
    pub name: String,
    pub task_id: Option<String>,
    pub status: Option<Status>,
    pub pool: Option<String>,
    /// The canonical task after the record, for records about a task.
    pub task: Option<Value>,
    /// The JSON body, serialised once.
    pub body: Vec<u8>,
}

/// The event `rec` is for a sink that wants `events`, or `None`.
///
/// A status event matches every record that sets a task's status (all task records but
/// `dispatch`, which only moves the file); an operation matches its records. `pools`, when set,
/// keep only tasks whose type routes to one of them (see [`Config::pool_of`]).
pub(crate) fn matching(rec: &Record, events: &Events, cfg: &Config) -> Option<Event> {
    let op = rec.entry.op();
    let task = rec.entry.change().map(|(t, _)| t);
    let status = task.filter(|_| op != "dispatch").map(|t| t.status);
    let by_status = status.filter(|s| events.statuses.contains(s));
    if by_status.is_none() && !events.ops.contains(op) {
        return None;
    }
    let pool = task.and_then(|t| cfg.pool_of(t));
    if !events.pools.is_empty() && !pool.as_ref().is_some_and(|p| events.pools.contains(p)) {
        return None;
    }
    let name = by_status.map_or_else(|| op.to_string(), |s| s.as_str().to_string());
    let task_id = rec.entry.task_id().map(str::to_string);
    let task_value = task.map(protocol::Task::to_value);
    let mut body = Map::new();
    body.insert("delivery".into(), json!(rec.seq));
    body.insert("event".into(), json!(name));
    body.insert("op".into(), json!(op));
    body.insert("ts".into(), json!(rec.ts));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    put("task_id", task_id.clone().map(Value::String));
    put("status", status.map(|s| json!(s)));
    put("pool", pool.clone().map(Value::String));
    put("actor", rec.entry.actor().map(|a| json!(a)));
    put("reason", rec.entry.reason().map(|r| json!(r)));
    put("path", rec.entry.path().map(|p| json!(p)));
    put("task", task_value.clone());
    let body = serde_json::to_vec(&Value::Object(body)).expect("a JSON value serialises");
    Some(Event { seq: rec.seq, name, task_id, status, pool, task: task_value, body })
}

impl Event {
    /// What a hook reads on stdin: the task, or the whole event for a record about no task.
    pub fn stdin(&self) -> Vec<u8> {
        match &self.task {
            Some(t) => serde_json::to_vec(t).expect("a JSON value serialises"),
            None => self.body.clone(),
        }
    }

    /// `arg` with `{task_id}`, `{status}`, `{pool}`, `{event}` and `{delivery}` replaced (each by
    /// the empty string when the record has none), in one pass: a value that itself contains
    /// `{status}` is never expanded again. Any other `{...}` is kept as written.
    pub fn expand(&self, arg: &str) -> String {
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let close = after.find('}').map(|c| (&after[1..c], c));
            let value = close.and_then(|(key, _)| match key {
                "task_id" => Some(self.task_id.clone().unwrap_or_default()),
                "status" => Some(self.status.map(|s| s.as_str().to_string()).unwrap_or_default()),
                "pool" => Some(self.pool.clone().unwrap_or_default()),
                "event" => Some(self.name.clone()),
                "delivery" => Some(self.seq.to_string()),
                _ => None,
            });
            match (value, close) {
                (Some(v), Some((_, c))) => {
                    out.push_str(&v);
                    rest = &after[c + 1..];
                }
                _ => {
                    out.push('{');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, Place, Report};
    use protocol::{Task, Timestamp};

    fn record(seq: u64, entry: Entry) -> Record {
        Record { seq, ts: Timestamp::from_micros(0), entry }
    }

    fn completed(id: &str, task_type: &str) -> Record {
        let mut task = Task::new(id);
        task.task_type = Some(task_type.into());
        task.status = Status::Completed;
        record(
            9,
            Entry::Complete(Report {
                task_id: id.into(),
                task,
                place: Place::Done,
                msg: "m".into(),
                agent: "Agent-1".into(),
                claim: "mailboxes/Agent-1/cur/c.json".into(),
            }),
        )
    }

    fn events(toml: &str) -> (Events, Config) {
        let cfg =
            Config::parse(&format!("[routes]\nreview = \"agent:Agent-5\"\n[[hooks]]\nrun = [\"x\"]\n{toml}"))
                .unwrap();
        (cfg.hooks[0].events.clone(), cfg)
    }

    #[test]
    fn statuses_ops_and_pools_select_records() {
        let (ev, cfg) = events("on = [\"COMPLETED\"]\npools = [\"build\"]");
        let e = matching(&completed("T 1", "build"), &ev, &cfg).expect("a COMPLETED build task");
        assert_eq!((e.name.as_str(), e.pool.as_deref(), e.seq), ("COMPLETED", Some("build"), 9));
        let body: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(body["delivery"], 9);
        assert_eq!(body["task"]["task_id"], "T 1");
        assert_eq!(body["actor"], "Agent-1");
        assert!(matching(&completed("T", "deploy"), &ev, &cfg).is_none(), "another pool");
        assert!(matching(&completed("T", "review"), &ev, &cfg).is_none(), "routed to an agent: no pool");
        let (ev, cfg) = events("on = [\"FAILED\", \"complete\"]");
        assert_eq!(matching(&completed("T", "x"), &ev, &cfg).unwrap().name, "complete");
        let (ev, cfg) = events("on = [\"PENDING\"]");
        let mut task = Task::new("D");
        task.status = Status::Pending;
        let dispatch = record(3, Entry::Dispatch { task_id: "D".into(), task, place: Place::Backlog });
        assert!(matching(&dispatch, &ev, &cfg).is_none(), "a dispatch sets no status");
    }

    #[test]
    fn placeholders_are_expanded_once_and_never_by_a_shell() {
        let (ev, cfg) = events("on = [\"COMPLETED\"]");
        let e = matching(&completed("{status}; rm -rf /", "build"), &ev, &cfg).unwrap();
        assert_eq!(e.expand("{task_id}"), "{status}; rm -rf /");
        assert_eq!(
            e.expand("id={task_id} s={status} p={pool} {nope} {"),
            "id={status}; rm -rf / s=COMPLETED p=build {nope} {"
        );
        assert_eq!(e.expand("{delivery}:{event}"), "9:COMPLETED");
        let stdin: Value = serde_json::from_slice(&e.stdin()).unwrap();
        assert_eq!(stdin["status"], "COMPLETED");
    }
}

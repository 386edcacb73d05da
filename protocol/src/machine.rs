//! The task state machine: one pure function from (task, event, now) to the transition it causes.
//!
//! ```text
//!  submit ──► PENDING ──claim──► IN_PROGRESS ──complete──► COMPLETED
//!               ▲  │                 │  │ │
//!               │  │ dep failed      │  │ └─fail (attempts left, after backoff)──► PENDING
//!               │  ▼                 │  └──fail (no attempts left) / expire (none left)──► FAILED
//!               │ BLOCKED            └─ release / lease expired ──► PENDING
//!   retry ──────┘ (from FAILED, BLOCKED, CANCELLED)
//!   unblock: BLOCKED ──► PENDING (what blocked it is fixed: a dependency redriven or found)
//!   cancel: PENDING or IN_PROGRESS ──► CANCELLED
//! ```
//!
//! Attempts are counted when a task is claimed. A release gives the attempt back; a failure or
//! an expired lease keeps it, so a task that keeps crashing its agents is dead-lettered.

use crate::task::{Status, Task};
use crate::time::Timestamp;
use serde_json::Value;

/// Something that happens to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A producer submitted the task.
    Submit,
    /// The broker made the task claimable (placed its file in a queue or a mailbox).
    Dispatch,
    /// An agent renamed the task's file into its `cur/`.
    Claim { agent: String },
    /// The holder finished it.
    Complete { result: Value },
    /// The holder failed it; `retryable: false` dead-letters it at once.
    Fail { error: String, retryable: bool },
    /// The holder gave it back untouched.
    Release,
    /// The holder's lease ran out.
    LeaseExpired,
    /// An operator or producer cancelled it.
    Cancel,
    /// An operator redrives a FAILED, BLOCKED or CANCELLED task.
    Retry,
    /// A task this one depends on ended FAILED or CANCELLED, is BLOCKED itself, or does not
    /// exist after the broker waited for it; `reason` says which.
    DependencyFailed { dependency: String, reason: String },
    /// The task waits for dependencies; it records the ones that do not exist (`reason`).
    Wait { reason: String },
    /// What blocked the task on a dependency is fixed (the dependency was redriven, or turned up).
    Unblock,
    /// A queued task rose a priority level for dispatch order (priority aging): it stays PENDING.
    Age,
}

impl Event {
    /// The history `action` recorded for this event.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Dispatch => "dispatch",
            Self::Claim { .. } => "claim",
            Self::Complete { .. } => "complete",
            Self::Fail { .. } => "fail",
            Self::Release => "release",
            Self::LeaseExpired => "lease_expired",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
            Self::DependencyFailed { .. } => "dependency_failed",
            Self::Wait { .. } => "waiting",
            Self::Unblock => "unblock",
            Self::Age => "age",
        }
    }
}

/// Exponential backoff after a failure: `base * 2^(attempts-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base_secs: 5, max_secs: 3600 }
    }
}

impl Backoff {
    pub fn delay(&self, attempts: u32) -> u64 {
        let exp = attempts.saturating_sub(1).min(32);
        self.base_secs.saturating_mul(1u64 << exp).min(self.max_secs)
    }
}

/// What an event does to a task. Apply it with [`Transition::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: Option<Status>,
    pub to: Status,
    pub attempts: u32,
    /// When set, the task may not be dispatched before this time (failure backoff).
    pub not_before: Option<Timestamp>,
    pub error: Option<String>,
    pub result: Option<Value>,
    pub assigned_to: Option<Option<String>>,
}

/// An event that the state machine does not allow in the task's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a task that is {status}")]
pub struct TransitionError {
    pub action: &'static str,
    pub status: Status,
}

/// The one transition function. `task` is `None` for a task that does not exist yet.
pub fn transition(
    task: Option<&Task>,
    event: &Event,
    now: Timestamp,
    backoff: Backoff,
) -> Result<Transition, TransitionError> {
    use Status::*;
    let Some(task) = task else {
        return match event {
            Event::Submit => Ok(Transition::to(None, Pending, 0)),
            // A task that does not exist has no status; report it as PENDING-less.
            _ => Err(TransitionError { action: event.action(), status: Pending }),
        };
    };
    let from = task.status;
    let deny = || Err(TransitionError { action: event.action(), status: from });
    let mut t = Transition::to(Some(from), from, task.attempts);
    match (event, from) {
        (Event::Submit, _) => return deny(),
        (Event::Dispatch | Event::Age, Pending) => {}
        (Event::Claim { agent }, Pending) => {
            t.to = InProgress;
            t.attempts = task.attempts.saturating_add(1);
            t.assigned_to = Some(Some(agent.clone()));
        }
        (Event::Complete { result }, InProgress) => {
            t.to = Completed;
            t.result = Some(result.clone());
        }
        (Event::Fail { error, retryable }, InProgress) => {
            t.error = Some(error.clone());
            if *retryable && task.attempts < task.max_attempts {
                t.to = Pending;
                t.not_before = Some(now.plus_secs(backoff.delay(task.attempts)));
            } else {
                t.to = Failed;
            }
        }
        (Event::Release, InProgress) => {
            t.to = Pending;
            t.attempts = task.attempts.saturating_sub(1);
        }
        (Event::LeaseExpired, InProgress) => {
            if task.attempts < task.max_attempts {
                t.to = Pending;
            } else {
                t.to = Failed;
                t.error = Some(format!("lease expired on each of {} attempts", task.attempts));
            }
        }
        (Event::Cancel, Pending | InProgress) => t.to = Cancelled,
        (Event::Retry, Failed | Blocked | Cancelled) => {
            t.to = Pending;
            t.attempts = 0;
        }
        (Event::DependencyFailed { reason, .. }, Pending) => {
            t.to = Blocked;
            t.error = Some(reason.clone());
        }
        (Event::Wait { .. }, Pending) => {}
        (Event::Unblock, Blocked) => t.to = Pending,
        _ => return deny(),
    }
    Ok(t)
}

impl Transition {
    fn to(from: Option<Status>, to: Status, attempts: u32) -> Self {
        Self { from, to, attempts, not_before: None, error: None, result: None, assigned_to: None }
    }

    /// Writes the transition into the task and records it in the task's history.
    pub fn apply(&self, task: &mut Task, event: &Event, actor: &str, now: Timestamp, details: Option<Value>) {
        task.status = self.to;
        task.attempts = self.attempts;
        if self.not_before.is_some() {
            task.not_before = self.not_before;
        }
        if let Some(e) = &self.error {
            task.error = Some(e.clone());
        }
        if let Some(r) = &self.result {
            task.result = r.clone();
        }
        if let Some(a) = &self.assigned_to {
            task.assigned_to = a.clone();
        }
        if task.created_at.is_none() {
            task.created_at = Some(now);
        }
        task.updated_at = Some(now);
        task.history.push(crate::task::HistoryEntry {
            timestamp: now,
            actor: actor.to_string(),
            action: event.action().to_string(),
            from: self.from,
            to: Some(self.to),
            details,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_micros(1_750_000_000_000_000)
    }

    fn step(task: &mut Task, ev: Event) -> Result<(), TransitionError> {
        let t = transition(Some(task), &ev, now(), Backoff::default())?;
        t.apply(task, &ev, "test", now(), None);
        Ok(())
    }

    #[test]
    fn happy_path() {
        let mut t = Task::new("a");
        step(&mut t, Event::Dispatch).unwrap();
        assert_eq!(t.status, Status::Pending);
        step(&mut t, Event::Claim { agent: "Agent-1".into() }).unwrap();
        assert_eq!((t.status, t.attempts), (Status::InProgress, 1));
        assert_eq!(t.assigned_to.as_deref(), Some("Agent-1"));
        step(&mut t, Event::Complete { result: json!({"ok": true}) }).unwrap();
        assert_eq!(t.status, Status::Completed);
        assert_eq!(t.history.len(), 3);
        assert!(step(&mut t, Event::Complete { result: json!(1) }).is_err(), "no double completion");
    }

    #[test]
    fn failure_backs_off_then_dead_letters() {
        let mut t = Task::new("a");
        t.max_attempts = 2;
        step(&mut t, Event::Claim { agent: "A".into() }).unwrap();
        step(&mut t, Event::Fail { error: "boom".into(), retryable: true }).unwrap();
        assert_eq!(t.status, Status::Pending);
        assert_eq!(t.not_before, Some(now().plus_secs(5)));
        step(&mut t, Event::Claim { agent: "A".into() }).unwrap();
        step(&mut t, Event::Fail { error: "boom".into(), retryable: true }).unwrap();
        assert_eq!(t.status, Status::Failed);
        step(&mut t, Event::Retry).unwrap();
        assert_eq!((t.status, t.attempts), (Status::Pending, 0));
    }

    #[test]
    fn non_retryable_failure_is_final_and_release_refunds_the_attempt() {
        let mut t = Task::new("a");
        step(&mut t, Event::Claim { agent: "A".into() }).unwrap();
        step(&mut t, Event::Release).unwrap();
        assert_eq!((t.status, t.attempts), (Status::Pending, 0));
        step(&mut t, Event::Claim { agent: "A".into() }).unwrap();
        step(&mut t, Event::Fail { error: "bad input".into(), retryable: false }).unwrap();
        assert_eq!(t.status, Status::Failed);
        assert_eq!(t.error.as_deref(), Some("bad input"));
    }

    #[test]
    fn lease_expiry_counts_as_an_attempt() {
        let mut t = Task::new("a");
        t.max_attempts = 1;
        step(&mut t, Event::Claim { agent: "A".into() }).unwrap();
        step(&mut t, Event::LeaseExpired).unwrap();
        assert_eq!(t.status, Status::Failed);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff { base_secs: 2, max_secs: 10 };
        assert_eq!([b.delay(1), b.delay(2), b.delay(3), b.delay(4), b.delay(99)], [2, 4, 8, 10, 10]);
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Submit),
            Just(Event::Dispatch),
            Just(Event::Claim { agent: "A".into() }),
            Just(Event::Complete { result: Value::Null }),
            any::<bool>().prop_map(|r| Event::Fail { error: "e".into(), retryable: r }),
            Just(Event::Release),
            Just(Event::LeaseExpired),
            Just(Event::Cancel),
            Just(Event::Retry),
            Just(Event::DependencyFailed { dependency: "d".into(), reason: "r".into() }),
            Just(Event::Wait { reason: "w".into() }),
            Just(Event::Unblock),
            Just(Event::Age),
        ]
    }

    proptest! {
        /// Whatever happens, the machine only takes edges from the documented table, attempts never
        /// exceed max_attempts while the task can still run, and a completed task stays completed.
        #[test]
        fn only_documented_edges(events in proptest::collection::vec(arb_event(), 0..60), max in 1u32..5) {
            use Status::*;
            let mut task = Task::new("p");
            task.max_attempts = max;
            let mut completed = false;
            for ev in events {
                let before = task.status;
                match transition(Some(&task), &ev, now(), Backoff::default()) {
                    Ok(tr) => {
                        let allowed: &[Status] = match (&ev, before) {
                            (Event::Dispatch | Event::Age, Pending) => &[Pending],
                            (Event::Claim{..}, Pending) => &[InProgress],
                            (Event::Complete{..}, InProgress) => &[Completed],
                            (Event::Fail{..} | Event::LeaseExpired, InProgress) => &[Pending, Failed],
                            (Event::Release, InProgress) => &[Pending],
                            (Event::Cancel, Pending | InProgress) => &[Cancelled],
                            (Event::Retry, Failed | Blocked | Cancelled) => &[Pending],
                            (Event::DependencyFailed{..}, Pending) => &[Blocked],
                            (Event::Wait{..}, Pending) => &[Pending],
                            (Event::Unblock, Blocked) => &[Pending],
                            _ => &[],
                        };
                        prop_assert!(allowed.contains(&tr.to), "{:?} from {:?} gave {:?}", ev, before, tr.to);
                        tr.apply(&mut task, &ev, "p", now(), None);
                    }
                    Err(e) => prop_assert_eq!(e.status, before),
                }
                prop_assert!(task.attempts <= task.max_attempts);
                if completed { prop_assert_eq!(task.status, Completed); }
                completed |= task.status == Completed;
            }
        }
    }
}

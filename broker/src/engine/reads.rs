//! What the command channel's reads return, built from the state between passes: the whole
//! [`View`] (every live task with its body, the queues, the agents) for the API and the
//! dashboard, and the [`Census`] (each live task in brief, no body) for a front end that only
//! counts. A census of 20,000 queued tasks copies a few hundred kilobytes; a view copies every
//! task, which is why a reader that only needs counts asks for the census.

use super::Engine;
use super::commands::{Brief, Census, QueueView, TaskView, View};
use crate::config::Route;
use crate::journal::Place;
use std::collections::BTreeMap;

impl Engine {
    /// The pool a task waits in, was claimed from, or is routed to; `None` for a task addressed
    /// to an agent's own mailbox.
    fn pool_of(&self, task: &protocol::Task, place: &Place) -> Option<String> {
        match place {
            Place::Queued { dir, .. } | Place::Waiting { dir, .. } => {
                dir.strip_prefix("queues/").map(str::to_string)
            }
            Place::Held { from, .. } => from.strip_prefix("queues/").map(str::to_string),
            Place::Outbound { pool } | Place::Forwarded { pool } => Some(pool.clone()),
            Place::Backlog | Place::Done => {
                // A finished task that was claimed from a pool names its holder, not the pool.
                let pooled = self.state().finished(&task.task_id).is_some_and(|f| f.pooled);
                match (&task.assigned_to, self.config().route_of(task)) {
                    (Some(_), _) if !pooled => None,
                    (_, Route::Pool(p)) => Some(p),
                    (_, Route::Agent(_)) => None,
                }
            }
        }
    }

    /// Live tasks by id, then the most recent finished ones (oldest first), each with its pool.
    pub(super) fn view_tasks(&self) -> Vec<TaskView> {
        let state = self.state();
        let view = |task: &protocol::Task, place: &Place| {
            TaskView::new(task.clone(), place.clone(), self.pool_of(task, place))
        };
        let mut tasks: Vec<TaskView> = state.lives().map(|l| view(&l.task, &l.place)).collect();
        tasks.sort_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
        tasks.extend(state.recent_done().map(|t| view(t, &Place::Done)));
        tasks
    }

    /// What the broker holds now.
    pub(super) fn view(&self) -> View {
        let state = self.state();
        let tasks = self.view_tasks();
        let mut queues: BTreeMap<String, usize> = BTreeMap::new();
        for l in state.lives() {
            if let Place::Queued { dir, .. } | Place::Waiting { dir, .. } = &l.place {
                *queues.entry(dir.clone()).or_default() += 1;
            }
        }
        let agents = self.agents().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the agents cannot be listed for a snapshot");
            Vec::new()
        });
        View {
            next_seq: self.core.ledger.next_seq(),
            finished: state.finished_count(),
            tasks,
            queues: queues.into_iter().map(|(dir, queued)| QueueView { dir, queued }).collect(),
            agents,
        }
    }

    /// Every live task in brief, in no particular order.
    pub(super) fn census(&self) -> Census {
        let tasks = self
            .state()
            .lives()
            .map(|l| Brief {
                task_id: l.task.task_id.clone(),
                status: l.task.status,
                pool: self.pool_of(&l.task, &l.place),
                queued: matches!(l.place, Place::Queued { .. } | Place::Waiting { .. }),
                held: matches!(l.place, Place::Held { .. }),
                updated_at: l.task.updated_at,
            })
            .collect();
        Census { next_seq: self.core.ledger.next_seq(), tasks }
    }
}

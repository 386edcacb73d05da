//! Where a task's file is, as the journal and the state name it: [`Place`], with the paths
//! (relative to `agent_comms/`) of pools, mailboxes and claims derived in one place, so the
//! journal, the state and the operator views never spell a path differently.

use protocol::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a task's file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Place {
    /// No file: waiting for dependencies, `not_before`, a backoff, or an operator (BLOCKED).
    Backlog,
    /// Waiting in `<dir>/new/<name>`, where `dir` is `queues/<pool>` or `mailboxes/<agent>`.
    Queued { dir: String, name: String },
    /// Ready for `dir` under the dispatch name `name`, with no file yet: the maildir's ready
    /// window (`[dispatch] ready_window`) is full of tasks that sort before it. It gets its file,
    /// under this name, as soon as the window has room.
    Waiting { dir: String, name: String },
    /// Claimed: in `mailboxes/<agent>/cur/<name>` since the broker first saw it at `seen_at`.
    Held {
        agent: String,
        name: String,
        seen_at: Timestamp,
        /// The maildir it was claimed from (`queues/<pool>` or `mailboxes/<agent>`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        from: String,
    },
    /// Finished (COMPLETED, FAILED or CANCELLED): no file.
    Done,
    /// A task of a shared pool, held in the journal until the cluster link has published it to
    /// the cluster (no file: agents of this node get it, if at all, by pulling it back).
    Outbound { pool: String },
    /// Published to the cluster's work queue: whichever node pulls it runs it (no file here).
    Forwarded { pool: String },
}

/// The directory prefix of every shared pool in a [`Place`]'s `dir` or `from`.
pub const POOLS_DIR: &str = "queues/";
const POOLS: &str = POOLS_DIR;

impl Place {
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Queued { name, .. } | Self::Waiting { name, .. } | Self::Held { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The maildir a ready task (queued or waiting for its window) is ready in.
    pub fn ready_dir(&self) -> Option<&str> {
        match self {
            Self::Queued { dir, .. } | Self::Waiting { dir, .. } => Some(dir),
            _ => None,
        }
    }

    /// The file's path relative to `agent_comms/`, for operators.
    pub fn rel_path(&self) -> Option<String> {
        match self {
            Self::Queued { dir, name } => Some(format!("{dir}/new/{name}")),
            Self::Held { agent, name, .. } => Some(Self::claim_path(agent, name)),
            _ => None,
        }
    }

    /// A claim taken from a shared pool (not from the holder's own mailbox): when it is taken
    /// back or redriven, the task goes back to the pool, not to the agent that held it.
    pub fn claimed_from_pool(&self) -> bool {
        matches!(self, Self::Held { from, .. } if from.starts_with(POOLS))
    }

    /// The maildir (relative to `agent_comms/`) a pool with this name lives in.
    pub fn pool_dir(pool: &str) -> String {
        format!("{POOLS}{pool}")
    }

    /// Where the claim `name` of `agent` is (relative to `agent_comms/`).
    pub fn claim_path(agent: &str, name: &str) -> String {
        format!("{}/cur/{name}", Self::mailbox_dir(agent))
    }

    /// The maildir (relative to `agent_comms/`) of an agent.
    pub fn mailbox_dir(agent: &str) -> String {
        format!("mailboxes/{agent}")
    }

    /// The pool a ready task (queued or waiting for its window) waits in, if it waits in one.
    pub fn pool(&self) -> Option<&str> {
        self.ready_dir().and_then(|d| d.strip_prefix(POOLS))
    }
}

/// Where a consumed inbox message is kept (relative to `agent_comms/`), as the journal and the
/// state name it. A test holds it equal to `Layout`'s path.
pub fn consumed_path(msg: &str) -> String {
    format!("broker/inbox/cur/{msg}")
}

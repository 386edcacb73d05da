//! mailroom's protocol: the canonical task, the messages agents exchange with the broker, the task
//! state machine and the file-name rules. Pure data and pure functions: this crate does no I/O,
//! reads no clock and spawns nothing, so every rule here can be tested in isolation.

pub mod capability;
pub mod error;
pub mod legacy;
pub mod machine;
pub mod message;
pub mod names;
pub mod schema;
pub mod socket;
pub mod task;
pub mod time;

pub use error::ValidationError;
pub use machine::{Backoff, Event, Transition, TransitionError, transition};
pub use message::{Mail, Message, Notice, NoticeKind};
pub use task::{HistoryEntry, Priority, Status, Task};
pub use time::{TimeError, Timestamp};

//! mailroom's on-disk tree: every path and every mutation of the tree goes through this crate.
//!
//! ```text
//! <root>/agent_comms/
//!   broker/inbox/{tmp,new,cur}/       messages to the broker
//!   broker/journal/                   append-only transaction log (JSON Lines) and snapshots
//!   broker/quarantine/                rejected input, each beside <name>.error.json
//!   broker/broker.lock                who holds the broker lock (the lock is on <root>/ itself)
//!   queues/<pool>/{tmp,new}/          shared work pools
//!   mailboxes/<agent>/{tmp,new,cur}/  one maildir per agent
//!   mailboxes/<agent>/agent.json      what the agent declares (its capabilities)
//!   capabilities/<tag>.json           the capabilities a dispatch name's tag stands for
//!   drop/                             files written any way at all by existing scripts
//!   central_task_boards/              boards, written only by the broker, always atomically
//!   mailroom.toml                     optional configuration
//! ```
//!
//! [`Layout`] names the paths; [`Fs`] is the seam through which every read and write of the tree
//! goes, so that tests can substitute an implementation that injects faults or models what
//! survives a power loss; [`RootFs`] is the implementation on a real runtime root (every path
//! resolved beneath the root, never through a link), [`RealFs`] the one on plain paths, and
//! [`sim::SimFs`] the in-memory one that models durability and injects faults.

mod clock;
mod departure;
mod fs;
mod layout;
mod lock;
mod ops;
mod profile;
pub mod sim;
mod tree;
mod watch;

pub use clock::{Clock, ManualClock};
pub use departure::Departure;
pub use fs::{
    AppendFile, Entry, FileKind, Fs, FsCounts, FsError, LockGuard, Meta, RealFs, Resolve, RootFs, Space,
};
pub use layout::{Board, Layout, Maildir};
pub use lock::{BrokerLock, LockError};
pub use ops::{Durability, NameSource, deliver, deliver_read, hostname, now, replace_file, write_atomic};
pub use profile::{
    ProfileError, read_agent_profile, read_capability_set, write_agent_profile, write_capability_set,
};
pub use tree::{Displaced, TreeError};
pub use watch::{DirWatch, Drained, Interest, Skip, maildir_subdir};

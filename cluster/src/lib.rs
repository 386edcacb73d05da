//! The cluster link: brokers on several machines share pools through NATS JetStream
//! (docs/CLUSTER.md). Each machine keeps its own broker and root; only tasks of pools marked
//! shared travel between them.
//!
//! The link runs beside the broker's loop in `mailroom run` and holds only a command-channel
//! [`Handle`](mailroom::engine::commands::Handle): it never writes a file of the tree. What it
//! learns from the cluster becomes a journaled record through [`ClusterOp`]s; what it must tell
//! the cluster it reads from [`ClusterView`]s. Its parts:
//!
//! - [`names`]: subjects, consumer names and keys (a pool or task id made safe for NATS).
//! - [`record`]: the cluster-wide record of a shared task, kept in a JetStream key-value bucket
//!   with revisions; every change is a compare-and-set on the revision last seen.
//! - [`link`]: the loop: publish what the node holds for the cluster, pull what its agents can
//!   take, extend deadlines with in-progress acks, settle outcomes then ack.
//! - [`board`]: the cluster-wide board (`mailroom board --cluster`).
//! - [`control`]: cluster-wide cancel by compare-and-set (`mailroom cancel --cluster ID`).
//! - [`trace`]: one shared task's kept revisions (`mailroom trace --cluster ID`).
//!
//! [`ClusterOp`]: mailroom::engine::commands::ClusterOp
//! [`ClusterView`]: mailroom::engine::commands::ClusterView

pub mod board;
pub mod control;
pub mod link;
pub mod names;
pub mod record;
pub mod trace;

pub use board::{BoardError, board};
pub use link::run;
pub use trace::history;

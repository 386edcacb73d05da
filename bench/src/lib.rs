//! The mailroom benchmark: the product measured end to end with real processes, every comparison
//! side by side in one run (docs/BENCHMARKS.md explains the workloads and how to read the figures).
//!
//! A run ([`run::run`]) builds temporary roots, starts `mailroom run` as a child, starts producer
//! and agent processes (`mailroom-bench producer|agent`, [`load`]), waits for the journal to show
//! every task completed, then reads latencies from the completed tasks' history. Each workload is a
//! module of [`workloads`] returning a typed section of the [`report::Report`], which is printed
//! as JSON or as the human summary from the same values.
//!
//! Map: [`args`] (flags, the plan), [`run`] (the run, the context workloads get), [`workloads`]
//! (one module per workload and the registry), [`pipeline`] (the producer → broker → agent run
//! most workloads are made of), [`report`] (sections, JSON and summary), [`journal_watch`] (the
//! only module that knows the broker's journal types), [`history`] (prebuilt roots for W4/W5),
//! [`peers`] (PostgreSQL, Redis and NATS JetStream run through the same workflow as mailroom),
//! [`procs`] (child processes, `/proc`), [`fs_ops`] (filesystem operations per task, as the
//! processes count them), [`machine`], [`error`].

pub mod args;
pub mod error;
pub mod fs_ops;
pub mod history;
pub mod journal_watch;
pub mod load;
pub mod machine;
pub mod peers;
pub mod pipeline;
pub mod procs;
pub mod report;
pub mod run;
pub mod workloads;

pub use args::BenchArgs;
pub use error::BenchError;
pub use report::Report;
pub use run::run;

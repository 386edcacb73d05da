//! The mailroom benchmark as a library: the orchestrator ([`run::run`]), the producer and agent
//! processes it starts ([`procs`]), the filesystem floor ([`floor`]) and prebuilt histories
//! ([`history`]). The `mailroom-bench` binary is a thin command line over it; `mailroom bench`
//! execs that binary.

pub mod floor;
pub mod history;
pub mod procs;
pub mod run;

pub use run::{BenchArgs, run};

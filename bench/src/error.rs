//! The errors of a benchmark run, typed so that the binary can tell a bad command line (exit 2)
//! from a run that could not finish (exit 1), and every message names the file, the process or
//! the logs to read.

use runtime_layout::FsError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag's value is wrong (a durability name, a `--broker-setting`, an `--only` name).
    #[error("{0}")]
    Usage(String),
    /// The `mailroom` binary to benchmark is missing.
    #[error(
        "{}: no mailroom binary (build it with `cargo build --release -p mailroom`, or pass --mailroom PATH)",
        .0.display()
    )]
    NoMailroom(PathBuf),
    /// A file operation outside the `Fs` seam (run directories, logs, `/proc`).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file operation inside a runtime root, through the `Fs` seam.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The broker's journal could not be read or written (see `journal_watch`).
    #[error("journal: {0}")]
    Journal(String),
    /// A producer or agent process's SDK call failed.
    #[error(transparent)]
    Sdk(#[from] agent_sdk::Error),
    /// A child process (broker, producer, agent, `mailroom trace`, the legacy script) failed.
    #[error("{what}: {problem}")]
    Process { what: String, problem: String },
    /// A workload stopped making progress.
    #[error("{workload}: {done} of {tasks} tasks completed, nothing for {secs} s (logs in {})", logs.display())]
    Stalled { workload: String, done: usize, tasks: usize, secs: u64, logs: PathBuf },
}

impl BenchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub fn process(what: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Self::Process { what: what.into(), problem: problem.to_string() }
    }
}

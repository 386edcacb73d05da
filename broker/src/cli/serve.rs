//! `mailroom run`: the broker on a tokio runtime, stopped cleanly by SIGINT or SIGTERM.

use super::exit::{self, Failure};
use mailroom::run;
use runtime_layout::{Fs, Layout};
use std::sync::Arc;

pub fn run_broker(fs: Arc<dyn Fs>, layout: Layout) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    rt.block_on(async move {
        // Handlers are installed before the broker starts serving, so a SIGTERM that arrives at
        // any point after that is a clean shutdown, never the default (killing) disposition.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).map_err(run::RunError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(run::RunError::Signal)?;
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received: finishing the message in hand");
        };
        run::run(fs, layout, shutdown).await
    })
    .map_err(failure)
}

/// The exit code and message of a broker that stopped (or never started).
pub fn failure(e: run::RunError) -> Failure {
    match e {
        run::RunError::Locked(e) => Failure::new(exit::LOCKED, e),
        run::RunError::Config(e) => Failure::new(exit::INVALID, e),
        run::RunError::Engine(e) => Failure::new(exit::FATAL_IO, format!("broker stopped: {e}")),
        run::RunError::Tree(e) => Failure::new(exit::FATAL_IO, format!("broker stopped: {e}")),
        run::RunError::Signal(e) => Failure::new(exit::ERROR, format!("installing signal handlers: {e}")),
    }
}

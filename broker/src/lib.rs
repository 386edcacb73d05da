//! The mailroom broker: the one process that owns every shared file of a runtime root.
//!
//! [`engine::Engine`] is the synchronous core (journal, state machine, file moves);
//! [`run::run`] is the event loop around it; [`trace`] and [`board`] read what the broker wrote.

pub mod board;
pub mod config;
pub mod engine;
pub use engine::ingest;
pub mod journal;
pub mod run;
pub mod state;
pub mod trace;

#[cfg(test)]
mod engine_tests;

//! The mailroom broker: the one process that owns every shared file of a runtime root.
//!
//! [`engine::Engine`] is the synchronous core (journal, state machine, file moves), made of
//! parts that own their state; [`run::serve`] is the event loop around it, with the command
//! channel in-process front ends use; [`repair`] keeps it serving when a directory of its tree is
//! replaced by a link or a file; [`outbox`] delivers committed transitions to webhooks and
//! hooks; [`import`] migrates a legacy tree; [`trace`], [`board`] and [`views`] read what the
//! broker wrote; [`footprint`] counts what a root holds, and [`gc`] applies the retention rules
//! to a stopped root.

pub mod agents;
pub mod board;
pub mod config;
pub mod engine;
pub mod feed;
pub mod footprint;
pub mod gc;
pub mod import;
pub mod journal;
pub mod outbox;
pub mod repair;
pub mod run;
pub mod socket;
pub mod state;
pub mod trace;
pub mod views;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod ops_tests;
mod wakeups;

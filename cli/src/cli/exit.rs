//! Exit codes (documented in the README) and the error that carries one: libraries return typed
//! errors, and this is where the binary maps them to the code a script can branch on.

use std::path::Path;

pub const OK: u8 = 0;
/// Unexpected failure (I/O, corrupt journal, ...).
pub const ERROR: u8 = 1;
/// Bad command line (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// `claim` found nothing to claim (before `--wait` ran out).
pub const NOTHING: u8 = 3;
/// Another broker holds the root's lock.
pub const LOCKED: u8 = 4;
/// The claim is no longer held by this agent (taken back, finished, or never held).
pub const CLAIM_LOST: u8 = 5;
/// Invalid input: a file that is not JSON, a task or name that breaks a rule, an agent that was
/// never added.
pub const INVALID: u8 = 6;
/// The root is not initialised (`mailroom init`).
pub const NOT_INITIALISED: u8 = 7;
/// The broker stopped because it could not make its journal or tree durable.
pub const FATAL_IO: u8 = 8;
/// `mailroom bench`: the `mailroom-bench` binary is neither beside this one nor on `PATH`.
pub const NO_BENCH: u8 = 9;
/// No broker answered a message within the wait: it waits in the inbox (nothing is lost). And
/// for `mailroom status`: no broker is running on the root (the status is printed all the same).
pub const UNANSWERED: u8 = 10;
/// `--cluster`: the root has no `[cluster]` section, or the cluster cannot be reached.
pub const NO_CLUSTER: u8 = 11;

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self { code, message: message.to_string() }
    }
}

impl From<agent_sdk::Error> for Failure {
    fn from(e: agent_sdk::Error) -> Self {
        use agent_sdk::Error as E;
        let code = match &e {
            E::ClaimLost { .. } => CLAIM_LOST,
            E::NotInitialised { .. } => NOT_INITIALISED,
            // A report the broker refused because its claim is no longer held: the claim is lost.
            E::Refused { field, .. } if field == "claim" => CLAIM_LOST,
            E::InvalidName(_) | E::InvalidTask { .. } | E::UnknownAgent { .. } | E::Refused { .. } => INVALID,
            E::Unanswered { .. } => UNANSWERED,
            _ => ERROR,
        };
        Self::new(code, e)
    }
}

impl From<mailroom::views::ViewError> for Failure {
    fn from(e: mailroom::views::ViewError) -> Self {
        use mailroom::views::ViewError as E;
        let code = match &e {
            E::NotInitialised { .. } => NOT_INITIALISED,
            E::Invalid(_) | E::Config(_) => INVALID,
            E::Fs(_) => ERROR,
        };
        Self::new(code, e)
    }
}

/// The root is not a mailroom root.
pub fn not_initialised(root: &Path) -> Failure {
    Failure::new(NOT_INITIALISED, format!("{} is not a mailroom root (run `mailroom init`)", root.display()))
}

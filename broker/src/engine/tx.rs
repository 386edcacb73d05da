//! The context every handler of a pass works through: read-only [`Env`], the [`Ledger`] to
//! journal into, and the [`Effects`] to carry out after the commit. A handler decides, pushes
//! records and effects, and never moves a file itself.

use super::EngineError;
use super::effects::{Effect, Effects};
use super::env::Env;
use super::ledger::Ledger;
use crate::journal::Entry;
use crate::state::State;
use protocol::Timestamp;

/// The engine's shared core: what every part reads or writes through a [`Tx`].
pub(crate) struct Core {
    pub env: Env,
    pub ledger: Ledger,
    pub effects: Effects,
}

impl Core {
    pub fn tx(&mut self) -> Tx<'_> {
        Tx { env: &self.env, ledger: &mut self.ledger, effects: &mut self.effects, via: None }
    }
}

pub(crate) struct Tx<'a> {
    pub env: &'a Env,
    pub ledger: &'a mut Ledger,
    pub effects: &'a mut Effects,
    /// Where the message being handled came from when not from `broker/inbox/new/` (the
    /// broker's socket): what its records name as its path.
    pub via: Option<&'static str>,
}

impl Tx<'_> {
    pub fn now(&self) -> Timestamp {
        self.env.now()
    }

    pub fn state(&self) -> &State {
        self.ledger.state()
    }

    /// Journals a record stamped now. Returns its sequence number.
    pub fn push(&mut self, entry: Entry) -> u64 {
        let now = self.env.now();
        self.ledger.push(now, entry)
    }

    pub fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// Makes what was journaled durable and carries out its effects.
    pub fn commit(&mut self) -> Result<(), EngineError> {
        self.effects.commit(self.env, self.ledger)
    }
}

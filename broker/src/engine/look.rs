//! Where a pass looks in the tree besides the inbox, which it always reads.
//!
//! The loop learns from file events where something arrived ([`crate::wakeups`]). A pass woken
//! only by messages need not list any agent's `cur/` nor any drop directory; one woken by a claim
//! of `Agent-3` lists `mailboxes/Agent-3/cur/` alone, so a claim costs the same with 4 or 400
//! agents registered. A pass with nothing to go on (the periodic tick, no watch, lost events, a
//! new agent's directory) looks everywhere: events are hints, never the only way to find work.

use std::collections::BTreeSet;

/// Which agents' `cur/` directories a pass lists for claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Claims {
    /// None.
    #[default]
    Nowhere,
    /// These agents' (named by the directories where claims arrived).
    Of(BTreeSet<String>),
    /// Every directory under `mailboxes/`.
    Everywhere,
}

impl Claims {
    /// Where either looks.
    pub fn or(self, o: Claims) -> Claims {
        match (self, o) {
            (Claims::Everywhere, _) | (_, Claims::Everywhere) => Claims::Everywhere,
            (Claims::Nowhere, c) | (c, Claims::Nowhere) => c,
            (Claims::Of(mut a), Claims::Of(b)) => {
                a.extend(b);
                Claims::Of(a)
            }
        }
    }

    /// Whether any `cur/` is listed.
    pub fn any(&self) -> bool {
        *self != Claims::Nowhere
    }
}

/// Where a pass looks besides the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// Agents' `cur/` directories, for claims.
    pub claims: Claims,
    /// `drop/` and the ingest directories (and always while a dropped file is settling).
    pub drops: bool,
    /// Edited boards (and always while an edit is settling).
    pub edits: bool,
}

impl Look {
    pub const EVERYWHERE: Look = Look { claims: Claims::Everywhere, drops: true, edits: true };
    pub const INBOX: Look = Look { claims: Claims::Nowhere, drops: false, edits: false };

    /// Where either looks.
    pub fn or(self, o: Look) -> Look {
        Look { claims: self.claims.or(o.claims), drops: self.drops || o.drops, edits: self.edits || o.edits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(names: &[&str]) -> Claims {
        Claims::Of(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn looking_in_two_places_is_looking_in_both() {
        assert_eq!(of(&["A"]).or(of(&["B", "A"])), of(&["A", "B"]));
        assert_eq!(of(&["A"]).or(Claims::Nowhere), of(&["A"]));
        assert_eq!(Claims::Nowhere.or(of(&["B"])), of(&["B"]));
        assert_eq!(of(&["A"]).or(Claims::Everywhere), Claims::Everywhere);
        assert_eq!(Claims::Everywhere.or(Claims::Nowhere), Claims::Everywhere);
        assert!(!Claims::Nowhere.any() && of(&[]).any());
        let woken = Look { claims: of(&["A"]), drops: false, edits: false };
        assert_eq!(Look::INBOX.or(woken.clone()), woken);
        assert_eq!(woken.or(Look::EVERYWHERE), Look::EVERYWHERE);
    }
}

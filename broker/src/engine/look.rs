//! Where a pass looks in the tree.
//!
//! The loop learns from file events where something arrived ([`crate::wakeups`]). A pass woken
//! only by messages need not list any agent's `cur/` nor any drop directory; one woken by a claim
//! of `Agent-3` looks in `mailboxes/Agent-3/cur/` alone, so a claim costs the same with 4 or 400
//! agents registered; and when the events name every file that arrived in a `cur/`, it looks
//! at those files without listing the directory ([`Claims::Files`]). When the events name every message that arrived in the inbox, a pass
//! reads those files without listing `broker/inbox/new/` ([`Arrivals`]): a directory that once
//! held a backlog keeps every block it grew (ext4 never shrinks one), and listing it cost each
//! pass as much as the backlog had. A pass with nothing to go on (the periodic tick, no watch,
//! lost events, a new agent's directory) looks everywhere and lists the inbox: events are
//! hints, never the only way to find work.

use std::collections::BTreeSet;

/// Which agents' `cur/` directories a pass lists for claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Claims {
    /// None.
    #[default]
    Nowhere,
    /// Only these files, each as its agent and its name: the events named every file that
    /// arrived in a `cur/`, so nothing else there can be a claim not yet seen. Nothing is
    /// listed: each file is looked at (a stat), and not even that when it is no longer a
    /// queued task's (its report came first and adopted the claim).
    Files(BTreeSet<(String, String)>),
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
            (Claims::Files(mut a), Claims::Files(b)) => {
                a.extend(b);
                Claims::Files(a)
            }
            // A listing of the agent's `cur/` finds its named files too.
            (Claims::Of(mut a), Claims::Files(f)) | (Claims::Files(f), Claims::Of(mut a)) => {
                a.extend(f.into_iter().map(|(agent, _)| agent));
                Claims::Of(a)
            }
        }
    }

    /// Whether any `cur/` is listed.
    pub fn any(&self) -> bool {
        *self != Claims::Nowhere
    }
}

/// What a pass knows of what arrived in `broker/inbox/new/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Arrivals {
    /// Nothing certain: the pass lists the directory.
    #[default]
    Unknown,
    /// The events named every file that arrived since the last look: these (perhaps none, or
    /// one twice). The inbox reads them without a listing once a listing has caught up with it.
    Named(Vec<String>),
}

impl Arrivals {
    /// What either knows: names add up, and anything uncertain makes the whole uncertain.
    pub fn or(self, o: Arrivals) -> Arrivals {
        match (self, o) {
            (Arrivals::Named(mut a), Arrivals::Named(b)) => {
                a.extend(b);
                Arrivals::Named(a)
            }
            _ => Arrivals::Unknown,
        }
    }
}

/// Where a pass looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// `broker/inbox/new/`: listed, or only the files events named.
    pub inbox: Arrivals,
    /// Agents' `cur/` directories, for claims.
    pub claims: Claims,
    /// `drop/` and the ingest directories (and always while a dropped file is settling).
    pub drops: bool,
    /// Edited boards (and always while an edit is settling).
    pub edits: bool,
}

impl Look {
    pub const EVERYWHERE: Look =
        Look { inbox: Arrivals::Unknown, claims: Claims::Everywhere, drops: true, edits: true };
    /// The inbox listed, nothing else.
    pub const INBOX: Look =
        Look { inbox: Arrivals::Unknown, claims: Claims::Nowhere, drops: false, edits: false };
    /// Nothing known to have arrived: what the loop adds events to after each pass.
    pub const QUIET: Look =
        Look { inbox: Arrivals::Named(Vec::new()), claims: Claims::Nowhere, drops: false, edits: false };

    /// Where either looks.
    pub fn or(self, o: Look) -> Look {
        Look {
            inbox: self.inbox.or(o.inbox),
            claims: self.claims.or(o.claims),
            drops: self.drops || o.drops,
            edits: self.edits || o.edits,
        }
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
        let files = |f: &[(&str, &str)]| {
            Claims::Files(f.iter().map(|(a, n)| (a.to_string(), n.to_string())).collect())
        };
        assert_eq!(files(&[("A", "x")]).or(files(&[("B", "y")])), files(&[("A", "x"), ("B", "y")]));
        assert_eq!(files(&[("A", "x"), ("C", "z")]).or(of(&["B"])), of(&["A", "B", "C"]));
        assert_eq!(of(&["B"]).or(files(&[("A", "x")])), of(&["A", "B"]));
        assert_eq!(files(&[("A", "x")]).or(Claims::Everywhere), Claims::Everywhere);
        assert_eq!(Claims::Nowhere.or(files(&[("A", "x")])), files(&[("A", "x")]));
        let woken = Look { claims: of(&["A"]), drops: false, edits: false, inbox: Arrivals::Unknown };
        assert_eq!(Look::INBOX.or(woken.clone()), woken);
        assert_eq!(woken.or(Look::EVERYWHERE), Look::EVERYWHERE);
    }

    #[test]
    fn names_add_up_and_one_listing_makes_a_listing() {
        let named = |n: &[&str]| Arrivals::Named(n.iter().map(|s| s.to_string()).collect());
        assert_eq!(named(&["a"]).or(named(&["b"])), named(&["a", "b"]));
        assert_eq!(named(&["a"]).or(Arrivals::Unknown), Arrivals::Unknown);
        assert_eq!(Arrivals::Unknown.or(named(&[])), Arrivals::Unknown);
        let woken = Look { inbox: named(&["m"]), ..Look::QUIET };
        assert_eq!(Look::QUIET.or(woken.clone()), woken);
        assert_eq!(woken.clone().or(Look::INBOX).inbox, Arrivals::Unknown);
        assert_eq!(woken.or(Look::EVERYWHERE), Look::EVERYWHERE);
    }
}

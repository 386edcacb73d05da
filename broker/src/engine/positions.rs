//! The outbox's positions: how far each sink (a webhook or a hook, see `crate::outbox`) has
//! handled the journal. A position is journaled like any transition (`Entry::Delivered`) and
//! applied to the state, so a restart knows where each sink resumes. Positions only move forward
//! and never past the journal's end.

use super::quarantine::Refusal;
use super::tx::Tx;
use crate::journal::Entry;

/// Journals that `sink` has handled every record up to `through`.
pub(crate) fn delivered(tx: &mut Tx, sink: &str, through: u64) -> Result<(), Refusal> {
    if sink.is_empty() || sink.chars().any(char::is_control) {
        return Err(Refusal::rejected("sink", "must be a non-empty name without control characters"));
    }
    let end = tx.ledger.next_seq();
    if through >= end {
        return Err(Refusal::rejected(
            "through",
            format!("{through} is beyond the journal (its last record is {})", end.saturating_sub(1)),
        ));
    }
    match tx.state().delivered(sink) {
        Some(p) if through < p => {
            return Err(Refusal::rejected(
                "through",
                format!("{through} is behind `{sink}`'s position {p}: positions only move forward"),
            ));
        }
        Some(p) if through == p => return Ok(()),
        _ => {}
    }
    tx.push(Entry::Delivered { sink: sink.to_string(), through });
    Ok(())
}

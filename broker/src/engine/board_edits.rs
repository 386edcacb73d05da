//! Board-edit absorption: once an edit of a central board made behind the broker's back has
//! settled, its new tasks become submissions and its status changes become cancel or retry
//! requests (the only changes a board edit can ask for); everything else it changed is
//! quarantined with why. The edited file is kept beside the processed messages in
//! `inbox/cur/`, and the board is then rewritten from state.

use super::boards::BoardMark;
use super::effects::Effect;
use super::legacy::{admit_normalised, raw_id, task_hash};
use super::quarantine::{Refusal, reject_file, reject_part};
use super::tx::Tx;
use super::{EngineError, operator};
use crate::import::MAX_IMPORT_BYTES;
use crate::journal::{BoardEdit, Entry};
use protocol::Status;
use protocol::legacy;
use runtime_layout::{Board, FsError};
use serde_json::Value;

/// Applies what an edited board asks for. `mark` is what the board writer last wrote on it.
pub(crate) fn absorb(tx: &mut Tx, board: Board, mark: &BoardMark) -> Result<(), EngineError> {
    let path = tx.env.layout.board(board);
    let unique = tx.env.names.next("board-edit");
    let name = format!("{}-{}", unique.trim_end_matches(".json"), board.file_name());
    let limit = tx.env.cfg.broker.max_message_bytes.max(MAX_IMPORT_BYTES);
    let bytes = match tx.env.fs().read(&path, limit) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
            reject_file(tx, &path, &name, None, Refusal::rejected("", format!("edited board: {e}")));
            return Ok(());
        }
        Err(e) if e.is_permission_denied() || super::inbox::the_file_s(tx, &e, &path) => {
            let r = Refusal::rejected("", format!("edited board cannot be read: {e}"));
            reject_file(tx, &path, &name, None, r);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let tasks = match legacy::parse_lenient(&bytes)
        .map_err(|f| format!("edited board is not parseable: {f}"))
        .and_then(|l| legacy::extract_tasks(&l.value).map_err(|w| format!("edited board: {w}")))
    {
        Ok(x) => x.tasks,
        Err(why) => {
            reject_file(tx, &path, &name, None, Refusal::rejected("", why));
            return Ok(());
        }
    };
    let (mut taken, mut refused) = (0, 0);
    for (i, raw) in tasks.iter().enumerate() {
        if raw_id(raw).is_some_and(|id| mark.written_hash(&id) == Some(task_hash(raw))) {
            continue; // exactly as the broker wrote it
        }
        match absorb_task(tx, raw, &name) {
            Ok(()) => taken += 1,
            Err(r) => {
                refused += 1;
                reject_part(tx, &name, i, raw, &r);
            }
        }
    }
    tracing::info!(board = board.file_name(), taken, refused, "absorbed an edit of a board");
    // Keep what was written, beside the processed messages, then rewrite the board.
    let to = tx.env.layout.broker_inbox().cur().join(&name);
    let edit = BoardEdit { board: board.file_name().to_string(), taken, refused };
    tx.push(Entry::Consume { msg: name, path: tx.env.rel(&to), board: Some(edit) });
    tx.effect(Effect::Consumed { from: path, to, len: None });
    Ok(())
}

/// One changed entry of an edited board.
fn absorb_task(tx: &mut Tx, raw: &Value, msg: &str) -> Result<(), Refusal> {
    let n = legacy::normalise_task(raw, tx.now()).map_err(|e| Refusal::from(e.within("task")))?;
    let id = n.task.task_id.clone();
    let Some(current) = tx.state().status_of(&id) else {
        return admit_normalised(tx, raw, n, msg);
    };
    let wanted = n.task.status;
    let cant = |why: String| Refusal::rejected("task.status", why).task(&id);
    match (current, wanted) {
        (c, Status::Cancelled) if !c.is_terminal() => operator::cancel(tx, &id, msg),
        (Status::Failed | Status::Blocked | Status::Cancelled, Status::Pending) => {
            operator::retry(tx, &id, msg)
        }
        (c, w) if c == w => Err(Refusal::rejected(
            "task",
            "edits to a task's fields on a board are not applied (the broker's copy stands); \
             only a status change to CANCELLED (cancel) or back to PENDING (retry) is",
        )
        .task(&id)),
        (c, w) => Err(cant(format!(
            "a board edit cannot move a task from {c} to {w}: an agent reports the outcome through its claim"
        ))),
    }
}

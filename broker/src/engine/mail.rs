//! Mail between agents: the broker checks the recipient exists, journals the delivery and
//! posts the mail into the recipient's `new/`.

use super::effects::{Effect, Post};
use super::quarantine::Refusal;
use super::tx::Tx;
use crate::journal::{Entry, MailSent};
use protocol::Mail;
use serde_json::Value;

/// A `send` message: mail from `from` to `to`.
pub(crate) fn send(
    tx: &mut Tx,
    from: &str,
    to: &str,
    subject: Option<&str>,
    body: &Value,
    msg: &str,
) -> Result<(), Refusal> {
    if !tx.env.layout.mailbox(to).exists(tx.env.fs()) {
        return Err(Refusal::rejected("to", format!("no agent `{to}` (its mailbox does not exist)")));
    }
    let mail = Mail {
        kind: "mail".into(),
        from: from.to_string(),
        to: to.to_string(),
        subject: subject.map(str::to_string),
        body: body.clone(),
        sent_at: tx.now(),
    };
    tx.push(Entry::Mail(MailSent {
        msg: msg.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        hash: None,
        import: None,
    }));
    tx.effect(Effect::Post { agent: to.to_string(), post: Post::Mail(mail) });
    Ok(())
}

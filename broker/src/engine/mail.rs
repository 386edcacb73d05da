//! Mail: to one agent, to every agent (`ALL`) or to a named group (`@name`, from `[groups]` of
//! `mailroom.toml`). The broker resolves the address to its recipients when the mail is sent,
//! journals one record with the fan-out, and then posts a copy into each recipient's `new/` (or
//! `cur/`, for legacy mail that was marked delivered or read already). The sender never gets a
//! copy of its own broadcast.

use super::effects::{Effect, Post};
use super::env::Env;
use super::quarantine::Refusal;
use super::tx::Tx;
use crate::journal::{Entry, MailSent};
use protocol::names::Recipient;
use protocol::{Mail, Timestamp};
use runtime_layout::FsError;
use serde_json::Value;
use std::collections::BTreeSet;

/// One piece of mail, before it is resolved to recipients.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub from: String,
    /// The address as written: an agent, `ALL` or `@group`.
    pub to: String,
    pub subject: Option<String>,
    pub body: Value,
    /// When it was sent (legacy mail says; otherwise now).
    pub sent_at: Option<Timestamp>,
    /// Marked delivered or read already: it goes into the recipients' `cur/`, not `new/`.
    pub read: bool,
}

/// Whom an address reaches now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fanout {
    /// The agents that get a copy, sorted (one agent for a direct letter).
    pub recipients: Vec<String>,
    /// Group members that get none: they have no mailbox.
    pub skipped: Vec<String>,
}

/// Resolves `to` for mail from `from`. `also` names agents to count as existing (the agents a dry
/// run of an import would create). A direct letter to an agent without a mailbox, an unknown
/// group and a group none of whose other members has a mailbox are refused; a broadcast reaches
/// whoever is registered, possibly no one.
pub(crate) fn resolve(
    env: &Env,
    from: &str,
    to: &Recipient,
    also: &BTreeSet<String>,
) -> Result<Fanout, Refusal> {
    let exists = |a: &str| also.contains(a) || env.layout.mailbox(a).exists(env.fs());
    match to {
        Recipient::Agent(a) if exists(a) => Ok(Fanout { recipients: vec![a.clone()], skipped: Vec::new() }),
        Recipient::Agent(a) => {
            Err(Refusal::rejected("to", format!("no agent `{a}` (its mailbox does not exist)")))
        }
        Recipient::All => {
            let mut all: BTreeSet<String> = env.agents().map_err(io_refusal)?.into_iter().collect();
            all.extend(also.iter().cloned());
            all.remove(from);
            Ok(Fanout { recipients: all.into_iter().collect(), skipped: Vec::new() })
        }
        Recipient::Group(g) => {
            let Some(members) = env.cfg.groups.get(g) else {
                return Err(Refusal::rejected(
                    "to",
                    format!("no group `{g}` (define it under [groups] in mailroom.toml)"),
                ));
            };
            let (mut recipients, mut skipped) = (Vec::new(), Vec::new());
            for m in members.iter().filter(|m| *m != from) {
                if exists(m) { recipients.push(m.clone()) } else { skipped.push(m.clone()) }
            }
            if recipients.is_empty() && !skipped.is_empty() {
                return Err(Refusal::rejected(
                    "to",
                    format!("no member of `@{g}` has a mailbox (members: {})", skipped.join(", ")),
                ));
            }
            recipients.sort();
            Ok(Fanout { recipients, skipped })
        }
    }
}

fn io_refusal(e: FsError) -> Refusal {
    Refusal::rejected("to", format!("the mailboxes cannot be listed: {e}"))
}

/// A `send` message: resolves the address, journals one record and posts each copy.
pub(crate) fn send(tx: &mut Tx, letter: Letter, msg: &str) -> Result<(), Refusal> {
    let to = Recipient::parse(&letter.to).map_err(Refusal::from)?;
    let fan = resolve(tx.env, &letter.from, &to, &BTreeSet::new())?;
    deliver(tx, letter, &to, fan, msg, None);
    Ok(())
}

/// Journals the delivery of `letter` to `fan` (one record, with the fan-out unless the letter
/// went to one agent by name), then posts a copy to each recipient. `import` is `(hash, source)`
/// for migrated mail, which names its source file instead of an inbox message.
pub(crate) fn deliver(
    tx: &mut Tx,
    letter: Letter,
    to: &Recipient,
    fan: Fanout,
    msg: &str,
    import: Option<(u64, &str)>,
) {
    let address = to.address();
    let direct = matches!(to, Recipient::Agent(_));
    tx.push(Entry::Mail(MailSent {
        msg: msg.to_string(),
        from: letter.from.clone(),
        to: address.clone(),
        fanout: if direct { Vec::new() } else { fan.recipients.clone() },
        skipped: fan.skipped,
        read: letter.read,
        hash: import.map(|(h, _)| h),
        import: import.map(|(_, source)| source.to_string()),
    }));
    let sent_at = letter.sent_at.unwrap_or_else(|| tx.now());
    for agent in fan.recipients {
        let mail = Mail {
            kind: "mail".into(),
            from: letter.from.clone(),
            to: agent.clone(),
            sent_to: (!direct).then(|| address.clone()),
            subject: letter.subject.clone(),
            body: letter.body.clone(),
            sent_at,
        };
        tx.effect(Effect::Post { agent, post: Post::Mail { mail, read: letter.read } });
    }
}

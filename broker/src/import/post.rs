//! The mail of an import, delivered after its tasks: each message once (its hash of source and
//! content is journaled, and a message whose hash is already in the journal is skipped), to one
//! agent (whose mailbox is created when it has none, unless `--no-create-agents`) or, for a
//! broadcast, to every agent registered once the tasks are in, the sender excepted. Mail marked
//! delivered or read lands in the recipients' `cur/`.

use super::{ImportFile, Importer, Letters};
use crate::engine::EngineError;
use crate::engine::mail::{self, Letter};
use crate::engine::tx::Tx;
use crate::journal::{self, Entry, MailSent};
use crate::state::fnv64;
use protocol::legacy::LegacyMail;
use protocol::names::{Recipient, validate_agent};
use std::collections::HashSet;
use std::path::Path;

impl Importer {
    /// Creates the mailbox of every recipient named by the mail about to be delivered (unless
    /// `--no-create-agents`), before any is delivered: a broadcast then reaches every agent the
    /// import brings, wherever its file is in the walk.
    pub(super) fn create_recipients(&mut self, tx: &Tx, letters: &[(usize, Letters)], files: &[ImportFile]) {
        for (fi, l) in letters {
            let mails: Vec<&LegacyMail> = match l {
                Letters::One(m) => vec![m],
                Letters::Queue(each) => each.iter().filter_map(|m| m.as_ref().ok()).collect(),
            };
            for m in mails {
                let Ok(Recipient::Agent(a)) = Recipient::parse(&m.to) else { continue };
                if !self.opts.create_agents || self.exists(tx, &a) {
                    continue;
                }
                if !self.opts.dry_run
                    && let Err(e) = tx.env.layout.mailbox(&a).create(tx.env.fs(), true)
                {
                    tracing::warn!(agent = %a, error = %e, "cannot create the mailbox of a mail recipient");
                    continue;
                }
                self.note_created(&a, format!("recipient of mail from `{}`", m.from), &files[*fi].display);
            }
        }
    }

    /// Delivers the mail of one file; returns what became of it, for the report.
    pub(super) fn deliver_file(&mut self, tx: &mut Tx, letters: Letters, source: &str) -> String {
        match letters {
            Letters::One(mail) => self.deliver(tx, mail, source),
            Letters::Queue(each) => {
                let outcomes: Vec<String> = each
                    .into_iter()
                    .map(|m| match m {
                        Ok(mail) => self.deliver(tx, mail, source),
                        Err(e) => format!("refused: {e}"),
                    })
                    .collect();
                let count = |p: &str| outcomes.iter().filter(|o| o.starts_with(p)).count();
                let mut summary = format!(
                    "{} messages: {} delivered, {} already delivered, {} refused",
                    outcomes.len(),
                    count("delivered") + count("would deliver"),
                    count("already"),
                    count("refused")
                );
                if let Some(first) = outcomes.iter().find(|o| o.starts_with("refused")) {
                    summary.push_str(&format!("; first refusal: {first}"));
                }
                summary
            }
        }
    }

    /// Delivers one migrated message, once.
    fn deliver(&mut self, tx: &mut Tx, m: LegacyMail, source: &str) -> String {
        let body = serde_json::to_vec(&m.body).expect("a JSON value serialises");
        let hash = fnv64(&[source.as_bytes(), m.from.as_bytes(), m.to.as_bytes(), &body].join(&0u8));
        if self.delivered.contains(&hash) {
            return format!("already delivered: mail from {} to {}", m.from, m.to);
        }
        let to = match Recipient::parse(&m.to) {
            Ok(to) => to,
            Err(e) => return format!("refused: {e}"),
        };
        if let Recipient::Agent(a) = &to
            && !self.exists(tx, a)
        {
            if !(self.opts.create_agents && validate_agent(a).is_ok()) {
                return format!("refused: no agent `{a}` (its mailbox does not exist)");
            }
            if !self.opts.dry_run
                && let Err(e) = tx.env.layout.mailbox(a).create(tx.env.fs(), true)
            {
                return format!("refused: cannot create the mailbox of `{a}`: {e}");
            }
            self.note_created(a, format!("recipient of mail from `{}`", m.from), source);
        }
        let fan = match mail::resolve(tx.env, &m.from, &to, &self.would_create) {
            Ok(f) => f,
            Err(r) => return format!("refused: {r}"),
        };
        let reach = match &to {
            Recipient::Agent(_) => String::new(),
            _ => format!(" ({} agents)", fan.recipients.len()),
        };
        let read = if m.read { " as read" } else { "" };
        let what = format!("mail from {} to {}{reach}{read}", m.from, m.to);
        if self.opts.dry_run {
            return format!("would deliver {what}");
        }
        let letter = Letter {
            from: m.from,
            to: m.to,
            subject: m.subject,
            body: m.body,
            sent_at: m.sent_at,
            read: m.read,
        };
        mail::deliver(tx, letter, &to, fan, source, Some((hash, source)));
        self.delivered.insert(hash);
        format!("delivered {what}")
    }
}

/// Hashes of the messages earlier imports delivered (from every journal segment, archived too).
pub(super) fn imported_mail(tx: &Tx) -> Result<HashSet<u64>, EngineError> {
    let mut seen = HashSet::new();
    let mut notes = journal::Notes::default();
    for p in journal::all_segments(tx.env.fs(), &tx.env.layout.journal_dir())? {
        journal::read_segment(
            tx.env.fs(),
            &p,
            |r, _, _| {
                if let Entry::Mail(MailSent { hash: Some(h), .. }) = r.entry {
                    seen.insert(h);
                }
            },
            &mut notes,
        )?;
    }
    Ok(seen)
}

/// `.../<agent>/inbox/<file>`: the agent whose legacy inbox a file is in.
pub(super) fn inbox_owner(path: &str) -> Option<String> {
    let p = Path::new(path);
    let parent = p.parent()?;
    if parent.file_name()? != "inbox" {
        return None;
    }
    Some(parent.parent()?.file_name()?.to_string_lossy().into_owned())
}

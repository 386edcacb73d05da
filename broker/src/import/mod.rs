//! `mailroom import`: migrates a legacy tree (boards of any shape, one-task files, mailbox
//! messages) into a root, with the broker stopped. Every file is read leniently and normalised;
//! a task id seen in several files is merged (the most advanced state wins, the others go into
//! its history); each task goes through admission like a submission but keeps the state it had;
//! each message is delivered once (a second import delivers nothing again). Input files are
//! never modified: a file that gave nothing is *copied* into quarantine with why. The report
//! ([`report`]) names every file; [`walk`] collects them.

pub mod report;
pub mod walk;

use crate::engine::BROKER;
use crate::engine::EngineError;
use crate::engine::admission::{Admission, admit};
use crate::engine::effects::{Effect, Post};
use crate::engine::legacy::{default_recipient, raw_id};
use crate::engine::quarantine::printable;
use crate::engine::tx::Tx;
use crate::journal::{self, Entry, MailSent, Rejected};
use crate::state::fnv64;
use protocol::legacy;
use protocol::{HistoryEntry, Task};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub use report::{FileReport, ImportReport, Refused, Totals};
pub use walk::{ImportFile, MAX_IMPORT_BYTES, collect_import_files};

#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub dry_run: bool,
    /// Create the mailbox of an assignee that does not exist yet (a migration brings its agents).
    pub create_agents: bool,
}

/// A normalised task, the file it came from (index into the input) and its raw form.
type Candidate = (usize, Task, Value);

enum Outcome {
    Imported,
    AlreadyImported,
    Refused(String),
}

/// Runs an import through `tx`. The caller commits and writes the boards afterwards.
pub(crate) fn run(
    tx: &mut Tx,
    files: Vec<ImportFile>,
    opts: ImportOptions,
) -> Result<ImportReport, EngineError> {
    let mut imp = Importer { opts, delivered: imported_mail(tx)? };
    let now = tx.now();
    let mut report = ImportReport::default();
    let mut by_id: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for (fi, f) in files.iter().enumerate() {
        let fr = imp.read_file(tx, fi, f, &mut by_id);
        report.files.push(fr);
    }
    // Merge duplicates: the most advanced state wins; the others go into its history.
    for (id, mut cands) in by_id {
        cands.sort_by(|a, b| {
            legacy::status_rank(b.1.status)
                .cmp(&legacy::status_rank(a.1.status))
                .then(b.1.updated_at.cmp(&a.1.updated_at))
        });
        let mut raws: Vec<Vec<u8>> =
            cands.iter().map(|c| serde_json::to_vec(&c.2).expect("a JSON value serialises")).collect();
        raws.sort();
        let hash = fnv64(&raws.concat());
        let (wfi, mut task, _) = cands[0].clone();
        let merged = cands.len() - 1;
        for (fi, other, _) in &cands[1..] {
            task.history.push(HistoryEntry {
                timestamp: now,
                actor: BROKER.to_string(),
                action: "merge".into(),
                from: Some(other.status),
                to: Some(task.status),
                details: Some(json!({
                    "source": files[*fi].display,
                    "kept": files[wfi].display,
                    "why": "the same task id appeared more than once; the most advanced state is kept",
                })),
            });
        }
        let outcome = match tx.state().hash_of(&id) {
            Some(h) if h == hash => Outcome::AlreadyImported,
            Some(_) => {
                Outcome::Refused(format!("task `{id}` already exists in this root with different content"))
            }
            None if opts.dry_run => Outcome::Imported,
            None => {
                let how = Admission::Import { create_agents: opts.create_agents };
                match admit(tx, task, hash, &files[wfi].display, how) {
                    Ok(()) => Outcome::Imported,
                    Err(r) => Outcome::Refused(r.to_string()),
                }
            }
        };
        let fr = &mut report.files[wfi];
        fr.merged += merged;
        match outcome {
            Outcome::Imported => fr.accepted.push(id),
            Outcome::AlreadyImported => fr.already.push(id),
            Outcome::Refused(reason) => fr.refused.push(Refused { task_id: Some(id), reason }),
        }
        if !opts.dry_run {
            tx.commit()?;
        }
    }
    // Files that gave nothing: a copy of each goes to quarantine (the input is never touched).
    for (fi, f) in files.iter().enumerate() {
        let fr = &mut report.files[fi];
        if fr.quarantined.is_none()
            && fr.mail.is_none()
            && fr.accepted.is_empty()
            && fr.already.is_empty()
            && fr.refused.is_empty()
        {
            fr.quarantined = Some("no task in this file".into());
        }
        let Some(why) = fr.quarantined.clone() else { continue };
        let Ok(bytes) = &f.bytes else { continue };
        let base =
            Path::new(&f.display).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let qname = format!(
            "import-{:016x}-{}",
            fnv64(&[f.display.as_bytes(), bytes.as_slice()].concat()),
            printable(&base)
        );
        let to = tx.env.layout.quarantine_dir().join(&qname);
        let rel = tx.env.rel(&to);
        fr.quarantine_path = Some(rel.clone());
        if opts.dry_run || tx.env.fs().stat(&to)?.is_some() {
            continue;
        }
        tx.push(Entry::Reject(Rejected {
            file: Some(f.display.clone()),
            reason: why.clone(),
            path: rel,
            ..Default::default()
        }));
        let reason = json!({"file": f.display, "quarantined_at": now, "reason": why});
        tx.effect(Effect::QuarantineCopy { to, bytes: bytes.clone(), reason });
    }
    report.total();
    Ok(report)
}

struct Importer {
    opts: ImportOptions,
    /// Hashes of migrated messages already delivered (by this import or an earlier one).
    delivered: HashSet<u64>,
}

impl Importer {
    /// Reads one input file: its tasks go into `by_id` for the merge, its messages are delivered.
    fn read_file(
        &mut self,
        tx: &mut Tx,
        fi: usize,
        f: &ImportFile,
        by_id: &mut BTreeMap<String, Vec<Candidate>>,
    ) -> FileReport {
        let now = tx.now();
        let mut fr = FileReport { file: f.display.clone(), ..Default::default() };
        let bytes = match &f.bytes {
            Ok(b) => b,
            Err(why) => {
                fr.quarantined = Some(why.clone());
                return fr;
            }
        };
        let lenient = match legacy::parse_lenient(bytes) {
            Ok(l) => l,
            Err(fail) => {
                fr.quarantined = Some(format!("not parseable: {fail}"));
                return fr;
            }
        };
        fr.repairs = lenient.repairs.clone();
        let not_tasks = match legacy::extract_tasks(&lenient.value) {
            Ok(x) => {
                fr.shape = Some(format!("{:?}", x.shape));
                for (w, why) in x.skipped {
                    fr.skipped.push(format!("{w}: {why}"));
                }
                for raw in x.tasks {
                    match legacy::normalise_task(&raw, now) {
                        Ok(n) => {
                            for c in &n.changes {
                                *fr.normalisations.entry(c.kind.as_str().to_string()).or_default() += 1;
                                if c.warning {
                                    fr.warnings.push(format!(
                                        "{}: {} ({})",
                                        n.task.task_id,
                                        c.field,
                                        c.kind.as_str()
                                    ));
                                }
                            }
                            by_id.entry(n.task.task_id.clone()).or_default().push((fi, n.task, raw));
                        }
                        Err(e) => fr
                            .refused
                            .push(Refused { task_id: raw_id(&raw), reason: e.within("task").to_string() }),
                    }
                }
                return fr;
            }
            Err(not_tasks) => not_tasks,
        };
        let mut value = lenient.value;
        if let Some(agent) = inbox_owner(&f.display) {
            default_recipient(&mut value, &agent);
        }
        let list = value.as_array().filter(|l| !l.is_empty() && l.iter().all(legacy::is_message_like));
        if let Some(list) = list {
            // A queue file: a list of messages, each delivered on its own.
            let outcomes: Vec<String> = list
                .iter()
                .map(|m| match legacy::normalise_mail(m, now) {
                    Ok(mail) => self.deliver(tx, mail, &f.display),
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
            fr.mail = Some(summary);
            return fr;
        }
        match legacy::normalise_mail(&value, now) {
            Ok(mail) => fr.mail = Some(self.deliver(tx, mail, &f.display)),
            Err(e) if legacy::is_message_like(&value) => {
                fr.quarantined = Some(format!("mailbox message refused: {e}"))
            }
            Err(_) => fr.quarantined = Some(not_tasks),
        }
        fr
    }

    /// Delivers one migrated message, once: its hash (source file and content) is journaled,
    /// and a message whose hash is already in the journal is not delivered again.
    fn deliver(&mut self, tx: &mut Tx, mail: legacy::LegacyMail, source: &str) -> String {
        let body = serde_json::to_vec(&mail.body).expect("a JSON value serialises");
        let hash = fnv64(&[source.as_bytes(), mail.from.as_bytes(), mail.to.as_bytes(), &body].join(&0u8));
        if self.delivered.contains(&hash) {
            return format!("already delivered: mail from {} to {}", mail.from, mail.to);
        }
        let md = tx.env.layout.mailbox(&mail.to);
        if !md.exists(tx.env.fs()) {
            let creatable = self.opts.create_agents && protocol::names::validate_agent(&mail.to).is_ok();
            if !creatable {
                return format!("refused: no agent `{}` (its mailbox does not exist)", mail.to);
            }
            if !self.opts.dry_run
                && let Err(e) = md.create(tx.env.fs(), true)
            {
                return format!("refused: cannot create the mailbox of `{}`: {e}", mail.to);
            }
        }
        if self.opts.dry_run {
            return format!("would deliver mail from {} to {}", mail.from, mail.to);
        }
        let now = tx.now();
        let post = protocol::Mail {
            kind: "mail".into(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            subject: mail.subject,
            body: mail.body,
            sent_at: mail.sent_at.unwrap_or(now),
        };
        tx.push(Entry::Mail(MailSent {
            msg: source.to_string(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            hash: Some(hash),
            import: Some(source.to_string()),
        }));
        self.delivered.insert(hash);
        tx.effect(Effect::Post { agent: mail.to.clone(), post: Post::Mail(post) });
        format!("delivered mail from {} to {}", mail.from, mail.to)
    }
}

/// Hashes of the messages earlier imports delivered (from every journal segment, archived too).
fn imported_mail(tx: &Tx) -> Result<HashSet<u64>, EngineError> {
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
fn inbox_owner(path: &str) -> Option<String> {
    let p = Path::new(path);
    let parent = p.parent()?;
    if parent.file_name()? != "inbox" {
        return None;
    }
    Some(parent.parent()?.file_name()?.to_string_lossy().into_owned())
}

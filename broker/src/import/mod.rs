//! `mailroom import`: migrates a legacy tree (boards of any shape, one-task files, mailbox
//! messages) into a root, with the broker stopped. Every file is read leniently and normalised;
//! a task id seen in several files is merged (the most advanced state wins, the others go into
//! its history, and each file that lost its copy says where it went); each task goes through
//! admission like a submission but keeps the state it had; each message is delivered once (a
//! second import delivers nothing again), after the tasks, so that a broadcast reaches the agents
//! the import created. Input files are never modified: a file that gave nothing is *copied* into
//! quarantine with why. The report ([`report`]) names every file and every agent the import
//! created; [`walk`] collects the files, [`merge`] admits the tasks and [`post`] the mail.

mod merge;
mod post;
pub mod report;
pub mod walk;

use crate::engine::EngineError;
use crate::engine::effects::Effect;
use crate::engine::legacy::{default_recipient, raw_id};
use crate::engine::quarantine::printable;
use crate::engine::tx::Tx;
use crate::journal::{Entry, Rejected};
use crate::state::fnv64;
use post::inbox_owner;
use protocol::Task;
use protocol::legacy::{self, LegacyMail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

pub use report::{AgentCreated, FileReport, ImportReport, Refused, Totals};
pub use walk::{ImportFile, MAX_IMPORT_BYTES, collect_import_files};

#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub dry_run: bool,
    /// Create the mailbox of an assignee or recipient that does not exist yet (a migration brings
    /// its agents).
    pub create_agents: bool,
}

/// A normalised task, the file it came from (index into the input) and its raw form.
type Candidate = (usize, Task, Value);

/// The mail a file holds, delivered once every task is in.
enum Letters {
    /// One message.
    One(LegacyMail),
    /// A queue file: each message, or why it was refused.
    Queue(Vec<Result<LegacyMail, String>>),
}

/// Runs an import through `tx`. The caller commits and writes the boards afterwards.
pub(crate) fn run(
    tx: &mut Tx,
    files: Vec<ImportFile>,
    opts: ImportOptions,
) -> Result<ImportReport, EngineError> {
    let mut imp = Importer {
        opts,
        delivered: post::imported_mail(tx)?,
        created: Vec::new(),
        would_create: BTreeSet::new(),
    };
    let mut report = ImportReport::default();
    let mut by_id: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    let mut letters = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let (fr, mail) = read_file(tx, fi, f, &mut by_id);
        report.files.push(fr);
        if let Some(m) = mail {
            letters.push((fi, m));
        }
    }
    merge::admit_all(&mut imp, tx, &files, by_id, &mut report.files)?;
    imp.create_recipients(tx, &letters, &files);
    for (fi, mail) in letters {
        report.files[fi].mail = Some(imp.deliver_file(tx, mail, &files[fi].display));
    }
    if !opts.dry_run {
        tx.commit()?;
    }
    quarantine(tx, &files, &mut report.files, opts.dry_run)?;
    report.agents_created = imp.created;
    report.total();
    Ok(report)
}

/// Files that gave nothing: a copy of each goes to quarantine (the input is never touched).
fn quarantine(
    tx: &mut Tx,
    files: &[ImportFile],
    reports: &mut [FileReport],
    dry_run: bool,
) -> Result<(), EngineError> {
    let now = tx.now();
    for (f, fr) in files.iter().zip(reports.iter_mut()) {
        if fr.quarantined.is_none() && fr.is_empty() {
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
        if dry_run || tx.env.fs().stat(&to)?.is_some() {
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
    Ok(())
}

/// Reads one input file: its tasks go into `by_id` for the merge; its mail is returned, to be
/// delivered once the tasks (and the agents they bring) are in.
fn read_file(
    tx: &Tx,
    fi: usize,
    f: &ImportFile,
    by_id: &mut BTreeMap<String, Vec<Candidate>>,
) -> (FileReport, Option<Letters>) {
    let now = tx.now();
    let mut fr = FileReport { file: f.display.clone(), ..Default::default() };
    let bytes = match &f.bytes {
        Ok(b) => b,
        Err(why) => {
            fr.quarantined = Some(why.clone());
            return (fr, None);
        }
    };
    let lenient = match legacy::parse_lenient(bytes) {
        Ok(l) => l,
        Err(fail) => {
            fr.quarantined = Some(format!("not parseable: {fail}"));
            return (fr, None);
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
            return (fr, None);
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
        let each = list.iter().map(|m| legacy::normalise_mail(m, now).map_err(|e| e.to_string())).collect();
        return (fr, Some(Letters::Queue(each)));
    }
    match legacy::normalise_mail(&value, now) {
        Ok(mail) => return (fr, Some(Letters::One(mail))),
        Err(e) if legacy::is_message_like(&value) => {
            fr.quarantined = Some(format!("mailbox message refused: {e}"))
        }
        Err(_) => fr.quarantined = Some(not_tasks),
    }
    (fr, None)
}

/// What an import has done so far that later steps depend on.
pub(crate) struct Importer {
    opts: ImportOptions,
    /// Hashes of migrated messages already delivered (by this import or an earlier one).
    delivered: HashSet<u64>,
    /// Agents whose mailbox this import created (or, in a dry run, would create), and why.
    created: Vec<AgentCreated>,
    /// In a dry run: the agents it would create (they count as existing for what follows).
    would_create: BTreeSet<String>,
}

impl Importer {
    /// Does `agent` have a mailbox (or would it, in a dry run)?
    fn exists(&self, tx: &Tx, agent: &str) -> bool {
        self.would_create.contains(agent) || tx.env.layout.mailbox(agent).exists(tx.env.fs())
    }

    /// Notes that the import created the mailbox of `agent` (or would, in a dry run), and why.
    fn note_created(&mut self, agent: &str, reason: String, file: &str) {
        if self.created.iter().any(|c| c.agent == agent) {
            return;
        }
        if self.opts.dry_run {
            self.would_create.insert(agent.to_string());
        }
        self.created.push(AgentCreated { agent: agent.to_string(), reason, file: file.to_string() });
    }
}

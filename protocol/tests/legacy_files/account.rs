//! Runs one legacy file through the front door the way an importer does (read leniently, find
//! the tasks, normalise each, or else read it as mail) and records what came out, for the
//! fixture and corpus tests alike.

use mailroom_protocol::Task;
use mailroom_protocol::Timestamp;
use mailroom_protocol::legacy::{
    ChangeKind, LegacyMail, Shape, extract_tasks, is_message_like, normalise_mail, normalise_task,
    parse_lenient,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `now` every normalisation is given.
pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("a valid RFC 3339 time")
}

/// Every file under `dir`, sorted, without the corpus's `MANIFEST*` files.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut entries: Vec<_> = rd.map(|e| e.expect("a directory entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST")) {
            out.push(p);
        }
    }
}

/// A reason, without the details that differ from file to file, for grouping.
pub fn group(reason: &str) -> String {
    let cut = reason.find(" (").unwrap_or(reason.len());
    reason[..cut].to_string()
}

/// What one file gave.
#[derive(Debug, Default)]
pub struct FileOutcome {
    /// The repairs the lenient parser made, in order.
    pub repairs: Vec<String>,
    /// The file's shape when it holds tasks (`List`, `wrapper `a, b``...).
    pub shape: Option<String>,
    /// Entries of a task collection that are not tasks: `where: why`.
    pub skipped: Vec<String>,
    /// The tasks that normalised, in file order.
    pub tasks: Vec<Task>,
    /// The task objects that were refused: `` `field` rule ``.
    pub tasks_refused: Vec<String>,
    /// The mailbox messages that normalised.
    pub mail: Vec<LegacyMail>,
    /// The mailbox messages that were refused: `` `field` rule ``.
    pub mail_refused: Vec<String>,
    /// Why the file is neither a task file nor mail, or why it could not be read.
    pub not_tasks: Option<String>,
}

impl FileOutcome {
    /// `None` when the file gave tasks; otherwise one line saying why it gave none.
    pub fn reason(&self) -> Option<String> {
        if !self.tasks.is_empty() {
            return None;
        }
        if let Some(r) = self.tasks_refused.last() {
            return Some(format!("task refused: {r}"));
        }
        if let Some(shape) = &self.shape {
            return Some(format!("empty task collection ({shape})"));
        }
        if let Some(r) = self.mail_refused.last() {
            return Some(format!("message refused: {r}"));
        }
        if !self.mail.is_empty() {
            return Some("mailbox message (normalised as mail)".to_string());
        }
        self.not_tasks.clone()
    }
}

/// Figures over many files.
#[derive(Default)]
pub struct Figures {
    pub files: usize,
    pub files_with_tasks: usize,
    pub tasks_seen: usize,
    pub tasks_accepted: usize,
    pub tasks_with_warnings: usize,
    pub messages_accepted: usize,
    pub changes: BTreeMap<&'static str, usize>,
    pub warnings: BTreeMap<&'static str, usize>,
    pub warning_values: BTreeMap<String, usize>,
    pub repairs: BTreeMap<String, usize>,
    pub shapes: BTreeMap<String, usize>,
    pub file_reasons: BTreeMap<String, usize>,
    pub task_failures: BTreeMap<String, usize>,
}

/// Runs one file through the front door, adding to `f`. Every accepted task is normalised a
/// second time, which must change nothing.
pub fn account(bytes: &[u8], f: &mut Figures) -> FileOutcome {
    f.files += 1;
    let out = read(bytes, f);
    if let Some(r) = out.reason() {
        assert!(!r.trim().is_empty(), "an empty reason");
        *f.file_reasons.entry(group(&r)).or_default() += 1;
    }
    out
}

fn read(bytes: &[u8], f: &mut Figures) -> FileOutcome {
    let mut out = FileOutcome::default();
    let parsed = match parse_lenient(bytes) {
        Ok(p) => p,
        Err(e) => {
            out.not_tasks = Some(format!("unreadable: {}", e.rule));
            return out;
        }
    };
    for r in &parsed.repairs {
        let key = r.split([':', '(']).next().unwrap_or(r).trim().to_string();
        *f.repairs.entry(key).or_default() += 1;
    }
    out.repairs = parsed.repairs.clone();
    match extract_tasks(&parsed.value) {
        Ok(ex) => {
            let shape = match &ex.shape {
                Shape::Wrapper(p) => format!("wrapper `{p}`"),
                other => format!("{other:?}"),
            };
            *f.shapes.entry(group(&shape)).or_default() += 1;
            out.shape = Some(shape);
            out.skipped = ex.skipped.iter().map(|(w, why)| format!("{w}: {why}")).collect();
            for t in &ex.tasks {
                f.tasks_seen += 1;
                match normalise_task(t, now()) {
                    Ok(n) => {
                        let again =
                            normalise_task(&n.task.to_value(), now()).expect("a normalised task re-reads");
                        assert!(
                            again.changes.is_empty(),
                            "not idempotent on {}: {:?}",
                            n.task.task_id,
                            again.changes
                        );
                        if n.changes.iter().any(|c| c.warning) {
                            f.tasks_with_warnings += 1;
                        }
                        for c in &n.changes {
                            *f.changes.entry(c.kind.as_str()).or_default() += 1;
                            if c.kind == ChangeKind::ValueMovedToLegacy {
                                *f.warning_values
                                    .entry(format!("(moved aside, by field) {}", c.field))
                                    .or_default() += 1;
                            }
                            if c.warning {
                                *f.warnings.entry(c.kind.as_str()).or_default() += 1;
                                let from = c.from.as_ref().map(|v| v.to_string()).unwrap_or_default();
                                let from: String = from.chars().take(60).collect();
                                *f.warning_values
                                    .entry(format!("{} {}: {from}", c.kind.as_str(), c.field))
                                    .or_default() += 1;
                            }
                        }
                        out.tasks.push(n.task);
                    }
                    Err(e) => {
                        let why = format!("`{}` {}", e.field, group(&e.rule));
                        *f.task_failures.entry(format!("task refused: {why}")).or_default() += 1;
                        out.tasks_refused.push(why);
                    }
                }
            }
            f.tasks_accepted += out.tasks.len();
            if !out.tasks.is_empty() {
                f.files_with_tasks += 1;
            }
        }
        Err(why) => {
            let messages: Vec<&Value> = match &parsed.value {
                Value::Array(items) if items.iter().all(is_message_like) => items.iter().collect(),
                v if is_message_like(v) => vec![v],
                _ => vec![],
            };
            if messages.is_empty() {
                out.not_tasks = Some(why);
            }
            for m in messages {
                match normalise_mail(m, now()) {
                    Ok(mail) => {
                        f.messages_accepted += 1;
                        out.mail.push(mail);
                    }
                    Err(e) => out.mail_refused.push(format!("`{}` {}", e.field, group(&e.rule))),
                }
            }
        }
    }
    out
}

/// Prints the figures (shown with `--nocapture`; `docs/NORMALISATION.md` quotes them).
pub fn print(name: &str, f: &Figures) {
    println!(
        "\n{name}: {} files; {} with tasks; {} task objects seen, {} accepted ({} with warnings); {} mailbox messages normalised",
        f.files,
        f.files_with_tasks,
        f.tasks_seen,
        f.tasks_accepted,
        f.tasks_with_warnings,
        f.messages_accepted
    );
    println!("shapes:");
    f.shapes.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("repairs:");
    f.repairs.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("changes by kind (warnings):");
    for (k, v) in &f.changes {
        println!("  {v:5}  {k} ({})", f.warnings.get(k).copied().unwrap_or(0));
    }
    println!("warnings, by value:");
    f.warning_values.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("files without tasks, by reason:");
    f.file_reasons.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
    println!("tasks refused, by reason:");
    f.task_failures.iter().for_each(|(k, v)| println!("  {v:5}  {k}"));
}

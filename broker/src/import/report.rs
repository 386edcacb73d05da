//! The import report: what happened to every input file (tasks accepted, already present,
//! refused with why, duplicates merged, merged into another file, mail delivered, quarantined),
//! every agent the import created and why, with totals, as JSON for scripts (`--json`) and as
//! text for people.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub task_id: Option<String>,
    pub reason: String,
}

/// What happened to one input file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    pub accepted: Vec<String>,
    /// Already in the root with the same content (a second import).
    pub already: Vec<String>,
    pub refused: Vec<Refused>,
    /// Other occurrences of an id accepted from this file, merged into it.
    pub merged: usize,
    /// Tasks of this file whose copy in another file was kept (the more advanced one): that
    /// file, and the ids. Their copy here is recorded in the kept task's history.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub merged_into: BTreeMap<String, Vec<String>>,
    pub normalisations: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_path: Option<String>,
}

impl FileReport {
    /// Did nothing come of the file: no task (accepted, present, refused or merged into
    /// another file's) and no mail?
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
            && self.already.is_empty()
            && self.refused.is_empty()
            && self.merged_into.is_empty()
            && self.mail.is_none()
    }
}

/// An agent whose mailbox the import created (or, in a dry run, would create).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentCreated {
    pub agent: String,
    /// Why: `assignee of task `X``, `recipient of mail from `A``, ...
    pub reason: String,
    /// The file that needed it.
    pub file: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub files: usize,
    pub tasks_accepted: usize,
    pub tasks_already_present: usize,
    pub tasks_refused: usize,
    pub duplicates_merged: usize,
    /// Files whose tasks (some or all) were merged into another file's copy.
    pub files_merged_into_others: usize,
    pub mail: usize,
    pub agents_created: usize,
    pub files_quarantined: usize,
    pub normalisations: BTreeMap<String, usize>,
    pub quarantined_by_reason: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
    pub agents_created: Vec<AgentCreated>,
    pub totals: Totals,
}

impl ImportReport {
    pub(crate) fn total(&mut self) {
        let mut t = Totals {
            files: self.files.len(),
            agents_created: self.agents_created.len(),
            ..Default::default()
        };
        for f in &self.files {
            t.tasks_accepted += f.accepted.len();
            t.tasks_already_present += f.already.len();
            t.tasks_refused += f.refused.len();
            t.duplicates_merged += f.merged;
            t.files_merged_into_others += usize::from(!f.merged_into.is_empty());
            t.mail += usize::from(f.mail.is_some());
            for (k, v) in &f.normalisations {
                *t.normalisations.entry(k.clone()).or_default() += v;
            }
            if let Some(q) = &f.quarantined {
                t.files_quarantined += 1;
                *t.quarantined_by_reason.entry(reason_family(q)).or_default() += 1;
            }
        }
        self.totals = t;
    }

    /// The human-readable report.
    pub fn render(&self, dry_run: bool) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for f in &self.files {
            let _ = writeln!(s, "{}", f.file);
            if let Some(q) = &f.quarantined {
                let _ = writeln!(
                    s,
                    "  {}: {q}{}",
                    if dry_run { "would be quarantined" } else { "quarantined" },
                    f.quarantine_path.as_ref().map(|p| format!(" -> {p}")).unwrap_or_default()
                );
            }
            if let Some(m) = &f.mail {
                let _ = writeln!(s, "  mail: {m}");
            }
            if !f.accepted.is_empty() {
                let verb = if dry_run { "would accept" } else { "accepted" };
                let _ = writeln!(s, "  {verb} {} task(s): {}", f.accepted.len(), abbreviate(&f.accepted));
            }
            if !f.already.is_empty() {
                let _ = writeln!(s, "  already present: {}", abbreviate(&f.already));
            }
            if f.merged > 0 {
                let _ = writeln!(s, "  duplicates merged: {}", f.merged);
            }
            for (into, ids) in &f.merged_into {
                let _ = writeln!(s, "  merged into {into}: {}", abbreviate(ids));
            }
            for r in &f.refused {
                let _ = writeln!(s, "  refused {}: {}", r.task_id.as_deref().unwrap_or("(no id)"), r.reason);
            }
            if !f.normalisations.is_empty() {
                let list: Vec<String> = f.normalisations.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(s, "  normalised: {}", list.join(", "));
            }
            for w in f.warnings.iter().take(5) {
                let _ = writeln!(s, "  warning: {w}");
            }
            for r in &f.repairs {
                let _ = writeln!(s, "  repaired: {r}");
            }
            for k in &f.skipped {
                let _ = writeln!(s, "  skipped: {k}");
            }
        }
        if !self.agents_created.is_empty() {
            let verb = if dry_run { "would create" } else { "created" };
            let _ = writeln!(s, "\nagents {verb}:");
            for a in &self.agents_created {
                let _ = writeln!(s, "  {}: {} ({})", a.agent, a.reason, a.file);
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            s,
            "\n{} files: {} tasks {}, {} already present, {} refused, {} duplicates merged ({} files merged into another), {} mail, {} agents {}, {} files quarantined",
            t.files,
            t.tasks_accepted,
            if dry_run { "would be accepted" } else { "accepted" },
            t.tasks_already_present,
            t.tasks_refused,
            t.duplicates_merged,
            t.files_merged_into_others,
            t.mail,
            t.agents_created,
            if dry_run { "would be created" } else { "created" },
            t.files_quarantined
        );
        if !t.normalisations.is_empty() {
            let list: Vec<String> = t.normalisations.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "normalisations: {}", list.join(", "));
        }
        if !t.quarantined_by_reason.is_empty() {
            let list: Vec<String> = t.quarantined_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "quarantined: {}", list.join(", "));
        }
        s
    }
}

/// The family of a quarantine reason (the text before its first colon), for totals.
fn reason_family(q: &str) -> String {
    q.split(':').next().unwrap_or(q).trim().to_string()
}

fn abbreviate(ids: &[String]) -> String {
    if ids.len() <= 8 {
        ids.join(", ")
    } else {
        format!("{}, ... ({} more)", ids[..8].join(", "), ids.len() - 8)
    }
}

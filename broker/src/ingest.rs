//! The lenient front door: files written by existing scripts (drop directories, legacy mailbox
//! inboxes), edits made to the boards behind the broker's back, and `mailroom import` of a whole
//! legacy tree. Everything is normalised by `protocol::legacy`, then goes through the same
//! admission and state machine as any message; whatever cannot be taken is quarantined with why.

use super::{Admission, BROKER, Effect, Engine, EngineError, Refusal, printable};
use crate::journal::{Op, Record};
use crate::state::fnv64;
use protocol::legacy;
use protocol::message::{Message, NoticeKind};
use protocol::{HistoryEntry, Status, Task, Timestamp};
use runtime_layout::{Board, FsError};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Inbox name prefix of a task file taken from a drop directory.
pub const DROP_PREFIX: &str = "drop-";
/// Inbox name prefix of a message taken from a legacy mailbox: `maildrop+<agent>+<unique>-<name>`.
pub const MAIL_DROP_PREFIX: &str = "maildrop+";
/// Largest file `mailroom import` reads.
pub const MAX_IMPORT_BYTES: u64 = 64 << 20;

/// Is this inbox message one that goes through the lenient path?
pub fn is_legacy_name(name: &str) -> bool {
    name.starts_with(DROP_PREFIX) || name.starts_with(MAIL_DROP_PREFIX)
}

/// Is a dropped file complete enough to take: anything the lenient parser can read (strict JSON
/// included)? The error is what a quarantine after the settle timeout reports.
pub fn parses(bytes: &[u8]) -> Result<(), protocol::ValidationError> {
    legacy::parse_lenient(bytes)
        .map(|_| ())
        .map_err(|f| protocol::ValidationError::new("", format!("not parseable: {f}")))
}

/// What the broker last wrote to one board: the file's size and mtime, and a hash of each task.
#[derive(Debug, Clone, Default)]
pub struct BoardMark {
    stamp: Option<(u64, Timestamp)>,
    tasks: HashMap<String, u64>,
    /// An edit seen but not yet settled: (size, mtime) when first seen changed, and when.
    pending: Option<((u64, Timestamp), Timestamp)>,
}

impl BoardMark {
    /// `tasks`: each task id on the board with the hash of its compact JSON as written.
    pub fn new(stamp: Option<(u64, Timestamp)>, tasks: HashMap<String, u64>) -> Self {
        Self { stamp, tasks, pending: None }
    }

    /// Has the board file changed since the broker wrote it (`now` is its current size and mtime)?
    pub fn edited(&self, now: Option<(u64, Timestamp)>) -> bool {
        now.is_some() && now != self.stamp
    }
}

fn task_hash(v: &Value) -> u64 {
    fnv64(&serde_json::to_vec(v).unwrap_or_default())
}

/// The id a raw legacy object names, for error reports (before normalisation succeeds).
fn raw_id(v: &Value) -> Option<String> {
    ["task_id", "id", "taskId", "task"].iter().find_map(|k| match v.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

impl Engine {
    /// A file taken from a drop directory or a legacy mailbox.
    pub(crate) fn consume_legacy(
        &mut self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), (Refusal, Option<Box<Message>>)> {
        let now = self.now();
        let lenient = legacy::parse_lenient(bytes)
            .map_err(|f| (Refusal::new(NoticeKind::Rejected, "", format!("not parseable: {f}")), None))?;
        let value = lenient.value;
        if let Some(rest) = name.strip_prefix(MAIL_DROP_PREFIX) {
            let dir_agent = rest.split('+').next().unwrap_or_default();
            return self.consume_legacy_mail(name, value, dir_agent, now);
        }
        // A message written by a script that knows the protocol: strict, like the inbox.
        if value.get("kind").and_then(Value::as_str).is_some_and(|k| k != "submit") {
            let msg = Message::from_value(value).map_err(|e| (e.into(), None))?;
            return self.handle(&msg, name).map_err(|r| (r, Some(Box::new(msg))));
        }
        let tasks = match value.get("kind").and_then(Value::as_str) {
            Some("submit") => vec![value.get("task").cloned().unwrap_or(Value::Null)],
            _ => {
                legacy::extract_tasks(&value)
                    .map_err(|why| (Refusal::new(NoticeKind::Rejected, "", why), None))?
                    .tasks
            }
        };
        let total = tasks.len();
        if total == 0 {
            return Err((Refusal::new(NoticeKind::Rejected, "", "no task in this file"), None));
        }
        let mut taken = 0;
        let mut refused = Vec::new();
        for (i, raw) in tasks.into_iter().enumerate() {
            match self.submit_legacy(&raw, name) {
                Ok(()) => taken += 1,
                Err(r) if total == 1 => return Err((r, None)),
                Err(r) => refused.push((i, raw, r)),
            }
        }
        // Nothing taken: the whole file goes to quarantine, once. Otherwise each refused task is
        // quarantined on its own and the file is consumed.
        if taken == 0
            && let Some((_, _, r)) = refused.first()
        {
            let why = format!("none of the {total} tasks could be taken; the first: {}", r.rule);
            return Err((Refusal::new(NoticeKind::Rejected, &r.field, why), None));
        }
        for (i, raw, r) in &refused {
            self.quarantine_part(name, *i, raw, r);
        }
        Ok(())
    }

    fn consume_legacy_mail(
        &mut self,
        name: &str,
        mut value: Value,
        dir_agent: &str,
        now: Timestamp,
    ) -> Result<(), (Refusal, Option<Box<Message>>)> {
        default_recipient(&mut value, dir_agent);
        let mail = legacy::normalise_mail(&value, now).map_err(|e| (e.into(), None))?;
        let msg = Message::Send { from: mail.from, to: mail.to, subject: mail.subject, body: mail.body };
        self.handle(&msg, name).map_err(|r| (r, Some(Box::new(msg))))
    }

    /// A legacy task object: normalised, then admitted like a submission.
    pub(crate) fn submit_legacy(&mut self, raw: &Value, msg: &str) -> Result<(), Refusal> {
        let now = self.now();
        let n = legacy::normalise_task(raw, now).map_err(|e| {
            let r = Refusal::from(e.within("task"));
            match raw_id(raw) {
                Some(id) => r.task(&id),
                None => r,
            }
        })?;
        self.admit_normalised(raw, n, msg)
    }

    /// Admits a task `normalise_task` made from `raw`; identity (for duplicates) is `raw`'s hash.
    fn admit_normalised(&mut self, raw: &Value, n: legacy::Normalised, msg: &str) -> Result<(), Refusal> {
        for c in n.changes.iter().filter(|c| c.warning) {
            tracing::warn!(task = %n.task.task_id, field = %c.field, change = c.kind.as_str(), "normalised with a warning");
        }
        self.admit(n.task, task_hash(raw), msg, Admission::Submit)
    }

    /// Quarantines one refused task of a multi-task file, as its own JSON file.
    fn quarantine_part(&mut self, name: &str, index: usize, raw: &Value, r: &Refusal) {
        let now = self.now();
        let seq = self.journal.next_seq();
        let qname = format!("{seq:012}-{}-task{index}.json", printable(name));
        let to = self.layout().quarantine_dir().join(&qname);
        let reason_text =
            if r.field.is_empty() { r.rule.clone() } else { format!("field `{}`: {}", r.field, r.rule) };
        let reason = json!({
            "file": format!("broker/inbox/new/{name}"),
            "part": index,
            "quarantined_at": now,
            "field": r.field,
            "rule": r.rule,
            "reason": reason_text,
            "task_id": r.task_id,
        });
        let mut rec = Record::new(Op::Reject, now);
        // Not `msg`: that would mark the whole file as handled (and bound for this part's
        // quarantine path) if a crash kept this record without the file's own.
        rec.task_id = r.task_id.clone();
        rec.reason = Some(reason_text);
        rec.path = Some(format!("broker/quarantine/{qname}"));
        rec.detail = Some(json!({"file": name, "part": index, "field": r.field, "rule": r.rule}));
        self.push(rec);
        let bytes = serde_json::to_vec_pretty(raw).unwrap_or_default();
        self.effects.push(Effect::QuarantineCopy { to, bytes, reason });
    }

    // ------------------------------------------------------------ board edits

    /// Notices boards changed by anything but the broker; once an edit has settled, turns new
    /// tasks into submissions and status changes into cancel/retry requests, quarantines what it
    /// cannot apply, keeps the edited file in `inbox/cur/`, and rewrites the board.
    pub(crate) fn absorb_boards(&mut self) -> Result<(), EngineError> {
        if self.board_marks.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let settle = self.config().broker.settle_ms as i64 * 1000;
        for board in Board::ALL {
            let path = self.layout().board(board);
            let stamp = self.fs.stat(&path)?.map(|m| (m.len, m.mtime));
            let Some(mark) = self.board_marks.get_mut(&board) else { continue };
            if stamp == mark.stamp {
                mark.pending = None;
                continue;
            }
            let Some(cur) = stamp else {
                // Deleted: write it again from state.
                mark.stamp = None;
                self.boards_force = true;
                continue;
            };
            match mark.pending {
                Some((seen, since)) if seen == cur => {
                    if now.as_micros() - since.as_micros() < settle
                        && cur.1.as_micros() + settle > now.as_micros()
                    {
                        continue;
                    }
                }
                _ => {
                    mark.pending = Some((cur, now));
                    continue;
                }
            }
            let mark = self.board_marks.remove(&board).unwrap_or_default();
            self.absorb_board(board, &path, &mark)?;
            self.boards_force = true;
        }
        Ok(())
    }

    fn absorb_board(&mut self, board: Board, path: &Path, mark: &BoardMark) -> Result<(), EngineError> {
        let unique = self.names.next("board-edit");
        let name = format!("{}-{}", unique.trim_end_matches(".json"), board.file_name());
        let bytes = match self.fs.read(path, self.config().broker.max_message_bytes.max(MAX_IMPORT_BYTES)) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e @ (FsError::NotRegular { .. } | FsError::TooLarge { .. })) => {
                let r = Refusal::new(NoticeKind::Rejected, "", format!("edited board: {e}"));
                self.reject_file(path, &name, None, r);
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
                self.reject_file(path, &name, None, Refusal::new(NoticeKind::Rejected, "", why));
                return Ok(());
            }
        };
        let (mut taken, mut refused) = (0, 0);
        for (i, raw) in tasks.iter().enumerate() {
            if raw_id(raw).is_some_and(|id| mark.tasks.get(&id) == Some(&task_hash(raw))) {
                continue; // exactly as the broker wrote it
            }
            match self.absorb_task(raw, &name) {
                Ok(()) => taken += 1,
                Err(r) => {
                    refused += 1;
                    self.quarantine_part(&name, i, raw, &r);
                }
            }
        }
        tracing::info!(board = board.file_name(), taken, refused, "absorbed an edit of a board");
        // Keep what was written, beside the processed messages, then rewrite the board.
        let to = self.layout().broker_inbox().cur().join(&name);
        let mut c = Record::new(Op::Consume, self.now());
        c.msg = Some(name.clone());
        c.path = Some(format!("broker/inbox/cur/{name}"));
        c.detail = Some(json!({"board": board.file_name(), "taken": taken, "refused": refused}));
        self.push(c);
        self.effects.push(Effect::Consumed { from: path.to_path_buf(), to });
        Ok(())
    }

    /// One changed entry of an edited board.
    fn absorb_task(&mut self, raw: &Value, msg: &str) -> Result<(), Refusal> {
        let now = self.now();
        let n = legacy::normalise_task(raw, now).map_err(|e| Refusal::from(e.within("task")))?;
        let id = n.task.task_id.clone();
        let Some(current) = self.state.status_of(&id) else {
            return self.admit_normalised(raw, n, msg);
        };
        let wanted = n.task.status;
        let cant = |why: String| Refusal::new(NoticeKind::Rejected, "task.status", why).task(&id);
        match (current, wanted) {
            (c, Status::Cancelled) if !c.is_terminal() => self.cancel(&id, msg),
            (Status::Failed | Status::Blocked | Status::Cancelled, Status::Pending) => self.retry(&id, msg),
            (c, w) if c == w => Err(Refusal::new(
                NoticeKind::Rejected,
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

    // ------------------------------------------------------------ import

    /// Migrates legacy files into this root (`mailroom import`). With `dry_run`, nothing is
    /// written: the report says what would happen.
    pub fn import(
        &mut self,
        files: Vec<ImportFile>,
        opts: ImportOptions,
    ) -> Result<ImportReport, EngineError> {
        let now = self.now();
        self.load_imported_mail()?;
        let mut report = ImportReport::default();
        // id -> candidates (file index, normalised task, raw)
        let mut by_id: BTreeMap<String, Vec<(usize, Task, Value)>> = BTreeMap::new();
        for (fi, f) in files.iter().enumerate() {
            let mut fr = FileReport { file: f.display.clone(), ..Default::default() };
            let bytes = match &f.bytes {
                Ok(b) => b,
                Err(why) => {
                    fr.quarantined = Some(why.clone());
                    report.files.push(fr);
                    continue;
                }
            };
            let parsed = legacy::parse_lenient(bytes);
            let lenient = match parsed {
                Ok(l) => l,
                Err(fail) => {
                    fr.quarantined = Some(format!("not parseable: {fail}"));
                    report.files.push(fr);
                    continue;
                }
            };
            fr.repairs = lenient.repairs.clone();
            match legacy::extract_tasks(&lenient.value) {
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
                            Err(e) => fr.refused.push(Refused {
                                task_id: raw_id(&raw),
                                reason: e.within("task").to_string(),
                            }),
                        }
                    }
                }
                Err(not_tasks) => {
                    let mut value = lenient.value;
                    if let Some(agent) = inbox_owner(&f.display) {
                        default_recipient(&mut value, &agent);
                    }
                    let list =
                        value.as_array().filter(|l| !l.is_empty() && l.iter().all(legacy::is_message_like));
                    if let Some(list) = list {
                        // A queue file: a list of messages, each delivered on its own.
                        let outcomes: Vec<String> = list
                            .iter()
                            .map(|m| match legacy::normalise_mail(m, now) {
                                Ok(mail) => self.import_mail(mail, &f.display, &opts),
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
                        report.files.push(fr);
                        continue;
                    }
                    match legacy::normalise_mail(&value, now) {
                        Ok(mail) => fr.mail = Some(self.import_mail(mail, &f.display, &opts)),
                        Err(e) if legacy::is_message_like(&value) => {
                            fr.quarantined = Some(format!("mailbox message refused: {e}"))
                        }
                        Err(_) => fr.quarantined = Some(not_tasks),
                    }
                }
            }
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
                cands.iter().map(|c| serde_json::to_vec(&c.2).unwrap_or_default()).collect();
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
            let outcome = match self.state.hash_of(&id) {
                Some(h) if h == hash => Outcome::AlreadyImported,
                Some(_) => Outcome::Refused(format!(
                    "task `{id}` already exists in this root with different content"
                )),
                None if opts.dry_run => Outcome::Imported,
                None => {
                    let source = files[wfi].display.clone();
                    match self.admit(
                        task,
                        hash,
                        &source,
                        Admission::Import { create_agents: opts.create_agents },
                    ) {
                        Ok(()) => Outcome::Imported,
                        Err(r) => Outcome::Refused(if r.field.is_empty() {
                            r.rule
                        } else {
                            format!("field `{}`: {}", r.field, r.rule)
                        }),
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
                self.commit()?;
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
            let base = Path::new(&f.display)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let qname = format!(
                "import-{:016x}-{}",
                fnv64(&[f.display.as_bytes(), bytes.as_slice()].concat()),
                printable(&base)
            );
            let to = self.layout().quarantine_dir().join(&qname);
            fr.quarantine_path = Some(format!("broker/quarantine/{qname}"));
            if opts.dry_run || self.fs.stat(&to)?.is_some() {
                continue;
            }
            let mut rec = Record::new(Op::Reject, now);
            rec.msg = Some(f.display.clone());
            rec.reason = Some(why.clone());
            rec.path = Some(format!("broker/quarantine/{qname}"));
            self.push(rec);
            let reason = json!({"file": f.display, "quarantined_at": now, "reason": why});
            self.effects.push(Effect::QuarantineCopy { to, bytes: bytes.clone(), reason });
        }
        if !opts.dry_run {
            self.commit()?;
            self.write_boards(true)?;
        }
        report.total();
        Ok(report)
    }

    /// Delivers one migrated message, once: its hash (source file and content) is journaled,
    /// and a message whose hash is already in the journal is not delivered again.
    fn import_mail(&mut self, mail: legacy::LegacyMail, source: &str, opts: &ImportOptions) -> String {
        let hash = fnv64(
            &[
                source.as_bytes(),
                mail.from.as_bytes(),
                mail.to.as_bytes(),
                &serde_json::to_vec(&mail.body).unwrap_or_default(),
            ]
            .join(&0u8),
        );
        if self.imported_mail.contains(&hash) {
            return format!("already delivered: mail from {} to {}", mail.from, mail.to);
        }
        let md = self.layout().mailbox(&mail.to);
        if !md.exists(self.fs.as_ref()) {
            let creatable = opts.create_agents && protocol::names::validate_agent(&mail.to).is_ok();
            if !creatable {
                return format!("refused: no agent `{}` (its mailbox does not exist)", mail.to);
            }
            if !opts.dry_run
                && let Err(e) = md.create(self.fs.as_ref(), true)
            {
                return format!("refused: cannot create the mailbox of `{}`: {e}", mail.to);
            }
        }
        if opts.dry_run {
            return format!("would deliver mail from {} to {}", mail.from, mail.to);
        }
        let now = self.now();
        let body = protocol::Mail {
            kind: "mail".into(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            subject: mail.subject,
            body: mail.body,
            sent_at: mail.sent_at.unwrap_or(now),
        };
        let mut rec = Record::new(Op::Mail, now);
        rec.msg = Some(source.to_string());
        rec.actor = Some(mail.from.clone());
        rec.hash = Some(hash);
        rec.detail = Some(json!({"to": mail.to, "import": source}));
        self.push(rec);
        self.imported_mail.insert(hash);
        self.effects.push(Effect::Post {
            agent: mail.to.clone(),
            kind: "mail",
            body: serde_json::to_value(body).unwrap_or_default(),
        });
        format!("delivered mail from {} to {}", mail.from, mail.to)
    }

    /// Hashes of the messages earlier imports delivered (from every journal segment, archived too).
    fn load_imported_mail(&mut self) -> Result<(), EngineError> {
        let dir = self.layout().journal_dir();
        let mut seen = std::collections::HashSet::new();
        let mut torn = Vec::new();
        for p in crate::journal::all_segments(self.fs.as_ref(), &dir)? {
            crate::journal::read_segment(
                self.fs.as_ref(),
                &p,
                |r| {
                    if r.op == Op::Mail
                        && let Some(h) = r.hash
                    {
                        seen.insert(h);
                    }
                },
                &mut torn,
            )?;
        }
        self.imported_mail = seen;
        Ok(())
    }
}

/// A legacy message with no recipient field is addressed to the owner of the inbox it was in.
fn default_recipient(value: &mut Value, agent: &str) {
    if let Value::Object(m) = value
        && !legacy::mail_recipient_named(m)
        && !agent.is_empty()
    {
        m.insert("to".into(), Value::String(agent.to_string()));
    }
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

enum Outcome {
    Imported,
    AlreadyImported,
    Refused(String),
}

/// One input file of an import: how to show it, and its bytes (or why they could not be read).
pub struct ImportFile {
    pub display: String,
    pub bytes: Result<Vec<u8>, String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub dry_run: bool,
    /// Create the mailbox of an assignee that does not exist yet (a migration brings its agents).
    pub create_agents: bool,
}

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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub files: usize,
    pub tasks_accepted: usize,
    pub tasks_already_present: usize,
    pub tasks_refused: usize,
    pub duplicates_merged: usize,
    pub mail: usize,
    pub files_quarantined: usize,
    pub normalisations: BTreeMap<String, usize>,
    pub quarantined_by_reason: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
    pub totals: Totals,
}

impl ImportReport {
    fn total(&mut self) {
        let mut t = Totals { files: self.files.len(), ..Default::default() };
        for f in &self.files {
            t.tasks_accepted += f.accepted.len();
            t.tasks_already_present += f.already.len();
            t.tasks_refused += f.refused.len();
            t.duplicates_merged += f.merged;
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
                    "  quarantined: {q}{}",
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
        let t = &self.totals;
        let _ = writeln!(
            s,
            "\n{} files: {} tasks {}, {} already present, {} refused, {} duplicates merged, {} mail, {} files quarantined",
            t.files,
            t.tasks_accepted,
            if dry_run { "would be accepted" } else { "accepted" },
            t.tasks_already_present,
            t.tasks_refused,
            t.duplicates_merged,
            t.mail,
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

/// Every regular file under the given paths, in a stable order, never following a symlink.
/// Entries that are not regular files are reported, not silently skipped.
pub fn collect_import_files(paths: &[PathBuf]) -> Vec<ImportFile> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

fn walk(p: &Path, out: &mut Vec<ImportFile>) {
    let display = p.display().to_string();
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => {
            out.push(ImportFile { display, bytes: Err(format!("cannot read: {e}")) });
            return;
        }
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                out.push(ImportFile { display, bytes: Err(format!("cannot list: {e}")) });
                return;
            }
        };
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    } else if !meta.is_file() {
        out.push(ImportFile {
            display,
            bytes: Err("not a regular file (symlinks are never followed)".into()),
        });
    } else if meta.len() > MAX_IMPORT_BYTES {
        out.push(ImportFile {
            display,
            bytes: Err(format!("too large: {} bytes, over the {MAX_IMPORT_BYTES}-byte limit", meta.len())),
        });
    } else {
        let bytes = std::fs::read(p).map_err(|e| format!("cannot read: {e}"));
        out.push(ImportFile { display, bytes });
    }
}

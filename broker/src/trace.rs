//! `mailroom trace`: every journaled event of one task, with the paths its files moved through,
//! the rejections that named it and where its file is now. Archived segments are read compressed
//! or not; when the retention has removed the oldest of them, a trace whose beginning was there
//! says so plainly (`history`) instead of starting in the middle without a word.

use crate::config::{Config, KeepFor};
use crate::journal::{self, Entry, JournalError, Place, Record};
use protocol::Status;
use runtime_layout::{Fs, Layout};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// One line of a trace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub seq: u64,
    pub time: String,
    /// The operation, as the journal names it (`submit`, `claim`, ...).
    pub op: &'static str,
    pub actor: Option<String>,
    pub from: Option<Status>,
    pub to: Option<Status>,
    /// Paths (relative to `agent_comms/`) the task's file or message moved through.
    pub paths: Vec<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Trace {
    pub task_id: String,
    pub steps: Vec<Step>,
    pub status: Option<Status>,
    /// Where the task's file is now, or why there is none.
    pub now: String,
    /// Set when the task's early history is no longer kept (older than the journal's retention).
    pub history: Option<String>,
}

pub fn trace(fs: &dyn Fs, layout: &Layout, id: &str) -> Result<Option<Trace>, JournalError> {
    let mut recs: Vec<Record> = Vec::new();
    // Where the task's messages went. Only its own are kept: a journal of a million tasks holds
    // two million `consume` records, a map of millions of names for one task's trace. A message's
    // records are journaled by the pass that takes it, so its `consume` is in the same segment
    // as the first record naming it (mostly right after it): those of the segment being read
    // wait in `unclaimed` until its end, in case a record of the task names them later in it.
    let mut consumed: HashMap<String, String> = HashMap::new();
    let mut wanted: HashSet<String> = HashSet::new();
    let mut unclaimed: HashMap<String, String> = HashMap::new();
    let mut notes = journal::Notes::default();
    let segments = journal::all_segments(fs, &layout.journal_dir())?;
    // The first record still kept, when older ones were removed by the retention.
    let kept_from = segments
        .first()
        .and_then(|p| p.file_name()?.to_str().and_then(journal::archive::segment_number))
        .map(|(n, _)| n)
        .filter(|&n| n > 1);
    // Only the lines that can be about the task are parsed: those that name it (its own
    // records, and any change to it, name its id) and every `consume` (a message's own name
    // says nothing of its task). A million tasks' segments are read in seconds, a line at a time.
    let named = serde_json::to_vec(id).unwrap_or_default();
    let names = memchr::memmem::Finder::new(&named);
    let consume = memchr::memmem::Finder::new(br#""op":"consume""#);
    let keep = |line: &[u8]| names.find(line).is_some() || consume.find(line).is_some();
    for seg in segments {
        let take = |r: Record, _: usize, _: &mut journal::Notes| {
            if let Entry::Consume { msg, path, .. } = r.entry {
                if wanted.contains(&msg) {
                    consumed.insert(msg, path);
                } else {
                    unclaimed.insert(msg, path);
                }
            } else if r.entry.task_id() == Some(id) {
                if let Some(m) = r.entry.msg()
                    && !wanted.contains(m)
                {
                    wanted.insert(m.to_string());
                    if let Some(path) = unclaimed.remove(m) {
                        consumed.insert(m.to_string(), path);
                    }
                }
                recs.push(r);
            }
        };
        match journal::read_segment_where(fs, &seg, keep, take, &mut notes) {
            // Removed by the retention since it was listed (a segment compressed meanwhile is
            // read in its compressed form by `read_segment`).
            Err(JournalError::Fs(e)) if e.is_not_found() => {}
            read => read?,
        }
        unclaimed.clear();
    }
    let snapshot_place = if recs.is_empty() {
        // Only a snapshot may know the task: its segments were removed (by the retention or an
        // operator). A finished task is a tomb there, a live one is whole.
        journal::load(fs, &layout.journal_dir())?.snapshot.and_then(|s| {
            s.live
                .into_iter()
                .find(|t| t.task.task_id == id)
                .map(|t| (t.task.status, t.place, Some(t.task)))
                .or_else(|| s.tombs.into_iter().find(|t| t.id == id).map(|t| (t.status, Place::Done, None)))
        })
    } else {
        None
    };
    if recs.is_empty() && snapshot_place.is_none() {
        return Ok(None);
    }
    let whole = recs.first().is_some_and(|r| matches!(r.entry, Entry::Submit(_) | Entry::Import(_)));
    let history = if whole {
        None
    } else {
        let cfg = Config::load(fs, layout).unwrap_or_default();
        let keep = match cfg.journal.archive_keep {
            KeepFor::Secs(s) => format!("{s} s"),
            KeepFor::Forever => "forever".into(),
        };
        let first = recs
            .first()
            .map_or("none of its records is".to_string(), |r| format!("its steps start at record {}", r.seq));
        Some(match kept_from {
            Some(n) => format!(
                "older than the retention: the journal keeps records from {n} on ([journal] archive_keep = {keep}, archive_keep_bytes = {}), and {first} kept",
                cfg.journal.archive_keep_bytes
            ),
            None => format!("the segments holding its beginning are gone (removed by hand?); {first} kept"),
        })
    };
    let mut steps = Vec::new();
    let mut status: Option<Status> = None;
    let mut place: Option<Place> = None;
    let mut last: Option<protocol::Task> = None;
    for r in recs {
        let e = &r.entry;
        let to = e.change().map(|(t, _)| t.status);
        let mut paths = Vec::new();
        if let Some(p) = e.path() {
            paths.push(p.into_owned());
        }
        if let Some(m) = e.msg()
            && let Some(dest) = consumed.get(m)
            && !matches!(e, Entry::Reject(_))
        {
            paths.push(format!("message {m} -> {dest}"));
        }
        steps.push(Step {
            seq: r.seq,
            time: r.ts.to_string(),
            op: e.op(),
            actor: e.actor().map(str::to_string),
            from: status,
            to,
            paths,
            reason: e.reason().map(|r| r.into_owned()),
        });
        if let Some(t) = to {
            status = Some(t);
        }
        if let Some((t, p)) = e.change() {
            place = Some(p.clone());
            last = Some(t.clone());
        } else if let Some((_, p)) = e.relocation() {
            place = Some(p.clone());
        }
    }
    if let Some((s, p, t)) = snapshot_place {
        status = Some(s);
        place = Some(p);
        if t.is_some() {
            last = t;
        }
    }
    let note = last.as_ref().and_then(crate::board::note).map(|n| format!(": {n}")).unwrap_or_default();
    let now = match &place {
        Some(p @ (Place::Queued { .. } | Place::Held { .. })) => p.rel_path().unwrap_or_default(),
        Some(Place::Waiting { dir, name }) => {
            format!("no file yet: ready, waiting for room in the ready window of {dir}/new/ (as {name})")
        }
        Some(Place::Backlog) => format!("no file: in the backlog{note}"),
        Some(Place::Done) => "no file: finished".into(),
        Some(Place::Outbound { pool }) => {
            format!("no file: held for the cluster (pool `{pool}`), not yet published")
        }
        Some(Place::Forwarded { pool }) => format!("no file: forwarded to the cluster (pool `{pool}`)"),
        None => "no file: never accepted".into(),
    };
    Ok(Some(Trace { task_id: id.to_string(), steps, status, now, history }))
}

impl Trace {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(json!(null))
    }

    pub fn render(&self) -> String {
        let mut out = format!("task {}\n", self.task_id);
        if let Some(h) = &self.history {
            out.push_str(&format!("early history not kept: {h}\n"));
        }
        for s in &self.steps {
            let change = match (s.from, s.to) {
                (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
                (None, Some(b)) => format!("-> {b}"),
                (_, Some(b)) => b.to_string(),
                _ => String::new(),
            };
            let op = s.op;
            out.push_str(&format!(
                "{}  {:<9} {:<14} {:<26} {}\n",
                s.time,
                op,
                s.actor.as_deref().unwrap_or("-"),
                change,
                s.paths.join("  ")
            ));
            if let Some(r) = &s.reason {
                out.push_str(&format!("{:>30}reason: {r}\n", ""));
            }
        }
        out.push_str(&format!(
            "status: {}\nnow: {}\n",
            self.status.map(|s| s.as_str()).unwrap_or("unknown"),
            self.now
        ));
        out
    }
}

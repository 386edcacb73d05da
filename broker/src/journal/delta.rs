//! Records that carry what changed: a task's whole JSON is written once per segment, and every
//! later record about it in that segment carries a `delta` against the image before it.
//!
//! A task moves through four or more records (submit, dispatch, claim, complete, ...), and a
//! record used to carry the whole task each time: about 5 KB of journal per 1 KB task, most of it
//! unchanged fields and a `history` that only grows. A delta holds the top-level fields that
//! changed (`set`), the ones that went away (`unset`) and what was appended to an array that only
//! grew (`append`, in practice `history`):
//!
//! ```json
//! {"seq":12,"ts":"…","op":"claim","task_id":"T-1","place":{…},"actor":"Agent-1",
//!  "delta":{"set":{"status":"IN_PROGRESS","attempts":1,"updated_at":"…"},
//!           "append":{"history":[{"action":"claim",…}]}}}
//! ```
//!
//! **The rule both sides keep.** Within one segment, a record's task is written whole the first
//! time the segment mentions the task, and again whenever the previous image is not the writer's
//! live state (after the task finished: a retry revives it whole). Otherwise it is a delta against
//! the segment's previous image of that task. So every segment reads on its own — a reader needs no
//! snapshot and no earlier segment to rebuild every task image in it, which keeps `trace`, the
//! outbox's catch-up, the event feed and replay unchanged: [`Resolver`] turns delta lines back into
//! whole records as `read_segment` reads them.
//!
//! **Exactness.** A resolved image must be byte-for-byte the task the writer had (queued files are
//! compared by their bytes). Fields are replaced whole, never merged, so the order of keys inside a
//! value is kept; the order of top-level fields the protocol does not know (`extra`, kept in the
//! order they came) is checked when the delta is made, and a change that would reorder them is
//! written whole instead. Equality is strict: the same keys in the same order.

use super::record::{Place, Record};
use protocol::Task;
use protocol::task::{CANONICAL_FIELDS, HistoryEntry};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The change between two images of a task, top-level fields only. Written as
/// `{"set":…,"unset":…,"append":…}`, empty parts left out.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct Delta {
    #[serde(skip_serializing_if = "Map::is_empty")]
    set: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unset: Vec<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    append: Map<String, Value>,
}

impl Delta {
    /// What turns `base` into `new`, or `None` when that cannot be said exactly (a change that
    /// would reorder the fields the protocol does not know).
    pub fn between(base: &Map<String, Value>, new: &Map<String, Value>) -> Option<Self> {
        let mut d = Delta::default();
        for (k, v) in new {
            match base.get(k) {
                Some(b) if strict_eq(b, v) => {}
                Some(Value::Array(b)) if grown(b, v) => {
                    let Value::Array(n) = v else { unreachable!("checked by `grown`") };
                    d.append.insert(k.clone(), Value::Array(n[b.len()..].to_vec()));
                }
                _ => {
                    d.set.insert(k.clone(), v.clone());
                }
            }
        }
        d.unset = base.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
        // Applied, kept fields stay where they were and new ones go last: the unknown fields must
        // come out in the order `new` has them.
        let extra = |k: &&String| !CANONICAL_FIELDS.contains(&k.as_str());
        let kept = base.keys().filter(|k| new.contains_key(*k));
        let added = d.set.keys().filter(|k| !base.contains_key(*k));
        kept.chain(added).filter(extra).eq(new.keys().filter(extra)).then_some(d)
    }

    /// Applies the delta to `base` in place.
    pub fn apply(&self, base: &mut Map<String, Value>) -> Result<(), String> {
        for k in &self.unset {
            base.shift_remove(k);
        }
        for (k, v) in &self.set {
            base.insert(k.clone(), v.clone());
        }
        for (k, more) in &self.append {
            match (base.get_mut(k), more) {
                (Some(Value::Array(a)), Value::Array(m)) => a.extend(m.iter().cloned()),
                _ => {
                    return Err(format!("`append` names `{k}`, which is not an array in the task before it"));
                }
            }
        }
        Ok(())
    }

    /// The delta as it is written.
    #[cfg(test)]
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a delta serialises")
    }

    pub fn from_value(v: Value) -> Result<Self, String> {
        let Value::Object(mut m) = v else { return Err("`delta` must be an object".into()) };
        let object = |v: Option<Value>, what: &str| match v {
            None => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o),
            Some(_) => Err(format!("`delta.{what}` must be an object")),
        };
        let set = object(m.remove("set"), "set")?;
        let append = object(m.remove("append"), "append")?;
        let unset = match m.remove("unset") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|k| k.as_str().map(str::to_string).ok_or("`delta.unset` must list field names"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`delta.unset` must be an array".into()),
        };
        Ok(Self { set, unset, append })
    }
}

/// Equal values with object keys in the same order (serde_json's `==` ignores key order).
fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| ka == kb && strict_eq(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| strict_eq(p, q))
        }
        _ => a == b,
    }
}

/// Whether `new` is the array `base` with elements appended.
fn grown(base: &[Value], new: &Value) -> bool {
    matches!(new, Value::Array(n) if n.len() > base.len() && base.iter().zip(n).all(|(p, q)| strict_eq(p, q)))
}

/// The writer's side: which tasks the current segment has an image of.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    imaged: std::collections::HashSet<String>,
}

impl Encoder {
    /// A new segment begins: nothing in it yet.
    pub fn new_segment(&mut self) {
        self.imaged.clear();
    }

    /// Writes `rec` as one JSON line into `out`. `prev` is the task as the writer's state has it
    /// before `rec` (the image its last record about the task left), if the task is live. `rec`
    /// is lent, not changed: its task is set aside while the rest of a delta's line is written.
    pub fn write(&mut self, out: &mut Vec<u8>, rec: &mut Record, prev: Option<&Task>) {
        let Some((task, place)) = rec.entry.change() else {
            // A record is strings, numbers and JSON values: serde_json cannot fail on it.
            serde_json::to_writer(&mut *out, rec).expect("a journal record serialises");
            return;
        };
        let done = *place == Place::Done;
        let imaged = self.imaged.contains(task.task_id.as_str());
        let delta = imaged && prev.is_some_and(|prev| delta_line(out, rec, prev));
        if !delta {
            serde_json::to_writer(&mut *out, &*rec).expect("a journal record serialises");
        }
        let Some((task, _)) = rec.entry.change() else { return };
        if done {
            self.imaged.remove(task.task_id.as_str());
        } else if !imaged {
            self.imaged.insert(task.task_id.clone());
        }
    }
}

/// Appends `rec` to `out` with its task replaced by a delta against `prev`, if one says it
/// exactly; `false` (and `out` as it was) if not.
///
/// The record is serialised with a bare stand-in for its task (the whole task back in place
/// right after), and the stand-in's value (found by walking the line's fields, [`field_span`])
/// replaced by the delta: a record costs a comparison of the task's fields and the serialisation
/// of what changed, never the whole task's JSON.
fn delta_line(out: &mut Vec<u8>, rec: &mut Record, prev: &Task) -> bool {
    const KEY: &[u8] = b"\"task\":";
    let Some(task) = rec.entry.task_mut() else { return false };
    let Some(delta) = Delta::of(prev, task) else { return false };
    let whole = std::mem::replace(task, Task::new(String::new()));
    let line = serde_json::to_vec(&*rec);
    if let Some(task) = rec.entry.task_mut() {
        *task = whole;
    }
    let Ok(line) = line else { return false };
    let Some(value) = field_span(&line, b"task") else { return false };
    let Some(at) = value.start.checked_sub(KEY.len()).filter(|&at| &line[at..value.start] == KEY) else {
        return false;
    };
    let start = out.len();
    out.extend_from_slice(&line[..at]);
    out.extend_from_slice(b"\"delta\":");
    if serde_json::to_writer(&mut *out, &delta).is_err() {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(&line[value.end..]);
    true
}

/// Where the value of the top-level field `key` lies in `line`, a JSON object as serde_json
/// writes it (no whitespace). Fields are walked in order: a string is skipped to its closing
/// quote (escapes included), an object or array to the bracket that closes it, anything else to
/// the next `,`, `}` or `]`. `None` when the field is not there or the line is not such an object.
pub(super) fn field_span(line: &[u8], key: &[u8]) -> Option<std::ops::Range<usize>> {
    if line.first() != Some(&b'{') {
        return None;
    }
    let mut at = 1;
    loop {
        let key_end = skip_string(line, at)?;
        if line.get(key_end) != Some(&b':') {
            return None;
        }
        let end = skip_value(line, key_end + 1)?;
        if &line[at + 1..key_end - 1] == key {
            return Some(key_end + 1..end);
        }
        match line.get(end) {
            Some(b',') => at = end + 1,
            _ => return None,
        }
    }
}

/// The index just past the string that starts at `at` (which must be its opening quote).
fn skip_string(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just past the JSON value that starts at `at`.
fn skip_value(b: &[u8], at: usize) -> Option<usize> {
    match b.get(at)? {
        b'"' => skip_string(b, at),
        b'{' | b'[' => {
            let (mut depth, mut i) = (0usize, at);
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = b[at..].iter().position(|c| matches!(c, b',' | b'}' | b']')).unwrap_or(b.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

impl Delta {
    /// [`Delta::between`] for two typed tasks, comparing fields instead of JSON trees: only what
    /// changed is serialised. The fields are listed exhaustively, so a field added to `Task` does
    /// not compile until it is listed here.
    pub fn of(prev: &Task, new: &Task) -> Option<Self> {
        let Task {
            task_id,
            name,
            description,
            task_type,
            priority,
            status,
            assigned_to,
            created_by,
            created_at,
            updated_at,
            depends_on,
            tags,
            required_capabilities,
            params,
            not_before,
            max_attempts,
            attempts,
            lease_secs,
            result,
            error,
            history,
            extra,
        } = new;
        if *task_id != prev.task_id {
            return None;
        }
        // Unknown fields first: they decide whether the change can be said exactly at all.
        let mut d = if *extra == prev.extra
            && extra.iter().zip(&prev.extra).all(|((a, x), (b, y))| a == b && strict_eq(x, y))
        {
            Delta::default()
        } else {
            Delta::between(&prev.extra, extra)?
        };
        // A field the task's serialisation leaves out when it is empty is unset, else set.
        fn put<T: serde::Serialize + PartialEq>(d: &mut Delta, key: &str, old: &T, new: &T, absent: bool) {
            if old != new {
                if absent {
                    d.unset.push(key.to_string());
                } else {
                    d.set
                        .insert(key.to_string(), serde_json::to_value(new).expect("a task field serialises"));
                }
            }
        }
        put(&mut d, "name", &prev.name, name, name.is_none());
        put(&mut d, "description", &prev.description, description, description.is_none());
        put(&mut d, "task_type", &prev.task_type, task_type, task_type.is_none());
        put(&mut d, "priority", &prev.priority, priority, false);
        put(&mut d, "status", &prev.status, status, false);
        put(&mut d, "assigned_to", &prev.assigned_to, assigned_to, assigned_to.is_none());
        put(&mut d, "created_by", &prev.created_by, created_by, created_by.is_none());
        put(&mut d, "created_at", &prev.created_at, created_at, created_at.is_none());
        put(&mut d, "updated_at", &prev.updated_at, updated_at, updated_at.is_none());
        put(&mut d, "depends_on", &prev.depends_on, depends_on, depends_on.is_empty());
        put(&mut d, "tags", &prev.tags, tags, tags.is_empty());
        put(
            &mut d,
            "required_capabilities",
            &prev.required_capabilities,
            required_capabilities,
            required_capabilities.is_empty(),
        );
        put(&mut d, "not_before", &prev.not_before, not_before, not_before.is_none());
        put(&mut d, "max_attempts", &prev.max_attempts, max_attempts, false);
        put(&mut d, "attempts", &prev.attempts, attempts, false);
        put(&mut d, "lease_secs", &prev.lease_secs, lease_secs, lease_secs.is_none());
        put(&mut d, "error", &prev.error, error, error.is_none());
        // JSON values: equal means the same keys in the same order too.
        for (key, old, new) in [("params", &prev.params, params), ("result", &prev.result, result)] {
            if !strict_eq(old, new) {
                if new.is_null() {
                    d.unset.push(key.to_string());
                } else {
                    d.set.insert(key.to_string(), new.clone());
                }
            }
        }
        let same = |a: &HistoryEntry, b: &HistoryEntry| {
            a.timestamp == b.timestamp
                && a.actor == b.actor
                && a.action == b.action
                && a.from == b.from
                && a.to == b.to
                && match (&a.details, &b.details) {
                    (Some(x), Some(y)) => strict_eq(x, y),
                    (x, y) => x.is_none() && y.is_none(),
                }
        };
        let kept =
            prev.history.len() <= history.len() && prev.history.iter().zip(history).all(|(a, b)| same(a, b));
        if kept && history.len() > prev.history.len() && !prev.history.is_empty() {
            let more = serde_json::to_value(&history[prev.history.len()..]).expect("history serialises");
            d.append.insert("history".into(), more);
        } else if !kept || history.len() != prev.history.len() {
            if history.is_empty() {
                d.unset.push("history".into());
            } else {
                d.set.insert("history".into(), serde_json::to_value(history).expect("history serialises"));
            }
        }
        Some(d)
    }
}

/// The reader's side, one per segment: the last image of every live task the segment mentioned.
#[derive(Debug, Default)]
pub struct Resolver {
    images: HashMap<String, Task>,
}

impl Resolver {
    /// Reads one line: a whole record, or one with a delta resolved against the segment's image.
    pub fn read(&mut self, line: &[u8]) -> Result<Record, String> {
        let rec = if may_hold_delta(line) { self.resolve(line)? } else { parse(line)? };
        if let Some((task, place)) = rec.entry.change() {
            if *place == Place::Done {
                self.images.remove(&task.task_id);
            } else {
                self.images.insert(task.task_id.clone(), task.clone());
            }
        }
        Ok(rec)
    }

    fn resolve(&self, line: &[u8]) -> Result<Record, String> {
        let mut v: Map<String, Value> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let Some(delta) = v.shift_remove("delta") else { return parse(line) };
        let delta = Delta::from_value(delta)?;
        let id =
            v.get("task_id").and_then(Value::as_str).ok_or("a record with a `delta` needs a `task_id`")?;
        let base = self.images.get(id).ok_or_else(|| {
            format!("a change to task `{id}` whose earlier record in this segment could not be read")
        })?;
        let Ok(Value::Object(mut task)) = serde_json::to_value(base) else {
            return Err("the task before this record does not serialise".into());
        };
        delta.apply(&mut task)?;
        v.insert("task".into(), Value::Object(task));
        // Through text, not `from_value`: a record's flattened fields buffer what they read, and
        // numbers beyond 64 bits survive that only from text.
        let text = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
        parse(&text)
    }
}

fn parse(line: &[u8]) -> Result<Record, String> {
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

/// Whether the line may hold a delta (a whole record whose task has a field named `delta`
/// somewhere takes the slower path and reads the same).
fn may_hold_delta(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"delta\":";
    line.windows(KEY.len()).any(|w| w == KEY)
}

#[cfg(test)]
mod tests;

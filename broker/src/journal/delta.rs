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
use protocol::task::CANONICAL_FIELDS;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The change between two images of a task, top-level fields only.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Delta {
    set: Map<String, Value>,
    unset: Vec<String>,
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

    /// The delta as it is written (`{"set":…,"unset":…,"append":…}`, empty parts left out).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if !self.set.is_empty() {
            m.insert("set".into(), Value::Object(self.set.clone()));
        }
        if !self.unset.is_empty() {
            m.insert("unset".into(), self.unset.iter().cloned().map(Value::String).collect());
        }
        if !self.append.is_empty() {
            m.insert("append".into(), Value::Object(self.append.clone()));
        }
        Value::Object(m)
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
    /// before `rec` (the image its last record about the task left), if the task is live.
    pub fn write(&mut self, out: &mut Vec<u8>, rec: &Record, prev: Option<&Task>) {
        let Some((task, place)) = rec.entry.change() else {
            // A record is strings, numbers and JSON values: serde_json cannot fail on it.
            serde_json::to_writer(&mut *out, rec).expect("a journal record serialises");
            return;
        };
        let done = *place == Place::Done;
        let id = task.task_id.as_str();
        if let Some(prev) = prev.filter(|_| self.imaged.contains(id))
            && let Some(line) = delta_line(rec, prev)
        {
            serde_json::to_writer(&mut *out, &line).expect("a journal record serialises");
        } else {
            serde_json::to_writer(&mut *out, rec).expect("a journal record serialises");
            if !done {
                self.imaged.insert(id.to_string());
            }
        }
        if done {
            self.imaged.remove(id);
        }
    }
}

/// `rec` with its task replaced by a delta against `prev`, if one says it exactly.
fn delta_line(rec: &Record, prev: &Task) -> Option<Value> {
    let (Ok(Value::Object(mut line)), Ok(Value::Object(base))) =
        (serde_json::to_value(rec), serde_json::to_value(prev))
    else {
        return None;
    };
    let Some(Value::Object(new)) = line.get("task") else { return None };
    let delta = Delta::between(&base, new)?;
    line.shift_remove("task");
    line.insert("delta".into(), delta.to_value());
    Some(Value::Object(line))
}

/// The reader's side, one per segment: the last image of every live task the segment mentioned.
#[derive(Debug, Default)]
pub struct Resolver {
    images: HashMap<String, Task>,
}

impl Resolver {
    /// Reads one line: a whole record, or one with a delta resolved against the segment's image.
    pub fn read(&mut self, line: &[u8]) -> Result<Record, String> {
        let rec = if memchr_delta(line) { self.resolve(line)? } else { parse(line)? };
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
fn memchr_delta(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"delta\":";
    line.windows(KEY.len()).any(|w| w == KEY)
}

#[cfg(test)]
mod tests;

//! Fields whose values go through a vocabulary table: the status, the priority and the
//! assignee (an agent id).

use super::ctx::Ctx;
use crate::legacy::ChangeKind;
use crate::legacy::agent::normalise_agent;
use crate::legacy::priority::{PriorityMatch, map_priority};
use crate::legacy::status::{StatusMatch, map_status};
use serde_json::{Value, json};

pub(super) fn status(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("status") else { return };
    // A status object (`{"state": "working", "progress": 0.5}`): its state is the status.
    let (spelling, whole_kept) = match &raw {
        Value::Null => return,
        Value::String(s) => (Some(s.clone()), false),
        Value::Object(o) => (
            ["state", "status", "value", "name"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_string),
            true,
        ),
        _ => (None, false),
    };
    let found = spelling.as_deref().map_or(StatusMatch::Unmapped, map_status);
    let s = found.status();
    cx.m.insert("status".into(), json!(s.as_str()));
    let to = Some(json!(s.as_str()));
    match found {
        StatusMatch::Canonical(_) if !whole_kept => {}
        StatusMatch::Canonical(_) | StatusMatch::Mapped(_) => {
            if whole_kept {
                cx.keep_legacy("status", raw.clone());
            }
            cx.change("status", ChangeKind::StatusMapped, Some(raw), to, whole_kept);
        }
        StatusMatch::Qualified(_) => {
            cx.keep_legacy("status", raw.clone());
            cx.change("status", ChangeKind::StatusMapped, Some(raw), to, true);
        }
        StatusMatch::Unmapped => {
            cx.keep_legacy("status", raw.clone());
            cx.change("status", ChangeKind::StatusUnmapped, Some(raw), to, true);
        }
    }
}

pub(super) fn priority(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("priority") else { return };
    if raw.is_null() {
        return;
    }
    let found = map_priority(&raw);
    let p = found.priority();
    cx.m.insert("priority".into(), json!(p.as_str()));
    let to = Some(json!(p.as_str()));
    match found {
        PriorityMatch::Canonical(_) => {}
        PriorityMatch::Mapped(_) => cx.change("priority", ChangeKind::PriorityMapped, Some(raw), to, false),
        PriorityMatch::Qualified(_) => {
            cx.keep_legacy("priority", raw.clone());
            cx.change("priority", ChangeKind::PriorityMapped, Some(raw), to, true);
        }
        PriorityMatch::Unmapped => {
            cx.keep_legacy("priority", raw.clone());
            cx.change("priority", ChangeKind::PriorityUnmapped, Some(raw), to, true);
        }
    }
}

pub(super) fn assignee(cx: &mut Ctx) {
    let Some(raw) = cx.m.remove("assigned_to") else { return };
    match &raw {
        Value::Null => {}
        Value::String(s) if s.trim().is_empty() => {
            cx.change("assigned_to", ChangeKind::ValueCoerced, Some(raw.clone()), None, false);
        }
        Value::String(s) => match normalise_agent(s) {
            Some(a) if a == *s => {
                cx.m.insert("assigned_to".into(), raw);
            }
            Some(a) => {
                cx.m.insert("assigned_to".into(), json!(a));
                cx.change("assigned_to", ChangeKind::AgentNormalised, Some(raw), Some(json!(a)), false);
            }
            None => {
                cx.keep_legacy("assigned_to", raw.clone());
                cx.change("assigned_to", ChangeKind::AgentUnrecognised, Some(raw), None, true);
            }
        },
        _ => {
            cx.keep_legacy("assigned_to", raw.clone());
            cx.change("assigned_to", ChangeKind::AgentUnrecognised, Some(raw), None, true);
        }
    }
}

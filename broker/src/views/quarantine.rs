//! `broker/quarantine/`: every entry beside the reason the broker wrote for it
//! (`<entry>.error.json`: the file, the field, the rule), oldest first (entry names start with the
//! journal sequence of their refusal). `requeued/` holds the reasons of entries sent back to the
//! inbox and is not listed.

use super::{ViewError, files, require_root};
use protocol::names::{REASON_SUFFIX, validate_quarantine_entry};
use runtime_layout::{Fs, Layout};
use serde::Serialize;
use serde_json::Value;

/// Largest entry shown whole by [`show`].
pub const MAX_SHOWN_BYTES: u64 = 1 << 20;

/// One quarantined input and why it is there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEntry {
    /// The entry's file name in `broker/quarantine/` (what `requeue` takes).
    pub name: String,
    pub bytes: u64,
    /// What the reason says, field by field (absent when the reason is missing or says less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The message kind, when the input was a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Where the input was when it was refused (relative to `agent_comms/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// An entry with its content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub entry: QuarantineEntry,
    /// The whole reason file.
    pub error: Value,
    /// The input: as JSON when it parses, else as text (invalid UTF-8 replaced); `null` when it
    /// is over [`MAX_SHOWN_BYTES`].
    pub content: Value,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn entry(fs: &dyn Fs, layout: &Layout, name: &str) -> Result<(QuarantineEntry, Value), ViewError> {
    let dir = layout.quarantine_dir();
    let bytes = fs.stat(&dir.join(name))?.map_or(0, |m| m.len);
    let error = match fs.read(&dir.join(format!("{name}{REASON_SUFFIX}")), 1 << 20) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(e) if e.is_not_found() => Value::Null,
        Err(e) => return Err(e.into()),
    };
    let e = QuarantineEntry {
        name: name.to_string(),
        bytes,
        quarantined_at: text(&error, "quarantined_at"),
        reason: text(&error, "reason"),
        field: text(&error, "field").filter(|f| !f.is_empty()),
        rule: text(&error, "rule"),
        kind: text(&error, "kind"),
        task_id: text(&error, "task_id"),
        file: text(&error, "file"),
    };
    Ok((e, error))
}

/// Every entry, oldest first.
pub fn list(fs: &dyn Fs, layout: &Layout) -> Result<Vec<QuarantineEntry>, ViewError> {
    require_root(fs, layout)?;
    files(fs, &layout.quarantine_dir())?
        .into_iter()
        .filter(|n| !n.ends_with(REASON_SUFFIX))
        .map(|n| entry(fs, layout, &n).map(|(e, _)| e))
        .collect()
}

/// One entry with its reason and content; `None` when there is no such entry. A name that is
/// not one file name inside the quarantine is an error, never a path followed.
pub fn show(fs: &dyn Fs, layout: &Layout, name: &str) -> Result<Option<Shown>, ViewError> {
    require_root(fs, layout)?;
    validate_quarantine_entry(name).map_err(ViewError::Invalid)?;
    let path = layout.quarantine_dir().join(name);
    match fs.stat(&path)? {
        Some(m) if m.kind == runtime_layout::FileKind::File => {}
        _ => return Ok(None),
    }
    let (entry, error) = entry(fs, layout, name)?;
    let content = match fs.read(&path, MAX_SHOWN_BYTES) {
        Ok(b) => serde_json::from_slice(&b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned())),
        Err(runtime_layout::FsError::TooLarge { .. }) => Value::Null,
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Shown { entry, error, content }))
}

/// Entries as a table.
pub fn render(entries: &[QuarantineEntry]) -> String {
    let mut out = format!("{:<60} {:<28} {}\n", "ENTRY", "QUARANTINED", "REASON");
    for e in entries {
        out.push_str(&format!(
            "{:<60} {:<28} {}\n",
            e.name,
            e.quarantined_at.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("(no reason file)")
        ));
    }
    out
}

//! Markdown messages: a note with bold header lines (`**From**: Agent-5`) read as a message
//! object.

use serde_json::Value;

/// A Markdown message with bold header lines (`**From**: Agent-5`, `**To**: Agent-1`,
/// `**Priority**: urgent`, `- **Timestamp**: ...`): an object with one key per header
/// (lower case, `_` for spaces), the first `# ` heading as `title`, and the text after the
/// headers (from the first `---` line, or the first line that is not a header) as `body`.
/// `None` unless it has a `From` or `To` header.
pub(super) fn markdown_message(text: &str) -> Option<Value> {
    let mut obj = serde_json::Map::new();
    let mut body_start = None;
    let mut seen_header = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim().trim_start_matches(['-', '*', ' ']).trim_start();
        let header = line.trim().trim_start_matches(['-', ' ']).strip_prefix("**").and_then(|rest| {
            let (name, value) = rest.split_once("**")?;
            let name = name.trim().trim_end_matches(':');
            let value = value.trim_start().strip_prefix(':').unwrap_or(value).trim();
            let ok = !name.is_empty()
                && name.len() <= 40
                && name.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '_');
            ok.then(|| (name.to_lowercase().replace(' ', "_"), value.to_string()))
        });
        if let Some((name, value)) = header.filter(|_| body_start.is_none()) {
            seen_header = true;
            obj.entry(name).or_insert(Value::String(value));
            continue;
        }
        if !seen_header {
            if let Some(title) = line.trim().strip_prefix("# ") {
                obj.entry("title").or_insert(Value::String(title.trim().to_string()));
            }
            continue;
        }
        if body_start.is_none() && !t.is_empty() {
            body_start = Some(if line.trim() == "---" { i + 1 } else { i });
        }
    }
    if !(obj.contains_key("from") || obj.contains_key("to")) {
        return None;
    }
    let body = body_start.map(|b| lines[b.min(lines.len())..].join("\n")).unwrap_or_default();
    obj.insert("body".into(), Value::String(body.trim().to_string()));
    Some(Value::Object(obj))
}

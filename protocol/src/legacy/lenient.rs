//! Reading bytes that may not be strict JSON: strict JSON first, then known repairs, each named.
//!
//! The driver ([`parse_lenient`]) and the salvage of values from text that stays broken are
//! here; the repairs are one idea per file: [`decode`] (bytes to text), [`markers`] (merge
//! markers and template wrappers around a document), [`scrub`] (comments, placeholders, Python
//! literals, bare words, trailing commas) and [`markdown`] (a Markdown message).

mod decode;
mod markdown;
mod markers;
mod scrub;

use super::yaml;
use decode::decode;
use markdown::markdown_message;
use markers::{resolve_merge_markers, strip_template_wrapper};
use scrub::scrub;
use serde_json::Value;
use std::fmt;

/// A parsed value and the repairs that were needed to read it (empty for strict JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient {
    pub value: Value,
    pub repairs: Vec<String>,
}

/// Why bytes could not be read: the rule that failed, and where (1-based line and column of the
/// original text, as near as the repairs allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub rule: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (line {}, column {})", self.rule, self.line, self.column)
    }
}

impl std::error::Error for ParseFailure {}

/// Repair names, as they appear in [`Lenient::repairs`].
pub mod repair {
    pub const UTF16: &str = "decoded UTF-16 text (byte-order mark)";
    pub const INVALID_UTF8: &str = "replaced invalid UTF-8 byte sequences with U+FFFD";
    pub const BOM: &str = "removed a UTF-8 byte-order mark";
    pub const MERGE_MARKERS: &str =
        "resolved git merge-conflict markers, keeping our side (between <<<<<<< and =======)";
    pub const TEMPLATE_WRAPPER: &str = "removed a `{{ ... }}` template wrapper around the document";
    pub const COMMENTS: &str = "removed comments (`//`, `/* */` or `#`)";
    pub const PLACEHOLDER_VALUES: &str =
        "quoted unquoted template placeholders (`{{ ... }}`, `[NAME]`, `<name>`) used as values";
    pub const BARE_WORDS: &str = "quoted bare words used as values or keys";
    pub const PYTHON_LITERALS: &str = "read Python literals (single-quoted strings, True, False, None)";
    pub const TRAILING_COMMAS: &str = "removed trailing commas before `}` or `]`";
    pub const TRAILING_DATA: &str = "ignored trailing data after the first complete JSON value";
    pub const SALVAGED_LIST: &str = "kept the complete items of a list that breaks off";
    pub const YAML: &str = "read as YAML (block mappings and lists)";
    pub const JSON_LINES: &str = "read concatenated JSON values (JSON Lines) as a list";
    pub const MARKDOWN: &str =
        "read a Markdown message's bold header lines (`**From**:`, `**To**:`) as fields";
}

fn fail(rule: impl Into<String>, line: usize, column: usize) -> ParseFailure {
    ParseFailure { rule: rule.into(), line: line.max(1), column: column.max(1) }
}

/// 1-based line and column of byte offset `at`.
fn line_col(text: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

/// Parses bytes that may not be strict JSON. Strict JSON first; otherwise, in this order:
/// a UTF-8 byte-order mark is dropped; git merge-conflict markers are resolved keeping *our*
/// side (the version the writer had before the merge, the one its own process wrote); a
/// `{{ ... }}` template wrapper around the whole document is removed; `//`, `/* */` and `#`
/// comments are blanked; unquoted `{{ ... }}` placeholders used as values are quoted; trailing
/// commas are dropped. If the result still is not JSON: a complete first value followed by
/// garbage is kept (the garbage is ignored); a list that breaks off keeps its complete items;
/// a document that does not start like JSON is read as simple YAML. Every repair made is named
/// in [`Lenient::repairs`]. Failure names the rule and the line and column.
pub fn parse_lenient(bytes: &[u8]) -> Result<Lenient, ParseFailure> {
    let mut repairs = Vec::new();
    let decoded = decode(bytes, &mut repairs)?;
    let text = decoded.as_str();
    let text = match text.strip_prefix('\u{feff}') {
        Some(t) => {
            repairs.push(repair::BOM.to_string());
            t
        }
        None => text,
    };
    if text.trim().is_empty() {
        return Err(fail("empty file", 1, 1));
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(Lenient { value, repairs });
    }

    let mut work = text.to_string();
    if let Some(w) = resolve_merge_markers(&work) {
        work = w;
        repairs.push(repair::MERGE_MARKERS.to_string());
    }
    if let Some(w) = strip_template_wrapper(&work) {
        work = w;
        repairs.push(repair::TEMPLATE_WRAPPER.to_string());
    }
    let looks_json = work.trim_start().starts_with(['{', '[']);
    if looks_json {
        let scan = scrub(&work, false);
        if scan.comments {
            repairs.push(repair::COMMENTS.to_string());
        }
        if scan.placeholders {
            repairs.push(repair::PLACEHOLDER_VALUES.to_string());
        }
        if scan.bare_words {
            repairs.push(repair::BARE_WORDS.to_string());
        }
        if scan.python {
            repairs.push(repair::PYTHON_LITERALS.to_string());
        }
        if scan.trailing_commas {
            repairs.push(repair::TRAILING_COMMAS.to_string());
        }
        work = scan.text;
    }
    let strict_err = match serde_json::from_str::<Value>(&work) {
        Ok(value) => return Ok(Lenient { value, repairs }),
        Err(e) => e,
    };
    if looks_json {
        // Bare words are quoted only if that makes the whole document JSON: quoting the words
        // of trailing program text would hide that it is garbage.
        let bare = scrub(&work, true);
        if bare.bare_words
            && let Ok(value) = serde_json::from_str::<Value>(&bare.text)
        {
            repairs.push(repair::BARE_WORDS.to_string());
            return Ok(Lenient { value, repairs });
        }
        if let Some(values) = json_lines(&work) {
            repairs.push(format!("{}: {} values", repair::JSON_LINES, values.len()));
            return Ok(Lenient { value: Value::Array(values), repairs });
        }
        if let Some((value, at)) = first_value(&work) {
            let (l, _) = line_col(work.as_bytes(), at);
            repairs.push(format!("{} (from line {l})", repair::TRAILING_DATA));
            return Ok(Lenient { value, repairs });
        }
        if let Some((items, at)) = salvage_list(&work) {
            let (l, c) = line_col(work.as_bytes(), at);
            repairs.push(format!(
                "{}: {} items, broken at line {l}, column {c}",
                repair::SALVAGED_LIST,
                items.len()
            ));
            return Ok(Lenient { value: Value::Array(items), repairs });
        }
        let rule = format!("not JSON: {}", serde_rule(&strict_err));
        return Err(fail(rule, strict_err.line(), strict_err.column()));
    }
    match yaml::parse(&work) {
        Ok(value) => {
            repairs.push(repair::YAML.to_string());
            Ok(Lenient { value, repairs })
        }
        Err(e) => match markdown_message(&work) {
            Some(value) => {
                repairs.push(repair::MARKDOWN.to_string());
                Ok(Lenient { value, repairs })
            }
            None => Err(fail(format!("neither JSON nor simple YAML: {}", e.rule), e.line, e.column)),
        },
    }
}

/// Two or more complete JSON values one after another (JSON Lines, or records appended to a
/// file): all of them, as a list. `None` unless every byte belongs to a value.
fn json_lines(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        values.push(v.ok()?);
    }
    (values.len() >= 2).then_some(values)
}

/// serde_json's message without its " at line L column C" tail (the position is reported apart).
fn serde_rule(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// The first complete JSON value, if something non-blank follows it; with the offset where the
/// trailing data begins.
fn first_value(text: &str) -> Option<(Value, usize)> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    let at = stream.byte_offset();
    if text[at..].trim().is_empty() {
        return None;
    }
    let skipped = text[at..].len() - text[at..].trim_start().len();
    Some((value, at + skipped))
}

/// A top-level list read item by item: the complete items before the point where it breaks
/// off, and that point. `None` if not a list or no item is complete.
fn salvage_list(text: &str) -> Option<(Vec<Value>, usize)> {
    let start = text.len() - text.trim_start().len();
    if !text[start..].starts_with('[') {
        return None;
    }
    let mut pos = start + 1;
    let mut items = Vec::new();
    loop {
        let rest = &text[pos..];
        let skip = rest.len() - rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',').len();
        pos += skip;
        if text[pos..].starts_with(']') || pos >= text.len() {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) if v.is_object() || v.is_array() => {
                items.push(v);
                pos += stream.byte_offset();
            }
            _ => break,
        }
    }
    if items.is_empty() { None } else { Some((items, pos)) }
}

#[cfg(test)]
mod tests;

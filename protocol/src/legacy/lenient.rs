//! Reading bytes that may not be strict JSON: strict JSON first, then known repairs, each named.

use super::yaml;
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

/// A Markdown message with bold header lines (`**From**: Agent-5`, `**To**: Agent-1`,
/// `**Priority**: urgent`, `- **Timestamp**: ...`): an object with one key per header
/// (lower case, `_` for spaces), the first `# ` heading as `title`, and the text after the
/// headers (from the first `---` line, or the first line that is not a header) as `body`.
/// `None` unless it has a `From` or `To` header.
fn markdown_message(text: &str) -> Option<Value> {
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

/// Bytes to text: UTF-8; UTF-16 with a byte-order mark (what Windows PowerShell writes by
/// default); UTF-8 with a few invalid bytes, which become U+FFFD. Bytes with NUL in them (and
/// no UTF-16 mark) are not text.
fn decode(bytes: &[u8], repairs: &mut Vec<String>) -> Result<String, ParseFailure> {
    let utf16_mark = matches!(bytes, [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]);
    if !utf16_mark {
        if let Some(at) = bytes.iter().position(|b| *b == 0) {
            let (l, c) = line_col(bytes, at);
            return Err(fail("not text: contains NUL bytes", l, c));
        }
        if let Ok(t) = std::str::from_utf8(bytes) {
            return Ok(t.to_string());
        }
    }
    let utf16 = |be: bool| -> Option<String> {
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| if be { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
            .collect();
        String::from_utf16(&units).ok()
    };
    let decoded = match bytes {
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        _ => None,
    };
    if let Some(t) = decoded {
        repairs.push(repair::UTF16.to_string());
        return Ok(t);
    }
    if utf16_mark {
        return Err(fail("not text: a UTF-16 byte-order mark but invalid UTF-16", 1, 1));
    }
    let t = String::from_utf8_lossy(bytes).into_owned();
    let genuine = bytes.windows(3).filter(|w| *w == [0xEF, 0xBF, 0xBD]).count();
    let n = t.matches('\u{fffd}').count().saturating_sub(genuine);
    repairs.push(format!("{}: {n}", repair::INVALID_UTF8));
    Ok(t)
}

/// serde_json's message without its " at line L column C" tail (the position is reported apart).
fn serde_rule(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Resolves `<<<<<<<` / `|||||||` / `=======` / `>>>>>>>` blocks keeping our side. Dropped
/// lines become empty lines so that line numbers still point into the original.
fn resolve_merge_markers(text: &str) -> Option<String> {
    if !text.lines().any(|l| l.starts_with("<<<<<<<")) {
        return None;
    }
    #[derive(PartialEq)]
    enum Side {
        Outside,
        Ours,
        Base,
        Theirs,
    }
    let mut side = Side::Outside;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let nl = if line.ends_with('\n') { "\n" } else { "" };
        let keep = if line.starts_with("<<<<<<<") {
            side = Side::Ours;
            false
        } else if line.starts_with("|||||||") && side == Side::Ours {
            side = Side::Base;
            false
        } else if line.starts_with("=======") && matches!(side, Side::Ours | Side::Base) {
            side = Side::Theirs;
            false
        } else if line.starts_with(">>>>>>>") && side == Side::Theirs {
            side = Side::Outside;
            false
        } else {
            matches!(side, Side::Outside | Side::Ours)
        };
        if keep {
            out.push_str(line);
        } else {
            out.push_str(nl);
        }
    }
    Some(out)
}

/// `{{ {...} }}` or `{{"a": 1}}` around the whole document: the outer braces are blanked.
fn strip_template_wrapper(text: &str) -> Option<String> {
    let start = text.len() - text.trim_start().len();
    let body = text[start..].trim_end();
    let end = start + body.len();
    if body.len() < 4 || !body.starts_with("{{") || !body.ends_with("}}") {
        return None;
    }
    let after = body[2..].trim_start();
    let before_end = body[..body.len() - 2].trim_end();
    // `{{ {` ... `} }}`: a whole JSON document inside; otherwise `{{"a":1}}` loses one brace
    // on each side.
    let n = if (after.starts_with('{') && before_end.ends_with('}'))
        || (after.starts_with('[') && before_end.ends_with(']'))
    {
        2
    } else {
        1
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str(&" ".repeat(n));
    out.push_str(&body[n..body.len() - n]);
    out.push_str(&" ".repeat(n));
    out.push_str(&text[end..]);
    Some(out)
}

struct Scrubbed {
    text: String,
    comments: bool,
    placeholders: bool,
    bare_words: bool,
    python: bool,
    trailing_commas: bool,
}

/// The index of `close` after `from` on the same line, if every character between is one of
/// `ok`.
fn close_on_line(chars: &[char], from: usize, close: char, ok: impl Fn(char) -> bool) -> Option<usize> {
    let mut j = from;
    while j < chars.len() && chars[j] != '\n' {
        if chars[j] == close {
            return Some(j);
        }
        if !ok(chars[j]) {
            return None;
        }
        j += 1;
    }
    None
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$')
}

/// One pass outside strings: comments become spaces (newlines kept); `{{ ... }}`, `[NAME]` and
/// `<name>` placeholders on one line become strings; Python strings and `True`/`False`/`None`
/// become JSON; with `bare`, other bare words become strings; then trailing commas become
/// spaces.
fn scrub(text: &str, bare: bool) -> Scrubbed {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let (mut comments, mut placeholders, mut bare_words, mut python) = (false, false, false, false);
    let mut i = 0;
    let mut in_str = false;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
                i += 1;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                comments = true;
                while i < chars.len() && chars[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '#' => {
                comments = true;
                while i < chars.len() && chars[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                comments = true;
                out.extend([' ', ' ']);
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    out.push(if chars[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
                if i < chars.len() {
                    out.extend([' ', ' ']);
                    i += 2;
                }
            }
            '{' if chars.get(i + 1) == Some(&'{') => {
                // A placeholder used as a value: `{{ name }}` closed on the same line.
                let close = (i + 2..chars.len().saturating_sub(1))
                    .take_while(|j| chars[*j] != '\n')
                    .find(|j| chars[*j] == '}' && chars[*j + 1] == '}');
                match close {
                    Some(j) => {
                        placeholders = true;
                        let inner: String = chars[i..j + 2].iter().collect();
                        out.extend(Value::String(inner).to_string().chars());
                        i = j + 2;
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            // `[AUTO_TIMESTAMP]` and `<agent name>` where a value belongs.
            '[' | '<'
                if chars.get(i + 1).is_some_and(|n| n.is_alphabetic() || *n == '_')
                    && !matches!(chars.get(i + 1), Some('t' | 'f' | 'n')) =>
            {
                let close = if c == '[' { ']' } else { '>' };
                let ok = |ch: char| word_char(ch) || matches!(ch, ' ' | '(' | ')' | ':' | '/');
                match close_on_line(&chars, i + 1, close, ok) {
                    Some(j) => {
                        placeholders = true;
                        let inner: String = chars[i..=j].iter().collect();
                        out.extend(Value::String(inner).to_string().chars());
                        i = j + 1;
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            // A Python string: `'...'` on one line.
            '\'' => match close_on_line(&chars, i + 1, '\'', |_| true) {
                Some(_) => {
                    python = true;
                    let mut s = String::new();
                    let mut j = i + 1;
                    while chars[j] != '\'' {
                        if chars[j] == '\\' && chars.get(j + 1).is_some_and(|n| *n != '\n') {
                            s.push(chars[j + 1]);
                            j += 2;
                        } else {
                            s.push(chars[j]);
                            j += 1;
                        }
                        if j >= chars.len() || chars[j] == '\n' {
                            break;
                        }
                    }
                    out.extend(Value::String(s).to_string().chars());
                    // Past the closing quote; a string cut off by the line end keeps the newline.
                    i = if j < chars.len() && chars[j] == '\'' { j + 1 } else { j };
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            },
            // A bare word: not inside a number (`1e5`), not `true`/`false`/`null`.
            _ if (c.is_alphabetic() || c == '_')
                && (i == 0
                    || !(chars[i - 1].is_alphanumeric()
                        || matches!(chars[i - 1], '.' | '+' | '-' | '_'))) =>
            {
                let mut j = i;
                while j < chars.len() && word_char(chars[j]) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                match word.as_str() {
                    "true" | "false" | "null" => out.extend(word.chars()),
                    "True" | "False" | "None" => {
                        python = true;
                        out.extend(
                            if word == "None" {
                                "null"
                            } else if word == "True" {
                                "true"
                            } else {
                                "false"
                            }
                            .chars(),
                        );
                    }
                    _ if bare => {
                        bare_words = true;
                        out.extend(Value::String(word).to_string().chars());
                    }
                    _ => out.extend(word.chars()),
                }
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Trailing commas: a `,` (outside strings) whose next non-space character closes a container.
    let mut trailing_commas = false;
    let mut in_str = false;
    let mut k = 0;
    while k < out.len() {
        let c = out[k];
        if in_str {
            if c == '\\' {
                k += 2;
                continue;
            }
            if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if c == ',' {
            let next = out[k + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                out[k] = ' ';
                trailing_commas = true;
            }
        }
        k += 1;
    }
    Scrubbed { text: out.into_iter().collect(), comments, placeholders, bare_words, python, trailing_commas }
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
mod tests {
    use super::*;

    #[test]
    fn whitespace_left_by_a_merge_marker_repair_is_an_error_not_a_panic() {
        // Found by the `legacy_normalise` fuzz target: only the "theirs" side of a conflict, so
        // nothing but line breaks is left once the markers are resolved.
        for input in ["<<<<<<< a\n=======\nx\n>>>>>>> b\n", "\n\n", "  \t\n"] {
            assert!(parse_lenient(input.as_bytes()).is_err(), "{input:?}");
        }
    }
    use serde_json::json;

    fn ok(s: &str) -> Lenient {
        parse_lenient(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn has(l: &Lenient, name: &str) -> bool {
        l.repairs.iter().any(|r| r.starts_with(name))
    }

    #[test]
    fn strict_json_needs_no_repair() {
        let l = ok(r#"{"a": [1, 2]}"#);
        assert_eq!(l.value, json!({"a": [1, 2]}));
        assert!(l.repairs.is_empty());
    }

    #[test]
    fn bom() {
        let l = ok("\u{feff}{\"a\":1}");
        assert_eq!(l.value, json!({"a": 1}));
        assert!(has(&l, repair::BOM));
    }

    #[test]
    fn line_and_hash_and_block_comments() {
        let l = ok("{\n \"a\": \"x//y\", // note\n # another\n \"b\": /* inline */ 2\n}");
        assert_eq!(l.value, json!({"a": "x//y", "b": 2}));
        assert!(has(&l, repair::COMMENTS));
        assert_eq!(l.repairs.len(), 1);
    }

    #[test]
    fn trailing_commas() {
        let l = ok("{\"a\": [1, 2,], \"b\": 3,\n}");
        assert_eq!(l.value, json!({"a": [1, 2], "b": 3}));
        assert!(has(&l, repair::TRAILING_COMMAS));
    }

    #[test]
    fn template_wrapper() {
        let l = ok("{{\n{\n  \"task_id\": \"T1\"\n}\n}}\n");
        assert_eq!(l.value, json!({"task_id": "T1"}));
        assert!(has(&l, repair::TEMPLATE_WRAPPER));
        let l = ok("{{\"task_id\": \"T1\", \"x\": {\"y\": 1}}}");
        assert_eq!(l.value, json!({"task_id": "T1", "x": {"y": 1}}));
        let l = ok("{{\n[1, 2]\n}}");
        assert_eq!(l.value, json!([1, 2]));
    }

    #[test]
    fn placeholders_as_values() {
        let l = ok("{\"priority\": {{priority}}, \"n\": 1}");
        assert_eq!(l.value, json!({"priority": "{{priority}}", "n": 1}));
        assert!(has(&l, repair::PLACEHOLDER_VALUES));
        let l = ok("{\"t\": [AUTO_TIMESTAMP], \"a\": <agent name>, \"l\": [true, null], \"m\": [\"x\"]}");
        assert_eq!(
            l.value,
            json!({"t": "[AUTO_TIMESTAMP]", "a": "<agent name>", "l": [true, null], "m": ["x"]})
        );
    }

    #[test]
    fn bare_words_and_python_literals() {
        let l = ok("{\"status\": PENDING, owner: Agent-2, \"n\": 1e5, \"x\": -2.5E-3}");
        // Numbers keep the form they were written in (arbitrary precision: nothing is rounded).
        let want: Value =
            serde_json::from_str(r#"{"status": "PENDING", "owner": "Agent-2", "n": 1e5, "x": -2.5E-3}"#)
                .unwrap();
        assert_eq!(l.value, want);
        assert!(has(&l, repair::BARE_WORDS));
        let l = ok("{'task_id': 'T1', 'done': True, 'x': None, 'q': 'it\\'s \"q\"', 'f': False}");
        assert_eq!(l.value, json!({"task_id": "T1", "done": true, "x": null, "q": "it's \"q\"", "f": false}));
        assert!(has(&l, repair::PYTHON_LITERALS));
        assert!(!has(&l, repair::BARE_WORDS));
    }

    #[test]
    fn text_encodings() {
        let mut le = vec![0xFF, 0xFE];
        le.extend("{\"a\": \"é\"}".encode_utf16().flat_map(u16::to_le_bytes));
        let l = parse_lenient(&le).unwrap();
        assert_eq!(l.value, json!({"a": "é"}));
        assert!(has(&l, repair::UTF16));
        let mut be = vec![0xFE, 0xFF];
        be.extend("[1]".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(parse_lenient(&be).unwrap().value, json!([1]));
        let l = parse_lenient(b"{\"a\": \"caf\xe9\"}").unwrap();
        assert_eq!(l.value, json!({"a": "caf\u{fffd}"}));
        assert_eq!(l.repairs, vec![format!("{}: 1", repair::INVALID_UTF8)]);
    }

    #[test]
    fn merge_markers_keep_ours() {
        let text =
            "{\n<<<<<<< HEAD\n  \"status\": \"ours\"\n=======\n  \"status\": \"theirs\"\n>>>>>>> branch\n}\n";
        let l = ok(text);
        assert_eq!(l.value, json!({"status": "ours"}));
        assert!(has(&l, repair::MERGE_MARKERS));
        let diff3 = "{\n<<<<<<< ours\n\"a\": 1\n||||||| base\n\"a\": 0\n=======\n\"a\": 2\n>>>>>>> theirs\n}";
        assert_eq!(ok(diff3).value, json!({"a": 1}));
    }

    #[test]
    fn json_lines_become_a_list() {
        let l = ok("{\"task_id\": \"A\"}\n{\"task_id\": \"B\"}\n");
        assert_eq!(l.value, json!([{"task_id": "A"}, {"task_id": "B"}]));
        assert!(has(&l, repair::JSON_LINES));
    }

    #[test]
    fn markdown_messages() {
        let text = "# 🚨 INBOX MESSAGE - TEXT\n\n**From**: DISCORD\n**To**: yall\n**Priority**: regular\n**Message Type**: text\n- **Timestamp**: 2025-12-08T16:59:21.033064\n\n---\n\nplease post this\n\n---\n*footer*\n";
        let l = ok(text);
        assert!(has(&l, repair::MARKDOWN));
        let v = &l.value;
        assert_eq!(
            (v["from"].as_str(), v["to"].as_str(), v["message_type"].as_str()),
            (Some("DISCORD"), Some("yall"), Some("text"))
        );
        assert_eq!(v["timestamp"], "2025-12-08T16:59:21.033064");
        assert_eq!(v["title"], "🚨 INBOX MESSAGE - TEXT");
        assert!(v["body"].as_str().unwrap().starts_with("please post this"));
        assert!(parse_lenient(b"# Notes\n\nJust prose, **bold** words.\n").is_err());
    }

    #[test]
    fn trailing_garbage() {
        let l = ok("{\"a\": 1}\n{\"a\": 2}garbage");
        assert_eq!(l.value, json!({"a": 1}));
        assert!(has(&l, repair::TRAILING_DATA));
        assert!(l.repairs[0].contains("line 2"));
    }

    #[test]
    fn list_that_breaks_off_keeps_complete_items() {
        let l = ok("[\n {\"id\": 1},\n {\"id\": 2}\n  import json\nx = 1\n");
        assert_eq!(l.value, json!([{"id": 1}, {"id": 2}]));
        assert!(has(&l, repair::SALVAGED_LIST));
        assert!(l.repairs[0].contains("2 items"), "{:?}", l.repairs);
    }

    #[test]
    fn yaml_documents() {
        let l = ok("id: t-1\nstatus: active\nsource:\n  - a.py\n  - b.py\nmeta:\n  owner: Agent-2\n  n: 3\n");
        assert_eq!(
            l.value,
            json!({"id": "t-1", "status": "active", "source": ["a.py", "b.py"], "meta": {"owner": "Agent-2", "n": 3}})
        );
        assert!(has(&l, repair::YAML));
        let l = ok("- task_id: A\n  priority: HIGH\n- task_id: B\n");
        assert_eq!(l.value, json!([{"task_id": "A", "priority": "HIGH"}, {"task_id": "B"}]));
    }

    #[test]
    fn repairs_compose() {
        let l = ok("{{\n{\n  \"a\": 1, // one\n  \"b\": [2,],\n}\n}}");
        assert_eq!(l.value, json!({"a": 1, "b": [2]}));
        assert_eq!(l.repairs.len(), 3, "{:?}", l.repairs);
    }

    #[test]
    fn failures_name_rule_line_and_column() {
        let e = parse_lenient(b"{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert!(e.rule.starts_with("not JSON"), "{e}");
        assert_eq!(e.line, 3);
        let e = parse_lenient(b"").unwrap_err();
        assert_eq!(e.rule, "empty file");
        let e = parse_lenient(b"{\n\"a\": 1\x00}").unwrap_err();
        assert_eq!((e.rule.as_str(), e.line, e.column), ("not text: contains NUL bytes", 2, 7));
        let e = parse_lenient("# Title\n\n**Note**: not a message\n".as_bytes()).unwrap_err();
        assert!(e.rule.starts_with("neither JSON nor simple YAML"), "{e}");
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("line 3"));
    }
}

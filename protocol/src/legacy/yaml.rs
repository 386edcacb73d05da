//! A small reader for the YAML that turns up where JSON was expected: block mappings, block
//! lists, `- key: value` list items, plain and quoted scalars, `[a, b]` flow lists and `|`/`>`
//! block text. Anything beyond that (anchors, tags, multi-line plain scalars, flow mappings
//! with content) is refused, so prose and Markdown are never mistaken for YAML.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted (JSON's reader stops at 128 too).
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub rule: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
struct Line {
    indent: usize,
    text: String,
    no: usize,
}

fn err<T>(rule: &str, line: &Line) -> Result<T, YamlError> {
    Err(YamlError { rule: rule.to_string(), line: line.no, column: line.indent + 1 })
}

/// Parses a YAML document made of block mappings and lists. A document that is a single plain
/// scalar is refused (it is prose, not data).
pub(crate) fn parse(text: &str) -> Result<Value, YamlError> {
    // Documents separated by `---` (an append-only log of records): a list of them.
    let mut docs: Vec<Vec<Line>> = vec![Vec::new()];
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let lead = &raw[..raw.len() - raw.trim_start().len()];
        if lead.contains('\t') {
            return Err(YamlError { rule: "tab indentation".into(), line: no, column: 1 });
        }
        let t = strip_comment(raw);
        if t.trim_end() == "---" || t.starts_with("--- ") {
            docs.push(Vec::new());
            continue;
        }
        if t.trim().is_empty() || t.trim_end() == "..." {
            continue;
        }
        let indent = t.len() - t.trim_start().len();
        if let Some(d) = docs.last_mut() {
            d.push(Line { indent, text: t.trim().to_string(), no });
        }
    }
    docs.retain(|d| !d.is_empty());
    let mut values = Vec::new();
    for mut lines in docs {
        values.push(parse_doc(&mut lines)?);
    }
    match values.len() {
        0 => Err(YamlError { rule: "no content".into(), line: 1, column: 1 }),
        1 => Ok(values.remove(0)),
        _ => Ok(Value::Array(values)),
    }
}

fn parse_doc(lines: &mut [Line]) -> Result<Value, YamlError> {
    let first = lines[0].clone();
    let mut pos = 0;
    let v = parse_block(lines, &mut pos, first.indent, 0)?;
    if let Some(l) = lines.get(pos) {
        return err("unexpected indentation", l);
    }
    if !(v.is_object() || v.is_array()) {
        return err("expected `key: value` or `- item`", &first);
    }
    Ok(v)
}

/// Removes a `#` comment: at the start of the line, or after a space, outside quotes.
fn strip_comment(raw: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in raw.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &raw[..i],
            _ => {}
        }
        prev = c;
    }
    raw
}

fn parse_block(lines: &mut [Line], pos: &mut usize, indent: usize, depth: usize) -> Result<Value, YamlError> {
    let line = lines[*pos].clone();
    if depth > MAX_DEPTH {
        return err("nested too deeply", &line);
    }
    if is_item(&line.text) {
        parse_seq(lines, pos, indent, depth)
    } else if split_key(&line.text).is_some() {
        parse_map(lines, pos, indent, depth)
    } else if *pos + 1 == lines.len() || lines[*pos + 1].indent < indent {
        *pos += 1;
        scalar(&line.text, &line)
    } else {
        err("expected `key: value` or `- item`", &line)
    }
}

fn is_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// `key: rest` with a plain or quoted key. Keys are words: letters, digits, `_`, `-`, `.`,
/// `/`, spaces; they do not start with punctuation.
fn split_key(t: &str) -> Option<(String, &str)> {
    if let Some(q) = t.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = t[1..].find(q)? + 1;
        let key = &t[1..end];
        let rest = t[end + 1..].strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        return Some((key.to_string(), rest.trim()));
    }
    let i = t.find(": ").or_else(|| t.strip_suffix(':').map(|k| k.len()))?;
    let key = &t[..i];
    let ok = key.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | '$'));
    if !ok {
        return None;
    }
    Some((key.trim_end().to_string(), t[i + 1..].trim()))
}

fn parse_map(lines: &mut [Line], pos: &mut usize, indent: usize, depth: usize) -> Result<Value, YamlError> {
    let mut map = Map::new();
    while let Some(line) = lines.get(*pos).cloned() {
        if line.indent < indent {
            break;
        }
        if line.indent > indent {
            return err("unexpected indentation", &line);
        }
        let Some((key, rest)) = split_key(&line.text) else {
            return err("expected `key: value`", &line);
        };
        *pos += 1;
        let value = value_after(lines, pos, indent, rest, &line, true, depth)?;
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

fn parse_seq(lines: &mut [Line], pos: &mut usize, indent: usize, depth: usize) -> Result<Value, YamlError> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*pos).cloned() {
        if line.indent < indent {
            break;
        }
        if line.indent == indent && !is_item(&line.text) {
            break;
        }
        if line.indent > indent {
            return err("expected `- item`", &line);
        }
        let rest = line.text[1..].trim_start();
        if rest.is_empty() {
            *pos += 1;
            items.push(value_after(lines, pos, indent, "", &line, false, depth)?);
        } else if split_key(rest).is_some() {
            // `- key: value`: a mapping whose keys sit at the column after `- `.
            let inner = indent + (line.text.len() - rest.len());
            lines[*pos] = Line { indent: inner, text: rest.to_string(), no: line.no };
            items.push(parse_map(lines, pos, inner, depth + 1)?);
        } else {
            *pos += 1;
            items.push(scalar(rest, &line)?);
        }
    }
    Ok(Value::Array(items))
}

/// The value of a key or item whose inline part is `rest`: inline scalar, block text, or a
/// nested block on the following, more indented lines.
fn value_after(
    lines: &mut [Line],
    pos: &mut usize,
    indent: usize,
    rest: &str,
    line: &Line,
    in_map: bool,
    depth: usize,
) -> Result<Value, YamlError> {
    if rest.starts_with('|') || rest.starts_with('>') {
        let mut parts = Vec::new();
        while let Some(l) = lines.get(*pos).filter(|l| l.indent > indent) {
            parts.push(l.text.clone());
            *pos += 1;
        }
        let sep = if rest.starts_with('|') { "\n" } else { " " };
        return Ok(Value::String(parts.join(sep)));
    }
    if !rest.is_empty() {
        return scalar(rest, line);
    }
    match lines.get(*pos) {
        Some(next) if next.indent > indent => {
            let ni = next.indent;
            parse_block(lines, pos, ni, depth + 1)
        }
        // YAML allows a list under a key at the key's own indentation.
        Some(next) if in_map && next.indent == indent && is_item(&next.text) => {
            parse_seq(lines, pos, indent, depth + 1)
        }
        _ => Ok(Value::Null),
    }
}

fn scalar(t: &str, line: &Line) -> Result<Value, YamlError> {
    let t = t.trim();
    if t.starts_with('"') {
        return serde_json::from_str::<String>(t)
            .map(Value::String)
            .or_else(|_| err("bad double-quoted string", line));
    }
    if let Some(inner) = t.strip_prefix('\'') {
        let Some(inner) = inner.strip_suffix('\'') else {
            return err("bad single-quoted string", line);
        };
        return Ok(Value::String(inner.replace("''", "'")));
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        if inner.contains(['[', '{']) {
            return err("nested flow collections are not supported", line);
        }
        if inner.trim().is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        return inner.split(',').map(|p| scalar(p, line)).collect::<Result<Vec<_>, _>>().map(Value::Array);
    }
    if t == "{}" {
        return Ok(Value::Object(Map::new()));
    }
    if t.starts_with(['{', '&', '*', '!', '%', '@', '`']) {
        return err("unsupported YAML syntax", line);
    }
    Ok(match t {
        "~" | "null" | "Null" | "NULL" | "" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(i) = t.parse::<i64>() {
                Value::Number(i.into())
            } else if let Some(n) =
                t.parse::<f64>().ok().filter(|f| f.is_finite() && t.contains('.')).and_then(Number::from_f64)
            {
                Value::Number(n)
            } else {
                Value::String(t.to_string())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mappings_lists_and_scalars() {
        let v = parse("a: 1\nb: 'it''s'\nc: \"q\\n\"\nd: [x, 2, true]\ne:\n- p\n- q\nf: ~\ng: 1.5\nh: {}\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": "it's", "c": "q\n", "d": ["x", 2, true], "e": ["p", "q"], "f": null, "g": 1.5, "h": {}})
        );
    }

    #[test]
    fn nested_items_and_block_text() {
        let v = parse(
            "tasks:\n  - id: A # first\n    deps:\n      - B\n  - id: B\nnote: |\n  line one\n  line two\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"tasks": [{"id": "A", "deps": ["B"]}, {"id": "B"}], "note": "line one\nline two"})
        );
    }

    #[test]
    fn several_documents_make_a_list() {
        let v = parse("---\nagent: Agent-1\nstatus: ok\n---\nagent: Agent-2\nstatus: blocked\n").unwrap();
        assert_eq!(
            v,
            json!([{"agent": "Agent-1", "status": "ok"}, {"agent": "Agent-2", "status": "blocked"}])
        );
        assert_eq!(parse("---\na: 1\n...\n").unwrap(), json!({"a": 1}));
        assert!(parse("a:\n\t- x\n").is_err());
        let deep: String = (0..150).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert_eq!(parse(&deep).unwrap_err().rule, "nested too deeply");
    }

    #[test]
    fn prose_is_refused() {
        assert!(parse("Just a sentence.").is_err());
        assert!(parse("# Title\n**From**: x\n").is_err());
        assert!(parse("a: 1\nthis line is prose\n").is_err());
        assert!(parse("").is_err());
        assert!(parse("a: &anchor 1").is_err());
    }
}

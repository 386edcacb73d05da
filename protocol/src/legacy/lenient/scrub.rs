//! One pass over JSON-like text, outside strings, that repairs what scripts and people write
//! by hand: comments, unquoted placeholders, Python literals, bare words and trailing commas.

use serde_json::Value;

pub(super) struct Scrubbed {
    pub(super) text: String,
    pub(super) comments: bool,
    pub(super) placeholders: bool,
    pub(super) bare_words: bool,
    pub(super) python: bool,
    pub(super) trailing_commas: bool,
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
pub(super) fn scrub(text: &str, bare: bool) -> Scrubbed {
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

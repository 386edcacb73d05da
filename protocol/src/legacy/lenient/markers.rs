//! Wrappers around a whole document that are not JSON: git merge-conflict markers and a
//! `{{ ... }}` template wrapper. Each is removed in a way that keeps line numbers pointing into
//! the original text.

/// Resolves `<<<<<<<` / `|||||||` / `=======` / `>>>>>>>` blocks keeping our side. Dropped
/// lines become empty lines so that line numbers still point into the original.
pub(super) fn resolve_merge_markers(text: &str) -> Option<String> {
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
pub(super) fn strip_template_wrapper(text: &str) -> Option<String> {
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

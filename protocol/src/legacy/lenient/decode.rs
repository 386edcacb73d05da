//! Bytes to text: UTF-8, UTF-16 with a byte-order mark, or UTF-8 with a few invalid bytes.

use super::{ParseFailure, fail, line_col, repair};

/// Bytes to text: UTF-8; UTF-16 with a byte-order mark (what Windows PowerShell writes by
/// default); UTF-8 with a few invalid bytes, which become U+FFFD. Bytes with NUL in them (and
/// no UTF-16 mark) are not text.
pub(super) fn decode(bytes: &[u8], repairs: &mut Vec<String>) -> Result<String, ParseFailure> {
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

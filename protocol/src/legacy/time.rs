//! Timestamp spellings: RFC 3339 and its near misses, naive times, epoch numbers, placeholders.

use crate::time::Timestamp;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// How a timestamp value was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeOutcome {
    /// Already canonical (what [`Timestamp`]'s `Display` writes): nothing to record.
    Canonical(Timestamp),
    /// Read with an explicit offset (or as epoch seconds) and rewritten in canonical form.
    Reformatted(Timestamp),
    /// Read without an offset; taken to be UTC.
    AssumedUtc(Timestamp),
    /// A template placeholder; `now` stands in.
    Placeholder(Timestamp),
    /// Not a time.
    Unparseable,
}

impl TimeOutcome {
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self {
            Self::Canonical(t) | Self::Reformatted(t) | Self::AssumedUtc(t) | Self::Placeholder(t) => {
                Some(*t)
            }
            Self::Unparseable => None,
        }
    }
}

/// Bare words that stand for "the current time" in templates.
const PLACEHOLDER_WORDS: &[&str] = &[
    "now",
    "timestamp",
    "auto_timestamp",
    "current_timestamp",
    "current_time",
    "iso_timestamp",
    "utc_now",
    "now_utc",
    "now_utc_iso",
    "tbd",
    "placeholder",
];

/// Is `s` an unrendered template placeholder rather than a value? Families: `{{...}}` and
/// `{...}` template expressions, `[UPPER_CASE]` and `<...>` markers, shell `$(...)` / `${...}`,
/// `%...%`, `...`, and bare words like `now`, `TIMESTAMP`, `AUTO_TIMESTAMP`.
pub fn is_placeholder(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() {
        return false;
    }
    if t.contains("{{") && t.contains("}}") {
        return true;
    }
    let wrapped = |open: &str, close: &str| {
        t.len() > open.len() + close.len() && t.starts_with(open) && t.ends_with(close)
    };
    if wrapped("$(", ")") || wrapped("${", "}") || wrapped("<", ">") || wrapped("%", "%") {
        return true;
    }
    if wrapped("{", "}") || wrapped("[", "]") {
        let inner = &t[1..t.len() - 1];
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '(' | ')' | '.'))
            && inner.chars().any(|c| c.is_ascii_alphabetic());
    }
    if t.chars().all(|c| c == '.' || c == '…') {
        return true;
    }
    let key = t.to_ascii_lowercase().replace(['-', ' '], "_");
    PLACEHOLDER_WORDS.contains(&key.as_str())
}

/// Reads a timestamp value of any known spelling. See `docs/NORMALISATION.md` for the families.
pub fn normalise_timestamp(v: &Value, now: Timestamp) -> TimeOutcome {
    match v {
        Value::Number(n) => {
            n.as_f64().and_then(from_epoch).map_or(TimeOutcome::Unparseable, TimeOutcome::Reformatted)
        }
        Value::String(s) => normalise_str(s, now),
        _ => TimeOutcome::Unparseable,
    }
}

fn normalise_str(raw: &str, now: Timestamp) -> TimeOutcome {
    if let Some(t) = Timestamp::parse_rfc3339(raw)
        && t.to_string() == raw
    {
        return TimeOutcome::Canonical(t);
    }
    if is_placeholder(raw) {
        return TimeOutcome::Placeholder(now);
    }
    let s = raw.trim();
    // Epoch seconds (or milliseconds) written as a string.
    if !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|c| *c == '.').count() <= 1
    {
        if s.len() >= 9 {
            return s
                .parse::<f64>()
                .ok()
                .and_then(from_epoch)
                .map_or(TimeOutcome::Unparseable, TimeOutcome::Reformatted);
        }
        return TimeOutcome::Unparseable;
    }
    match parse_datetime(s) {
        Some((t, true)) => TimeOutcome::Reformatted(t),
        Some((t, false)) => TimeOutcome::AssumedUtc(t),
        None => TimeOutcome::Unparseable,
    }
}

/// Epoch seconds; values too large to be seconds in this era are read as milliseconds, then
/// microseconds.
fn from_epoch(x: f64) -> Option<Timestamp> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let secs = if x >= 1e14 {
        x / 1e6
    } else if x >= 1e11 {
        x / 1e3
    } else {
        x
    };
    // Reject anything outside 1990-2200: a number that small or large is not a time.
    if !(631_152_000.0..=7_258_118_400.0).contains(&secs) {
        return None;
    }
    Some(Timestamp::from_micros((secs * 1e6).round() as i64))
}

/// Parses a date-time with an optional offset. Returns the time and whether it had an offset.
fn parse_datetime(s: &str) -> Option<(Timestamp, bool)> {
    // The date: `YYYY-MM-DD` or `YYYYMMDD`.
    let (date, rest) = split_date(s)?;
    let rest = rest.trim_start_matches(['T', 't', ' ', '_']);
    if rest.is_empty() {
        let dt = date.and_hms_opt(0, 0, 0)?;
        return Some((Timestamp::from_datetime(Utc.from_utc_datetime(&dt))?, false));
    }
    // The time: digits, colons, a fraction; then whatever is left is the offset.
    let time_end =
        rest.find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.' || c == ',')).unwrap_or(rest.len());
    let (time_str, zone) = rest.split_at(time_end);
    let time = parse_time(time_str)?;
    let naive = NaiveDateTime::new(date, time);
    let zone = zone.trim();
    match parse_zone(zone)? {
        Some(off) => {
            let dt: DateTime<FixedOffset> = off.from_local_datetime(&naive).single()?;
            Some((Timestamp::from_datetime(dt.with_timezone(&Utc))?, true))
        }
        None => Some((Timestamp::from_datetime(Utc.from_utc_datetime(&naive))?, false)),
    }
}

fn split_date(s: &str) -> Option<(NaiveDate, &str)> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        let d = NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
        return Some((d, &s[10..]));
    }
    if b.len() >= 8
        && b[..8].iter().all(u8::is_ascii_digit)
        && (b.len() == 8 || matches!(b[8], b'T' | b't' | b'_' | b' '))
    {
        let d = NaiveDate::parse_from_str(&s[..8], "%Y%m%d").ok()?;
        return Some((d, &s[8..]));
    }
    None
}

fn parse_time(t: &str) -> Option<chrono::NaiveTime> {
    let (hms, frac) = match t.find(['.', ',']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let parts: Vec<&str> = if hms.contains(':') {
        hms.split(':').collect()
    } else if hms.len() == 6 || hms.len() == 4 {
        // Basic format `HHMMSS` / `HHMM`.
        hms.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap_or("")).collect()
    } else {
        return None;
    };
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let h: u32 = parts[0].parse().ok()?;
    let m: u32 = parts[1].parse().ok()?;
    let sec: u32 = parts.get(2).map_or(Some(0), |p| p.parse().ok())?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Any number of fraction digits: keep nanoseconds, drop the rest (7-digit PowerShell times).
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    chrono::NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

/// `Z`, `+hh:mm`, `+hhmm`, `+hh`, `UTC`, `GMT`, and the double suffix `+00:00Z`. A trailing
/// `-LABEL` after a zone (`Z-MIGRATION`) is ignored. `Ok(None)` is "no zone" (naive).
fn parse_zone(zone: &str) -> Option<Option<FixedOffset>> {
    let mut z = zone.trim();
    if z.is_empty() {
        return Some(None);
    }
    // A label glued on after the zone: `Z-MIGRATION`.
    if let Some(after) = z.strip_prefix(['Z', 'z']) {
        let label = after.strip_prefix('-').unwrap_or("");
        if after.is_empty()
            || (!label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Some(Some(FixedOffset::east_opt(0)?));
        }
    }
    for utc in ["UTC", "GMT", "utc", "gmt"] {
        if z == utc {
            return Some(Some(FixedOffset::east_opt(0)?));
        }
    }
    // `+00:00Z`: an offset with a redundant Z.
    if z.len() > 1 && (z.ends_with('Z') || z.ends_with('z')) {
        z = &z[..z.len() - 1];
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = if digits.len() == 4 { digits[2..].parse().ok()? } else { 0 };
    if h > 23 || m > 59 {
        return None;
    }
    Some(Some(FixedOffset::east_opt(sign * (h * 3600 + m * 60))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn read(v: Value) -> TimeOutcome {
        normalise_timestamp(&v, now())
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn canonical_is_untouched() {
        let t = ts("2025-05-01T10:00:00.500000Z");
        assert_eq!(read(json!(t.to_string())), TimeOutcome::Canonical(t));
    }

    #[test]
    fn rfc3339_variants_are_reformatted() {
        assert_eq!(read(json!("2025-05-01T10:00:00Z")), TimeOutcome::Reformatted(ts("2025-05-01T10:00:00Z")));
        assert_eq!(
            read(json!("2025-05-01T12:00:00+02:00")),
            TimeOutcome::Reformatted(ts("2025-05-01T10:00:00Z"))
        );
        assert_eq!(
            read(json!("2025-05-01T10:00:00.123Z")),
            TimeOutcome::Reformatted(ts("2025-05-01T10:00:00.123Z"))
        );
    }

    #[test]
    fn double_suffix() {
        assert_eq!(
            read(json!("2025-04-28T22:40:57.123+00:00Z")),
            TimeOutcome::Reformatted(ts("2025-04-28T22:40:57.123Z"))
        );
    }

    #[test]
    fn long_fractions_and_local_offsets() {
        assert_eq!(
            read(json!("2025-05-02T19:40:41.9375000-05:00")),
            TimeOutcome::Reformatted(ts("2025-05-03T00:40:41.9375Z"))
        );
        assert_eq!(
            read(json!("2025-05-02T19:40:41.123456789123Z")),
            TimeOutcome::Reformatted(ts("2025-05-02T19:40:41.123456789Z"))
        );
    }

    #[test]
    fn naive_times_are_assumed_utc() {
        assert_eq!(
            read(json!("2025-08-19T07:45:21.649821")),
            TimeOutcome::AssumedUtc(ts("2025-08-19T07:45:21.649821Z"))
        );
        assert_eq!(
            read(json!("2026-01-11 03:15:37.875536")),
            TimeOutcome::AssumedUtc(ts("2026-01-11T03:15:37.875536Z"))
        );
        assert_eq!(read(json!("2025-05-01")), TimeOutcome::AssumedUtc(ts("2025-05-01T00:00:00Z")));
        assert_eq!(read(json!("2025-05-01T10:00")), TimeOutcome::AssumedUtc(ts("2025-05-01T10:00:00Z")));
    }

    #[test]
    fn compact_forms() {
        assert_eq!(read(json!("20250428T224057Z")), TimeOutcome::Reformatted(ts("2025-04-28T22:40:57Z")));
        assert_eq!(read(json!("20250819_074521")), TimeOutcome::AssumedUtc(ts("2025-08-19T07:45:21Z")));
    }

    #[test]
    fn trailing_label_after_zone() {
        assert_eq!(
            read(json!("2025-05-04T10:00:00.000Z-MIGRATION")),
            TimeOutcome::Reformatted(ts("2025-05-04T10:00:00Z"))
        );
        assert_eq!(
            read(json!("2025-05-04T10:00:00 UTC")),
            TimeOutcome::Reformatted(ts("2025-05-04T10:00:00Z"))
        );
    }

    #[test]
    fn epoch_numbers() {
        assert_eq!(
            read(json!(1747203155.1359084)),
            TimeOutcome::Reformatted(Timestamp::from_micros(1_747_203_155_135_908))
        );
        assert_eq!(
            read(json!(1755248908737u64)),
            TimeOutcome::Reformatted(Timestamp::from_micros(1_755_248_908_737_000))
        );
        assert_eq!(
            read(json!("1747203155.1359084")),
            TimeOutcome::Reformatted(Timestamp::from_micros(1_747_203_155_135_908))
        );
        assert_eq!(read(json!(3)), TimeOutcome::Unparseable);
        assert_eq!(read(json!(-5.0)), TimeOutcome::Unparseable);
    }

    #[test]
    fn placeholders_become_now() {
        for p in [
            "{{iso_timestamp_utc()}}",
            "{{iso_timestamp_utc}}",
            "[NOW_UTC_ISO]",
            "[AUTO_TIMESTAMP]",
            "{{NOW_UTC_ISO}}",
            "AUTO_TIMESTAMP",
            "[PREVIOUS_TIMESTAMP]",
            "{{[iso_timestamp_utc()]}}",
            "$(date --iso-8601=seconds)",
            "<timestamp>",
            "now",
            "TIMESTAMP",
            "...",
            "{CURRENT_TIME}",
        ] {
            assert_eq!(read(json!(p)), TimeOutcome::Placeholder(now()), "{p}");
        }
    }

    #[test]
    fn prose_is_unparseable() {
        for p in ["30 minutes", "Ongoing", "2-3 hours", "", "2025-13-45T99:00:00Z", "yesterday", "12"] {
            assert_eq!(read(json!(p)), TimeOutcome::Unparseable, "{p}");
        }
        assert_eq!(read(json!(true)), TimeOutcome::Unparseable);
    }
}

//! Timestamps: RFC 3339 in UTC, microsecond precision, always written with a `Z`, and always
//! between the years 0000 and 9999 once converted to UTC — the range RFC 3339 can write and read
//! back. Every way a timestamp enters (parsing, deserialising, a `DateTime`) checks the range, so
//! a timestamp the broker accepts is one it can read back from its own journal.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, in UTC. The protocol never reads the clock itself: callers pass `now` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// The earliest timestamp: 0000-01-01T00:00:00Z, in microseconds since the Unix epoch.
const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// The latest timestamp: 9999-12-31T23:59:59.999999Z, in microseconds since the Unix epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("must be an RFC 3339 timestamp, got `{0}`")]
    NotRfc3339(String),
    #[error("`{0}` is outside the years 0000-9999 once converted to UTC")]
    OutOfRange(String),
}

impl Timestamp {
    /// The earliest and latest timestamps there are.
    pub const MIN: Timestamp = Timestamp(DateTime::<Utc>::from_timestamp_micros(MIN_MICROS).unwrap());
    pub const MAX: Timestamp = Timestamp(DateTime::<Utc>::from_timestamp_micros(MAX_MICROS).unwrap());

    /// Microseconds since the Unix epoch, clamped to [`Timestamp::MIN`]..=[`Timestamp::MAX`] (a
    /// file's mtime can be set to any value; what the broker stores must read back).
    pub fn from_micros(micros: i64) -> Self {
        let m = micros.clamp(MIN_MICROS, MAX_MICROS);
        Self(Utc.timestamp_micros(m).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
    }

    pub fn as_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// A `DateTime`, if it lies within the years 0000-9999 (its precision is cut to microseconds).
    pub fn from_datetime(dt: DateTime<Utc>) -> Option<Self> {
        let m = dt.timestamp_micros();
        (MIN_MICROS..=MAX_MICROS).contains(&m).then(|| Self::from_micros(m))
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses strict RFC 3339 (any offset, converted to UTC).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        Self::parse(s).ok()
    }

    /// Parses strict RFC 3339 (any offset, converted to UTC), saying why when it cannot.
    pub fn parse(s: &str) -> Result<Self, TimeError> {
        let d = DateTime::parse_from_rfc3339(s).map_err(|_| TimeError::NotRfc3339(s.to_string()))?;
        Self::from_datetime(d.with_timezone(&Utc)).ok_or_else(|| TimeError::OutOfRange(s.to_string()))
    }

    pub fn plus_secs(&self, secs: u64) -> Self {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2_000_000);
        Self::from_micros(self.as_micros().saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// Whole seconds from `self` to `later` (0 when `later` is earlier).
    pub fn secs_until(&self, later: Timestamp) -> u64 {
        u64::try_from((later.as_micros() - self.as_micros()) / 1_000_000).unwrap_or(0)
    }

    /// `YYYYMMDDTHHMMSSffffff`: fixed width, so it sorts as bytes in time order.
    pub fn compact(&self) -> String {
        let b = self.digits();
        let mut out = String::with_capacity(21);
        for part in [&b[0..4], &b[5..7], &b[8..10], b"T", &b[11..13], &b[14..16], &b[17..19], &b[20..26]] {
            out.push_str(std::str::from_utf8(part).expect("ASCII digits"));
        }
        out
    }

    /// The RFC 3339 form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written into bytes on the stack: a task
    /// is serialised many times per transition (records, task files, boards), each with a
    /// timestamp per history entry, so formatting allocates nothing. Every timestamp lies within
    /// the years 0000-9999 and has microseconds only (see the module's doc), so the width is fixed.
    fn digits(&self) -> [u8; 27] {
        let d = &self.0;
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, d.year().clamp(0, 9999) as u32);
        put(5, 2, d.month());
        put(8, 2, d.day());
        put(11, 2, d.hour());
        put(14, 2, d.minute());
        put(17, 2, d.second());
        put(20, 6, d.nanosecond() / 1_000);
        b
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.digits()).expect("ASCII digits"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.digits()).expect("ASCII digits"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time", "description": "RFC 3339, UTC"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_converts_offsets_to_utc() {
        let t = Timestamp::parse_rfc3339("2025-05-01T12:00:00.5+02:00").unwrap();
        assert_eq!(t.to_string(), "2025-05-01T10:00:00.500000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        assert_eq!(t.compact(), "20250501T100000500000");
    }

    /// An offset can move a written year out of range: such a timestamp is refused, never
    /// accepted to be unreadable later. Everything accepted reads back.
    #[test]
    fn only_timestamps_that_read_back_are_accepted() {
        for bad in ["9999-12-31T23:00:00-01:00", "0000-01-01T00:30:00+01:00"] {
            assert!(matches!(Timestamp::parse(bad), Err(TimeError::OutOfRange(_))), "{bad}");
            assert!(serde_json::from_value::<Timestamp>(serde_json::json!(bad)).is_err());
        }
        for good in ["9999-12-31T22:00:00-01:00", "0000-01-01T00:30:00-01:00", "0000-01-01T00:00:00Z"] {
            let t = Timestamp::parse(good).unwrap();
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t), "{good}");
        }
        assert_eq!(Timestamp::from_micros(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_micros(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::parse(&Timestamp::MAX.to_string()), Ok(Timestamp::MAX));
        assert_eq!(Timestamp::parse(&Timestamp::MIN.to_string()), Ok(Timestamp::MIN));
        assert!(matches!(Timestamp::parse("yesterday"), Err(TimeError::NotRfc3339(_))));
    }

    /// The form written without chrono's formatter is chrono's, byte for byte, across the range.
    #[test]
    fn the_written_forms_are_chrono_s() {
        use chrono::SecondsFormat;
        let mut m = MIN_MICROS;
        let step = (MAX_MICROS - MIN_MICROS) / 100_003;
        let edges = [MIN_MICROS, MAX_MICROS, 0, -1, 1, 951_782_400_000_000, 1_700_000_000_123_456];
        for micros in edges.into_iter().chain(std::iter::from_fn(|| {
            m = m.checked_add(step + 7).filter(|&n| n <= MAX_MICROS)?;
            Some(m)
        })) {
            let t = Timestamp::from_micros(micros);
            assert_eq!(t.to_string(), t.0.to_rfc3339_opts(SecondsFormat::Micros, true), "{micros}");
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.to_string()));
            assert_eq!(t.compact(), t.0.format("%Y%m%dT%H%M%S%6f").to_string(), "{micros}");
        }
    }

    #[test]
    fn compact_form_sorts_like_time() {
        let a = Timestamp::from_micros(1_700_000_000_000_000);
        let b = a.plus_secs(1);
        assert!(a.compact() < b.compact());
        assert_eq!(a.secs_until(b), 1);
        assert_eq!(b.secs_until(a), 0);
    }
}

//! Timestamps: RFC 3339 in UTC, microsecond precision, always written with a `Z`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, in UTC. The protocol never reads the clock itself: callers pass `now` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Microseconds since the Unix epoch.
    pub fn from_micros(micros: i64) -> Self {
        Self(Utc.timestamp_micros(micros).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
    }

    pub fn as_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Self(dt)
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses strict RFC 3339 (any offset, converted to UTC).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(|d| Self(d.with_timezone(&Utc)))
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
        self.0.format("%Y%m%dT%H%M%S%6f").to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 timestamp")))
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

    #[test]
    fn compact_form_sorts_like_time() {
        let a = Timestamp::from_micros(1_700_000_000_000_000);
        let b = a.plus_secs(1);
        assert!(a.compact() < b.compact());
        assert_eq!(a.secs_until(b), 1);
        assert_eq!(b.secs_until(a), 0);
    }
}

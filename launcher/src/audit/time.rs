//! Audit timestamps: RFC 3339 in UTC with nanoseconds, from the wall clock or from a kernel time
//! already turned into nanoseconds since the epoch.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

/// When a record happened: `2026-11-24T11:09:18.323314105Z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub(super) String);

impl Timestamp {
    /// The wall clock now.
    pub fn now() -> Timestamp {
        Timestamp(rfc3339(now_ns()))
    }

    /// `ns` nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(ns: i128) -> Timestamp {
        Timestamp(rfc3339(ns))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "RFC 3339 UTC time with nanoseconds",
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z$"
        })
    }
}

/// The current time as the audit log writes it.
pub fn now_rfc3339() -> String {
    rfc3339(now_ns())
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// RFC 3339 UTC timestamp with nanoseconds, from nanoseconds since the epoch.
pub fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // written digit by digit: a record's timestamp is on the MCP layer's path, where `format!`
    // was a tenth of the relay's time per message
    let mut out = String::with_capacity(30);
    let fields = [(y, 4, '-'), (m, 2, '-'), (d, 2, 'T'), (rem / 3600, 2, ':'), (rem % 3600 / 60, 2, ':')];
    for (value, width, after) in fields {
        push_digits(&mut out, value, width);
        out.push(after);
    }
    push_digits(&mut out, rem % 60, 2);
    out.push('.');
    push_digits(&mut out, i64::from(nanos), 9);
    out.push('Z');
    out
}

/// `value`'s last `width` decimal digits, zero-padded (years past 9999 do not occur here).
fn push_digits(out: &mut String, value: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10_i64.pow(place)).rem_euclid(10) as u8;
        out.push(char::from(b'0' + digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_732_440_000_123_456_789), "2024-11-24T09:20:00.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn now_has_the_documented_shape() {
        let ts = Timestamp::now();
        assert_eq!(ts.as_str().len(), "2026-11-24T11:09:18.323314105Z".len(), "{ts:?}");
        assert!(ts.as_str().ends_with('Z'));
    }
}

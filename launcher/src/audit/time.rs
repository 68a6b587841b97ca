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
    const NANOS: i64 = 1_000_000_000;
    // 128-bit division is a call into compiler-builtins: the wall clock fits 64 bits until 2262
    let (secs, nanos) = match i64::try_from(ns) {
        Ok(ns) => (ns.div_euclid(NANOS), ns.rem_euclid(NANOS)),
        Err(_) => (ns.div_euclid(i128::from(NANOS)) as i64, ns.rem_euclid(i128::from(NANOS)) as i64),
    };
    // written digit by digit, the date and time once per second: a record's timestamp is on the
    // MCP layer's path, where `format!` was a tenth of the relay's time per message
    let mut out = String::with_capacity(30);
    push_date_time(&mut out, secs);
    out.push('.');
    push_digits(&mut out, nanos, 9);
    out.push('Z');
    out
}

/// `2026-11-24T11:09:18` for `secs` since the epoch, remembered for the next call in the same
/// second.
fn push_date_time(out: &mut String, secs: i64) {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            civil(text, secs);
            *at = secs;
        }
        out.push_str(text);
    });
}

fn civil(out: &mut String, secs: i64) {
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
    let fields = [(y, 4, '-'), (m, 2, '-'), (d, 2, 'T'), (rem / 3600, 2, ':'), (rem % 3600 / 60, 2, ':')];
    for (value, width, after) in fields {
        push_digits(out, value, width);
        out.push(after);
    }
    push_digits(out, rem % 60, 2);
}

/// `value`'s last `width` (at most 9) decimal digits, zero-padded (years past 9999 do not occur
/// here).
fn push_digits(out: &mut String, mut value: i64, width: usize) {
    let mut digits = [b'0'; 9];
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + value.rem_euclid(10) as u8;
        value /= 10;
    }
    digits[..width].iter().for_each(|d| out.push(char::from(*d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_732_440_000_123_456_789), "2024-11-24T09:20:00.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z", "the same second");
        assert_eq!(rfc3339(951_782_399_999_999_999), "2000-02-28T23:59:59.999999999Z", "the second before");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn now_has_the_documented_shape() {
        let ts = Timestamp::now();
        assert_eq!(ts.as_str().len(), "2026-11-24T11:09:18.323314105Z".len(), "{ts:?}");
        assert!(ts.as_str().ends_with('Z'));
    }
}

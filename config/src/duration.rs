//! Human durations as written in the configuration: `150ms`, `2s`, `1m30s`, `1h`.

use std::time::Duration;

/// The longest timeout, check interval, slow start or drain time: one hour. A longer wait is
/// a mistake in the unit, and a bound keeps every deadline computed from a clock in range.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest ejection, DNS refresh, canary pause or retirement delay: one day.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// What a duration field expects, in the words errors use.
pub const EXPECTED_DURATION: &str = "a duration such as \"150ms\", \"2s\" or \"1m30s\"";

/// Parses a duration string: one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`.
/// A value too large to represent saturates; [`parse_duration_at_most`] bounds it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected {EXPECTED_DURATION}");
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        // Only ASCII digits: parsing fails only on overflow, which saturates.
        let n: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses a duration no longer than `max`; the error names the maximum.
pub fn parse_duration_at_most(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > max {
        return Err(format!(
            "duration {text:?} is too long: expected at most {}",
            format_duration(max)
        ));
    }
    Ok(d)
}

/// What a duration field bounded by `max` expects: `a duration such as ..., at most 1h`.
pub fn expected_duration(max: Duration) -> String {
    format!("{EXPECTED_DURATION}, at most {}", format_duration(max))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_missing_or_unknown_units_in_user_words() {
        for bad in ["10", "3d", "", "s", "1 sec"] {
            assert_eq!(
                parse_duration(bad),
                Err(format!(
                    "invalid duration {bad:?}: expected a duration such as \"150ms\", \"2s\" or \"1m30s\""
                ))
            );
        }
    }

    #[test]
    fn huge_durations_are_refused_with_the_maximum() {
        assert_eq!(
            parse_duration_at_most("99999999999999999h", MAX_PERIOD),
            Err("duration \"99999999999999999h\" is too long: expected at most 24h".to_owned())
        );
        assert_eq!(
            parse_duration_at_most("999999999999999999999999s", MAX_TIMEOUT),
            Err(
                "duration \"999999999999999999999999s\" is too long: expected at most 1h"
                    .to_owned()
            )
        );
        assert_eq!(parse_duration_at_most("1h", MAX_TIMEOUT), Ok(MAX_TIMEOUT));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["150ms", "2s", "90s", "5m", "1h", "0s"] {
            let d = parse_duration(s).expect("valid");
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

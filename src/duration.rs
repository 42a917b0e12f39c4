//! Parsing the two spellings of a duration that users bring: .NET `TimeSpan` (`00:00:30`,
//! `1.02:03:04.5`) from .NET settings files, and humantime's `30s`, `1m 30s`, `250ms`.

use std::time::Duration;

/// Parses `00:00:30`, `1.00:00:00`, `00:00:00.250`, `30s`, `250ms` or `1m30s`.
///
/// # Errors
/// A one-line description of what was expected, for the caller to put behind the field name.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let expected = || format!("expected a duration like 00:00:30 or 30s, got '{text}'");
    if text.is_empty() || text.starts_with('-') {
        return Err(expected());
    }
    if text.contains(':') {
        return parse_timespan(text).ok_or_else(expected);
    }
    humantime::parse_duration(text).map_err(|_| expected())
}

/// Parses a positive duration: zero is refused with the same wording.
///
/// # Errors
/// As [`parse`], and for a zero duration.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = parse(text)?;
    if duration.is_zero() {
        return Err(format!(
            "expected a duration greater than zero, got '{}'",
            text.trim()
        ));
    }
    Ok(duration)
}

/// `[d.]hh:mm:ss[.fffffff]`, the invariant format of .NET's `TimeSpan`.
fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once(':') {
        Some((head, _)) if head.contains('.') => {
            let (d, rest) = text.split_once('.')?;
            (d.parse::<u64>().ok()?, rest)
        }
        _ => (0, text),
    };
    let mut parts = rest.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds_text = parts.next()?;
    if parts.next().is_some() || hours > 23 || minutes > 59 {
        return None;
    }
    let (whole, fraction) = seconds_text.split_once('.').unwrap_or((seconds_text, ""));
    let seconds: u64 = whole.parse().ok()?;
    if seconds > 59 || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    Some(Duration::new(total, nanos))
}

/// Formats a duration for people: `15s`, `1m 30s`, `250ms` (whole milliseconds).
pub fn human(duration: Duration) -> String {
    let millis = Duration::from_millis(duration.as_millis() as u64);
    humantime::format_duration(millis).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_and_humantime_agree() {
        assert_eq!(parse("00:00:30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("00:01:00"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1.00:00:01"), Ok(Duration::from_secs(86_401)));
        assert_eq!(parse("00:00:00.250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        for bad in ["", "abc", "-5s", "00:61:00", "1:2", "00:00:xx", "10"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
        assert!(parse_positive("0s")
            .unwrap_err()
            .contains("greater than zero"));
    }
}

//! Durations and sizes as people write them in the routes file:
//! `15m`, `24h`, `7d`, `30 seconds` (humantime) and `65536`, `64KiB`, `1MiB`.

use std::time::Duration;

/// Reads a duration such as `15m`, `24h` or `7d`. Zero is refused: every
/// duration in the routes file is a timeout, an objective or a lifetime.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let duration = humantime::parse_duration(trimmed).map_err(|error| {
        format!("invalid duration `{text}` ({error}); expected a number and a unit, e.g. `500ms`, `15m`, `24h`, `7d`")
    })?;
    if duration.is_zero() {
        return Err(format!(
            "duration `{text}` is zero; expected a positive duration, e.g. `30s`"
        ));
    }
    Ok(duration)
}

/// Binary and decimal size units, longest first so `KiB` is tried before `B`.
const UNITS: [(&str, u64); 7] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("B", 1),
];

/// Reads a size in bytes: a plain integer or an integer with a unit
/// (`B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let invalid = || {
        format!("invalid size `{text}`; expected bytes as an integer or with a unit, e.g. `65536`, `64KiB`, `1MiB`")
    };
    let trimmed = text.trim();
    let (number, multiplier) = UNITS
        .iter()
        .find_map(|(unit, multiplier)| Some((trimmed.strip_suffix(unit)?, *multiplier)))
        .unwrap_or((trimmed, 1));
    let number: u64 = number.trim_end().parse().map_err(|_| invalid())?;
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("size `{text}` is too large for this machine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short_and_long_unit_names() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("15 minutes"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn a_duration_without_unit_or_with_garbage_says_what_is_expected() {
        for text in ["abc", "30", "15 parsecs"] {
            let message = parse_duration(text).expect_err("refused");
            assert!(
                message.starts_with(&format!("invalid duration `{text}`")),
                "{message}"
            );
            assert!(message.contains("`15m`, `24h`, `7d`"), "{message}");
        }
    }

    #[test]
    fn a_zero_duration_is_refused() {
        assert!(parse_duration("0s")
            .expect_err("refused")
            .contains("is zero"));
    }

    #[test]
    fn sizes_read_plain_bytes_and_binary_or_decimal_units() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("1 MiB"), Ok(1_048_576));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("512B"), Ok(512));
    }

    #[test]
    fn a_size_with_an_unknown_unit_says_what_is_expected() {
        for text in ["64k", "lots", "-1", "1.5MiB", "KiB"] {
            let message = parse_size(text).expect_err("refused");
            assert!(
                message.starts_with(&format!("invalid size `{text}`")),
                "{message}"
            );
            assert!(message.contains("`64KiB`"), "{message}");
        }
    }

    #[test]
    fn a_size_that_overflows_is_refused() {
        assert!(parse_size("99999999999999999GiB")
            .expect_err("refused")
            .contains("too large"));
    }
}

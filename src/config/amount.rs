//! Exact decimal amounts for business measures (freight cost, weight,
//! counts): a fixed-point number with nine fractional digits in an `i128`,
//! read from the text a document carries and added without the drift of a
//! float sum. Converted to `f64` only where Prometheus needs it.

use std::fmt;

/// Fractional digits kept. Nine holds the exact pound-to-kilogram factor
/// (0.45359237) and any currency's minor unit.
const SCALE_DIGITS: u32 = 9;
const SCALE: i128 = 10i128.pow(SCALE_DIGITS);
/// Digits accepted before the decimal point: far beyond any invoice, and
/// sums of many such amounts still fit an `i128`.
const MAX_INTEGER_DIGITS: usize = 18;

/// An exact decimal amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i128);

/// Why a text is not an amount; the `reason` label of unparseable measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AmountError {
    /// A decimal comma or an ambiguous separator (`12,50`, `1.234,50`,
    /// `1,234`): which is the decimal point cannot be told for sure.
    Locale,
    /// Not a plain decimal number at all (empty, letters, exponent, more
    /// than eighteen integer digits). Fractional digits beyond the ninth
    /// are rounded, not refused.
    NotANumber,
}

impl AmountError {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AmountError::Locale => "locale",
            AmountError::NotANumber => "not_a_number",
        }
    }
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// One.
    pub const ONE: Amount = Amount(SCALE);

    /// The amount of `n` billionths (`453_592_370` is 0.45359237).
    pub const fn from_billionths(n: i128) -> Amount {
        Amount(n)
    }

    /// Reads a plain decimal such as `12.50`, `-3`, `0.45359237` or, with
    /// thousands separators, `1,234.50` (a comma is accepted only as a
    /// thousands separator in groups of three followed by a decimal point,
    /// so `1,234` and `12,50` are refused as [`AmountError::Locale`]).
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        let text = text.trim();
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let integer_text;
        let fraction;
        match unsigned.split_once('.') {
            Some((int, frac)) => {
                if frac.contains(['.', ',']) {
                    // `1.234,50` or `1.234.567`: European grouping, unless
                    // it is not made of digits and separators at all.
                    return Err(misread(unsigned));
                }
                integer_text = int;
                fraction = frac;
            }
            None => {
                if unsigned.contains(',') {
                    return Err(misread(unsigned));
                }
                integer_text = unsigned;
                fraction = "";
            }
        }
        let integer = ungroup(integer_text)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let has_digits = digits(&integer) || (integer.is_empty() && digits(fraction));
        if !has_digits {
            return Err(AmountError::NotANumber);
        }
        if !fraction.is_empty() && !digits(fraction) {
            return Err(AmountError::NotANumber);
        }
        if integer.len() > MAX_INTEGER_DIGITS {
            return Err(AmountError::NotANumber);
        }
        // Digits beyond the ninth (a float printed in full, `2.4500000000000002`)
        // round the ninth, half away from zero.
        let (fraction, round_up) = match fraction.get(SCALE_DIGITS as usize..) {
            Some(rest) if !rest.is_empty() => (
                &fraction[..SCALE_DIGITS as usize],
                rest.as_bytes()[0] >= b'5',
            ),
            _ => (fraction, false),
        };
        let whole: i128 = if integer.is_empty() {
            0
        } else {
            integer.parse().map_err(|_| AmountError::NotANumber)?
        };
        let mut frac: i128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| AmountError::NotANumber)?
        };
        for _ in fraction.len()..SCALE_DIGITS as usize {
            frac *= 10;
        }
        let value = whole * SCALE + frac + i128::from(round_up);
        Ok(Amount(if negative { -value } else { value }))
    }

    /// The sum; saturates instead of overflowing.
    pub fn plus(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    /// The difference `self - other`.
    pub fn minus(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// The absolute value.
    pub fn abs(self) -> Amount {
        Amount(self.0.saturating_abs())
    }

    /// The product with `factor`, rounded half away from zero to nine
    /// fractional digits (a unit conversion).
    pub fn times(self, factor: Amount) -> Amount {
        let product = self.0.saturating_mul(factor.0);
        let half = SCALE / 2;
        let rounded = if product >= 0 {
            product.saturating_add(half) / SCALE
        } else {
            product.saturating_sub(half) / SCALE
        };
        Amount(rounded)
    }

    /// The value with `decimals` implied decimal places moved in (X12's
    /// `N2` type writes 850.00 as `85000`); at most nine.
    pub fn with_implied_decimals(self, decimals: u32) -> Amount {
        let divisor = 10i128.pow(decimals.min(SCALE_DIGITS));
        self.times(Amount(SCALE / divisor))
    }

    /// The nearest `f64`, for export only.
    pub fn to_f64(self) -> f64 {
        // Split so the integer part keeps its precision.
        (self.0 / SCALE) as f64 + (self.0 % SCALE) as f64 / SCALE as f64
    }
}

/// Why a text with separators in the wrong places is refused: a locale
/// problem when it is only digits and separators, else not a number.
fn misread(text: &str) -> AmountError {
    let grouped = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b',');
    if grouped {
        AmountError::Locale
    } else {
        AmountError::NotANumber
    }
}

/// The integer digits with thousands separators removed; separators must
/// group by three after a first group of one to three digits.
fn ungroup(integer: &str) -> Result<String, AmountError> {
    if !integer.contains(',') {
        return Ok(integer.to_owned());
    }
    let mut groups = integer.split(',');
    let first = groups.next().unwrap_or_default();
    let valid = (1..=3).contains(&first.len())
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(misread(integer));
    }
    Ok(integer.replace(',', ""))
}

impl fmt::Display for Amount {
    /// Shortest exact form: `12.5`, `3`, `-0.45359237`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        let (whole, frac) = (magnitude / scale, magnitude % scale);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl serde::Serialize for Amount {
    /// As a string, so no JSON reader turns it into a float.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Amount::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!("invalid amount `{text}`: {}", e.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn plain_decimals_are_read_exactly() {
        assert_eq!(amount("12.50").to_string(), "12.5");
        assert_eq!(amount("-3").to_string(), "-3");
        assert_eq!(amount("+0.45359237").to_string(), "0.45359237");
        assert_eq!(amount(".5").to_string(), "0.5");
        assert_eq!(amount(" 7 ").to_string(), "7");
        assert_eq!(amount("2.4500000000000002").to_string(), "2.45");
        assert_eq!(amount("0.1234567895").to_string(), "0.12345679");
        assert_eq!(amount("1,234.50").to_string(), "1234.5");
        assert_eq!(amount("1,234,567.01").to_string(), "1234567.01");
    }

    #[test]
    fn ambiguous_separators_are_a_locale_problem() {
        for text in ["12,50", "1.234,50", "1,234", "12,5.0", "1.234.567"] {
            assert_eq!(Amount::parse(text), Err(AmountError::Locale), "{text}");
        }
    }

    #[test]
    fn non_numbers_are_refused() {
        for text in ["", "-", ".", "abc", "a,bc", "1e3", "12.5.x", "NaN", "0x10"] {
            assert_eq!(Amount::parse(text), Err(AmountError::NotANumber), "{text}");
        }
    }

    #[test]
    fn a_thousand_cent_additions_do_not_drift() {
        let cent = amount("0.01");
        let total = (0..1000).fold(Amount::ZERO, |sum, _| sum.plus(cent));
        assert_eq!(total, amount("10"));
        let float: f64 = (0..1000).map(|_| 0.01).sum();
        assert_ne!(
            float, 10.0,
            "the float sum drifts; the decimal one does not"
        );
    }

    #[test]
    fn conversion_rounds_to_nine_digits() {
        let lb = amount("0.45359237");
        assert_eq!(amount("10").times(lb).to_string(), "4.5359237");
        assert_eq!(amount("2.5").times(lb).to_string(), "1.133980925");
        assert_eq!(amount("-1").times(lb), amount("-0.45359237"));
        assert_eq!(amount("12.5").minus(amount("13")).abs(), amount("0.5"));
        assert!((amount("1234.56").to_f64() - 1234.56).abs() < 1e-9);
        assert_eq!(amount("85000").with_implied_decimals(2), amount("850"));
        assert_eq!(amount("12345").with_implied_decimals(2), amount("123.45"));
    }
}

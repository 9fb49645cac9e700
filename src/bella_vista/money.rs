//! Money as a whole number of cents, so prices and totals never pass through `f64`.

use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of money in US cents. `Cents(1250)` is `$12.50`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

/// Why a written amount such as `"12.00"` could not be read as [`Cents`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a dollar amount like `12`, `12.5` or `12.00`.
    #[error("{input:?} is not a dollar amount like \"12.00\": {reason}")]
    Malformed {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The amount is too large to represent.
    #[error("{input:?} is too large an amount")]
    TooLarge {
        /// The text as given.
        input: String,
    },
}

impl Cents {
    /// No money at all.
    pub const ZERO: Cents = Cents(0);

    /// Whole dollars as cents, `None` on overflow.
    pub fn from_dollars(dollars: u64) -> Option<Cents> {
        dollars.checked_mul(100).map(Cents)
    }

    /// The number of cents.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + other`, `None` on overflow.
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }

    /// `self + other`, stopping at the largest amount instead of overflowing.
    pub fn saturating_add(self, other: Cents) -> Cents {
        Cents(self.0.saturating_add(other.0))
    }

    /// `self * factor`, `None` on overflow.
    pub fn checked_mul(self, factor: u32) -> Option<Cents> {
        self.0.checked_mul(u64::from(factor)).map(Cents)
    }

    /// `self * factor`, stopping at the largest amount instead of overflowing.
    pub fn saturating_mul(self, factor: u32) -> Cents {
        Cents(self.0.saturating_mul(u64::from(factor)))
    }

    /// `percent`% of this amount, rounded half up to the cent.
    ///
    /// ```
    /// use bella_vista::bella_vista::money::Cents;
    /// assert_eq!(Cents(4700).percent_of(18), Cents(846));
    /// assert_eq!(Cents(10).percent_of(15), Cents(2)); // 1.5 cents rounds up
    /// ```
    pub fn percent_of(self, percent: u32) -> Cents {
        let hundredths = u128::from(self.0) * u128::from(percent);
        let rounded = (hundredths + 50) / 100;
        Cents(u64::try_from(rounded).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Cents {
    /// Dollars with two decimals: `$12.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for Cents {
    type Err = MoneyError;

    /// Reads `"12"`, `"12.5"`, `"12.50"` or `"$12.50"` exactly; at most two decimals.
    fn from_str(input: &str) -> Result<Cents, MoneyError> {
        let malformed = |reason| MoneyError::Malformed {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() {
            return Err(malformed("expected digits before the decimal point"));
        }
        if !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed("only digits and one decimal point are allowed"));
        }
        if fraction.len() > 2 {
            return Err(malformed("at most two digits after the decimal point"));
        }
        if text.ends_with('.') {
            return Err(malformed("expected digits after the decimal point"));
        }
        let too_large = || MoneyError::TooLarge {
            input: input.to_owned(),
        };
        let dollars: u64 = whole.parse().map_err(|_| too_large())?;
        let cents: u64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<u64>().map_err(|_| too_large())? * 10,
            _ => fraction.parse().map_err(|_| too_large())?,
        };
        Cents::from_dollars(dollars)
            .and_then(|d| d.checked_add(Cents(cents)))
            .ok_or_else(too_large)
    }
}

impl Sum for Cents {
    /// Adds up amounts, saturating instead of overflowing.
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        iter.fold(Cents::ZERO, Cents::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_dollars() {
        assert_eq!(Cents(1200).to_string(), "$12.00");
        assert_eq!(Cents(850).to_string(), "$8.50");
        assert_eq!(Cents(5).to_string(), "$0.05");
        assert_eq!(Cents(0).to_string(), "$0.00");
        assert_eq!(Cents(123_456).to_string(), "$1234.56");
    }

    #[test]
    fn percent_rounds_half_up() {
        assert_eq!(Cents(4700).percent_of(18), Cents(846));
        assert_eq!(Cents(10).percent_of(15), Cents(2));
        assert_eq!(Cents(10).percent_of(14), Cents(1)); // 1.4 rounds down
        assert_eq!(Cents(4700).percent_of(0), Cents(0));
        assert_eq!(Cents(999).percent_of(100), Cents(999));
        assert_eq!(Cents(u64::MAX).percent_of(200), Cents(u64::MAX));
    }

    #[test]
    fn parses_exact_amounts() {
        assert_eq!("12.00".parse(), Ok(Cents(1200)));
        assert_eq!("8.5".parse(), Ok(Cents(850)));
        assert_eq!("8.05".parse(), Ok(Cents(805)));
        assert_eq!("16".parse(), Ok(Cents(1600)));
        assert_eq!(" $0.99 ".parse(), Ok(Cents(99)));
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in [
            "", ".5", "12.", "12.345", "-1", "1e3", "12,00", "ten", "1.2.3",
        ] {
            assert!(
                matches!(bad.parse::<Cents>(), Err(MoneyError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            "999999999999999999999".parse::<Cents>(),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            "184467440737095516.16".parse::<Cents>(),
            Err(MoneyError::TooLarge { .. })
        ));
    }

    #[test]
    fn arithmetic_helpers() {
        assert_eq!(Cents(100).checked_add(Cents(50)), Some(Cents(150)));
        assert_eq!(Cents(u64::MAX).checked_add(Cents(1)), None);
        assert_eq!(Cents(u64::MAX).saturating_add(Cents(1)), Cents(u64::MAX));
        assert_eq!(Cents(2800).checked_mul(2), Some(Cents(5600)));
        assert_eq!(Cents(u64::MAX).saturating_mul(2), Cents(u64::MAX));
        assert_eq!([Cents(1), Cents(2)].into_iter().sum::<Cents>(), Cents(3));
    }

    #[test]
    fn serializes_as_a_bare_number() {
        assert_eq!(
            serde_json::to_string(&Cents(1250)).ok().as_deref(),
            Some("1250")
        );
        assert_eq!(
            serde_json::from_str::<Cents>("1250").ok(),
            Some(Cents(1250))
        );
    }
}

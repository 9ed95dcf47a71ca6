//! Byte sizes (`700MiB`, `2GiB`, `123456`) and durations (`3s`, `10m`) as
//! people write them in flags and config files.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Why a size or duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what}: {reason}")]
pub struct UnitError {
    input: String,
    what: &'static str,
    reason: &'static str,
}

impl UnitError {
    fn new(input: &str, what: &'static str, reason: &'static str) -> Self {
        Self { input: input.to_owned(), what, reason }
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

impl ByteSize {
    /// Parses plain bytes or a number with a unit: `B`, `KB`/`MB`/`GB`/`TB`
    /// (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024, also
    /// written `Ki`/`Mi`/`Gi`/`Ti` as Kubernetes quantities are); case-insensitive.
    ///
    /// # Errors
    /// [`UnitError`] for anything else, or a size past `u64`.
    pub fn parse(raw: &str) -> Result<Self, UnitError> {
        let s = raw.trim();
        let (number, unit) = split_number(s);
        if number.is_empty() {
            return Err(UnitError::new(raw, "size", "expected a number such as 512MiB or 2GiB"));
        }
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" | "ki" => 1 << 10,
            "mib" | "mi" => 1 << 20,
            "gib" | "gi" => 1 << 30,
            "tib" | "ti" => 1 << 40,
            _ => return Err(UnitError::new(raw, "size", "unknown unit (use B, KB, MB, GB, KiB, MiB, GiB, …)")),
        };
        let value: f64 = number.parse().map_err(|_| UnitError::new(raw, "size", "bad number"))?;
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(UnitError::new(raw, "size", "too large"));
        }
        Ok(Self(bytes.round() as u64))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size {
                return write!(f, "{:.1}{unit}", self.0 as f64 / size as f64);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `500ms`, `3s`, `10m`, `2h`, `1d` (one number, one unit).
///
/// # Errors
/// [`UnitError`] for anything else.
pub fn parse_duration(raw: &str) -> Result<Duration, UnitError> {
    let s = raw.trim();
    let (number, unit) = split_number(s);
    let bad_number = || UnitError::new(raw, "duration", "expected a number and a unit, e.g. 30s or 10m");
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(UnitError::new(raw, "duration", "unit must be ms, s, m, h or d")),
    };
    // Whole numbers are exact; fractions go through floating point.
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(|| UnitError::new(raw, "duration", "out of range"));
    }
    let value: f64 = number.parse().map_err(|_| bad_number())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(UnitError::new(raw, "duration", "unit must be ms, s, m, h or d")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| UnitError::new(raw, "duration", "out of range"))
}

/// Writes a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(86_400_000) && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serde for durations written as `"3s"`.
pub mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_duration(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sizes_in_both_unit_systems() {
        assert_eq!(ByteSize::parse("700MiB"), Ok(ByteSize(700 << 20)));
        assert_eq!(ByteSize::parse("2GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("1.5GB"), Ok(ByteSize(1_500_000_000)));
        assert_eq!(ByteSize::parse("123456"), Ok(ByteSize(123_456)));
        assert_eq!(ByteSize::parse(" 64 kib "), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("32Gi"), Ok(ByteSize(32 << 30)), "Kubernetes quantities, as the chart writes them");
        assert_eq!(ByteSize::parse("2Ti"), Ok(ByteSize(2 << 40)));
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("12XB").is_err());
        assert!(ByteSize::parse("-1GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
    }

    proptest! {
        #[test]
        fn durations_round_trip_through_their_text(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

//! Sizes and rates as people write them (`16MiB`, `8mbit`, `2MiB/s`) and as
//! they read them (`1.5 MiB`, `12.3 MiB/s`, `8 Mbit/s`): the one parser and
//! formatter of the workspace, used by the node's flags and progress lines
//! and by the testnet's flags and reports.
//!
//! A value is a number (whole or with a decimal point) and a unit; case is
//! ignored and a space may separate them. `k`, `M`, `G`, `T` are powers of
//! 1000, `Ki`, `Mi`, `Gi`, `Ti` powers of 1024, each with an optional `B`
//! (bytes); no unit means bytes. Rates also take bits (`bit`, `kbit`,
//! `mbit`, `gbit`, `tbit`, decimal as `tc` reads them) and an optional `/s`.
//! The number is read exactly (no floating point), so large values either
//! fit or are refused, never rounded into something else.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a size or rate was refused; the message says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing was given.
    #[error("empty value; give a number with a unit, such as {example}")]
    Empty {
        /// A value that would have been accepted.
        example: &'static str,
    },
    /// The value does not start with a number, or its number is malformed.
    #[error("{input:?} is not a number with a unit; write it like {example}")]
    NotANumber {
        /// What was given.
        input: String,
        /// A value that would have been accepted.
        example: &'static str,
    },
    /// The unit is not one this kind of value takes.
    #[error("{input:?}: unknown unit {unit:?}; use {expected}")]
    UnknownUnit {
        /// What was given.
        input: String,
        /// The unit as read (lower case).
        unit: String,
        /// The units that are accepted.
        expected: &'static str,
    },
    /// More than the value may be.
    #[error("{input:?} is too large; the most is {max}")]
    TooLarge {
        /// What was given.
        input: String,
        /// The largest accepted value.
        max: &'static str,
    },
    /// More digits than any real value has (the arithmetic stays exact below that).
    #[error("{input:?} has more than 30 digits; write it with a larger unit")]
    TooManyDigits {
        /// What was given.
        input: String,
    },
    /// Less than the value may be.
    #[error("{input:?} is too small; the least is {min}")]
    TooSmall {
        /// What was given.
        input: String,
        /// The smallest accepted value.
        min: &'static str,
    },
    /// A size that ends in a fraction of a byte (`0.5B`, `1.0001KiB`).
    #[error("{input:?} is not a whole number of bytes")]
    NotWholeBytes {
        /// What was given.
        input: String,
    },
}

/// Parses a size in bytes: `4096`, `500k`, `16MB`, `64MiB`, `1.5GiB`, `2 KiB`.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let amount = Amount::parse(s, Kind::Size)?;
    let byte = amount.den * 8;
    if amount.bits % byte != 0 {
        return Err(ParseError::NotWholeBytes { input: s.into() });
    }
    u64::try_from(amount.bits / byte).map_err(|_| too_large(s, Kind::Size))
}

/// Parses a rate cap into bytes per second: `8mbit`, `2MiB`, `500k`,
/// `1.5MB/s`, `1234`. `0`, `none` and `unlimited` mean no cap (`None`).
///
/// A rate below one byte per second (`1bit`) is one byte per second.
pub fn parse_rate(s: &str) -> Result<Option<u64>, ParseError> {
    /// Well above any link; refuses typos like `8tb`.
    const MAX_BYTES_PER_SEC: u128 = 1_000_000_000_000_000;
    if matches!(s.trim().to_ascii_lowercase().as_str(), "none" | "unlimited") {
        return Ok(None);
    }
    let amount = Amount::parse(s, Kind::Rate)?;
    if amount.bits == 0 {
        return Ok(None);
    }
    let bytes = (amount.bits / (amount.den * 8)).max(1);
    if bytes > MAX_BYTES_PER_SEC {
        return Err(too_large(s, Kind::Rate));
    }
    u64::try_from(bytes)
        .map(Some)
        .map_err(|_| too_large(s, Kind::Rate))
}

/// Parses a link rate into bits per second, rounded to the nearest bit:
/// `8mbit`, `500kbit`, `1gbit`, `100000bit`, or bytes per second (`2MiB`,
/// `1MB/s`, `4096`). From 1 bit/s to 1 Tbit/s; there is no "unlimited".
pub fn parse_bit_rate(s: &str) -> Result<u64, ParseError> {
    const MAX_BITS_PER_SEC: u128 = 1_000_000_000_000;
    let amount = Amount::parse(s, Kind::BitRate)?;
    if amount.bits < amount.den {
        return Err(ParseError::TooSmall {
            input: s.into(),
            min: "1bit",
        });
    }
    let bits = (amount.bits + amount.den / 2) / amount.den;
    if bits > MAX_BITS_PER_SEC {
        return Err(too_large(s, Kind::BitRate));
    }
    u64::try_from(bits).map_err(|_| too_large(s, Kind::BitRate))
}

/// A number of bytes given on a command line; shown compactly (`64MiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Self)
    }
}

impl fmt::Display for ByteSize {
    /// Compact and exact, so it parses back to the same size and fits in
    /// file names: `64MiB`, `1.5GiB`, `4096B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, name) in UNITS {
            // Sixteenths have at most four decimals (1/16 = 0.0625), written
            // from integers so even the largest sizes print exactly.
            if self.0 >= size && self.0.is_multiple_of(size / 16) {
                let whole = self.0 / size;
                let ten_thousandths = (self.0 % size) / (size / 16) * 625;
                if ten_thousandths == 0 {
                    return write!(f, "{whole}{name}");
                }
                let decimals = format!("{ten_thousandths:04}");
                return write!(f, "{whole}.{}{name}", decimals.trim_end_matches('0'));
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A byte count for people: `0 B`, `812 B`, `12.3 KiB`, `64.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A rate in bytes per second for people: `12.3 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0) as u64))
}

/// A link rate in bits per second, decimal as link rates are quoted:
/// `8 Mbit/s`, `1.5 Gbit/s`, `800 kbit/s`, `12 bit/s`.
pub fn bit_rate(bits_per_sec: u64) -> String {
    const UNITS: [(u64, &str); 3] = [
        (1_000_000_000, "Gbit/s"),
        (1_000_000, "Mbit/s"),
        (1_000, "kbit/s"),
    ];
    for (size, name) in UNITS {
        if bits_per_sec >= size {
            return format!("{} {name}", trim_float(bits_per_sec as f64 / size as f64));
        }
    }
    format!("{bits_per_sec} bit/s")
}

/// A duration with one decimal of seconds: `23.4 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What is being parsed: decides the units taken and the messages.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Size,
    Rate,
    BitRate,
}

impl Kind {
    fn example(self) -> &'static str {
        match self {
            Kind::Size => "16MiB or 4096",
            Kind::Rate => "8mbit or 2MiB",
            Kind::BitRate => "8mbit or 1MiB",
        }
    }

    fn expected_units(self) -> &'static str {
        match self {
            Kind::Size => "B, k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB",
            Kind::Rate | Kind::BitRate => {
                "B, kB, MB, GB, KiB, MiB, GiB (bytes per second) or bit, kbit, mbit, gbit"
            }
        }
    }

    fn max(self) -> &'static str {
        match self {
            Kind::Size => "16EiB (2^64 - 1 bytes)",
            Kind::Rate => "1000TB/s",
            Kind::BitRate => "1000gbit",
        }
    }

    fn takes_bits(self) -> bool {
        !matches!(self, Kind::Size)
    }
}

fn too_large(s: &str, kind: Kind) -> ParseError {
    ParseError::TooLarge {
        input: s.into(),
        max: kind.max(),
    }
}

/// An exact amount of bits: `bits / den`, where `den` is a power of ten.
#[derive(Debug)]
struct Amount {
    bits: u128,
    den: u128,
}

impl Amount {
    fn parse(input: &str, kind: Kind) -> Result<Self, ParseError> {
        /// More digits than any sane value; keeps the arithmetic in range.
        const MAX_DIGITS: usize = 30;
        let text = input.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(ParseError::Empty {
                example: kind.example(),
            });
        }
        let text = if kind.takes_bits() {
            text.strip_suffix("/s").unwrap_or(&text).trim_end()
        } else {
            &text
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let not_a_number = || ParseError::NotANumber {
            input: input.into(),
            example: kind.example(),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(not_a_number());
        }
        // `1.50` is `1.5`; leading zeros count, as nobody writes many.
        let fraction = fraction.trim_end_matches('0');
        if whole.len() + fraction.len() > MAX_DIGITS {
            return Err(ParseError::TooManyDigits {
                input: input.into(),
            });
        }
        let mut num: u128 = 0;
        for d in whole.bytes().chain(fraction.bytes()) {
            num = num * 10 + u128::from(d - b'0');
        }
        let den = 10u128.pow(fraction.len() as u32);
        let per_unit = unit_bits(unit.trim(), kind).ok_or_else(|| ParseError::UnknownUnit {
            input: input.into(),
            unit: unit.trim().into(),
            expected: kind.expected_units(),
        })?;
        let bits = num
            .checked_mul(per_unit)
            .ok_or_else(|| too_large(input, kind))?;
        Ok(Self { bits, den })
    }
}

/// Bits in one `unit` (lower case), or None if `kind` does not take it.
fn unit_bits(unit: &str, kind: Kind) -> Option<u128> {
    const BYTE: u128 = 8;
    let bytes = match unit {
        "" | "b" => Some(1),
        "k" | "kb" => Some(1_000),
        "m" | "mb" => Some(1_000_000),
        "g" | "gb" => Some(1_000_000_000),
        "t" | "tb" => Some(1_000_000_000_000),
        "ki" | "kib" => Some(1 << 10),
        "mi" | "mib" => Some(1 << 20),
        "gi" | "gib" => Some(1 << 30),
        "ti" | "tib" => Some(1 << 40),
        _ => None,
    };
    if let Some(b) = bytes {
        return Some(b * BYTE);
    }
    if !kind.takes_bits() {
        return None;
    }
    match unit {
        "bit" => Some(1),
        "kbit" => Some(1_000),
        "mbit" => Some(1_000_000),
        "gbit" => Some(1_000_000_000),
        "tbit" => Some(1_000_000_000_000),
        _ => None,
    }
}

/// Up to four decimals, trailing zeros dropped: `1.5`, `64`, `0.0625`.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_in_every_accepted_spelling() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("16MB"), Ok(16_000_000));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size(" 2 KiB "), Ok(2048));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn refuses_bad_sizes_with_a_reason() {
        assert_eq!(
            parse_size(""),
            Err(ParseError::Empty {
                example: "16MiB or 4096"
            })
        );
        assert!(matches!(
            parse_size("MiB"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("1.2.3M"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("."),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("-5"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("12 parsecs"),
            Err(ParseError::UnknownUnit { ref unit, .. }) if unit == "parsecs"
        ));
        // Bits are for rates, not sizes.
        assert!(matches!(
            parse_size("8mbit"),
            Err(ParseError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("1MiB/s"),
            Err(ParseError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_size("0.5B"),
            Err(ParseError::NotWholeBytes {
                input: "0.5B".into()
            })
        );
        let err = parse_size("12 parsecs").unwrap_err().to_string();
        assert!(
            err.contains("unknown unit \"parsecs\"") && err.contains("MiB"),
            "{err}"
        );
    }

    #[test]
    fn refuses_sizes_that_overflow_instead_of_rounding() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(matches!(
            parse_size("18446744073709551616"),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size("99999999999GiB"),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size("16777216TiB"),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size(&"9".repeat(40)),
            Err(ParseError::TooManyDigits { .. })
        ));
        assert!(matches!(
            parse_size(&format!("0.{}1KiB", "0".repeat(40))),
            Err(ParseError::TooManyDigits { .. })
        ));
        assert_eq!(parse_size(&format!("1.{}KiB", "0".repeat(40))), Ok(1024));
    }

    #[test]
    fn sizes_round_trip_through_their_display() {
        let samples = [
            0,
            1,
            1000,
            1023,
            1024,
            2048,
            4096,
            64 << 10,
            (1 << 20) + 1,
            3 << 29,
            16 << 20,
            u64::MAX,
            u64::MAX - (u64::MAX % (1 << 26)),
            (1 << 60) + 64,
            (1 << 62) + (1 << 16),
        ];
        for n in samples {
            let shown = ByteSize(n).to_string();
            assert_eq!(shown.parse(), Ok(ByteSize(n)), "{n} shown as {shown}");
        }
        for shift in 0..64 {
            let p = 1u64 << shift;
            for n in [p, p + p / 2, p - 1, p + 1] {
                let shown = ByteSize(n).to_string();
                assert_eq!(shown.parse(), Ok(ByteSize(n)), "{n} shown as {shown}");
            }
        }
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(2048).to_string(), "2KiB");
    }

    #[test]
    fn parses_rate_caps_as_the_node_flags_always_did() {
        assert_eq!(parse_rate("8mbit"), Ok(Some(1_000_000)));
        assert_eq!(parse_rate("8Mbit/s"), Ok(Some(1_000_000)));
        assert_eq!(parse_rate("2MiB"), Ok(Some(2 * 1024 * 1024)));
        assert_eq!(parse_rate("512KiB"), Ok(Some(512 * 1024)));
        assert_eq!(parse_rate("500k"), Ok(Some(500_000)));
        assert_eq!(parse_rate("1.5MB/s"), Ok(Some(1_500_000)));
        assert_eq!(parse_rate("1234"), Ok(Some(1234)));
        assert_eq!(parse_rate("1bit"), Ok(Some(1)));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("0mbit"), Ok(None));
        assert_eq!(parse_rate("none"), Ok(None));
        assert_eq!(parse_rate("Unlimited"), Ok(None));
        assert!(matches!(
            parse_rate("fast"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(parse_rate("10 parsecs")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(matches!(parse_rate(""), Err(ParseError::Empty { .. })));
        assert!(matches!(
            parse_rate("2000TB"),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_rate(&"9".repeat(30)),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_rate(&"9".repeat(31)),
            Err(ParseError::TooManyDigits { .. })
        ));
    }

    #[test]
    fn parses_link_rates_in_bits_and_bytes() {
        assert_eq!(parse_bit_rate("8mbit"), Ok(8_000_000));
        assert_eq!(parse_bit_rate("80mbit"), Ok(80_000_000));
        assert_eq!(parse_bit_rate("8Mbit/s"), Ok(8_000_000));
        assert_eq!(parse_bit_rate("8 Mbit/s"), Ok(8_000_000));
        assert_eq!(parse_bit_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_bit_rate("1.5gbit"), Ok(1_500_000_000));
        assert_eq!(parse_bit_rate("100001bit"), Ok(100_001));
        assert_eq!(parse_bit_rate("2MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_bit_rate("1MB/s"), Ok(8_000_000));
        assert_eq!(parse_bit_rate("1000"), Ok(8000));
        assert_eq!(parse_bit_rate("1.6bit"), Ok(2));
        assert!(matches!(
            parse_bit_rate("0mbit"),
            Err(ParseError::TooSmall { .. })
        ));
        assert!(matches!(
            parse_bit_rate("0.5bit"),
            Err(ParseError::TooSmall { .. })
        ));
        assert!(matches!(
            parse_bit_rate("unlimited"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bit_rate("mbit"),
            Err(ParseError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bit_rate("2tbit"),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn link_rates_round_trip_through_their_display() {
        for bits in [
            1,
            999,
            1000,
            8_000_000,
            32_000_000,
            1_500_000,
            1_000_000_000,
        ] {
            assert_eq!(
                parse_bit_rate(&bit_rate(bits)),
                Ok(bits),
                "{}",
                bit_rate(bits)
            );
        }
        assert_eq!(bit_rate(32_000_000), "32 Mbit/s");
        assert_eq!(bit_rate(1_500_000), "1.5 Mbit/s");
        assert_eq!(bit_rate(800), "800 bit/s");
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(rate(1536.0), "1.5 KiB/s");
        assert_eq!(rate(-3.0), "0 B/s");
        assert_eq!(secs(Duration::from_millis(23_449)), "23.4 s");
        // What people read parses back to about the same rate.
        let shown = rate(12.3 * 1024.0 * 1024.0);
        let back = parse_rate(&shown).unwrap().unwrap() as f64;
        assert!(
            (back / (12.3 * 1024.0 * 1024.0) - 1.0).abs() < 0.01,
            "{shown}"
        );
    }
}

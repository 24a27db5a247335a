//! Byte sizes and bit rates given on the command line (`64MiB`, `8mbit`) and
//! human-readable formatting of sizes, rates and durations for the progress
//! and reports.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes, parsed from `4096`, `500k`, `16MB`, `64MiB`, `1.5GiB`.
///
/// `k`, `M`, `G` are powers of 1000 and `Ki`, `Mi`, `Gi` powers of 1024, as in
/// the node's rate syntax; a trailing `B` is optional and case is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(format!("{s:?}: expected a number such as 64MiB or 4096"));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let factor: u64 = match unit {
            "" => 1,
            "k" => 1_000,
            "m" => 1_000_000,
            "g" => 1_000_000_000,
            "ki" => 1 << 10,
            "mi" => 1 << 20,
            "gi" => 1 << 30,
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (use B, k, M, G, KiB, MiB or GiB)"
                ))
            }
        };
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("{s:?}: size out of range"));
        }
        if bytes.fract() != 0.0 {
            return Err(format!("{s:?}: not a whole number of bytes"));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Compact binary form: `64MiB`, `1.5GiB`, `4096B`; used in file names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, name) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size / 16) {
                let v = self.0 as f64 / size as f64;
                return write!(f, "{}{name}", trim_float(v));
            }
        }
        write!(f, "{}B", self.0)
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A link rate in bits per second, parsed from `8mbit`, `500kbit`, `1gbit`,
/// `100000bit` (decimal bits, as `tc` reads them) or from bytes per second:
/// `2MiB`, `1MB`, `4096` (the node's rate syntax). A trailing `/s` is optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

impl Rate {
    /// Bits per second as a float, for the bound formulas.
    pub fn bits_per_sec(self) -> f64 {
        self.0 as f64
    }

    /// `tc`'s spelling of this rate: exact, in bits per second.
    pub fn tc(self) -> String {
        format!("{}bit", self.0)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_suffix("/s").unwrap_or(&t).trim();
        let bit_units = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)];
        let bits = match bit_units.iter().find(|(u, _)| t.ends_with(u)) {
            Some((unit, scale)) => {
                let num = t[..t.len() - unit.len()].trim();
                let v: f64 = num.parse().map_err(|_| {
                    format!("{s:?}: {num:?} is not a number (e.g. 8mbit, 500kbit, 2MiB)")
                })?;
                v * scale
            }
            None => t.parse::<ByteSize>()?.0 as f64 * 8.0,
        };
        if !bits.is_finite() || !(1.0..=1e12).contains(&bits) {
            return Err(format!("{s:?}: rate out of range (1 bit/s to 1 Tbit/s)"));
        }
        Ok(Self(bits.round() as u64))
    }
}

impl fmt::Display for Rate {
    /// `8 Mbit/s`, `1.5 Gbit/s`, `800 kbit/s`: decimal, as link rates are quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [
            (1_000_000_000, "Gbit/s"),
            (1_000_000, "Mbit/s"),
            (1_000, "kbit/s"),
        ];
        for (size, name) in UNITS {
            if self.0 >= size {
                return write!(f, "{} {name}", trim_float(self.0 as f64 / size as f64));
            }
        }
        write!(f, "{} bit/s", self.0)
    }
}

/// Formats a byte count for humans: `0 B`, `812 B`, `12.3 KiB`, `64.0 MiB`.
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

/// Formats a rate in bytes per second: `12.3 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0) as u64))
}

/// Formats a duration with one decimal of seconds: `23.4 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("500k".parse(), Ok(ByteSize(500_000)));
        assert_eq!("16MB".parse(), Ok(ByteSize(16_000_000)));
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("64mib".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("1.5GiB".parse(), Ok(ByteSize(3 << 29)));
        assert_eq!(" 2 KiB ".parse(), Ok(ByteSize(2048)));
        assert!("".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("0.5B".parse::<ByteSize>().is_err());
        assert!("1.2.3M".parse::<ByteSize>().is_err());
        assert!("99999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn displays_sizes_compactly() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(2048).to_string(), "2KiB");
    }

    #[test]
    fn parses_rates_in_bits_and_bytes() {
        assert_eq!("8mbit".parse(), Ok(Rate(8_000_000)));
        assert_eq!("8Mbit/s".parse(), Ok(Rate(8_000_000)));
        assert_eq!("500kbit".parse(), Ok(Rate(500_000)));
        assert_eq!("1.5gbit".parse(), Ok(Rate(1_500_000_000)));
        assert_eq!("2MiB".parse(), Ok(Rate(16 * 1024 * 1024)));
        assert_eq!("1MB/s".parse(), Ok(Rate(8_000_000)));
        assert_eq!("1000".parse(), Ok(Rate(8000)));
        assert!("0mbit".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!("mbit".parse::<Rate>().is_err());
        assert_eq!(Rate(8_000_000).tc(), "8000000bit");
        assert_eq!(Rate(32_000_000).to_string(), "32 Mbit/s");
        assert_eq!(Rate(1_500_000).to_string(), "1.5 Mbit/s");
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(rate(1536.0), "1.5 KiB/s");
        assert_eq!(secs(Duration::from_millis(23_449)), "23.4 s");
    }
}

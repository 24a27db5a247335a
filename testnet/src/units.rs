//! Byte sizes and bit rates given on the command line (`64MiB`, `8mbit`) and
//! human-readable sizes, rates and durations for the progress and reports.
//! Parsing and formatting are the workspace's one implementation,
//! [`node::units`]; this module adds the link-rate type the testbeds need.

use std::fmt;
use std::str::FromStr;

pub use node::units::{bytes, rate, secs, ByteSize, ParseError};

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
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        node::units::parse_bit_rate(s).map(Self)
    }
}

impl fmt::Display for Rate {
    /// `8 Mbit/s`, `1.5 Gbit/s`, `800 kbit/s`: decimal, as link rates are quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&node::units::bit_rate(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sizes_the_testnet_flags_use() {
        assert_eq!("16MiB".parse(), Ok(ByteSize(16 << 20)));
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("32KiB".parse(), Ok(ByteSize(32 << 10)));
        assert_eq!("500k".parse(), Ok(ByteSize(500_000)));
        assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        // Generated files are named after the size.
        assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
    }

    #[test]
    fn parses_rates_in_bits_and_bytes() {
        assert_eq!("8mbit".parse(), Ok(Rate(8_000_000)));
        assert_eq!("32mbit".parse(), Ok(Rate(32_000_000)));
        assert_eq!("80mbit".parse(), Ok(Rate(80_000_000)));
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
}

//! The 32-byte content ID and its text forms (`<hex>` or `kadswarm:<hex>`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Prefix of the link form of a content ID.
pub const LINK_PREFIX: &str = "kadswarm:";

/// SHA-256 of a manifest's canonical encoding; names one piece of content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

/// Why a content ID's text form was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseIdError {
    /// Not 64 hex digits long.
    #[error("content ID must be 64 hex digits, got {0} characters")]
    WrongLength(usize),
    /// A character that is not a hex digit.
    #[error("content ID has a non-hex character {ch:?} at position {pos}")]
    InvalidChar { ch: char, pos: usize },
}

impl ContentId {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The link form, `kadswarm:<hex>`.
    pub fn to_link(&self) -> String {
        format!("{LINK_PREFIX}{self}")
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = ParseIdError;

    /// Accepts 64 hex digits (either case), optionally after `kadswarm:`, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (hex, offset) = match s.strip_prefix(LINK_PREFIX) {
            Some(rest) => (rest, LINK_PREFIX.len()),
            None => (s, 0),
        };
        let chars: Vec<char> = hex.chars().collect();
        if let Some((pos, &ch)) = chars
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(ParseIdError::InvalidChar {
                ch,
                pos: pos + offset,
            });
        }
        if chars.len() != 64 {
            return Err(ParseIdError::WrongLength(chars.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
        }
        Ok(Self(out))
    }
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.to_ascii_lowercase().wrapping_sub(b'a').wrapping_add(10),
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(d)?;
        let bytes: [u8; 32] = buf
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(buf.len(), &"32 bytes"))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_round_trips(bytes in any::<[u8; 32]>()) {
            let id = ContentId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<ContentId>(), Ok(id));
            prop_assert_eq!(id.to_link().parse::<ContentId>(), Ok(id));
            prop_assert_eq!(id.to_string().to_uppercase().parse::<ContentId>(), Ok(id));
        }

        #[test]
        fn random_text_never_panics(s in ".{0,80}") {
            let _ = s.parse::<ContentId>();
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            "abc".parse::<ContentId>(),
            Err(ParseIdError::WrongLength(3))
        );
        let bad = format!("{}g", "0".repeat(63));
        assert_eq!(
            bad.parse::<ContentId>(),
            Err(ParseIdError::InvalidChar { ch: 'g', pos: 63 })
        );
        let msg = "zz".parse::<ContentId>().unwrap_err().to_string();
        assert!(msg.contains("'z'"), "{msg}");
    }
}

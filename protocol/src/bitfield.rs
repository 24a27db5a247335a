//! A fixed-length set of chunk indices, with the compact byte form used on the wire.

use smallvec::SmallVec;
use thiserror::Error;

/// Index of a chunk within one piece of content.
pub type ChunkIndex = u32;

/// Words kept inline: up to 512 chunks need no heap block, so a transfer's
/// walk over its peers' bitfields does not chase a pointer per peer.
type Words = SmallVec<[u64; 8]>;

/// Which chunks a peer holds: one bit per chunk, plus a cached count of set bits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    words: Words,
    len: u32,
    ones: u32,
}

/// Why a bitfield received from a peer was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BitfieldError {
    /// The byte form had the wrong length for the chunk count.
    #[error("bitfield has {got} bytes, expected {expected} for {chunks} chunks")]
    WrongLength {
        got: usize,
        expected: usize,
        chunks: u32,
    },
    /// Bits past the last chunk were set.
    #[error("bitfield sets bits past the last chunk")]
    SpareBitsSet,
}

impl Bitfield {
    /// An empty bitfield for `len` chunks.
    pub fn new(len: u32) -> Self {
        Self {
            words: SmallVec::from_elem(0, words_for(len)),
            len,
            ones: 0,
        }
    }

    /// A bitfield with all `len` chunks set.
    pub fn full(len: u32) -> Self {
        let mut words: Words = SmallVec::from_elem(u64::MAX, words_for(len));
        if let Some(last) = words.last_mut() {
            let spare = (words_for(len) * 64) as u32 - len;
            *last >>= spare;
        }
        Self {
            words,
            len,
            ones: len,
        }
    }

    /// Number of chunks this bitfield covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when it covers no chunks at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// True when every chunk is set (also for a zero-length bitfield).
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// True when no chunk is set.
    pub fn none_set(&self) -> bool {
        self.ones == 0
    }

    /// Whether chunk `i` is set; out of range reads as unset.
    pub fn get(&self, i: ChunkIndex) -> bool {
        if i >= self.len {
            return false;
        }
        self.words[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// Sets chunk `i`; returns true if it was newly set. Out of range is ignored.
    pub fn set(&mut self, i: ChunkIndex) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let mask = 1u64 << (i % 64);
        if *w & mask != 0 {
            return false;
        }
        *w |= mask;
        self.ones += 1;
        true
    }

    /// Clears chunk `i`; returns true if it was set. Out of range is ignored.
    pub fn clear(&mut self, i: ChunkIndex) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let mask = 1u64 << (i % 64);
        if *w & mask == 0 {
            return false;
        }
        *w &= !mask;
        self.ones -= 1;
        true
    }

    /// Iterates over the set indices in ascending order.
    pub fn iter_ones(&self) -> impl Iterator<Item = ChunkIndex> + '_ {
        ones_of(self.words.iter().copied())
    }

    /// The chunks `self` has and `other` lacks, ascending.
    pub fn iter_ones_missing_from<'a>(
        &'a self,
        other: &'a Bitfield,
    ) -> impl Iterator<Item = ChunkIndex> + 'a {
        let others = other.words.iter().chain(std::iter::repeat(&0));
        ones_of(self.words.iter().zip(others).map(|(&a, &b)| a & !b))
    }

    /// True if `self` has some chunk that `other` lacks.
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        self.words
            .iter()
            .zip(other.words.iter().chain(std::iter::repeat(&0)))
            .any(|(a, b)| a & !b != 0)
    }

    /// The compact byte form: chunk 0 is the high bit of byte 0, as in BitTorrent.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Byte `b` is bits 8(b % 8).. of word b / 8, with the lowest chunk in the high bit.
        (0..bytes_for(self.len))
            .map(|b| ((self.words[b / 8] >> ((b % 8) * 8)) as u8).reverse_bits())
            .collect()
    }

    /// Parses the compact byte form for `len` chunks, rejecting a wrong length or spare bits.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Result<Self, BitfieldError> {
        let expected = bytes_for(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                chunks: len,
            });
        }
        let mut bf = Self::new(len);
        for (b, &byte) in bytes.iter().enumerate() {
            bf.words[b / 8] |= u64::from(byte.reverse_bits()) << ((b % 8) * 8);
        }
        let spare = (words_for(len) * 64) as u32 - len;
        if spare > 0 && bf.words.last().is_some_and(|&w| w >> (64 - spare) != 0) {
            return Err(BitfieldError::SpareBitsSet);
        }
        bf.ones = bf.words.iter().map(|w| w.count_ones()).sum();
        Ok(bf)
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

fn words_for(len: u32) -> usize {
    (len as usize).div_ceil(64)
}

fn bytes_for(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

/// The indices of the set bits of `words` (word k holds indices 64k..), ascending.
fn ones_of(words: impl Iterator<Item = u64>) -> impl Iterator<Item = ChunkIndex> {
    words.enumerate().flat_map(|(wi, word)| {
        let mut w = word;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let bit = w.trailing_zeros();
            w &= w - 1;
            Some(wi as u32 * 64 + bit)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_has_exact_count_and_no_spare_bits() {
        for len in [0u32, 1, 7, 8, 63, 64, 65, 1000] {
            let bf = Bitfield::full(len);
            assert_eq!(bf.count_ones(), len);
            assert_eq!(bf.iter_ones().count() as u32, len);
            assert!(!bf.get(len));
            assert_eq!(Bitfield::from_bytes(len, &bf.to_bytes()), Ok(bf));
        }
    }

    #[test]
    fn rejects_spare_bits_and_wrong_length() {
        assert_eq!(
            Bitfield::from_bytes(3, &[0b0001_0000]),
            Err(BitfieldError::SpareBitsSet)
        );
        assert!(matches!(
            Bitfield::from_bytes(9, &[0xff]),
            Err(BitfieldError::WrongLength { .. })
        ));
    }

    #[test]
    fn out_of_range_is_ignored() {
        let mut bf = Bitfield::new(10);
        assert!(!bf.set(10));
        assert!(!bf.get(10));
        assert_eq!(bf.count_ones(), 0);
    }

    proptest! {
        #[test]
        fn bytes_round_trip(len in 0u32..2000, seed in proptest::collection::vec(any::<u32>(), 0..100)) {
            let mut bf = Bitfield::new(len);
            for s in seed { if len > 0 { bf.set(s % len); } }
            let back = Bitfield::from_bytes(len, &bf.to_bytes()).unwrap();
            prop_assert_eq!(back.count_ones(), bf.count_ones());
            prop_assert_eq!(back, bf);
        }

        #[test]
        fn missing_from_is_the_set_difference(len in 0u32..300, a in proptest::collection::vec(any::<u32>(), 0..80), b in proptest::collection::vec(any::<u32>(), 0..80)) {
            let (mut x, mut y) = (Bitfield::new(len), Bitfield::new(len));
            for s in a { if len > 0 { x.set(s % len); } }
            for s in b { if len > 0 { y.set(s % len); } }
            let want: Vec<u32> = x.iter_ones().filter(|&i| !y.get(i)).collect();
            prop_assert_eq!(x.iter_ones_missing_from(&y).collect::<Vec<_>>(), want);
        }

        #[test]
        fn from_random_bytes_never_panics(len in 0u32..100, bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(bf) = Bitfield::from_bytes(len, &bytes) {
                prop_assert_eq!(bf.to_bytes(), bytes);
            }
        }
    }
}

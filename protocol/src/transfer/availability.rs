//! How well the connected swarm covers the content: BitTorrent's "distributed
//! copies", and the chunks we lack that no connected peer holds.
//!
//! Read-only queries for progress displays; each costs one pass over the chunks.

use super::Transfer;
use crate::bitfield::ChunkIndex;

/// The swarm's coverage of the content, as we see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Availability {
    /// Distributed copies: the fewest copies of any chunk among the connected
    /// peers (by their own word) and us, plus the fraction of chunks that have
    /// more than that. Below 1.0, some chunk is held by nobody we know.
    pub distributed_copies: f64,
    /// Chunks we lack that no connected peer holds.
    pub unavailable: u32,
    /// The lowest few of those chunks, as examples for a message.
    pub unavailable_examples: Vec<ChunkIndex>,
}

impl<P: Copy + Ord + std::hash::Hash + std::fmt::Debug> Transfer<P> {
    /// The swarm's coverage of the content, with up to `examples` of the chunks nobody holds.
    pub fn availability(&self, examples: usize) -> Availability {
        let have = self.picker.have();
        let n = self.manifest.chunk_count();
        let mut min = u32::MAX;
        let mut at_min = 0u32;
        let mut unavailable = 0u32;
        let mut unavailable_examples = Vec::new();
        for i in 0..n {
            let copies = self
                .picker
                .availability(i)
                .saturating_add(u32::from(have.get(i)));
            if copies == 0 {
                unavailable += 1;
                if unavailable_examples.len() < examples {
                    unavailable_examples.push(i);
                }
            }
            match copies.cmp(&min) {
                std::cmp::Ordering::Less => {
                    min = copies;
                    at_min = 1;
                }
                std::cmp::Ordering::Equal => at_min += 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        let distributed_copies = if n == 0 {
            0.0
        } else {
            f64::from(min) + f64::from(n - at_min) / f64::from(n)
        };
        Availability {
            distributed_copies,
            unavailable,
            unavailable_examples,
        }
    }
}

//! Messages of the kadswarm session protocol (`/kadswarm/session/2`), in CBOR.
//!
//! Each peer opens one long-lived stream to each other peer and writes every
//! message it has for that peer on it, one frame per message: a 4-byte
//! big-endian length, then the CBOR bytes. Control messages (holdings,
//! interest, choke state) flow one way; asks carry a request ID and are
//! answered on the other peer's stream with the same ID, so many chunk
//! requests are in flight on one stream at once.
//!
//! Every byte payload is a CBOR byte string (`serde_bytes`), every message has
//! a size cap checked before decoding, and decoded values are checked against
//! per-kind limits, so a peer cannot make us allocate what it merely claims.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

use crate::bitfield::{Bitfield, BitfieldError, ChunkIndex};
use crate::id::ContentId;
use crate::manifest::{MAX_CHUNK_SIZE, MAX_MANIFEST_BYTES};
use crate::merkle::{HASH_LEN, MAX_DEPTH};

/// Protocol name of the session stream.
pub const PROTOCOL_NAME: &str = "/kadswarm/session/2";
/// Largest bitfield on the wire (8 Mi chunks, 2 TiB at 256 KiB chunks).
pub const MAX_BITFIELD_BYTES: usize = 1024 * 1024;
/// Largest encoded answer (a manifest, or a chunk with its proof).
pub const MAX_RESPONSE_BYTES: usize = MAX_MANIFEST_BYTES + 64 * 1024;
/// Largest session frame of any kind.
pub const MAX_MESSAGE_BYTES: usize = MAX_RESPONSE_BYTES;
/// Room in a frame for everything but a bitfield, chunk, manifest or peer list.
pub const MESSAGE_OVERHEAD_BYTES: usize = 1024;
/// Most chunk indices in one [`Message::Gained`].
pub const MAX_GAINED_PER_MESSAGE: usize = 4096;
/// Most peers in one peer-exchange answer.
pub const MAX_PEERS_PER_MESSAGE: usize = 50;
/// Most addresses per exchanged peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;
/// Longest encoded peer ID or address.
pub const MAX_PEER_FIELD_BYTES: usize = 128;

/// One frame on a session stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Message {
    /// All the sender holds of `id`, and its stance towards the receiver.
    /// Sent first for each content, and whenever a diff would be larger.
    Have { id: ContentId, info: HaveInfo },
    /// Chunks of `id` the sender gained since its last have message for
    /// `id`, and its stance now (coalesced: one message per flush).
    Gained {
        id: ContentId,
        chunks: Vec<ChunkIndex>,
        interested: bool,
        choking: bool,
    },
    /// The sender does not serve `id`: drop it from that swarm.
    Unknown { id: ContentId },
    /// A request, answered by an [`Message::Answer`] with the same `rid`.
    Ask { rid: u32, ask: Ask },
    /// The answer to the receiver's ask `rid`.
    Answer { rid: u32, answer: Answer },
}

/// What one peer asks of another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// Send me the manifest of `id`.
    Manifest { id: ContentId },
    /// Send me chunk `index` of `id` with its proof.
    Chunk { id: ContentId, index: ChunkIndex },
    /// Which other peers of `id` do you know?
    Peers { id: ContentId },
}

/// An answer to an [`Ask`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The manifest's canonical bytes (the asker hashes them to check the ID).
    Manifest {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A chunk and the Merkle proof that it belongs to the content.
    Chunk {
        index: ChunkIndex,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// The answerer is choking the asker; ask again once unchoked.
    Choked,
    /// The answerer does not hold that chunk.
    DontHave,
    /// Other members of the swarm.
    Peers { peers: Vec<PeerRecord> },
    /// The answerer does not serve that content.
    UnknownContent,
}

impl Message {
    /// CBOR encoding (the frame body).
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks a frame body of at most `max` bytes from a peer.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, WireError> {
        let m: Message = decode(bytes, max.min(MAX_MESSAGE_BYTES))?;
        match &m {
            Message::Have { info, .. } => info.check()?,
            Message::Gained { chunks, .. } if chunks.len() > MAX_GAINED_PER_MESSAGE => {
                return Err(WireError::Limit("too many gained chunks"))
            }
            Message::Answer { answer, .. } => answer.check()?,
            _ => {}
        }
        Ok(m)
    }

    /// The content this message is about, if it names one.
    pub fn content_id(&self) -> Option<&ContentId> {
        match self {
            Message::Have { id, .. } | Message::Gained { id, .. } | Message::Unknown { id } => {
                Some(id)
            }
            Message::Ask { ask, .. } => Some(ask.content_id()),
            Message::Answer { .. } => None,
        }
    }
}

impl Ask {
    /// The content asked about.
    pub fn content_id(&self) -> &ContentId {
        match self {
            Ask::Manifest { id } | Ask::Chunk { id, .. } | Ask::Peers { id } => id,
        }
    }
}

impl Answer {
    fn check(&self) -> Result<(), WireError> {
        match self {
            Answer::Manifest { bytes } if bytes.len() > MAX_MANIFEST_BYTES => {
                Err(WireError::Limit("manifest too large"))
            }
            Answer::Chunk { data, proof, .. } => check_chunk(data, proof),
            Answer::Peers { peers } => check_peers(peers),
            _ => Ok(()),
        }
    }
}

fn check_chunk(data: &[u8], proof: &[u8]) -> Result<(), WireError> {
    if data.len() > MAX_CHUNK_SIZE as usize {
        return Err(WireError::Limit("chunk larger than any allowed chunk size"));
    }
    if proof.len() > MAX_DEPTH * HASH_LEN {
        return Err(WireError::Limit("proof deeper than any tree"));
    }
    Ok(())
}

fn check_peers(peers: &[PeerRecord]) -> Result<(), WireError> {
    if peers.len() > MAX_PEERS_PER_MESSAGE {
        return Err(WireError::Limit("too many peers"));
    }
    for p in peers {
        if p.peer.len() > MAX_PEER_FIELD_BYTES
            || p.addrs.len() > MAX_ADDRS_PER_PEER
            || p.addrs.iter().any(|a| a.len() > MAX_PEER_FIELD_BYTES)
        {
            return Err(WireError::Limit("peer record too large"));
        }
    }
    Ok(())
}

/// Holdings plus choke and interest state, sent both ways in a have exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveInfo {
    /// Which chunks the sender holds.
    pub have: HaveSet,
    /// The sender wants chunks from the receiver.
    pub interested: bool,
    /// The sender refuses the receiver's chunk requests.
    pub choking: bool,
}

/// Compact holdings: nothing, everything, or a bitfield.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaveSet {
    /// Holds no chunk.
    Nothing,
    /// Holds every chunk (a seed).
    Everything,
    /// Holds these chunks (`Bitfield::to_bytes` form).
    Bits(ByteBuf),
}

/// Another swarm member: libp2p peer ID bytes and multiaddr bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's ID, in its binary form.
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    /// Addresses, each a binary multiaddr.
    pub addrs: Vec<ByteBuf>,
}

/// Why a message from a peer was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Larger than the cap for its direction.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Well-formed but outside a per-field limit.
    #[error("message breaks a limit: {0}")]
    Limit(&'static str),
}

impl HaveSet {
    /// The compact form of a bitfield.
    pub fn from_bitfield(bf: &Bitfield) -> Self {
        if bf.is_full() && !bf.is_empty() {
            HaveSet::Everything
        } else if bf.none_set() {
            HaveSet::Nothing
        } else {
            HaveSet::Bits(ByteBuf::from(bf.to_bytes()))
        }
    }

    /// Expands to a bitfield for `chunks` chunks, rejecting a wrong size.
    pub fn to_bitfield(&self, chunks: u32) -> Result<Bitfield, BitfieldError> {
        match self {
            HaveSet::Nothing => Ok(Bitfield::new(chunks)),
            HaveSet::Everything => Ok(Bitfield::full(chunks)),
            HaveSet::Bits(b) => Bitfield::from_bytes(chunks, b),
        }
    }
}

impl HaveInfo {
    fn check(&self) -> Result<(), WireError> {
        match &self.have {
            HaveSet::Bits(b) if b.len() > MAX_BITFIELD_BYTES => {
                Err(WireError::Limit("bitfield too large"))
            }
            _ => Ok(()),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain types into a Vec cannot fail.
    cbor4ii::serde::to_vec(Vec::new(), value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> ContentId {
        ContentId::from_bytes([7; 32])
    }

    fn session_samples() -> Vec<Message> {
        let mut bf = Bitfield::new(20);
        bf.set(3);
        vec![
            Message::Have {
                id: id(),
                info: HaveInfo {
                    have: HaveSet::from_bitfield(&bf),
                    interested: true,
                    choking: false,
                },
            },
            Message::Gained {
                id: id(),
                chunks: vec![1, 7, 19],
                interested: false,
                choking: true,
            },
            Message::Unknown { id: id() },
            Message::Ask {
                rid: 1,
                ask: Ask::Manifest { id: id() },
            },
            Message::Ask {
                rid: u32::MAX,
                ask: Ask::Chunk { id: id(), index: 9 },
            },
            Message::Ask {
                rid: 3,
                ask: Ask::Peers { id: id() },
            },
            Message::Answer {
                rid: 4,
                answer: Answer::Chunk {
                    index: 4,
                    data: vec![0xab; 1000],
                    proof: vec![1; 64],
                },
            },
            Message::Answer {
                rid: 5,
                answer: Answer::Manifest { bytes: vec![1, 2] },
            },
            Message::Answer {
                rid: 6,
                answer: Answer::Choked,
            },
            Message::Answer {
                rid: 7,
                answer: Answer::DontHave,
            },
            Message::Answer {
                rid: 8,
                answer: Answer::UnknownContent,
            },
        ]
    }

    #[test]
    fn every_session_message_round_trips() {
        for m in session_samples() {
            assert_eq!(
                Message::decode(&m.encode(), MAX_MESSAGE_BYTES),
                Ok(m.clone())
            );
            let b = m.encode();
            for cut in 0..b.len() {
                assert!(Message::decode(&b[..cut], MAX_MESSAGE_BYTES).is_err());
            }
        }
    }

    #[test]
    fn session_limits_hold() {
        let m = Message::Gained {
            id: id(),
            chunks: vec![0; MAX_GAINED_PER_MESSAGE + 1],
            interested: false,
            choking: false,
        };
        assert_eq!(
            Message::decode(&m.encode(), MAX_MESSAGE_BYTES),
            Err(WireError::Limit("too many gained chunks"))
        );
        let big = Message::Answer {
            rid: 0,
            answer: Answer::Chunk {
                index: 0,
                data: vec![0; 2000],
                proof: vec![],
            },
        };
        assert!(matches!(
            Message::decode(&big.encode(), 1000),
            Err(WireError::TooLarge { .. })
        ));
        let deep = Message::Answer {
            rid: 0,
            answer: Answer::Chunk {
                index: 0,
                data: vec![],
                proof: vec![0; (MAX_DEPTH + 1) * HASH_LEN],
            },
        };
        assert_eq!(
            Message::decode(&deep.encode(), MAX_MESSAGE_BYTES),
            Err(WireError::Limit("proof deeper than any tree"))
        );
    }

    #[test]
    fn byte_payloads_are_cbor_byte_strings() {
        let m = Message::Answer {
            rid: 0,
            answer: Answer::Chunk {
                index: 0,
                data: vec![0xff; 4096],
                proof: vec![],
            },
        };
        // An array of integers would take ~2 bytes per 0xff; a byte string takes 1.
        assert!(m.encode().len() < 4096 + 64);
    }

    #[test]
    fn answers_over_a_limit_are_refused() {
        let big = Message::Answer {
            rid: 0,
            answer: Answer::Chunk {
                index: 0,
                data: vec![0; MAX_CHUNK_SIZE as usize + 1],
                proof: vec![],
            },
        };
        assert_eq!(
            Message::decode(&big.encode(), MAX_MESSAGE_BYTES),
            Err(WireError::Limit("chunk larger than any allowed chunk size"))
        );
        let many = Message::Answer {
            rid: 0,
            answer: Answer::Peers {
                peers: vec![
                    PeerRecord {
                        peer: vec![1],
                        addrs: vec![]
                    };
                    MAX_PEERS_PER_MESSAGE + 1
                ],
            },
        };
        assert_eq!(
            Message::decode(&many.encode(), MAX_MESSAGE_BYTES),
            Err(WireError::Limit("too many peers"))
        );
        let frame = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            Message::decode(&frame, usize::MAX),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn claimed_huge_byte_string_does_not_allocate_it() {
        let prefix = b"\xa1\x66Answer\xa2\x63rid\x01\x66answer\xa1\x68Manifest\xa1\x65bytes";
        // With a one-byte string it is a real answer...
        let whole = [&prefix[..], b"\x41\x07"].concat();
        assert!(Message::decode(&whole, MAX_MESSAGE_BYTES).is_ok());
        // ...and one claiming 4 GiB, followed by nothing, is refused.
        let claim = [&prefix[..], b"\x5a\xff\xff\xff\xff"].concat();
        assert!(matches!(
            Message::decode(&claim, MAX_MESSAGE_BYTES),
            Err(WireError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn random_session_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::decode(&bytes, MAX_MESSAGE_BYTES);
        }

        #[test]
        fn mutated_session_messages_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>(), which in 0usize..11) {
            let mut b = session_samples()[which].encode();
            let p = pos.index(b.len());
            b[p] = val;
            let _ = Message::decode(&b, MAX_MESSAGE_BYTES);
        }

        #[test]
        fn chunk_answers_round_trip(rid in any::<u32>(), index in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..5000), depth in 0usize..20) {
            let m = Message::Answer { rid, answer: Answer::Chunk { index, data, proof: vec![9; depth * 32] } };
            prop_assert_eq!(Message::decode(&m.encode(), MAX_MESSAGE_BYTES), Ok(m));
        }
    }
}

//! The garbage attack's catalogue: frames no honest peer sends on a
//! session stream, from framing that lies to messages that decode but say
//! something wrong.

use protocol::wire::{Answer, Ask, HaveInfo, HaveSet, Message};
use protocol::ContentId;

use super::frame::framed;
use crate::datagen::SplitMix64;

/// The kinds of bad frame the garbage attack sends, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadKind {
    /// A length prefix far over any cap, then a little data.
    Oversize,
    /// A valid ask cut in half, the stream then closed.
    Truncated,
    /// Random bytes in a well-formed frame.
    Random,
    /// An empty frame.
    Empty,
    /// Valid CBOR of the wrong type: a bare answer where a message belongs.
    WrongType,
    /// A CBOR integer, then a bare text string.
    BareScalars,
    /// Ten thousand nested arrays: a decoder that recurses blows its stack.
    DeepNesting,
    /// A have whose bitfield byte string claims 4 GiB in a small frame.
    HugeBitfieldClaim,
    /// A manifest answer whose byte string claims 4 GiB in a small frame.
    HugeManifestClaim,
    /// A well-formed chunk answer to an ask never made.
    UnknownRid,
    /// A have of nothing, then gained chunks far past the content's end.
    GainedOutOfRange,
    /// A have claiming everything of content the victim has never heard of.
    HaveUnknownContent,
}

impl BadKind {
    /// Every kind, in the order they are sent.
    pub const ALL: [BadKind; 12] = [
        BadKind::Oversize,
        BadKind::Truncated,
        BadKind::Random,
        BadKind::Empty,
        BadKind::WrongType,
        BadKind::BareScalars,
        BadKind::DeepNesting,
        BadKind::HugeBitfieldClaim,
        BadKind::HugeManifestClaim,
        BadKind::UnknownRid,
        BadKind::GainedOutOfRange,
        BadKind::HaveUnknownContent,
    ];

    /// True for frames that decode as messages but are wrong in what they
    /// say (a rid never asked, chunks out of range, content not served).
    pub fn decodes(self) -> bool {
        matches!(
            self,
            BadKind::UnknownRid | BadKind::GainedOutOfRange | BadKind::HaveUnknownContent
        )
    }
}

/// One bad frame (or two, for [`BadKind::GainedOutOfRange`]) as stream bytes.
pub struct Bad {
    /// What is wrong with it.
    pub kind: BadKind,
    /// The bytes to write, length prefixes included.
    pub bytes: Vec<u8>,
}

/// Bad frame number `round` (cycling through [`BadKind::ALL`]) about `id`.
pub fn bad_frame(round: usize, id: ContentId, rng: &mut SplitMix64) -> Bad {
    let kind = BadKind::ALL[round % BadKind::ALL.len()];
    let have = |id, have| Message::Have {
        id,
        info: HaveInfo {
            have,
            interested: true,
            choking: false,
        },
    };
    let bytes = match kind {
        BadKind::Oversize => {
            let mut out = u32::MAX.to_be_bytes().to_vec();
            out.extend_from_slice(&[0xa1; 64]);
            out
        }
        BadKind::Truncated => {
            let body = Message::Ask {
                rid: 1,
                ask: Ask::Chunk { id, index: 0 },
            }
            .encode();
            let mut out = framed(&body);
            out.truncate(4 + body.len() / 2);
            out
        }
        BadKind::Random => {
            let mut body = vec![0u8; 64 + (rng.next_u64() % 4096) as usize];
            rng.fill(&mut body);
            framed(&body)
        }
        BadKind::Empty => framed(&[]),
        // `Answer::Choked` alone, a text string.
        BadKind::WrongType => framed(b"\x66Choked"),
        BadKind::BareScalars => framed(&[
            0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x61, b'x',
        ]),
        BadKind::DeepNesting => framed(&[0x81; 10_000]),
        BadKind::HugeBitfieldClaim => {
            let mut body = b"\xa1\x64Have\xa2\x62id\x58\x20".to_vec();
            body.extend_from_slice(id.as_bytes());
            body.extend_from_slice(b"\x64info\xa1\x64have\xa1\x64Bits\x5a\xff\xff\xff\xff");
            framed(&body)
        }
        BadKind::HugeManifestClaim => framed(
            b"\xa1\x66Answer\xa2\x63rid\x01\x66answer\xa1\x68Manifest\xa1\x65bytes\x5a\xff\xff\xff\xff",
        ),
        BadKind::UnknownRid => {
            let mut data = vec![0u8; 16 * 1024];
            rng.fill(&mut data);
            let m = Message::Answer {
                rid: 0x8000_0000 | (rng.next_u64() as u32),
                answer: Answer::Chunk {
                    index: 0,
                    data,
                    proof: Vec::new(),
                },
            };
            framed(&m.encode())
        }
        BadKind::GainedOutOfRange => {
            let mut out = framed(&have(id, HaveSet::Nothing).encode());
            let gained = Message::Gained {
                id,
                chunks: vec![u32::MAX, u32::MAX - 1, 1 << 30],
                interested: true,
                choking: false,
            };
            out.extend_from_slice(&framed(&gained.encode()));
            out
        }
        BadKind::HaveUnknownContent => {
            let mut other = [0u8; 32];
            rng.fill(&mut other);
            framed(&have(ContentId::from_bytes(other), HaveSet::Everything).encode())
        }
    };
    Bad { kind, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::manifest::MAX_CHUNKS;
    use protocol::wire::MAX_MESSAGE_BYTES;

    fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let end = (4 + len).min(bytes.len());
            out.push(bytes[4..end].to_vec());
            bytes = &bytes[end..];
        }
        out
    }

    #[test]
    fn every_bad_frame_is_refused_or_says_something_wrong() {
        let id = ContentId::from_bytes([3; 32]);
        let mut rng = SplitMix64::new(1);
        for round in 0..2 * BadKind::ALL.len() {
            let bad = bad_frame(round, id, &mut rng);
            let bodies = frames(&bad.bytes);
            let last = bodies.last().cloned().unwrap_or_default();
            let decoded = Message::decode(&last, MAX_MESSAGE_BYTES);
            if !bad.kind.decodes() {
                assert!(decoded.is_err(), "{:?} decoded as {decoded:?}", bad.kind);
                continue;
            }
            match (bad.kind, decoded) {
                (BadKind::UnknownRid, Ok(Message::Answer { rid, .. })) => {
                    assert!(rid >= 0x8000_0000)
                }
                (BadKind::GainedOutOfRange, Ok(Message::Gained { id: g, chunks, .. })) => {
                    assert_eq!(g, id);
                    assert!(chunks.iter().all(|&c| u64::from(c) >= MAX_CHUNKS));
                }
                (BadKind::HaveUnknownContent, Ok(Message::Have { id: other, .. })) => {
                    assert_ne!(other, id)
                }
                (kind, other) => panic!("{kind:?} came out as {other:?}"),
            }
        }
    }
}

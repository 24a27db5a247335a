//! Which chunks a leecher holds, from the resume state its node saves about
//! every second (`<out>/.kadswarm-<id>.part/resume.cbor`): a lower bound,
//! since the state only ever claims chunks verified on disk and lags by up
//! to a save interval. A finished copy holds every chunk.

use std::path::Path;

use protocol::{Bitfield, ContentId};
use serde::Deserialize;

/// Most bytes read from a resume file (a 16 MiB share's is ~40 KB).
const MAX_RESUME: u64 = 64 << 20;

/// The fields of the node's resume file this needs; the rest are skipped.
#[derive(Deserialize)]
struct ResumeHave {
    #[serde(with = "serde_bytes")]
    have: Vec<u8>,
}

/// The chunks of a `total`-chunk content `id` that a download into `out`
/// has verified on disk; empty when no readable resume state exists yet.
pub fn partial(out: &Path, id: &ContentId, total: u32) -> Bitfield {
    let path = out.join(format!(".kadswarm-{id}.part")).join("resume.cbor");
    let Ok(meta) = std::fs::metadata(&path) else {
        return Bitfield::new(total);
    };
    if meta.len() > MAX_RESUME {
        return Bitfield::new(total);
    }
    // Replaced by rename while we read at worst: then this read fails or sees the old state.
    let Ok(bytes) = std::fs::read(&path) else {
        return Bitfield::new(total);
    };
    decode(&bytes, total).unwrap_or_else(|| Bitfield::new(total))
}

/// The `have` bitfield of an encoded resume state, if it fits `total` chunks.
fn decode(bytes: &[u8], total: u32) -> Option<Bitfield> {
    let r: ResumeHave = cbor4ii::serde::from_slice(bytes).ok()?;
    Bitfield::from_bytes(total, &r.have).ok()
}

/// Chunks in the union of `sets` (all of length `total`).
pub fn union_count<'a>(total: u32, sets: impl IntoIterator<Item = &'a Bitfield>) -> u32 {
    let mut all = Bitfield::new(total);
    for s in sets {
        for i in s.iter_ones() {
            all.set(i);
        }
    }
    all.count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Record {
        version: u8,
        id: ContentId,
        #[serde(with = "serde_bytes")]
        have: Vec<u8>,
        #[serde(with = "serde_bytes")]
        nodes: Vec<u8>,
    }

    #[test]
    fn reads_the_have_set_of_a_resume_file_shaped_like_the_nodes() {
        let id = ContentId::from_bytes([7; 32]);
        let mut have = Bitfield::new(20);
        for i in [0, 3, 19] {
            have.set(i);
        }
        let rec = Record {
            version: 1,
            id,
            have: have.to_bytes(),
            nodes: vec![0; 37],
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &rec).unwrap();
        let dir = std::env::temp_dir().join(format!("testnet-held-{}", std::process::id()));
        let part = dir.join(format!(".kadswarm-{id}.part"));
        std::fs::create_dir_all(&part).unwrap();
        assert_eq!(partial(&dir, &id, 20).count_ones(), 0, "no file yet");
        std::fs::write(part.join("resume.cbor"), bytes).unwrap();
        let got = partial(&dir, &id, 20);
        assert_eq!(got.iter_ones().collect::<Vec<_>>(), vec![0, 3, 19]);
        std::fs::write(part.join("resume.cbor"), b"garbage").unwrap();
        assert_eq!(partial(&dir, &id, 20).count_ones(), 0);
        std::fs::remove_dir_all(&dir).unwrap();

        let mut other = Bitfield::new(20);
        other.set(3);
        other.set(4);
        assert_eq!(union_count(20, [&have, &other]), 4);
        assert_eq!(union_count(20, []), 0);
    }
}

//! Every decoder of peer input, fed arbitrary bytes: no panic, and no
//! allocation beyond a small multiple of the input, whatever lengths the
//! bytes claim. A counting allocator measures the peak live bytes of each call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;
use protocol::bitfield::Bitfield;
use protocol::manifest::Manifest;
use protocol::merkle::Proof;
use protocol::wire::{Message, MAX_MESSAGE_BYTES};
use protocol::ContentId;

/// Counts live heap bytes and their peak; tests serialize on `MEASURE`.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static MEASURE: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (above what was live before) while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let _one_at_a_time = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// What a decoder may allocate for `input` bytes: a few copies, plus serde's
/// cautious preallocation for a claimed length (at most 1 MiB per collection,
/// and our messages nest collections at most three deep).
fn allowance(input: usize) -> usize {
    8 * input + 3 * (1 << 20) + 64 * 1024
}

/// Arbitrary bytes, biased towards CBOR headers that claim huge lengths.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let claims = prop_oneof![
        Just(vec![0x5a, 0xff, 0xff, 0xff, 0xff]), // byte string of 4 GiB
        Just(vec![0x9a, 0xff, 0xff, 0xff, 0xff]), // array of 4 Gi items
        Just(vec![0xba, 0xff, 0xff, 0xff, 0xff]), // map of 4 Gi pairs
        Just(vec![0x7a, 0x7f, 0xff, 0xff, 0xff]), // text string of 2 GiB
        Just(vec![0x9f; 64]),                     // deep indefinite nesting
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    proptest::collection::vec(claims, 0..8).prop_map(|parts| parts.concat())
}

/// Valid-looking prefixes, so the decoders get past the first byte.
fn with_prefix() -> impl Strategy<Value = Vec<u8>> {
    let manifest = Just(b"\xa5\x67version\x01\x64name\x61x\x6achunk_size\x1a\x00\x00\x40\x00\x66layout\xa1\x69Directory\xa1\x67entries".to_vec());
    let session = proptest::sample::select(SESSION_PREFIXES).prop_map(|(p, _)| p.to_vec());
    (prop_oneof![manifest, session], hostile_bytes()).prop_map(|(p, rest)| [p, rest].concat())
}

/// The beginnings of session messages up to a payload, each with an ending
/// that makes it a whole message (so the prefixes are known to be real).
const SESSION_PREFIXES: &[(&[u8], &[u8])] = &[
    (
        b"\xa1\x66Answer\xa2\x63rid\x01\x66answer\xa1\x68Manifest\xa1\x65bytes",
        b"\x41\x00",
    ),
    (
        b"\xa1\x66Answer\xa2\x63rid\x01\x66answer\xa1\x65Peers\xa1\x65peers",
        b"\x80",
    ),
    (
        b"\xa1\x64Have\xa2\x62id\x58\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x64info\xa3\x64have\xa1\x64Bits",
        b"\x40\x6ainterested\xf5\x67choking\xf4",
    ),
    (
        b"\xa1\x66Gained\xa4\x62id\x58\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x66chunks",
        b"\x80\x6ainterested\xf5\x67choking\xf4",
    ),
];

#[test]
fn session_prefixes_begin_real_messages() {
    for (prefix, ending) in SESSION_PREFIXES {
        let whole = [*prefix, *ending].concat();
        assert!(
            Message::decode(&whole, MAX_MESSAGE_BYTES).is_ok(),
            "{:?} is no message",
            String::from_utf8_lossy(&whole)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wire_decoders_stay_bounded(bytes in prop_oneof![hostile_bytes(), with_prefix()]) {
        let peak = peak_during(|| {
            let _ = Message::decode(&bytes, MAX_MESSAGE_BYTES);
        });
        prop_assert!(peak <= allowance(bytes.len()), "{peak} bytes for {} input bytes", bytes.len());
    }

    #[test]
    fn manifest_decoder_stays_bounded(bytes in prop_oneof![hostile_bytes(), with_prefix()]) {
        let peak = peak_during(|| {
            let _ = Manifest::decode_untrusted(&bytes);
            let _ = Manifest::from_bytes_for(&ContentId::from_bytes([0; 32]), &bytes);
        });
        prop_assert!(peak <= allowance(bytes.len()), "{peak} bytes for {} input bytes", bytes.len());
    }

    #[test]
    fn proof_and_bitfield_decoders_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..4096), chunks in any::<u32>()) {
        let peak = peak_during(|| {
            let _ = Proof::from_bytes(&bytes);
            // The claimed chunk count comes from a verified manifest, never from the peer;
            // a bitfield of the wrong size is refused before anything is allocated.
            let _ = Bitfield::from_bytes(chunks, &bytes);
        });
        prop_assert!(peak <= allowance(bytes.len()), "{peak} bytes for {} input bytes", bytes.len());
    }
}

//! Piece picker cost in a large swarm: 100,000 chunks, 500 peers each holding a random half.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use protocol::picker::{PickerConfig, PiecePicker};
use protocol::Bitfield;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHUNKS: u32 = 100_000;
const PEERS: usize = 500;
/// Requests in flight during the steady-state picks: 500 peers with a few each.
const IN_FLIGHT: u32 = 2_000;

/// A bitfield holding each chunk with probability one half.
fn half(rng: &mut ChaCha8Rng) -> Bitfield {
    let mut bf = Bitfield::new(CHUNKS);
    let mut word = 0u64;
    for i in 0..CHUNKS {
        if i % 64 == 0 {
            word = rng.random();
        }
        if word >> (i % 64) & 1 == 1 {
            bf.set(i);
        }
    }
    bf
}

/// The swarm: a picker that has seen every peer, and the peers' bitfields.
fn swarm(rng: &mut ChaCha8Rng) -> (PiecePicker, Vec<Bitfield>) {
    let peers: Vec<Bitfield> = (0..PEERS).map(|_| half(rng)).collect();
    let mut picker = PiecePicker::new(CHUNKS, PickerConfig::default());
    for bf in &peers {
        picker.add_peer(bf);
    }
    (picker, peers)
}

/// Marks `count` random missing chunks as held.
fn hold(picker: &mut PiecePicker, count: u32, rng: &mut ChaCha8Rng) {
    let target = picker.missing() - count;
    while picker.missing() > target {
        picker.mark_have(rng.random_range(0..CHUNKS));
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (swarm_picker, peers) = swarm(&mut rng);
    let indices: Vec<u32> = (0..4096).map(|_| rng.random_range(0..CHUNKS)).collect();

    // Steady state: 1% held (past random-first), a realistic number of requests in flight.
    let mut picker = swarm_picker.clone();
    hold(&mut picker, CHUNKS / 100, &mut rng);
    for _ in 0..IN_FLIGHT {
        let peer = &peers[rng.random_range(0..PEERS)];
        if let Some(i) = picker.pick(peer, &mut rng) {
            picker.mark_requested(i);
        }
    }
    c.bench_function("pick/random_peer", |b| {
        b.iter(|| {
            let peer = &peers[rng.random_range(0..PEERS)];
            black_box(picker.pick(black_box(peer), &mut rng))
        })
    });

    // Random-first mode: nothing held yet.
    let picker = swarm_picker.clone();
    c.bench_function("pick/random_first", |b| {
        b.iter(|| {
            let peer = &peers[rng.random_range(0..PEERS)];
            black_box(picker.pick(black_box(peer), &mut rng))
        })
    });

    // The tail: 99% held, so most of what a peer has is useless to us.
    let mut picker = swarm_picker.clone();
    hold(&mut picker, CHUNKS / 100 * 99, &mut rng);
    c.bench_function("pick/tail_99pct_held", |b| {
        b.iter(|| {
            let peer = &peers[rng.random_range(0..PEERS)];
            black_box(picker.pick(black_box(peer), &mut rng))
        })
    });

    let mut picker = swarm_picker.clone();
    let newcomer = half(&mut rng);
    c.bench_function("add_peer+remove_peer/50pct", |b| {
        b.iter(|| {
            picker.add_peer(black_box(&newcomer));
            picker.remove_peer(black_box(&newcomer));
        })
    });

    // Time the gains only, undoing each batch untimed so availability does not drift.
    let mut picker = swarm_picker.clone();
    c.bench_function("peer_gained", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = &indices[..(iters - done).min(indices.len() as u64) as usize];
                let start = Instant::now();
                for &i in batch {
                    picker.peer_gained(black_box(i));
                }
                total += start.elapsed();
                for &i in batch {
                    picker.peer_lost(i);
                }
                done += batch.len() as u64;
            }
            total
        })
    });

    let mut picker = swarm_picker;
    let mut k = 0;
    c.bench_function("peer_gained+peer_lost", |b| {
        b.iter(|| {
            k = (k + 1) % indices.len();
            picker.peer_gained(black_box(indices[k]));
            picker.peer_lost(black_box(indices[k]));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

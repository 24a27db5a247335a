//! Throughput of chunk hashing and of verifying a chunk against its proof.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protocol::manifest::{Layout, ManifestBuilder, DEFAULT_CHUNK_SIZE};
use protocol::merkle::{hash_leaf, verify_chunk};

fn hashing(c: &mut Criterion) {
    let chunk: Vec<u8> = (0..DEFAULT_CHUNK_SIZE as usize)
        .map(|i| (i * 13) as u8)
        .collect();
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("leaf_256KiB", |b| b.iter(|| hash_leaf(black_box(&chunk))));

    // A 1 GiB share's tree depth (4096 chunks): verifying = leaf hash + 12 node hashes.
    let chunks = 4096u32;
    let total = u64::from(chunks) * u64::from(DEFAULT_CHUNK_SIZE);
    let mut builder = ManifestBuilder::new(
        "bench".into(),
        DEFAULT_CHUNK_SIZE,
        Layout::File { length: total },
    )
    .expect("valid layout");
    for _ in 0..chunks {
        builder.update(&chunk);
    }
    let (manifest, tree) = builder.finish().expect("lengths match");
    let proof = tree.proof(1234).expect("full tree");
    g.bench_function("verify_256KiB_with_proof", |b| {
        b.iter(|| {
            verify_chunk(
                &manifest.root,
                chunks,
                1234,
                black_box(&chunk),
                black_box(&proof),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("manifest");
    let data = vec![7u8; 64 << 20];
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("build_64MiB", |b| {
        b.iter(|| {
            let mut mb = ManifestBuilder::new(
                "x".into(),
                DEFAULT_CHUNK_SIZE,
                Layout::File {
                    length: data.len() as u64,
                },
            )
            .expect("valid layout");
            mb.update(black_box(&data));
            mb.finish().expect("lengths match")
        })
    });
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);

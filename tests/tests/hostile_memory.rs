//! Floods of requests cannot blow up a seeder's memory, and what they took
//! comes back once they stop (issue 8, findings 2 and 3).

mod hostile_common;

use std::time::Duration;

use hostile_common::{assert_identical, attackers, honest_get, sent, Seeder, MIB};
use kadswarm_tests::{start_bootstrap, write_random_file};
use testnet::hostile::rss::PeakSampler;
use testnet::hostile::Attack;

/// How long the seeder's memory is watched under attack.
const ATTACK_TIME: Duration = Duration::from_secs(10);

/// Finding 2: three peers pipeline 256 manifest asks each on their session
/// and never read the answers. The manifest of 10,000 empty files with long
/// names is about 2 MB; at 52b4bb7 the seeder went from 31 MB to 3.6 GB and
/// stayed at 3.0 GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_flood_does_not_blow_up_the_seeder() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let share = logs.join("many-files");
    std::fs::create_dir_all(&share).unwrap();
    for k in 0..10_000 {
        // ~180-byte names make the manifest about 2 MB.
        let name = format!("{:-<170}{k:06}", "an-empty-file-with-a-long-name");
        std::fs::write(share.join(name), b"").unwrap();
    }

    let (_boot, boot_addr) = start_bootstrap(logs);
    let seeder = Seeder::start("seeder", logs, &share, &boot_addr, &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rest = seeder.rss();

    let sampler = PeakSampler::start(seeder.proc.pid());
    let flood = attackers(
        3,
        Attack::ManifestFlood,
        &seeder.addr,
        &seeder.id,
        256,
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(ATTACK_TIME).await;
    let peak = sampler.peak();
    let requests = sent(&flood);
    drop(flood);
    // A victim may cut a flooding peer off early; enough must have gone out to matter.
    assert!(
        requests >= 32,
        "only {requests} manifest asks went out, so the test proved little"
    );
    assert!(
        peak <= 256 * MIB,
        "a manifest flood took the seeder from {} MiB to {} MiB",
        rest / MIB,
        peak / MIB
    );

    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = seeder.rss();
    assert!(
        after <= rest + 32 * MIB,
        "10 s after the flood the seeder still holds {} MiB (at rest: {} MiB)",
        after / MIB,
        rest / MIB
    );
    assert!(
        seeder.alive(),
        "the seeder died; log:\n{}",
        seeder.proc.log_text()
    );
}

/// Finding 3: three peers each keep session streams open (the 2 a seeder
/// takes per peer, and 2 more it should refuse) that announce the largest
/// frame the seeder accepts and never send its last byte. At 52b4bb7 400
/// streams announcing 1 MiB + 1 KiB took the seeder from 13 MB to 278 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_frames_do_not_blow_up_the_seeder() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("small.bin");
    write_random_file(&src, 1024 * 1024 + 3, 13).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let seeder = Seeder::start("seeder", logs, &src, &boot_addr, &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rest = seeder.rss();

    let sampler = PeakSampler::start(seeder.proc.pid());
    let stall = attackers(
        3,
        Attack::RequestStall,
        &seeder.addr,
        &seeder.id,
        4,
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(ATTACK_TIME).await;
    assert!(
        sent(&stall) > 0,
        "no stalled frame went out, so the test proved nothing"
    );

    // Still under attack, an honest peer gets the file.
    let (status, getter, out) = honest_get(
        logs,
        "get",
        &seeder.id,
        &boot_addr,
        &[],
        Duration::from_secs(60),
    )
    .await;
    let peak = sampler.peak();
    drop(stall);
    assert!(
        peak <= 128 * MIB,
        "stalled request frames took the seeder from {} MiB to {} MiB",
        rest / MIB,
        peak / MIB
    );
    assert_identical(status, &getter, &out.join("small.bin"), &src);
    assert!(
        seeder.alive(),
        "the seeder died; log:\n{}",
        seeder.proc.log_text()
    );
}

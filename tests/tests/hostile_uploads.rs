//! Peers that ask a seeder for chunks and then misbehave cannot stop it from
//! serving an honest peer (issue 8, finding 1; garbage frames).

mod hostile_common;

use std::time::Duration;

use hostile_common::{assert_identical, attackers, honest_get, sent, Seeder};
use kadswarm_tests::{start_bootstrap, write_random_file};
use testnet::hostile::Attack;

/// Generous bound on an honest download that takes about a second alone.
const HONEST_DONE: Duration = Duration::from_secs(60);
/// Bound under slow readers: well past a second, yet short of the 60 s
/// request timeout, which at 52b4bb7 was all that freed a stalled upload.
const HONEST_DONE_SLOW_READERS: Duration = Duration::from_secs(30);

/// Finding 1: three peers that say they hold nothing, pipeline 16 chunk
/// asks each on their session and never read the seeder's session stream.
/// Chunks of 4 MiB overflow the stream window, so every answer stalls in
/// the seeder; at 52b4bb7 they held its whole upload budget and an honest
/// `get --no-seed` got nothing in 50 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_do_not_stop_an_honest_download() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("dataset.bin");
    write_random_file(&src, 16 * 1024 * 1024, 11).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let seeder = Seeder::start("seeder", logs, &src, &boot_addr, &["--chunk-size", "4MiB"]).await;
    // Held for longer than the test: they never read.
    let slow = attackers(
        3,
        Attack::SlowReader,
        &seeder.addr,
        &seeder.id,
        16,
        Duration::from_secs(120),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sent(&slow) > 0,
        "the slow readers sent no ask, so the test proved nothing"
    );

    let (status, getter, out) = honest_get(
        logs,
        "get",
        &seeder.id,
        &boot_addr,
        &[],
        HONEST_DONE_SLOW_READERS,
    )
    .await;
    assert_identical(status, &getter, &out.join("dataset.bin"), &src);
    assert!(
        seeder.alive(),
        "the seeder died; log:\n{}",
        seeder.proc.log_text()
    );
}

/// Oversize, truncated, empty, random, wrongly typed and deeply nested
/// frames, answers to asks never made, out-of-range gained chunks and haves
/// of unknown content from three peers on their session streams: the seeder
/// neither crashes nor stops serving, and it disconnects the senders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_do_not_stop_a_seeder() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("notes.bin");
    write_random_file(&src, 4 * 1024 * 1024 + 5, 12).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let seeder = Seeder::start("seeder", logs, &src, &boot_addr, &[]).await;
    let garbage = attackers(
        3,
        Attack::Garbage,
        &seeder.addr,
        &seeder.id,
        4,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, getter, out) =
        honest_get(logs, "get", &seeder.id, &boot_addr, &[], HONEST_DONE).await;
    assert_identical(status, &getter, &out.join("notes.bin"), &src);
    assert!(
        seeder.alive(),
        "the seeder died; log:\n{}",
        seeder.proc.log_text()
    );
    // Bad frames went out, and each sender was cut off after a few of them
    // (3 strikes) instead of being answered for ever.
    assert!(
        sent(&garbage) >= 3,
        "the attackers sent only {} bad frames",
        sent(&garbage)
    );
    let log = seeder.proc.log_text();
    let cut_off = log.matches("keeps misbehaving").count();
    assert!(
        cut_off >= 3,
        "only {cut_off} of 3 garbage peers were disconnected; seeder log:\n{log}"
    );
}

//! Seeders that lie in their haves and answers are banned, and the download
//! completes byte-identical from an honest seeder.

mod hostile_common;

use std::time::Duration;

use hostile_common::{assert_identical, honest_get, Seeder};
use kadswarm_tests::{path_str, read_stats, start_bootstrap, write_random_file};
use testnet::hostile::{Attack, Config, Hostile};

async fn a_liar_is_banned_and_the_copy_is_exact(attack: Attack) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("image.iso");
    write_random_file(&src, 4 * 1024 * 1024, 15).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    // The honest seeder is slow, so the getter surely asks the liar too.
    let seeder = Seeder::start(
        "seeder",
        logs,
        &src,
        &boot_addr,
        &["--max-upload", "512KiB"],
    )
    .await;
    let mut cfg = Config::new(attack, boot_addr.parse().unwrap());
    cfg.content = Some(seeder.id.parse().unwrap());
    cfg.upstream = Some(seeder.addr.clone());
    cfg.file = Some(src.clone());
    let liar = Hostile::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stats = logs.join("get-stats.json");
    let (status, getter, out) = honest_get(
        logs,
        "get",
        &seeder.id,
        &boot_addr,
        &["--stats-file", path_str(&stats)],
        Duration::from_secs(90),
    )
    .await;
    assert_identical(status, &getter, &out.join("image.iso"), &src);
    assert!(
        liar.stats().sent > 0,
        "the {attack} peer was never asked for anything, so the test proved nothing"
    );
    let s = read_stats(&stats).expect("getter stats");
    assert!(
        s.banned.contains(&liar.peer_id().to_string()),
        "the {attack} peer {} was not banned (banned: {:?}; it did {}); log:\n{}",
        liar.peer_id(),
        s.banned,
        liar.stats(),
        getter.log_text()
    );
}

/// Real chunks with valid proofs, one bit of the data flipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_wrong_chunk_bytes_is_banned() {
    a_liar_is_banned_and_the_copy_is_exact(Attack::WrongChunks).await;
}

/// Claims every chunk, then answers "don't have", garbage frames and random data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lying_in_its_haves_is_banned() {
    a_liar_is_banned_and_the_copy_is_exact(Attack::LyingSeeder).await;
}

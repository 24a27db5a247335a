//! A download's end is reported even to a caller that never reads its progress
//! (issue 8, finding 8: `Completed` used to share a 64-slot channel with
//! progress events and was lost once that channel was full).

use std::time::Duration;

use kadswarm_tests::{sha256_file, write_random_file};
use node::{Client, NodeConfig};

fn start(config: NodeConfig) -> Client {
    let key = libp2p::identity::Keypair::generate_ed25519();
    node::spawn(key, config).expect("node starts").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_arrives_although_progress_was_never_read() {
    let dir = tempfile::tempdir().unwrap();
    // Capped so the download spans well over 64 progress ticks (4 per second).
    let size: u64 = 5 * 1024 * 1024;
    let src = dir.path().join("slow.bin");
    write_random_file(&src, size, 8).unwrap();

    let boot = start(NodeConfig::loopback());
    let boot_addr = boot.listen_addrs().await.unwrap()[0].clone();
    let mut seed_cfg = NodeConfig::loopback();
    seed_cfg.engine.bootstrap = vec![boot_addr.clone()];
    seed_cfg.net.max_upload = Some(256 * 1024);
    let seeder = start(seed_cfg);
    seeder.bootstrapped().await.unwrap();
    let (manifest, tree) = node::scan::scan_path(&src, 64 * 1024, &mut |_, _| {}).unwrap();
    let storage = node::storage::Storage::open_seed(&manifest, &src).unwrap();
    let id = seeder.share(manifest, tree, storage).await.unwrap();

    let mut get_cfg = NodeConfig::loopback();
    get_cfg.engine.bootstrap = vec![boot_addr];
    let getter = start(get_cfg);
    getter.bootstrapped().await.unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let download = getter.get(id, out).await.unwrap();
    // Hold the progress receiver without reading it, so its channel fills up.
    let _unread = download.events;
    let outcome = tokio::time::timeout(Duration::from_secs(120), download.done)
        .await
        .expect("the outcome arrived in time")
        .expect("the node reported an outcome");
    let path = outcome.expect("the download succeeded");
    assert_eq!(sha256_file(&path).unwrap(), sha256_file(&src).unwrap());
}

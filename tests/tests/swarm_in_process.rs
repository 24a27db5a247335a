//! A bootstrap node, a seeder and six leechers in one process, on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use kadswarm_tests::{sha256_file, write_random_file};
use node::{Client, NodeConfig};

fn start(config: NodeConfig) -> Client {
    let key = libp2p::identity::Keypair::generate_ed25519();
    node::spawn(key, config).expect("node starts").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_leechers_get_identical_copies_and_upload_to_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let size = 6 * 1024 * 1024 + 12_345;
    let src = dir.path().join("payload.bin");
    write_random_file(&src, size as u64, 42).unwrap();

    let boot = start(NodeConfig::loopback());
    let boot_addr = boot.listen_addrs().await.unwrap()[0].clone();
    let with_boot = |mut c: NodeConfig| {
        c.engine.bootstrap = vec![boot_addr.clone()];
        c
    };

    // The seeder's upload is capped so that serving six copies alone would take ~18 s.
    let mut seed_cfg = with_boot(NodeConfig::loopback());
    seed_cfg.net.max_upload = Some(2 * 1024 * 1024);
    let seeder = start(seed_cfg);
    seeder.bootstrapped().await.unwrap();
    let (manifest, tree) = node::scan::scan_path(&src, 64 * 1024, &mut |_, _| {}).unwrap();
    let storage = node::storage::Storage::open_seed(&manifest, &src).unwrap();
    let id = seeder.share(manifest, tree, storage).await.unwrap();

    let mut leechers = Vec::new();
    for _ in 0..6 {
        let c = start(with_boot(NodeConfig::loopback()));
        c.bootstrapped().await.unwrap();
        leechers.push(c);
    }
    let mut jobs = Vec::new();
    for (k, c) in leechers.iter().enumerate() {
        let out: PathBuf = dir.path().join(format!("out{k}"));
        std::fs::create_dir_all(&out).unwrap();
        let c = c.clone();
        jobs.push(tokio::spawn(async move { c.get_and_wait(id, out).await }));
    }
    let want = sha256_file(&src).unwrap();
    for j in jobs {
        let path = tokio::time::timeout(Duration::from_secs(180), j)
            .await
            .expect("download finished in time")
            .unwrap()
            .expect("download succeeded");
        assert_eq!(
            sha256_file(&path).unwrap(),
            want,
            "{} differs from the source",
            path.display()
        );
    }
    let seeded = seeder.stats().await.unwrap().uploaded;
    let mut leecher_up = 0;
    for c in &leechers {
        leecher_up += c.stats().await.unwrap().uploaded;
    }
    eprintln!(
        "seeder uploaded {seeded} bytes, leechers uploaded {leecher_up} bytes, file {size} bytes"
    );
    assert!(
        seeded < 3 * size as u64,
        "seeder sent {seeded} bytes: leechers did not share ({}x the file)",
        seeded as f64 / size as f64
    );
    assert!(
        leecher_up >= 3 * size as u64,
        "leechers uploaded only {leecher_up} bytes to each other"
    );
}

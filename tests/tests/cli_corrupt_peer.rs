//! A peer serving corrupt chunks is banned, and the download completes from honest peers.

use std::time::Duration;

use kadswarm_tests::{
    get_args, path_str, read_stats, sha256_file, start_bootstrap, start_seeder, write_random_file,
    NodeProc,
};
use node::NodeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_peer_is_banned_and_the_copy_is_still_exact() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().to_path_buf();
    let src = dir.path().join("firmware.img");
    write_random_file(&src, 4 * 1024 * 1024, 5).unwrap();

    let (_boot, boot_addr) = start_bootstrap(&logs);
    // The honest seeder is slow, so the getter surely asks the liar too.
    let (_seeder, id) = start_seeder(
        "seeder",
        &logs,
        &src,
        &boot_addr,
        &["--max-upload", "512KiB"],
    );

    // The liar runs in this process: the same content, every uploaded chunk with one bit flipped.
    let mut cfg = NodeConfig::loopback();
    cfg.engine.bootstrap = vec![boot_addr.parse().unwrap()];
    cfg.engine.corrupt_uploads = true;
    let key = libp2p::identity::Keypair::generate_ed25519();
    let (liar, _task) = node::spawn(key, cfg).unwrap();
    liar.bootstrapped().await.unwrap();
    // Auto chunk size, as `node share` picks by default.
    let (manifest, tree) = node::scan::scan_path_with(&src, None, &mut |_, _| {}).unwrap();
    let storage = node::storage::Storage::open_seed(&manifest, &src).unwrap();
    let liar_id = liar.share(manifest, tree, storage).await.unwrap();
    assert_eq!(
        liar_id.to_string(),
        id,
        "the liar must offer the same content"
    );

    let out = dir.path().join("out");
    let data = dir.path().join("get-data");
    let stats = dir.path().join("stats.json");
    let mut args = get_args(&id, &out, &data, &boot_addr);
    args.extend(["--stats-file", path_str(&stats)]);
    let mut getter = NodeProc::start("get", &logs, &args);
    let status = tokio::task::spawn_blocking(move || {
        let s = getter.wait(Duration::from_secs(180));
        (s, getter)
    })
    .await
    .unwrap();
    let (status, getter) = status;
    assert!(status.success(), "get failed:\n{}", getter.log_text());
    assert_eq!(
        sha256_file(&out.join("firmware.img")).unwrap(),
        sha256_file(&src).unwrap(),
        "the copy differs from the source"
    );
    let s = read_stats(&stats).expect("getter stats");
    assert!(
        s.banned.contains(&liar.peer_id().to_string()),
        "the corrupting peer {} was not banned (banned: {:?}); log:\n{}",
        liar.peer_id(),
        s.banned,
        getter.log_text()
    );
    assert!(
        liar.stats().await.unwrap().uploaded > 0,
        "the liar never served anything, so the test proved nothing"
    );
}

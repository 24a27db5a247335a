//! A manifest that hashes to its ID but is not the canonical encoding is
//! refused, so a node never reports it done nor serves bytes that do not
//! hash to the ID (issue 8, finding 4).

mod hostile_common;

use std::time::{Duration, Instant};

use kadswarm_tests::{path_str, start_bootstrap, write_random_file, NodeProc};
use testnet::hostile::probe::{Answer, Ask};
use testnet::hostile::{probe, victim, Attack, Config, Hostile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_canonical_manifest_is_never_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("bent.bin");
    write_random_file(&src, 1024 * 1024 + 17, 14).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let mut cfg = Config::new(Attack::NoncanonicalManifest, boot_addr.parse().unwrap());
    cfg.file = Some(src.clone());
    let hostile = Hostile::start(cfg).await.unwrap();
    let id = hostile.content().unwrap().to_string();
    // Let the provider record reach the bootstrap node.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Seeding after the download (no --no-seed), so what it would serve can be asked.
    let port = victim::free_loopback_port().unwrap();
    let listen = victim::listen_arg(port);
    let out = logs.join("out");
    let data = logs.join("get-data");
    let stats = logs.join("get-stats.json");
    let args = [
        "get",
        id.as_str(),
        "--out",
        path_str(&out),
        "--find-timeout",
        "15",
        "--listen",
        listen.as_str(),
        "--bootstrap",
        boot_addr.as_str(),
        "--data-dir",
        path_str(&data),
        "--stats-file",
        path_str(&stats),
    ];
    let mut getter = NodeProc::start("get", logs, &args);

    let deadline = Instant::now() + Duration::from_secs(60);
    let printed = loop {
        let lines = getter.remaining_lines();
        if !lines.is_empty() {
            break Some(lines);
        }
        if !testnet::procs::is_running(getter.pid()) {
            break None;
        }
        assert!(
            Instant::now() < deadline,
            "get neither finished nor failed within 60 s; log:\n{}",
            getter.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        hostile.stats().sent > 0,
        "the hostile seeder was never asked for anything, so the test proved nothing; log:\n{}",
        getter.log_text()
    );
    if let Some(lines) = printed {
        // It took the manifest. What does it serve as that manifest now?
        let served = match victim::peer_id_from_stats(&stats, Duration::from_secs(5)).await {
            Ok(peer) => {
                let addr = victim::addr(port, peer);
                match probe::ask_once(
                    &addr,
                    Ask::Manifest {
                        id: id.parse().unwrap(),
                    },
                )
                .await
                {
                    Ok(Answer::Manifest { bytes }) => {
                        let sha = probe::sha256_hex(&bytes);
                        format!(
                            "it now serves a {}-byte manifest whose SHA-256 is {sha}{}",
                            bytes.len(),
                            if sha == id {
                                " (the ID)"
                            } else {
                                ", not the ID"
                            }
                        )
                    }
                    Ok(other) => format!("asked for the manifest, it answers {other:?}"),
                    Err(e) => format!("cannot ask it for the manifest: {e:#}"),
                }
            }
            Err(e) => format!("its address is unknown: {e:#}"),
        };
        panic!(
            "get accepted a non-canonical manifest and printed {lines:?}; {served}; log:\n{}",
            getter.log_text()
        );
    }
    let status = getter.wait(Duration::from_secs(5));
    assert!(
        !status.success(),
        "get exited 0 for content whose manifest is not canonical; log:\n{}",
        getter.log_text()
    );
    assert!(
        !out.join("bent.bin").exists(),
        "a copy was put in place for a refused manifest"
    );
}

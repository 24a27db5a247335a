//! Loopback mode, no root: a small demo swarm on 127.0.0.1 completes a
//! transfer with identical copies, and no node process outlives it.

mod common;

use std::time::Duration;

use testnet::demo::{self, DemoConfig};
use testnet::procs::Supervisor;
use testnet::units::ByteSize;

#[tokio::test(flavor = "current_thread")]
async fn loopback_swarm_transfers_and_tears_down() {
    let bin = common::node_bin().await;
    let run = common::run_dir("loopback");
    let mut sup = Supervisor::new(bin);
    let cfg = DemoConfig {
        leechers: 3,
        size: ByteSize(3 << 20),
        seed: 7,
        seed_upload: None,
        leecher_upload: None,
        timeout: Duration::from_secs(120),
        keep_data: false,
    };
    let report = demo::run(&mut sup, &run, &cfg)
        .await
        .unwrap_or_else(|e| panic!("demo run failed: {e:#} (logs in {})", run.display()));

    common::assert_copies_match(&report, 3, &report.source_sha256);

    // bootstrap + seeder + 3 leechers, all stopped and reaped.
    assert_eq!(sup.started_pids().len(), 5);
    assert_eq!(sup.running(), 0);
    let left: Vec<u32> = sup
        .started_pids()
        .iter()
        .copied()
        .filter(|&p| testnet::procs::is_running(p))
        .collect();
    assert!(left.is_empty(), "node processes still running: {left:?}");
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

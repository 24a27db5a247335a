//! `testnet incentives` in small (root): one leecher per upload class and a
//! free rider, once with tit-for-tat and once with unchoke-all; every copy
//! verifies, and the CSV and the class means cover every class under both
//! policies. No timing is asserted: which class wins is the experiment's
//! finding, not a property this small run can test.
//!
//! Without root this test skips with a message, except under `CI=true`,
//! where it fails (CI runs as root).

mod common;

use std::time::Duration;

use testnet::incentives::{self, report, Class, IncentivesConfig};
use testnet::netns::Shaping;
use testnet::units::{ByteSize, Rate};

#[tokio::test(flavor = "current_thread")]
async fn both_policies_deliver_verified_copies_to_every_class() {
    if !common::root_or_skip(
        "both_policies_deliver_verified_copies_to_every_class",
        "ip netns, tc",
    ) {
        return;
    }
    let bin = common::node_bin().await;
    let run = common::run_dir("incentives");
    let class = |mbit: u64| Class {
        count: 1,
        upload: Rate(mbit * 1_000_000),
    };
    let cfg = IncentivesConfig {
        classes: vec![class(2), class(8), class(32)],
        free_riders: 1,
        free_rider_upload: Rate(8_000_000),
        server_upload: Rate(16_000_000),
        size: ByteSize(1 << 20),
        policies: vec!["tit-for-tat".into(), "unchoke-all".into()],
        runs: 1,
        leave_when_done: false,
        shaping: Shaping::default(),
        seed: 9,
        // Bounds the test only; each swarm takes a few seconds.
        timeout: Duration::from_secs(120),
    };
    // `run` fails on any copy that differs from the source.
    let rows = incentives::run(&bin, &run, &cfg)
        .await
        .unwrap_or_else(|e| panic!("incentives run failed: {e:#} (logs in {})", run.display()));
    assert_eq!(rows.len(), 2 * 4);
    assert!(rows.iter().all(|r| r.verified));
    let means = report::means(&cfg, &rows);
    for policy in &cfg.policies {
        for class in report::class_order(&cfg) {
            let m = means
                .iter()
                .find(|m| &m.policy == policy && m.class == class)
                .unwrap_or_else(|| panic!("no mean for {class} under {policy}"));
            assert_eq!(m.per_round.len(), 1, "{class} under {policy}");
        }
    }
    let csv = std::fs::read_to_string(run.join("incentives.csv")).expect("csv");
    for policy in &cfg.policies {
        for class in ["2 Mbit/s", "8 Mbit/s", "32 Mbit/s", "free rider"] {
            assert!(
                csv.lines().any(
                    |l| l.contains(&format!(",{policy},")) && l.contains(&format!(",{class},"))
                ),
                "no {class} row under {policy}:\n{csv}"
            );
        }
    }
    // The free rider uploaded nothing under either policy.
    assert!(rows
        .iter()
        .filter(|r| r.upload.is_none())
        .all(|r| r.uploaded == 0));
    assert!(run.join("incentives.svg").exists() && run.join("incentives.png").exists());
    let left = common::namespaces_left(&format!("kswt-{}-", std::process::id()));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&run);
}

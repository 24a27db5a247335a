//! `testnet churn` in small (root): four leechers arrive as a Poisson
//! process, one quits mid-download and resumes, the seeder leaves once it
//! has sent two copies; the swarm held every chunk, so every leecher must
//! end with a copy identical to the source; nothing of the testbed is left.
//!
//! Without root this test skips with a message, except under `CI=true`,
//! where it fails (CI runs as root).

mod common;

use std::time::Duration;

use testnet::churn::schedule::PlanParams;
use testnet::churn::{self, ChurnConfig};
use testnet::netns::Shaping;
use testnet::units::{ByteSize, Rate};

#[tokio::test(flavor = "current_thread")]
async fn leechers_that_come_and_go_all_verify_after_the_seeder_leaves() {
    if !common::root_or_skip(
        "leechers_that_come_and_go_all_verify_after_the_seeder_leaves",
        "ip netns, tc",
    ) {
        return;
    }
    let bin = common::node_bin().await;
    let run = common::run_dir("churn");
    let cfg = ChurnConfig {
        plan: PlanParams {
            leechers: 4,
            rate: 1.0,
            // Everyone stays a while, so the seeder's chunks stay in the swarm.
            selfish: 0.0,
            quitters: 0.25,
            seed: 3,
        },
        stay: Duration::from_secs(5),
        quit_at: 0.4,
        away: Duration::from_secs(2),
        seeder_copies: 2.0,
        size: ByteSize(4 << 20),
        upload: Rate(8_000_000),
        server_upload: Rate(32_000_000),
        download: None,
        shaping: Shaping::default(),
        file_seed: 5,
        // Bounds the test only; a healthy run takes about 15 s.
        timeout: Duration::from_secs(120),
    };
    let report = churn::run(&bin, &run, &cfg)
        .await
        .unwrap_or_else(|e| panic!("churn run failed: {e:#} (logs in {})", run.display()));
    let text = report.render();
    assert!(report.seeder.at.is_some(), "the seeder never left:\n{text}");
    assert!(
        report.seeder.swarm_held_everything(),
        "with two copies sent and nobody leaving early the swarm should hold every chunk:\n{text}"
    );
    // The claim: a swarm holding every chunk ends with every leecher verified.
    assert_eq!(report.mismatches(), 0, "{text}");
    assert_eq!(report.verified(), 4, "{text}");
    assert!(report.survived(), "{text}");
    let quitter = report.peers.iter().find(|p| p.quits).expect("one quitter");
    assert!(
        quitter.quit.is_some() && quitter.returned.is_some(),
        "the quitter quit and came back:\n{text}"
    );
    let csv = std::fs::read_to_string(run.join("churn.csv")).expect("csv");
    assert_eq!(csv.lines().filter(|l| l.starts_with("leecher-")).count(), 4);
    assert!(csv.contains("survived=true"), "{csv}");
    assert!(run.join("churn.svg").exists() && run.join("churn.png").exists());
    let left = common::namespaces_left(&format!("kswt-{}-", std::process::id()));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&run);
}

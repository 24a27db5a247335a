//! Namespace mode (root): a 3-peer capped transfer completes with identical
//! copies and leaves no namespace, link or process behind, also when the
//! testbed's owner panics.
//!
//! Without root these tests skip with a message, except under `CI=true`,
//! where CI runs as root and a skip would hide a broken setup: they fail.

mod common;

use std::time::Duration;

use testnet::netns::{self, Caps, Shaping, Testbed};
use testnet::nsrun::{self, Mode, NsRunConfig};
use testnet::procs::Supervisor;
use testnet::units::{ByteSize, Rate};

/// Host interfaces whose other end is (or was) in one of our namespaces.
fn host_links_to(prefix: &str) -> Vec<String> {
    let out = testnet::ipcmd::ip(["-o", "link", "show"]).expect("ip link show");
    out.lines()
        .filter(|l| l.contains(prefix))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn capped_three_peer_transfer_leaves_nothing_behind() {
    if !common::root_or_skip(
        "capped_three_peer_transfer_leaves_nothing_behind",
        "ip netns, tc",
    ) {
        return;
    }
    let bin = common::node_bin().await;
    let run = common::run_dir("netns");
    let size = ByteSize(3 << 20);
    let source = run.join("source.bin");
    let sha = testnet::datagen::generate(&source, size.0, 11).expect("generate source");
    let cfg = NsRunConfig {
        leechers: 3,
        mode: Mode::P2p,
        source,
        size,
        chunk_size: None,
        node_threads: Some(1),
        server_upload: Rate(16_000_000),
        upload: Rate(8_000_000),
        download: Some(Rate(40_000_000)),
        shaping: Shaping::default(),
        timeout: Duration::from_secs(120),
    };
    let outcome = nsrun::run(&bin, &run, &cfg, &sha)
        .await
        .unwrap_or_else(|e| panic!("namespace run failed: {e:#} (logs in {})", run.display()));

    let report = &outcome.report;
    common::assert_copies_match(report, 3, &sha);

    assert!(outcome.prefix.starts_with(netns::NAME_BASE));
    assert_eq!(
        common::namespaces_left(&outcome.prefix),
        Vec::<String>::new()
    );
    assert_eq!(host_links_to(&outcome.prefix), Vec::<String>::new());
    assert_eq!(outcome.pids.len(), 5, "bootstrap, seeder, 3 leechers");
    let left: Vec<u32> = outcome
        .pids
        .iter()
        .copied()
        .filter(|&p| testnet::procs::is_running(p))
        .collect();
    assert!(left.is_empty(), "node processes still running: {left:?}");
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

#[tokio::test(flavor = "current_thread")]
async fn panicking_owner_still_removes_namespaces_and_processes() {
    if !common::root_or_skip(
        "panicking_owner_still_removes_namespaces_and_processes",
        "ip netns, tc",
    ) {
        return;
    }
    let run = common::run_dir("netns-panic");
    let mut prefix = String::new();
    let mut pids = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut bed = Testbed::create(Shaping::default()).expect("testbed");
        prefix = bed.prefix().to_string();
        // Dropped before the testbed, as in real runs.
        let mut sup = Supervisor::new("/bin/sleep".into());
        for name in ["a", "b"] {
            let caps = Caps {
                upload: Some(Rate(1_000_000)),
                download: Some(Rate(2_000_000)),
            };
            let slot = bed.add_node(name, caps).expect("add node");
            sup.spawn_in_netns(
                name,
                &slot.netns,
                &["600".into()],
                &run.join(format!("{name}.log")),
            )
            .expect("spawn sleep in namespace");
        }
        pids = sup.started_pids().to_vec();
        assert_eq!(common::namespaces_left(&prefix).len(), 3, "hub + 2 nodes");
        panic!("owner panics mid-run");
    }));
    assert!(outcome.is_err());
    assert_eq!(pids.len(), 2);
    assert_eq!(common::namespaces_left(&prefix), Vec::<String>::new());
    assert_eq!(host_links_to(&prefix), Vec::<String>::new());
    // Give the kernel a moment to finish the SIGKILLed sleeps.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| testnet::procs::is_running(p))
        .collect();
    assert!(left.is_empty(), "processes still running: {left:?}");
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

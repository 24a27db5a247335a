//! The NAT lab (root): routers masquerade and drop unsolicited inbound, a
//! node behind a NAT reaches the relay's node; a cone<->cone trial ends with
//! a hole-punched direct connection carrying the chunks, a
//! symmetric<->symmetric trial delivers its copy over the relay; and
//! nothing of the lab is left afterwards.
//!
//! Without root these tests skip with a message, except under `CI=true`,
//! where CI runs as root and a skip would hide a broken setup: they fail.

mod common;

use std::time::{Duration, Instant};

use testnet::loopback::{Args, NodeFiles, STARTUP_TIMEOUT};
use testnet::nat::probe;
use testnet::nat::topo::{Lab, NatKind};
use testnet::nat::trial::{self, TrialConfig, TrialOutcome};
use testnet::nat::Topology;
use testnet::procs::Supervisor;

#[tokio::test(flavor = "current_thread")]
async fn nats_masquerade_block_unsolicited_and_leave_nothing_behind() {
    if !common::root_or_skip(
        "nats_masquerade_block_unsolicited_and_leave_nothing_behind",
        "ip netns, nftables",
    ) {
        return;
    }
    let bin = common::node_bin().await;
    let run = common::run_dir("nat-lab");
    let mut lab = Lab::create(&run.join("lab")).expect("lab");
    let prefix = lab.prefix().to_string();
    let relay = lab.add_host("relay", NatKind::None).expect("relay host");
    let cone = lab.add_host("cone", NatKind::Cone).expect("cone host");
    let sym = lab
        .add_host("sym", NatKind::Symmetric)
        .expect("symmetric host");
    let public = lab.add_host("public", NatKind::None).expect("public host");
    assert_eq!(common::namespaces_left(&prefix).len(), 1 + 1 + 2 + 2 + 1);

    let hosts = [cone.clone(), sym.clone(), public];
    let report = probe::control_checks(&relay, &hosts)
        .await
        .unwrap_or_else(|e| panic!("control checks: {e:#}"));
    assert_eq!(report.passed.len(), 3 + 2, "{:#?}", report.passed);

    // A node behind each NAT joins the DHT through a node on the internet
    // segment: TCP through the routers works for the real binary too.
    let mut sup = Supervisor::new(bin);
    let files = NodeFiles::create(&run, "relay").expect("files");
    let args = Args::new(["join"])
        .opt("--listen", relay.listen_addr())
        .opt("--data-dir", &files.data);
    let id = sup
        .spawn_in_netns("relay", &relay.netns, args.as_slice(), &files.log)
        .expect("start relay node");
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let addr = sup
        .next_line(id, deadline, "its listen address")
        .await
        .expect("relay node address")
        .text;
    let mut stats = Vec::new();
    for host in [&cone, &sym] {
        let files = NodeFiles::create(&run, &host.name).expect("files");
        let args = Args::new(["join"])
            .opt("--listen", host.listen_addr())
            .opt("--data-dir", &files.data)
            .opt("--bootstrap", &addr)
            .opt("--stats-file", &files.stats);
        sup.spawn_in_netns(&host.name, &host.netns, args.as_slice(), &files.log)
            .expect("start NATed node");
        stats.push((host.name.clone(), files.stats));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, path) in &stats {
        loop {
            let peers = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| testnet::stats::NodeStats::parse(&t).ok())
                .map_or(0, |s| s.peers);
            if peers > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} behind its NAT never connected to the node at {addr}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let pids = sup.started_pids().to_vec();
    drop(sup);
    lab.teardown().expect("teardown");
    assert_eq!(common::namespaces_left(&prefix), Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|&p| testnet::procs::is_running(p))
        .collect();
    assert!(left.is_empty(), "node processes still running: {left:?}");
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

/// A 2 MiB source in `run` and the trial settings around it.
fn trial_config(run: &std::path::Path) -> TrialConfig {
    let source = run.join("source.bin");
    let size = 2 << 20;
    let sha = testnet::datagen::generate(&source, size, 5).expect("generate source");
    TrialConfig {
        source,
        source_sha256: sha,
        size: testnet::units::ByteSize(size),
        swarm_nated: 2,
        timeout: Duration::from_secs(90),
    }
}

/// Runs one trial and checks it left no namespace or process behind.
async fn bounded_trial(
    run: &std::path::Path,
    cfg: &TrialConfig,
    topology: Topology,
    k: u32,
) -> TrialOutcome {
    let bin = common::node_bin().await;
    let dir = run.join(format!("{topology}-{k}"));
    let outcome = trial::run(&bin, &dir, topology, k, cfg)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{topology} trial failed: {e:#} (files in {})",
                dir.display()
            )
        });
    assert_eq!(
        common::namespaces_left(&outcome.prefix),
        Vec::<String>::new()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left: Vec<u32> = outcome
        .pids
        .iter()
        .copied()
        .filter(|&p| testnet::procs::is_running(p))
        .collect();
    assert!(left.is_empty(), "node processes still running: {left:?}");
    assert_eq!(outcome.rows.len(), 1, "{:#?}", outcome.rows);
    outcome
}

#[tokio::test(flavor = "current_thread")]
async fn cone_to_cone_punches_through_and_moves_the_chunks_direct() {
    if !common::root_or_skip(
        "cone_to_cone_punches_through_and_moves_the_chunks_direct",
        "ip netns, nftables",
    ) {
        return;
    }
    let run = common::run_dir("nat-cone");
    let cfg = trial_config(&run);
    // A second trial only if the first did not punch: the lab measures
    // 20/20, so two misses in a row mean hole punching is broken.
    let mut rows = Vec::new();
    for k in 1..=2 {
        let row = bounded_trial(&run, &cfg, Topology::ConeCone, k)
            .await
            .rows
            .remove(0);
        assert!(
            row.transfer_ok,
            "cone-cone copy failed: {row:#?} (files in {})",
            run.display()
        );
        assert!(row.reserved, "the seeder held no relay slot: {row:#?}");
        let direct = row.direct;
        rows.push(row);
        if direct {
            break;
        }
    }
    let row = rows.last().expect("a trial ran");
    assert!(
        row.direct,
        "no direct connection in 2 cone-cone trials: {rows:#?} (files in {})",
        run.display()
    );
    let total = row.bytes_direct + row.bytes_relayed;
    assert!(
        total >= 2 << 20 && row.bytes_direct * 100 >= total * 99,
        "after the punch at least 99 % of the session bytes should go direct: {row:#?}"
    );
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

#[tokio::test(flavor = "current_thread")]
async fn symmetric_to_symmetric_completes_over_the_relay() {
    if !common::root_or_skip(
        "symmetric_to_symmetric_completes_over_the_relay",
        "ip netns, nftables",
    ) {
        return;
    }
    let run = common::run_dir("nat-sym");
    let cfg = trial_config(&run);
    let row = bounded_trial(&run, &cfg, Topology::SymmetricSymmetric, 1)
        .await
        .rows
        .remove(0);
    assert!(
        row.transfer_ok,
        "symmetric copy failed: {row:#?} (files in {})",
        run.display()
    );
    assert!(row.reserved, "the seeder held no relay slot: {row:#?}");
    assert!(
        !row.direct,
        "a punch through two symmetric NATs cannot work: {row:#?}"
    );
    assert!(
        row.bytes_relayed >= 2 << 20,
        "the copy should have come over the relay: {row:#?}"
    );
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

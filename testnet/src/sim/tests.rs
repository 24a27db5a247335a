//! The simulator's tests: small, fast and deterministic. They check what a
//! reader of the results relies on: every peer finishes, no run beats the
//! physical bound, the same seed gives the same bytes, and the simulated
//! peers run the node's own transfer configuration.

use std::time::Duration;

use protocol::choker::ChokePolicy;
use protocol::picker::PickPolicy;

use super::config::node_transfer_config;
use super::report;
use super::*;
use crate::units::Rate;

/// A small flash crowd: 2 MiB, u = 8 Mbit/s, u_s = 80 Mbit/s.
fn small(peers: usize) -> SimConfig {
    SimConfig {
        size: 2 << 20,
        ..SimConfig::flash_crowd(peers)
    }
}

#[test]
fn small_flash_crowd_finishes_near_the_bound_and_conserves_bytes() {
    let config = small(20);
    let outcome = run(&config).unwrap();
    assert!(!outcome.timed_out);
    assert!(
        outcome.peers.iter().all(|p| p.finish.is_some()),
        "a leecher did not finish"
    );
    let d = report::distribution_time(&outcome).unwrap();
    let bound = report::bound(&config).p2p();
    // No schedule can beat the bound; one that does means the model leaks bandwidth.
    assert!(d >= bound * 0.999, "{d} s beats the bound {bound} s");
    assert!(d <= bound * 2.0, "{d} s is far above the bound {bound} s");
    assert!(report::summary(&config, &outcome).contains("ratio"));
    // Every byte downloaded was uploaded by someone (chunks still on the wire
    // when the last peer finished count only as uploaded), and each leecher got
    // at least the file.
    let uploaded: u64 =
        outcome.peers.iter().map(|p| p.uploaded).sum::<u64>() + outcome.seeder_uploaded;
    let downloaded: u64 = outcome.peers.iter().map(|p| p.downloaded).sum();
    assert!(
        downloaded <= uploaded,
        "{downloaded} B arrived, {uploaded} B sent"
    );
    assert!(
        uploaded - downloaded <= 20 * 2 * (1 << 20) / 10,
        "too much left on the wire"
    );
    assert!(outcome.peers.iter().all(|p| p.downloaded >= config.size));
    assert_eq!(
        outcome.counters.bans, 0,
        "an honest chunk failed verification"
    );
    assert_eq!(outcome.counters.stored, 20 * u64::from(outcome.chunks));
}

#[test]
fn same_seed_same_bytes_other_seed_other_run() {
    let config = small(15);
    let a = run(&config).unwrap();
    let b = run(&config).unwrap();
    assert_eq!(report::csv(&config, &a), report::csv(&config, &b));
    assert_eq!(report::summary(&config, &a), report::summary(&config, &b));
    let other = SimConfig {
        seed: 2,
        ..config.clone()
    };
    let c = run(&other).unwrap();
    assert_ne!(report::csv(&config, &a), report::csv(&other, &c));
}

#[test]
fn simulated_peers_run_the_nodes_transfer_config() {
    // The node builds every transfer from its engine's default TransferConfig;
    // the simulator must start from exactly that, policies included.
    let node = node::engine::config::EngineConfig::default().transfer;
    let sim = SimConfig::flash_crowd(10);
    assert_eq!(sim.pick, PickPolicy::RarestFirst);
    assert_eq!(sim.choke, ChokePolicy::TitForTat);
    assert_eq!(
        format!("{:?}", sim.transfer_config(true)),
        format!("{node:?}"),
        "the simulator's default peers differ from the node's"
    );
    assert_eq!(format!("{:?}", node_transfer_config()), format!("{node:?}"));
    let rider = sim.transfer_config(false);
    assert!(!rider.upload_enabled);
    assert_eq!(
        sim.neighbours,
        node::engine::config::EngineConfig::default().wanted_peers
    );
}

#[test]
fn switching_a_policy_changes_the_outcome() {
    let base = small(15);
    let csv = |config: &SimConfig| report::csv(config, &run(config).unwrap());
    let rarest = csv(&base);
    for config in [
        SimConfig {
            pick: PickPolicy::Sequential,
            ..base.clone()
        },
        SimConfig {
            pick: PickPolicy::Random,
            ..base.clone()
        },
        SimConfig {
            choke: ChokePolicy::UnchokeAll,
            ..base.clone()
        },
    ] {
        assert_ne!(
            csv(&config),
            rarest,
            "{:?}/{:?} changed nothing",
            config.pick,
            config.choke
        );
    }
}

#[test]
fn free_riders_upload_nothing_and_still_finish() {
    let config = SimConfig {
        classes: vec![
            Class {
                weight: 3.0,
                upload: Some(Rate(8_000_000)),
            },
            Class {
                weight: 1.0,
                upload: None,
            },
        ],
        ..small(16)
    };
    let outcome = run(&config).unwrap();
    let riders: Vec<_> = outcome.peers.iter().filter(|p| p.class == 1).collect();
    assert_eq!(riders.len(), 4);
    assert!(riders.iter().all(|p| p.uploaded == 0 && p.finish.is_some()));
    assert!(outcome.peers.iter().all(|p| p.finish.is_some()));
}

#[test]
fn poisson_arrivals_with_churn_all_finish() {
    let config = SimConfig {
        arrivals: Arrivals::Poisson { per_sec: 2.0 },
        departure: Departure {
            leave_prob: 0.5,
            stay: Some(Duration::from_secs(5)),
        },
        ..small(20)
    };
    let outcome = run(&config).unwrap();
    assert!(outcome.peers.iter().all(|p| p.finish.is_some()));
    // Arrivals are spread out, and a peer never leaves before it finished.
    assert!(outcome.peers.iter().any(|p| p.arrival > 0));
    for p in &outcome.peers {
        if let (Some(f), Some(l)) = (p.finish, p.left) {
            assert!(l >= f);
        }
    }
    assert!(report::summary(&config, &outcome).contains("mean download time"));
}

#[test]
fn uplink_use_counts_only_uplinks_with_something_to_send() {
    // One leecher: only the seeder uploads (nobody asks the leecher for
    // anything), so at most u_s / (u_s + u) = 10/11 of the capacity is busy;
    // the seeder is busy but for the first round trips, so not much less either.
    let config = SimConfig::flash_crowd(1);
    let outcome = run(&config).unwrap();
    assert!(outcome
        .uplinks
        .iter()
        .all(|b| b.busy <= b.capacity * (1.0 + 1e-9)));
    let busy: f64 = outcome.uplinks.iter().map(|b| b.busy).sum();
    let capacity: f64 = outcome.uplinks.iter().map(|b| b.capacity).sum();
    let share = busy / capacity;
    assert!(
        (0.8..=10.0 / 11.0 + 1e-9).contains(&share),
        "busy share {share}"
    );
    // The CSV and the summary cover the run up to the last finish.
    let csv = report::uplinks_csv(&outcome);
    let d = report::distribution_time(&outcome).unwrap();
    let rows = csv.lines().count() - 1;
    assert_eq!(rows, (d * 10.0).ceil() as usize, "{csv}");
    assert!(report::uplink_summary(&outcome).starts_with("uplinks busy"));
}

#[test]
fn wire_overhead_slows_the_links_by_its_share() {
    // One leecher fed by the seeder alone: its time is the file over u_s, so
    // 10 % more bytes per chunk on the wire take about 10 % longer.
    let plain = run(&SimConfig::flash_crowd(1)).unwrap();
    let config = SimConfig {
        wire_overhead: 0.1,
        ..SimConfig::flash_crowd(1)
    };
    let framed = run(&config).unwrap();
    let (a, b) = (
        report::distribution_time(&plain).unwrap(),
        report::distribution_time(&framed).unwrap(),
    );
    assert!((1.07..1.11).contains(&(b / a)), "{a} s then {b} s");
    // Payload counters do not include the overhead.
    assert_eq!(plain.seeder_uploaded, framed.seeder_uploaded);
    assert!(report::summary(&config, &framed).contains("wire+10.0%"));
}

//! `testnet distribution --textbook` in small (root): both modes at two
//! swarm sizes with u_s = 10u, every copy verified, and a chart whose time
//! axis is in units of F/u and says it is scaled.

mod common;

use testnet::chart::TimeAxis;
use testnet::distribution::{self, DistributionConfig, TEXTBOOK_SERVER_FACTOR};
use testnet::netns::Shaping;
use testnet::nsrun::Mode;
use testnet::units::{ByteSize, Rate};

#[tokio::test(flavor = "current_thread")]
async fn textbook_figure_in_small_measures_both_modes_on_a_scaled_axis() {
    if !common::root_or_skip(
        "textbook_figure_in_small_measures_both_modes_on_a_scaled_axis",
        "ip netns, tc",
    ) {
        return;
    }
    let bin = common::node_bin().await;
    let run = common::run_dir("textbook");
    let upload = Rate(8_000_000);
    let cfg = DistributionConfig {
        peers: vec![1, 3],
        modes: vec![Mode::P2p, Mode::ClientServer],
        size: ByteSize(1 << 20),
        chunk_size: None,
        node_threads: None,
        upload,
        server_upload: Rate(upload.0 * TEXTBOOK_SERVER_FACTOR),
        download: None,
        shaping: Shaping::default(),
        seed: 7,
        timeout: None,
        axis: TimeAxis::FileTimes,
    };
    // `run` fails on any copy that differs from the source.
    let rows = distribution::run(&bin, &run, &cfg)
        .await
        .unwrap_or_else(|e| panic!("textbook run failed: {e:#} (logs in {})", run.display()));
    let got: Vec<(usize, Mode)> = rows.iter().map(|r| (r.n, r.mode)).collect();
    assert_eq!(
        got,
        [
            (1, Mode::P2p),
            (1, Mode::ClientServer),
            (3, Mode::P2p),
            (3, Mode::ClientServer),
        ]
    );
    for r in &rows {
        // No schedule beats its bound; a time under it means a broken cap or clock.
        assert!(
            r.measured >= r.bound * 0.98,
            "N={} {}: {} s beats {} s",
            r.n,
            r.mode,
            r.measured,
            r.bound
        );
        assert!(
            r.downloaded >= r.n as u64 * (1 << 20),
            "N={} {}: short download",
            r.n,
            r.mode
        );
    }
    let csv = std::fs::read_to_string(run.join("distribution.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",8000000,80000000,")),
        "u_s = 10u: {csv}"
    );
    let svg = std::fs::read_to_string(run.join("distribution.svg")).expect("svg");
    assert!(
        svg.contains("Time axis scaled") && svg.contains("units of F/u"),
        "{svg}"
    );
    std::fs::remove_dir_all(&run).expect("remove run folder");
}

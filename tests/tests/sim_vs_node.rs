//! The simulator and the node pick chunks by the same code: one small
//! scenario (one seeder, one leecher, 128 chunks, a capped seeder) run both
//! ways, once per picking policy, shows the same policy-revealing pattern.
//!
//! With `--pick sequential` a leecher's first chunks are (nearly) the lowest
//! indices; with rarest first (random among the equally rare chunks of a
//! single seeder) they are spread over the whole file. Each side is checked
//! against both outcomes, so a simulator that stopped running the node's
//! picker, or a node flag that stopped reaching it, fails here.

use std::path::Path;
use std::time::{Duration, Instant};

use kadswarm_tests::{
    get_args, path_str, read_stats, resume_chunks, start_bootstrap, start_seeder,
    write_random_file, NodeProc,
};
use testnet::sim::{run, PickPolicy, SimConfig};
use testnet::units::Rate;

const CHUNK: u32 = 32 * 1024;
const CHUNKS: u32 = 128;
/// Chunks a leecher holds when we look (about a third).
const LOOK_AT: u32 = 40;
/// Out-of-order slack: requests in flight and chunks still being written when
/// the resume state was saved (the node's deepest pipeline is 32).
const SLACK: u32 = 32;

/// True when the held chunks are all near the start of the file, as
/// sequential picking makes them.
fn near_prefix(held: &[u32]) -> bool {
    let max = held.iter().copied().max().unwrap_or(0);
    !held.is_empty() && max < held.len() as u32 + SLACK
}

/// The leecher's first `LOOK_AT` stored chunks in a simulated run.
fn simulated(pick: PickPolicy) -> Vec<u32> {
    let config = SimConfig {
        size: u64::from(CHUNK * CHUNKS),
        chunk_size: Some(CHUNK),
        // 512 KiB/s, the node seeder's --max-upload below.
        server_upload: Rate(4 * 1024 * 1024),
        pick,
        ..SimConfig::flash_crowd(1)
    };
    let outcome = run(&config).expect("simulated run");
    let leecher = &outcome.peers[0];
    assert!(
        leecher.finish.is_some(),
        "the simulated leecher did not finish"
    );
    leecher.first_chunks[..LOOK_AT as usize].to_vec()
}

/// The chunks a real `node get --pick <pick>` held once it had about `LOOK_AT`.
fn measured(dir: &Path, pick: &str) -> Vec<u32> {
    let logs = dir.join(pick);
    std::fs::create_dir_all(&logs).unwrap();
    let src = logs.join("file.bin");
    write_random_file(&src, u64::from(CHUNK * CHUNKS), 5).unwrap();
    let (_boot, boot_addr) = start_bootstrap(&logs);
    let (_seeder, id) = start_seeder(
        "seeder",
        &logs,
        &src,
        &boot_addr,
        &["--chunk-size", "32KiB", "--max-upload", "512KiB"],
    );
    let out = logs.join("out");
    let data = logs.join("get-data");
    let stats = logs.join("stats.json");
    let mut args = get_args(&id, &out, &data, &boot_addr);
    args.extend(["--stats-file", path_str(&stats), "--pick", pick]);
    let mut get = NodeProc::start("get", &logs, &args);
    // Generous bound so the test ends; no timing is asserted.
    let deadline = Instant::now() + Duration::from_secs(120);
    while read_stats(&stats).map_or(0, |s| s.have) < LOOK_AT {
        assert!(
            Instant::now() < deadline,
            "download made no progress:\n{}",
            get.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The resume state is saved every second; let one save land, then stop.
    std::thread::sleep(Duration::from_millis(1200));
    get.kill9();
    let resume = out.join(format!(".kadswarm-{id}.part")).join("resume.cbor");
    let held = resume_chunks(&resume);
    assert!(
        held.len() >= LOOK_AT as usize && held.len() < CHUNKS as usize,
        "the resume file records {} of {CHUNKS} chunks; the seeder's cap should leave the download half done",
        held.len()
    );
    held
}

#[test]
fn simulated_and_real_leechers_pick_alike() {
    let sim_sequential = simulated(PickPolicy::Sequential);
    let sim_rarest = simulated(PickPolicy::RarestFirst);
    // One seeder sends in the order asked, so sequential is exactly ascending.
    assert!(
        sim_sequential.windows(2).all(|w| w[0] < w[1]) && near_prefix(&sim_sequential),
        "simulated sequential picking stored {sim_sequential:?}"
    );
    assert!(
        !near_prefix(&sim_rarest),
        "simulated rarest-first stored only low chunks: {sim_rarest:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let node_sequential = measured(dir.path(), "sequential");
    let node_rarest = measured(dir.path(), "rarest-first");
    assert!(
        near_prefix(&node_sequential),
        "the node under --pick sequential held {node_sequential:?}, unlike the simulator's {sim_sequential:?}"
    );
    assert!(
        !near_prefix(&node_rarest),
        "the node under rarest-first held only low chunks {node_rarest:?}, unlike the simulator's {sim_rarest:?}"
    );
}

//! A seeder that uses a relay (`--relay ADDR`) reserves a slot on it and
//! advertises its relayed address; a leecher fetches a byte-identical copy
//! through it. On 127.0.0.1 there is no NAT, so DCUtR may upgrade the
//! relayed connection to a direct one: the test asserts the reservation and
//! the copy, not the path the bytes took. The relay's circuits must outlast
//! libp2p's default limits (128 KiB, 2 minutes): the file is far larger.

use std::path::Path;
use std::time::{Duration, Instant};

use kadswarm_tests::{get_args, path_str, sha256_file, start_seeder, write_random_file, NodeProc};

const DONE: Duration = Duration::from_secs(180);

/// The `nat` object of a stats file, once the file exists.
fn nat_of(stats: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(stats).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("nat").cloned()
}

#[test]
fn a_seeder_behind_a_relay_reserves_a_slot_and_a_leecher_gets_a_byte_identical_copy() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = logs.join("big.bin");
    write_random_file(&src, 12 * 1024 * 1024 + 4321, 11).unwrap();
    let want = sha256_file(&src).unwrap();

    // The relay is also the bootstrap peer; on loopback its listen address is its external one.
    let relay_data = logs.join("relay-data");
    let mut relay = NodeProc::start(
        "relay",
        logs,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            path_str(&relay_data),
            "--relay",
        ],
    );
    let relay_addr = relay.next_line(Duration::from_secs(30));
    assert!(
        relay_addr.starts_with("/ip4/127.0.0.1/tcp/") && relay_addr.contains("/p2p/"),
        "the relay printed {relay_addr:?}, not a full multiaddr"
    );

    let seeder_stats = logs.join("seeder-stats.json");
    let (seeder, id) = start_seeder(
        "seeder",
        logs,
        &src,
        &relay_addr,
        &[
            "--relay",
            &relay_addr,
            "--stats-file",
            path_str(&seeder_stats),
        ],
    );

    // The seeder holds a slot on the relay before anyone looks for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reservations = loop {
        let r = nat_of(&seeder_stats)
            .and_then(|n| n.get("reservations").cloned())
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default();
        if !r.is_empty() || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        reservations.len(),
        1,
        "the seeder reserved no slot on the relay; seeder log:\n{}\nrelay log:\n{}",
        seeder.log_text(),
        relay.log_text()
    );
    assert_eq!(
        reservations[0].as_str(),
        Some(relay_addr.as_str()),
        "the reservation names the relay"
    );
    assert!(
        seeder.log_text().contains("reserved slot on"),
        "the seeder does not log its reservation:\n{}",
        seeder.log_text()
    );

    let out = logs.join("out");
    let data = logs.join("get-data");
    let leecher_stats = logs.join("leecher-stats.json");
    let mut args = get_args(&id, &out, &data, &relay_addr);
    args.extend(["--stats-file", path_str(&leecher_stats)]);
    let mut leecher = NodeProc::start("leecher", logs, &args);
    let status = leecher.wait(DONE);
    assert!(
        status.success(),
        "get failed:\n{}\nseeder log:\n{}",
        leecher.log_text(),
        seeder.log_text()
    );
    let copy = out.join("big.bin");
    assert_eq!(
        sha256_file(&copy).unwrap(),
        want,
        "the copy differs from the shared file"
    );
    // The leecher reached the seeder through the relay: the only address the
    // seeder advertised was its relayed one, so its first connection was relayed.
    let nat = nat_of(&leecher_stats).expect("the leecher wrote no stats");
    assert!(
        nat["punches_tried"].as_u64().unwrap_or(0) >= 1,
        "the leecher never had a relayed connection: {nat}\nlog:\n{}",
        leecher.log_text()
    );
    eprintln!(
        "leecher nat: {nat}\nseeder nat: {}",
        nat_of(&seeder_stats).unwrap_or_default()
    );
}

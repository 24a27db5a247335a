//! `node get --json` as a script uses it: every stdout line is a JSON event
//! and the last one says where the verified copy is.

use std::time::Duration;

use kadswarm_tests::{
    get_args, sha256_file, start_bootstrap, start_seeder, write_random_file, NodeProc,
};

const DONE: Duration = Duration::from_secs(180);

#[test]
fn get_json_prints_only_json_events_ending_in_complete_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = dir.path().join("data.bin");
    write_random_file(&src, 3 * 1024 * 1024 + 5, 11).unwrap();
    let want = sha256_file(&src).unwrap();

    let (_boot, boot_addr) = start_bootstrap(logs);
    let (_seeder, id) = start_seeder("seeder", logs, &src, &boot_addr, &[]);
    let out = dir.path().join("out");
    let data = dir.path().join("get-data");
    let mut args = get_args(&id, &out, &data, &boot_addr);
    args.push("--json");
    let mut getter = NodeProc::start("get", logs, &args);
    let status = getter.wait(DONE);
    assert!(status.success(), "get failed:\n{}", getter.log_text());

    let lines = getter.remaining_lines();
    assert!(!lines.is_empty(), "get --json printed nothing");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"));
            assert!(v["event"].is_string(), "{l} has no \"event\"");
            v
        })
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|v| v["event"].as_str()).collect();
    for expected in ["searching", "providers", "manifest"] {
        assert!(
            names.contains(&expected),
            "no {expected} event in {names:?}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "complete", "last event: {last}");
    let path = out.join("data.bin");
    assert_eq!(last["path"].as_str(), path.to_str(), "{last}");
    // At least the content (a chunk asked twice near the end counts twice).
    assert!(
        last["received_bytes"].as_u64() >= Some(3 * 1024 * 1024 + 5),
        "{last}"
    );
    assert_eq!(sha256_file(&path).unwrap(), want, "the copy differs");
}

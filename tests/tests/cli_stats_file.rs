//! The `--stats-file` a node rewrites never follows a link another local user
//! planted at its temp name or its final name.

use std::os::unix::fs::symlink;
use std::time::Duration;

use kadswarm_tests::{path_str, read_stats, NodeProc};

#[test]
fn links_planted_at_the_stats_file_leave_their_targets_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let victims = logs.join("victims");
    std::fs::create_dir(&victims).unwrap();
    let tmp_victim = victims.join("tmp-victim");
    let final_victim = victims.join("final-victim");
    std::fs::write(&tmp_victim, b"do not touch (tmp)").unwrap();
    std::fs::write(&final_victim, b"do not touch (final)").unwrap();

    let shared = logs.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let stats = shared.join("stats.json");
    symlink(&tmp_victim, shared.join("stats.tmp")).unwrap();
    symlink(&final_victim, &stats).unwrap();

    let data = logs.join("data");
    let mut node = NodeProc::start(
        "join",
        logs,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            path_str(&data),
            "--stats-file",
            path_str(&stats),
        ],
    );
    let _addr = node.next_line(Duration::from_secs(30));
    // The node writes its stats within a few seconds of starting.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read_stats(&stats).is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        read_stats(&stats).is_some(),
        "the node never wrote its stats file; log:\n{}",
        node.log_text()
    );
    drop(node);
    assert_eq!(std::fs::read(&tmp_victim).unwrap(), b"do not touch (tmp)");
    assert_eq!(
        std::fs::read(&final_victim).unwrap(),
        b"do not touch (final)"
    );
    assert!(
        !std::fs::symlink_metadata(&stats)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the stats file is still the planted link"
    );
}

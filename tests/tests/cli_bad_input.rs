//! Bad input on the command line gets a clear error and a non-zero exit.

use std::time::Duration;

use kadswarm_tests::{path_str, start_bootstrap, NodeProc};

const QUICK: Duration = Duration::from_secs(60);

/// Runs `node args`, expects failure, and returns its stderr.
fn fails(name: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let mut p = NodeProc::start(name, dir, args);
    let status = p.wait(QUICK);
    assert!(!status.success(), "`node {}` should fail", args.join(" "));
    p.log_text()
}

#[test]
fn bad_command_lines_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let data = path_str(&data);

    let err = fails(
        "bad-id",
        d,
        &["get", "not-a-content-id", "--data-dir", data],
    );
    assert!(err.contains("invalid content ID"), "{err}");

    let missing = d.join("no-such-file");
    let err = fails(
        "no-path",
        d,
        &["share", path_str(&missing), "--data-dir", data],
    );
    assert!(err.contains("no such file or directory"), "{err}");

    // An output "directory" below a regular file cannot be created, even as root.
    let file = d.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("sub");
    let id = "ab".repeat(32);
    let err = fails(
        "bad-out",
        d,
        &["get", &id, "--out", path_str(&out), "--data-dir", data],
    );
    assert!(err.contains("cannot create output directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // Port 1 on loopback: nothing listens there.
    let err = fails(
        "bad-boot",
        d,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1",
            "--data-dir",
            data,
        ],
    );
    assert!(err.contains("could not reach any bootstrap peer"), "{err}");
}

#[test]
fn an_unknown_id_fails_after_the_find_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_boot, boot_addr) = start_bootstrap(d);
    let data = d.join("get-data");
    let out = d.join("out");
    let id = "cd".repeat(32);
    let err = fails(
        "unknown",
        d,
        &[
            "get",
            &id,
            "--find-timeout",
            "3",
            "--out",
            path_str(&out),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot_addr,
            "--data-dir",
            path_str(&data),
        ],
    );
    assert!(err.contains("no providers found"), "{err}");
}

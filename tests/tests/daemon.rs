//! `node join` as a daemon, driven by `share`, `get`, `ls`, `status` and
//! `stop` on the same data dir, all on 127.0.0.1 with real processes.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kadswarm_tests::{path_str, sha256_file, write_random_file, NodeProc};

const LONG: Duration = Duration::from_secs(120);

/// Starts `node join` on `data` (bootstrapping through `boot` if given) and
/// waits for its control file; returns it with its first address.
fn start_daemon(name: &str, logs: &Path, data: &Path, boot: Option<&str>) -> (NodeProc, String) {
    let mut args = vec![
        "join",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        path_str(data),
    ];
    if let Some(b) = boot {
        args.extend(["--bootstrap", b]);
    }
    let mut p = NodeProc::start(name, logs, &args);
    let addr = p.next_line(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("control.json").exists() {
        assert!(
            Instant::now() < deadline,
            "{name} wrote no control.json:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, addr)
}

/// Runs `node <args>` to its end; returns success, stdout lines and the log.
fn run(name: &str, logs: &Path, args: &[&str]) -> (bool, Vec<String>, String) {
    let mut p = NodeProc::start(name, logs, args);
    let ok = p.wait(LONG).success();
    (ok, p.remaining_lines(), p.log_text())
}

/// Sends a GET with `auth` (an Authorization header value, or none) to the
/// daemon's API; returns the HTTP status code.
fn api_status(data: &Path, path: &str, auth: Option<&str>) -> u16 {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("control.json")).unwrap()).unwrap();
    let addr = info["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

fn token(data: &Path) -> String {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("control.json")).unwrap()).unwrap();
    info["token"].as_str().unwrap().to_string()
}

/// `node ls --json` of the daemon on `data`, as JSON values.
fn ls(logs: &Path, data: &Path) -> Vec<serde_json::Value> {
    let (ok, lines, log) = run("ls", logs, &["ls", "--json", "--data-dir", path_str(data)]);
    assert!(ok, "ls failed:\n{log}");
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn a_daemon_shares_serves_after_a_restart_and_fetches_through_another_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let src = dir.path().join("album.bin");
    write_random_file(&src, 3 * 1024 * 1024 + 99, 11).unwrap();
    let want = sha256_file(&src).unwrap();

    // Daemon A holds the share.
    let data_a = dir.path().join("a-data");
    let (mut a, addr_a) = start_daemon("daemon-a", logs, &data_a, None);
    let mode = std::fs::metadata(data_a.join("control.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "control.json must be private");

    let (ok, out, log) = run(
        "share",
        logs,
        &["share", path_str(&src), "--data-dir", path_str(&data_a)],
    );
    assert!(ok, "share through the daemon failed:\n{log}");
    let id = out.last().cloned().unwrap_or_default();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "share printed {out:?}"
    );

    // A second share on the same daemon: one identity serves both.
    let notes = dir.path().join("notes.txt");
    write_random_file(&notes, 200_000, 12).unwrap();
    let want_notes = sha256_file(&notes).unwrap();
    let (ok, out, log) = run(
        "share2",
        logs,
        &["share", path_str(&notes), "--data-dir", path_str(&data_a)],
    );
    assert!(ok, "second share failed:\n{log}");
    let id2 = out.last().cloned().unwrap_or_default();
    assert_ne!(id2, id);

    let items = ls(logs, &data_a);
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["kind"], "share");
    assert_eq!(items[0]["state"], "seeding");
    assert_eq!(items[1]["id"], id2.as_str());

    let (ok, status, log) = run(
        "status",
        logs,
        &["status", "--json", "--data-dir", path_str(&data_a)],
    );
    assert!(ok, "status failed:\n{log}");
    let first: serde_json::Value = serde_json::from_str(&status[0]).unwrap();
    assert_eq!(first["type"], "node");
    assert!(status.iter().skip(1).any(|l| l.contains(&id)), "{status:?}");

    // The API wants the token.
    assert_eq!(api_status(&data_a, "/v1/items", None), 401);
    assert_eq!(
        api_status(&data_a, "/v1/items", Some("Bearer 0123456789")),
        401
    );
    let good = format!("Bearer {}", token(&data_a));
    assert_eq!(api_status(&data_a, "/v1/items", Some(&good)), 200);

    // A second daemon on the same data dir is refused with a reason.
    let (ok, _, log) = run(
        "second",
        logs,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            path_str(&data_a),
        ],
    );
    assert!(
        !ok && log.contains("already running"),
        "a second daemon on one data dir:\n{log}"
    );

    // Killed without warning and restarted, A still keeps and serves the share.
    a.kill9();
    let (_a2, addr_a) = {
        let _ = addr_a;
        start_daemon("daemon-a2", logs, &data_a, None)
    };
    let deadline = Instant::now() + LONG;
    loop {
        let items = ls(logs, &data_a);
        assert_eq!(items.len(), 2, "a share was forgotten: {items:?}");
        if items.iter().all(|i| i["state"] == "seeding") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the share never came back: {items:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Daemon B fetches it; `get` follows until verified and prints the path.
    let data_b = dir.path().join("b-data");
    let (_b, _) = start_daemon("daemon-b", logs, &data_b, Some(&addr_a));
    let out_b = dir.path().join("out-b");
    let (ok, printed, log) = run(
        "get-b",
        logs,
        &[
            "get",
            &id,
            "--out",
            path_str(&out_b),
            "--data-dir",
            path_str(&data_b),
        ],
    );
    assert!(ok, "get through daemon B failed:\n{log}");
    let copy: PathBuf = out_b.join("album.bin");
    assert_eq!(printed.last().map(String::as_str), copy.to_str());
    assert_eq!(sha256_file(&copy).unwrap(), want, "B's copy differs");
    let items = ls(logs, &data_b);
    assert_eq!(items[0]["kind"], "get");
    assert_eq!(items[0]["state"], "seeding");

    let (ok, peers, log) = run(
        "peers",
        logs,
        &["peers", "--json", "--data-dir", path_str(&data_b)],
    );
    assert!(ok, "peers failed:\n{log}");
    assert!(
        peers
            .iter()
            .any(|l| serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|p| p["peer_id"].is_string())),
        "B lists no peer: {peers:?}"
    );
    let (ok, text, log) = run(
        "status-text",
        logs,
        &["status", "--data-dir", path_str(&data_b)],
    );
    assert!(
        ok && text.iter().any(|l| l.contains(&id)),
        "status text lacks {id}: {text:?}\n{log}"
    );

    // `get --detach` returns at once; the daemon finishes the download alone.
    let (ok, _, log) = run(
        "get-b2",
        logs,
        &[
            "get",
            &id2,
            "--detach",
            "--out",
            path_str(&out_b),
            "--data-dir",
            path_str(&data_b),
        ],
    );
    assert!(ok, "get --detach failed:\n{log}");
    let deadline = Instant::now() + LONG;
    while !ls(logs, &data_b)
        .iter()
        .any(|i| i["id"] == id2.as_str() && i["state"] == "seeding")
    {
        assert!(
            Instant::now() < deadline,
            "the detached download never finished"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sha256_file(&out_b.join("notes.txt")).unwrap(), want_notes);

    // A fresh embedded leecher fetches from the restarted daemon.
    let out_c = dir.path().join("out-c");
    let data_c = dir.path().join("c-data");
    let (ok, _, log) = run(
        "get-c",
        logs,
        &[
            "get",
            &id,
            "--no-seed",
            "--out",
            path_str(&out_c),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &addr_a,
            "--data-dir",
            path_str(&data_c),
        ],
    );
    assert!(ok, "an embedded get from the daemon failed:\n{log}");
    assert_eq!(sha256_file(&out_c.join("album.bin")).unwrap(), want);

    // `stop` drops the share: gone from ls, the file stays.
    let (ok, _, log) = run(
        "stop",
        logs,
        &["stop", &id, "--data-dir", path_str(&data_a)],
    );
    assert!(ok, "stop failed:\n{log}");
    let left = ls(logs, &data_a);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], id2.as_str());
    assert_eq!(sha256_file(&src).unwrap(), want);
}

#[test]
fn commands_without_a_daemon_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, _, log) = run("ls", dir.path(), &["ls", "--data-dir", path_str(&data)]);
    assert!(!ok && log.contains("node join --data-dir"), "{log}");
}

/// `node status --json`'s node line of the daemon on `data`.
fn node_status(logs: &Path, data: &Path) -> serde_json::Value {
    let (ok, lines, log) = run(
        "status",
        logs,
        &["status", "--json", "--data-dir", path_str(data)],
    );
    assert!(ok, "status failed:\n{log}");
    serde_json::from_str(&lines[0]).unwrap()
}

#[test]
fn a_killed_daemon_resumes_its_download_from_verified_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let size: u64 = 6 * 1024 * 1024;
    let src = dir.path().join("big.bin");
    write_random_file(&src, size, 21).unwrap();
    let want = sha256_file(&src).unwrap();

    // A slow seeder, so the download is caught half way.
    let data_a = dir.path().join("a-data");
    std::fs::create_dir_all(&data_a).unwrap();
    std::fs::write(data_a.join("config.toml"), "max_upload = \"1MiB\"\n").unwrap();
    let (_a, addr_a) = start_daemon("daemon-a", logs, &data_a, None);
    let (ok, out, log) = run(
        "share",
        logs,
        &[
            "share",
            path_str(&src),
            "--chunk-size",
            "64KiB",
            "--data-dir",
            path_str(&data_a),
        ],
    );
    assert!(ok, "share failed:\n{log}");
    let id = out.last().cloned().unwrap_or_default();

    let data_b = dir.path().join("b-data");
    let out_b = dir.path().join("out-b");
    let (mut b, _) = start_daemon("daemon-b", logs, &data_b, Some(&addr_a));
    let (ok, _, log) = run(
        "get",
        logs,
        &[
            "get",
            &id,
            "--detach",
            "--out",
            path_str(&out_b),
            "--data-dir",
            path_str(&data_b),
        ],
    );
    assert!(ok, "get --detach failed:\n{log}");
    let deadline = Instant::now() + LONG;
    loop {
        let items = ls(logs, &data_b);
        let (have, total) = (
            items[0]["have"].as_u64().unwrap(),
            items[0]["total"].as_u64().unwrap(),
        );
        if total > 0 && have * 3 >= total {
            assert!(have < total, "finished before it could be interrupted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the download made no progress: {items:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let a resume save land, then kill without warning.
    std::thread::sleep(Duration::from_millis(1500));
    b.kill9();

    let (_b2, _) = start_daemon("daemon-b2", logs, &data_b, Some(&addr_a));
    let deadline = Instant::now() + LONG;
    loop {
        let items = ls(logs, &data_b);
        assert_eq!(items.len(), 1, "the download was forgotten: {items:?}");
        if items[0]["state"] == "seeding" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed download never finished: {items:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sha256_file(&out_b.join("big.bin")).unwrap(), want);
    let after = node_status(logs, &data_b)["downloaded"].as_u64().unwrap();
    assert!(
        after <= size * 3 / 4,
        "the restarted daemon fetched {after} of {size} bytes: verified chunks were fetched again"
    );
}

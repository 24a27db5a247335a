//! Shared helpers for the workspace integration tests: content generation,
//! hashing, and locating (building if needed) the `node` binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Test content and its hash: the same generator and hasher the testnet tools use.
pub use testnet::datagen::{generate as write_random_file, sha256_file};

/// Path of the `node` binary of this workspace, built once with the same profile as the tests.
///
/// `KADSWARM_NODE_BIN=<path>` runs the tests against that binary instead (an
/// older build, to see a test fail). Never `node` from PATH: on these
/// machines that is Node.js.
pub fn node_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KADSWARM_NODE_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "KADSWARM_NODE_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let release = !cfg!(debug_assertions);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "-p", "node", "--bin", "node"]);
        if release {
            cmd.arg("--release");
        }
        for k in testnet::nodebin::package_env_vars() {
            cmd.env_remove(k);
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build the node binary");
        assert!(status.success(), "building the node binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target
            .join(if release { "release" } else { "debug" })
            .join("node");
        assert!(bin.exists(), "node binary not found at {}", bin.display());
        bin
    })
    .clone()
}

/// A `node` process started the way a user would, killed (SIGKILL) and reaped on drop.
///
/// Its stdout lines arrive on a channel; its stderr goes to `<log_dir>/<name>.log`.
pub struct NodeProc {
    /// Label used in messages and the log file name.
    pub name: String,
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: PathBuf,
}

impl NodeProc {
    /// Starts `node <args>`; logs go to `log_dir`.
    pub fn start(name: &str, log_dir: &Path, args: &[&str]) -> NodeProc {
        use std::process::{Command, Stdio};
        let log = log_dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("create log file");
        let mut child = Command::new(node_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProc {
            name: name.to_string(),
            child,
            lines,
            log,
        }
    }

    /// The next stdout line, or a panic with the log if none comes within `timeout`.
    pub fn next_line(&mut self, timeout: std::time::Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => panic!(
                "{}: no stdout line within {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// Waits for the process to exit; panics with the log after `timeout`.
    pub fn wait(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    panic!(
                        "{}: still running after {timeout:?}; log:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
            }
        }
    }

    /// The process ID (for reading its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All stdout lines printed so far and not yet read; once the process
    /// has exited, every line up to its end (the reader thread may lag).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            let mut all = Vec::new();
            // The channel closes when the reader thread reaches end of output.
            while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
                all.push(line);
            }
            return all;
        }
        self.lines.try_iter().collect()
    }

    /// Kills with SIGKILL (no chance to save state) and reaps.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `node join` on 127.0.0.1 and returns it with its first printed address.
pub fn start_bootstrap(log_dir: &Path) -> (NodeProc, String) {
    let data = log_dir.join("boot-data");
    let mut boot = NodeProc::start(
        "boot",
        log_dir,
        &[
            "join",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            path_str(&data),
        ],
    );
    let addr = boot.next_line(std::time::Duration::from_secs(30));
    assert!(
        addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.contains("/p2p/"),
        "join printed {addr:?}, not a full multiaddr"
    );
    (boot, addr)
}

/// A path as &str (test paths are always UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// One snapshot of the JSON a node writes with `--stats-file`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct StatsFile {
    /// This node's peer ID.
    pub peer_id: String,
    /// Chunk payload bytes sent.
    pub uploaded: u64,
    /// Chunk payload bytes received.
    pub downloaded: u64,
    /// Verified chunks held.
    pub have: u32,
    /// Chunks in the content.
    pub total: u32,
    /// Peers banned for bad data.
    #[serde(default)]
    pub banned: Vec<String>,
}

/// Reads a stats file; None while it does not exist yet.
pub fn read_stats(path: &Path) -> Option<StatsFile> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Number of chunks a download's `resume.cbor` records as verified.
///
/// Decoded independently of the node's own code: the file is a CBOR map
/// whose `have` field is a bitfield.
pub fn resume_have_count(resume: &Path) -> u32 {
    #[derive(serde::Deserialize)]
    struct Resume {
        #[serde(with = "serde_bytes")]
        have: Vec<u8>,
    }
    let bytes = std::fs::read(resume).expect("read resume file");
    let r: Resume = cbor4ii::serde::from_slice(&bytes).expect("decode resume file");
    r.have.iter().map(|b| b.count_ones()).sum()
}

/// Starts `node share PATH` on 127.0.0.1 joined through `boot`; returns it and the content ID it printed.
pub fn start_seeder(
    name: &str,
    log_dir: &Path,
    path: &Path,
    boot: &str,
    extra: &[&str],
) -> (NodeProc, String) {
    let data = log_dir.join(format!("{name}-data"));
    let mut args = vec![
        "share",
        path_str(path),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        boot,
        "--data-dir",
        path_str(&data),
    ];
    args.extend_from_slice(extra);
    let mut seeder = NodeProc::start(name, log_dir, &args);
    let id = seeder.next_line(std::time::Duration::from_secs(60));
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "share printed {id:?}, not a content ID"
    );
    (seeder, id)
}

/// Args for `node get ID --no-seed` into `out` on 127.0.0.1, joined through `boot`.
pub fn get_args<'a>(id: &'a str, out: &'a Path, data: &'a Path, boot: &'a str) -> Vec<&'a str> {
    vec![
        "get",
        id,
        "--no-seed",
        "--out",
        path_str(out),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        boot,
        "--data-dir",
        path_str(data),
    ]
}

/// The address without its `/p2p/<id>` suffix (the "dial and learn the ID" form).
pub fn without_peer_id(addr: &str) -> String {
    match addr.find("/p2p/") {
        Some(i) => addr[..i].to_string(),
        None => addr.to_string(),
    }
}

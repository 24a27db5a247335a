//! Shared helpers for the workspace integration tests: content generation,
//! hashing, locating (building if needed) the `node` binary and running it.
//! The machinery is the testnet's (datagen, nodebin, procs); this crate adds
//! what a test wants from it: panics that carry the node's log.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::Duration;

use testnet::nodebin;
use testnet::procs::blocking::Process;

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
        nodebin::build_blocking(nodebin::Profile::current())
            .unwrap_or_else(|e| panic!("no node binary to test: {e:#}"))
    })
    .clone()
}

/// A `node` process started the way a user would, killed (SIGKILL) and reaped on drop.
///
/// Its stdout lines arrive on a channel; its stderr goes to `<log_dir>/<name>.log`.
/// The process handling is testnet's ([`Process`]); this adds the tests'
/// policy: panic, with the node's whole log, when it does not behave.
pub struct NodeProc {
    /// Label used in messages and the log file name.
    pub name: String,
    proc: Process,
}

impl NodeProc {
    /// Starts `node <args>`; logs go to `log_dir`. Call it from the test's
    /// own thread: the node gets SIGTERM when the starting thread ends.
    pub fn start(name: &str, log_dir: &Path, args: &[&str]) -> NodeProc {
        let log = log_dir.join(format!("{name}.log"));
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let proc = Process::spawn(name, &node_bin(), &args, &[("RUST_LOG", "info")], &log)
            .unwrap_or_else(|e| panic!("cannot start node {name}: {e:#}"));
        NodeProc {
            name: name.to_string(),
            proc,
        }
    }

    /// The next stdout line, or a panic with the log if none comes within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.proc.next_line(timeout) {
            Some(line) => line,
            None => panic!(
                "{}: no stdout line within {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// Waits for the process to exit; panics with the log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match self.proc.wait_timeout(timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                self.proc.kill();
                panic!(
                    "{}: still running after {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            Err(e) => panic!("{}: cannot wait for it: {e}", self.name),
        }
    }

    /// The process ID (for reading its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// All stdout lines printed so far and not yet read; once the process
    /// has exited, every line up to its end (the reader thread may lag).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let lines = self.proc.remaining_lines();
        assert_eq!(
            self.proc.lines_dropped(),
            0,
            "{}: stdout lines were dropped unread; read them sooner",
            self.name
        );
        lines
    }

    /// Kills with SIGKILL (no chance to save state) and reaps.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// The process's stderr so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
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
    let addr = boot.next_line(Duration::from_secs(30));
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
pub fn resume_have_count(resume: &Path) -> u32 {
    resume_chunks(resume).len() as u32
}

/// The chunks a download's `resume.cbor` records as verified, ascending.
///
/// Decoded independently of the node's own code: the file is a CBOR map
/// whose `have` field is a bitfield, chunk 0 the high bit of byte 0.
pub fn resume_chunks(resume: &Path) -> Vec<u32> {
    #[derive(serde::Deserialize)]
    struct Resume {
        #[serde(with = "serde_bytes")]
        have: Vec<u8>,
    }
    let bytes = std::fs::read(resume).expect("read resume file");
    let r: Resume = cbor4ii::serde::from_slice(&bytes).expect("decode resume file");
    (0..r.have.len() as u32 * 8)
        .filter(|&i| r.have[(i / 8) as usize] & (0x80 >> (i % 8)) != 0)
        .collect()
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
    let id = seeder.next_line(Duration::from_secs(60));
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

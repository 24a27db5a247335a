//! Shared pieces of the `hostile_*` tests: a seeder whose full address and
//! PID are known, hostile peers running in the test process, honest
//! downloads, and the seeder's memory read from /proc.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use kadswarm_tests::{get_args, path_str, sha256_file, start_seeder, NodeProc};
use libp2p::Multiaddr;
use testnet::hostile::{victim, Attack, Config, Hostile};

/// One mebibyte (a seeder at rest holds about 30 of them).
pub const MIB: u64 = 1024 * 1024;

/// A `node share` process listening on a port we know.
pub struct Seeder {
    /// The process.
    pub proc: NodeProc,
    /// The content ID it printed.
    pub id: String,
    /// Its full address, `/ip4/127.0.0.1/tcp/<port>/p2p/<peer id>`.
    pub addr: Multiaddr,
}

impl Seeder {
    /// Starts `node share path` joined through `boot`, with `extra` flags.
    pub async fn start(name: &str, logs: &Path, path: &Path, boot: &str, extra: &[&str]) -> Seeder {
        let port = victim::free_loopback_port().unwrap();
        let listen = victim::listen_arg(port);
        let stats = logs.join(format!("{name}-stats.json"));
        let mut args = vec![
            "--listen",
            listen.as_str(),
            "--stats-file",
            path_str(&stats),
        ];
        args.extend_from_slice(extra);
        let (proc, id) =
            tokio::task::block_in_place(|| start_seeder(name, logs, path, boot, &args));
        let peer = victim::peer_id_from_stats(&stats, Duration::from_secs(20))
            .await
            .unwrap();
        Seeder {
            proc,
            id,
            addr: victim::addr(port, peer),
        }
    }

    /// Its resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        testnet::hostile::rss::rss_bytes(self.proc.pid())
            .unwrap_or_else(|| panic!("the seeder is gone; log:\n{}", self.proc.log_text()))
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        testnet::procs::is_running(self.proc.pid())
    }
}

/// `n` hostile peers (each its own identity) running `attack` against
/// `target`, each `width` wide (asks in flight or streams, per attack).
pub async fn attackers(
    n: usize,
    attack: Attack,
    target: &Multiaddr,
    content: &str,
    width: usize,
    hold: Duration,
) -> Vec<Hostile> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut cfg = Config::new(attack, target.clone());
        cfg.content = Some(content.parse().unwrap());
        cfg.width = Some(width);
        cfg.hold = hold;
        out.push(
            Hostile::start(cfg)
                .await
                .unwrap_or_else(|e| panic!("cannot start {attack}: {e:#}")),
        );
    }
    out
}

/// Total asks or bad frames the attackers have sent so far.
pub fn sent(hostiles: &[Hostile]) -> u64 {
    hostiles.iter().map(|h| h.stats().sent).sum()
}

/// Runs `get id --no-seed` (plus `extra`) and waits for it to exit; panics
/// with its log if it is still running after `timeout`. Returns the exit
/// status, the process (for its log) and the output folder.
pub async fn honest_get(
    logs: &Path,
    name: &str,
    id: &str,
    boot: &str,
    extra: &[&str],
    timeout: Duration,
) -> (std::process::ExitStatus, NodeProc, PathBuf) {
    let out = logs.join(format!("{name}-out"));
    let data = logs.join(format!("{name}-data"));
    let mut args = get_args(id, &out, &data, boot);
    args.extend_from_slice(extra);
    let mut getter = NodeProc::start(name, logs, &args);
    let (status, getter) = tokio::task::spawn_blocking(move || {
        let s = getter.wait(timeout);
        (s, getter)
    })
    .await
    .unwrap();
    (status, getter, out)
}

/// Asserts the get succeeded and `copy` is byte-identical to `src`.
pub fn assert_identical(
    status: std::process::ExitStatus,
    getter: &NodeProc,
    copy: &Path,
    src: &Path,
) {
    assert!(
        status.success(),
        "the honest get failed; log:\n{}",
        getter.log_text()
    );
    assert_eq!(
        sha256_file(copy).unwrap(),
        sha256_file(src).unwrap(),
        "the honest copy {} differs from the source",
        copy.display()
    );
}

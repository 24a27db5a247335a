//! The seeder leaves early (issue 12): a 32 MiB file (512 chunks of 64 KiB)
//! shared by a seeder capped at 8 MiB/s, fetched by four leechers capped at
//! 2 MiB/s upload, on 127.0.0.1. The seeder is killed (SIGKILL) once it has
//! uploaded 1.05 copies of chunk payload; the leechers must then finish on
//! their own, byte-identical, and their stats must have shown distributed copies.
//!
//! Before "first copy first" the seeder's first copy was partly spent on
//! chunks the swarm already had, and the leechers stalled short of the end
//! (measured: killed at 1.11 copies, all four stuck at 469/512).
//!
//! `measure_survival` (ignored) repeats the run for the copy counts in
//! `SEEDER_LEAVES_COPIES` (e.g. `1.00,1.05,1.10`), `SEEDER_LEAVES_RUNS` times
//! each, and appends one CSV row per run to `SEEDER_LEAVES_CSV`; with
//! `KADSWARM_NODE_BIN` it measures another build (testnet/scripts/seeder-leaves.sh).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kadswarm_tests::{
    path_str, sha256_file, start_bootstrap, start_seeder, write_random_file, NodeProc,
};

/// The content: 512 chunks of 64 KiB.
const FILE_LEN: u64 = 32 * 1024 * 1024;
const LEECHERS: usize = 4;
/// Longest wait for the seeder to upload its share (DHT search included).
const SEEDING_DEADLINE: Duration = Duration::from_secs(90);
/// The leechers count as stalled when none gains a chunk for this long.
const STALL: Duration = Duration::from_secs(25);
/// Longest wait for the leechers after the seeder left.
const FINISH_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn the_swarm_finishes_after_the_seeder_leaves_at_one_point_zero_five_copies() {
    let dir = tempfile::tempdir().unwrap();
    let run = seeder_leaves(dir.path(), 1.05, 7);
    eprintln!("{}", run.csv_row("this build", 1.05));
    assert!(
        run.copies_at_kill >= 1.05 && run.copies_at_kill < 1.25,
        "the seeder was killed after {:.3} copies",
        run.copies_at_kill
    );
    assert!(
        run.survived,
        "leechers stalled at {:?}/{} chunks after the seeder left at {:.3} copies",
        run.have, run.total, run.copies_at_kill
    );
    assert!(run.identical, "a leecher's copy differs from the source");
    for (k, c) in run.copies_seen.iter().enumerate() {
        // Alone, four leechers that together hold everything show at least one copy.
        assert!(
            c.is_some_and(|c| c >= 1.0),
            "leecher {k}'s stats showed distributed copies {c:?} after the seeder left"
        );
    }
}

#[test]
#[ignore = "a measurement: several minutes; run by testnet/scripts/seeder-leaves.sh"]
fn measure_survival() {
    let copies: Vec<f64> = std::env::var("SEEDER_LEAVES_COPIES")
        .unwrap_or_else(|_| "1.00,1.05,1.10".into())
        .split(',')
        .map(|c| c.trim().parse().expect("SEEDER_LEAVES_COPIES: numbers"))
        .collect();
    let runs: u64 = std::env::var("SEEDER_LEAVES_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let label = std::env::var("SEEDER_LEAVES_LABEL").unwrap_or_else(|_| "this build".into());
    let csv = std::env::var_os("SEEDER_LEAVES_CSV").map(PathBuf::from);
    for &c in &copies {
        for r in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            let run = seeder_leaves(dir.path(), c, 100 + r);
            let row = run.csv_row(&label, c);
            eprintln!("{row}");
            if let Some(path) = &csv {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                writeln!(f, "{row}").unwrap();
            }
        }
    }
}

/// What one run showed.
struct Run {
    /// Copies of chunk payload the seeder had uploaded when killed.
    copies_at_kill: f64,
    /// Every leecher finished.
    survived: bool,
    /// Every finished copy equals the source.
    identical: bool,
    /// Chunks each leecher held at the end.
    have: Vec<u32>,
    total: u32,
    /// Seconds from the kill to the last leecher finishing (or to giving up).
    secs_after_kill: f64,
    /// Each leecher's last distributed copies after the kill, if its stats had any.
    copies_seen: Vec<Option<f64>>,
    /// Some leecher said chunks were held by no connected peer.
    said_unavailable: bool,
}

impl Run {
    fn csv_row(&self, label: &str, copies: f64) -> String {
        let min_have = self.have.iter().min().copied().unwrap_or(0);
        let copies_seen = self
            .copies_seen
            .iter()
            .map(|c| c.map_or("-".into(), |c| format!("{c:.3}")))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "{label},{copies:.2},{:.3},{},{},{min_have},{},{:.1},{copies_seen},{}",
            self.copies_at_kill,
            self.survived,
            self.identical,
            self.total,
            self.secs_after_kill,
            self.said_unavailable
        )
    }
}

/// One seeder-leaves run in `dir`: the seeder is killed after `copies` copies.
fn seeder_leaves(dir: &Path, copies: f64, content_seed: u64) -> Run {
    let src = dir.join("video.bin");
    write_random_file(&src, FILE_LEN, content_seed).unwrap();
    let want = sha256_file(&src).unwrap();
    let (_boot, boot_addr) = start_bootstrap(dir);
    let (mut seeder, id) = start_seeder(
        "seeder",
        dir,
        &src,
        &boot_addr,
        &[
            "--chunk-size",
            "64KiB",
            "--max-upload",
            "8MiB",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_addr(&seeder);
    let mut leechers = Vec::new();
    for k in 0..LEECHERS {
        let out = dir.join(format!("out{k}"));
        let data = dir.join(format!("get{k}-data"));
        let stats = dir.join(format!("get{k}.json"));
        let args = [
            "get",
            &id,
            "--out",
            path_str(&out),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot_addr,
            "--data-dir",
            path_str(&data),
            "--max-upload",
            "2MiB",
            "--stats-file",
            path_str(&stats),
        ];
        leechers.push((NodeProc::start(&format!("get{k}"), dir, &args), out, stats));
    }

    // Kill the seeder as soon as it has uploaded `copies` copies.
    let goal = (copies * FILE_LEN as f64) as u64;
    let started = Instant::now();
    let uploaded = loop {
        let up = uploaded_bytes(&metrics);
        if up >= goal {
            seeder.kill9();
            break up;
        }
        assert!(
            started.elapsed() < SEEDING_DEADLINE,
            "the seeder uploaded only {up} bytes in {SEEDING_DEADLINE:?}; log:\n{}",
            seeder.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let killed = Instant::now();

    // Watch the leechers until all finish or none moves for a while.
    let mut last_sum = 0u64;
    let mut last_move = Instant::now();
    let mut copies_seen = vec![None; LEECHERS];
    let (have, total) = loop {
        let stats: Vec<serde_json::Value> = leechers
            .iter()
            .map(|(_, _, s)| read_json(s).unwrap_or_default())
            .collect();
        let have: Vec<u32> = stats.iter().map(|s| field_u32(s, "have")).collect();
        let total = stats
            .iter()
            .map(|s| field_u32(s, "total"))
            .max()
            .unwrap_or(0);
        for (seen, s) in copies_seen.iter_mut().zip(&stats) {
            if let Some(c) = s.get("distributed_copies").and_then(|c| c.as_f64()) {
                *seen = Some(c);
            }
        }
        let sum: u64 = have.iter().map(|&h| u64::from(h)).sum();
        if sum != last_sum {
            last_sum = sum;
            last_move = Instant::now();
        }
        let all_done = total > 0 && have.iter().all(|&h| h == total);
        if all_done || last_move.elapsed() >= STALL || killed.elapsed() >= FINISH_DEADLINE {
            break (have, total);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let secs_after_kill = killed.elapsed().as_secs_f64();
    let survived = total > 0 && have.iter().all(|&h| h == total);
    let mut identical = survived;
    let mut said_unavailable = false;
    for (p, out, _) in &leechers {
        said_unavailable |= p.log_text().contains("held by no connected peer");
        if survived {
            let copy = out.join("video.bin");
            identical &= sha256_file(&copy).is_ok_and(|h| h == want);
        }
    }
    Run {
        copies_at_kill: uploaded as f64 / FILE_LEN as f64,
        survived,
        identical,
        have,
        total,
        secs_after_kill,
        copies_seen,
        said_unavailable,
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn field_u32(v: &serde_json::Value, key: &str) -> u32 {
    v.get(key).and_then(|x| x.as_u64()).map_or(0, |x| x as u32)
}

/// The address a node printed for its metrics.
fn metrics_addr(p: &NodeProc) -> String {
    const SAYS: &str = "serving metrics on http://";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = p.log_text();
        if let Some(at) = log.find(SAYS) {
            let rest = &log[at + SAYS.len()..];
            let end = rest.find('/').unwrap_or(rest.len());
            return rest[..end].to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never said where its metrics are; log:\n{log}",
            p.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's `kadswarm_uploaded_bytes_total` (chunk payload written to peers); 0 if unreadable.
fn uploaded_bytes(addr: &str) -> u64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix("kadswarm_uploaded_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

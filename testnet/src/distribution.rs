//! `testnet distribution`: the experiment. For each N, one namespace run in
//! P2P mode and one in client-server mode; each measured time is set against
//! its bound, rows go to `distribution.csv`, the chart to
//! `distribution.svg` and `.png` (both rewritten after every run, so an
//! interrupted experiment keeps what it measured).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::bound::Params;
use crate::chart::{self, Point, TimeAxis};
use crate::datagen;
use crate::netns::Shaping;
use crate::nsrun::{self, CapsSummary, Mode, NsRunConfig};
use crate::report::Report;
use crate::tcpstats::TcpSummary;
use crate::units::{ByteSize, Rate};

/// The swarm sizes a run measures unless `--n` says otherwise.
pub const DEFAULT_PEERS: [usize; 7] = [1, 2, 4, 8, 16, 24, 32];

/// The swarm sizes of `--textbook`: the book's N = 1…35, thinned where the
/// curves are straight so a run takes about a quarter of an hour.
pub const TEXTBOOK_PEERS: [usize; 12] = [1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 30, 35];

/// The textbook figure's server: u_s = 10u.
pub const TEXTBOOK_SERVER_FACTOR: u64 = 10;

/// Parameters of the experiment.
#[derive(Clone, Debug)]
pub struct DistributionConfig {
    /// The swarm sizes N, in order.
    pub peers: Vec<usize>,
    /// The modes to run for each N, in order.
    pub modes: Vec<Mode>,
    /// File size F.
    pub size: ByteSize,
    /// Chunk size of the share (`None`: the node's default).
    pub chunk_size: Option<ByteSize>,
    /// `node --threads` for every node (`None`: the node's default).
    pub node_threads: Option<u16>,
    /// Each peer's upload u.
    pub upload: Rate,
    /// The seeder's upload u_s.
    pub server_upload: Rate,
    /// Each peer's download cap d_min (`None`: uncapped).
    pub download: Option<Rate>,
    /// tbf burst and latency.
    pub shaping: Shaping,
    /// Seed of the file's contents.
    pub seed: u64,
    /// Per-run time limit; `None`: 4 × the bound + 60 s.
    pub timeout: Option<Duration>,
    /// The chart's time axis: seconds, or the textbook's units of F/u.
    pub axis: TimeAxis,
}

/// One run's result: a CSV row.
#[derive(Clone, Debug)]
pub struct Row {
    /// N.
    pub n: usize,
    /// P2P or client-server.
    pub mode: Mode,
    /// Measured distribution time in seconds.
    pub measured: f64,
    /// The mode's bound in seconds.
    pub bound: f64,
    /// Chunk bytes the seeder uploaded.
    pub seeder_uploaded: u64,
    /// Chunk bytes the leechers uploaded (to each other).
    pub leechers_uploaded: u64,
    /// Chunk bytes the leechers downloaded, all together.
    pub downloaded: u64,
    /// The earliest leecher's finish time in seconds.
    pub first_done: f64,
    /// CPU seconds all nodes used, from their start until the last leecher finished.
    pub cpu_seconds: f64,
    /// The tbf caps' counters (bytes sent, packets dropped) until the last leecher finished.
    pub caps: CapsSummary,
    /// TCP's segment counters (sent, sent again) until the last leecher finished.
    pub tcp: TcpSummary,
    /// The node flags this run used beyond the testbed's own (see
    /// `nsrun::flags_label`); empty when every node ran at its defaults.
    pub flags: String,
}

impl Row {
    /// Measured over bound.
    pub fn ratio(&self) -> f64 {
        self.measured / self.bound
    }

    /// Share of the machine's CPUs the nodes kept busy over the measured time.
    pub fn cpu_busy(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.cpu_seconds / (self.measured * cores)
    }

    /// Bytes on all capped uplinks (the seeder's and the leechers') over
    /// N·F: 1.0 would be every copy crossing one uplink exactly once.
    pub fn uplink_per_nf(&self, size: ByteSize) -> f64 {
        let nf = self.n as f64 * size.0 as f64;
        if nf > 0.0 {
            self.caps.uplink_bytes() as f64 / nf
        } else {
            0.0
        }
    }
}

/// Runs the experiment with the `node` binary `bin`, writing into `run`;
/// returns the rows. Stops at the first failed run (its nodes' logs stay).
pub async fn run(bin: &Path, run: &Path, cfg: &DistributionConfig) -> anyhow::Result<Vec<Row>> {
    if cfg.peers.is_empty() || cfg.peers.contains(&0) {
        bail!("--n needs one or more swarm sizes of at least 1");
    }
    if cfg.size.0 == 0 {
        bail!("--size must be at least 1 byte");
    }
    let name = format!("kadswarm-{}.bin", cfg.size);
    let (source_dir, source, source_sha256) =
        datagen::generate_source(run, &name, cfg.size.0, cfg.seed).await?;

    let csv = run.join("distribution.csv");
    let chart_base = run.join("distribution");
    let max_n = cfg.peers.iter().copied().max().unwrap_or(1);
    let mut rows = Vec::new();
    for &n in &cfg.peers {
        for &mode in &cfg.modes {
            let params = params(cfg, n);
            let bound = match mode {
                Mode::P2p => params.p2p(),
                Mode::ClientServer => params.client_server(),
            };
            let dir = fresh_dir(run, &format!("n{n}-{mode}"))?;
            let run_cfg = NsRunConfig {
                leechers: n,
                mode,
                source: source.clone(),
                size: cfg.size,
                chunk_size: cfg.chunk_size,
                node_threads: cfg.node_threads,
                server_upload: cfg.server_upload,
                upload: cfg.upload,
                download: cfg.download,
                shaping: cfg.shaping,
                timeout: cfg
                    .timeout
                    .unwrap_or_else(|| Duration::from_secs_f64(4.0 * bound + 60.0)),
            };
            let outcome = nsrun::run(bin, &dir, &run_cfg, &source_sha256)
                .await
                .with_context(|| format!("N={n} {mode} run failed (logs in {})", dir.display()))?;
            let report = &outcome.report;
            if report.mismatches() > 0 {
                bail!(
                    "N={n} {mode}: {} copies differ from the source (kept in {})",
                    report.mismatches(),
                    dir.display()
                );
            }
            let mut row = row_of(n, mode, bound, report);
            row.cpu_seconds = outcome.cpu_seconds;
            row.caps = outcome.caps;
            row.tcp = outcome.tcp;
            row.flags = nsrun::flags_label(&run_cfg);
            println!(
                "N={n:<3} {:<3} measured {:>7.2} s  bound {:>7.2} s  ratio {:.2}  (seeder sent {:.1} MiB, peers {:.1} MiB, {:.1}% downloaded beyond N·F; capped uplinks carried {:.2} × N·F, the seeder's {:.1} MiB; nodes used {:.1} CPU-s, {:.0}% of the CPUs; tbf dropped {}+{}+{} packets; TCP resent {:.2}% of the seeder's and {:.2}% of the leechers' segments{})",
                mode.as_str(),
                row.measured,
                row.bound,
                row.ratio(),
                row.seeder_uploaded as f64 / 1048576.0,
                row.leechers_uploaded as f64 / 1048576.0,
                excess_pct(&row, cfg.size),
                row.uplink_per_nf(cfg.size),
                row.caps.seeder_up.sent_bytes as f64 / 1048576.0,
                row.cpu_seconds,
                100.0 * row.cpu_busy(),
                row.caps.seeder_up.dropped,
                row.caps.leechers_up.dropped,
                row.caps.leechers_down.dropped,
                row.tcp.seeder.retrans_pct(),
                row.tcp.leechers.retrans_pct(),
                if row.flags.is_empty() {
                    String::new()
                } else {
                    format!("; node flags {}", row.flags)
                },
            );
            rows.push(row);
            write_csv(&csv, cfg, &rows)?;
            let points: Vec<Point> = rows
                .iter()
                .map(|r| Point {
                    n: r.n,
                    mode: r.mode,
                    seconds: r.measured,
                })
                .collect();
            chart::write(&chart_base, params, max_n, &points, cfg.axis)?;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&source_dir) {
        eprintln!(
            "testnet: warning: cannot remove {}: {e}",
            source_dir.display()
        );
    }
    eprintln!(
        "testnet: wrote {}, {} and {}",
        csv.display(),
        chart_base.with_extension("svg").display(),
        chart_base.with_extension("png").display()
    );
    Ok(rows)
}

/// Creates `<run>/<name>`, or `<name>-2`, `-3`… when N repeats: a node
/// must never find a previous run's data dir (it would resume, not fetch).
fn fresh_dir(run: &Path, name: &str) -> anyhow::Result<PathBuf> {
    for k in 1..1000 {
        let dir = match k {
            1 => run.join(name),
            _ => run.join(format!("{name}-{k}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!("too many runs named {name} in {}", run.display())
}

/// The bound inputs for N peers.
pub fn params(cfg: &DistributionConfig, n: usize) -> Params {
    Params {
        n,
        size: cfg.size,
        server_upload: cfg.server_upload,
        upload: cfg.upload,
        download: cfg.download,
    }
}

fn row_of(n: usize, mode: Mode, bound: f64, report: &Report) -> Row {
    let leechers = report.nodes.iter().filter(|r| r.is_leecher());
    let seeder_uploaded = report
        .nodes
        .iter()
        .filter(|r| !r.is_leecher())
        .filter_map(|r| r.stats.as_ref())
        .map(|s| s.uploaded)
        .sum();
    let (mut up, mut down) = (0, 0);
    let mut first = f64::INFINITY;
    for l in leechers {
        if let Some(s) = &l.stats {
            up += s.uploaded;
            down += s.downloaded;
        }
        if let Some(d) = l.done {
            first = first.min(d.as_secs_f64());
        }
    }
    Row {
        n,
        mode,
        measured: report.distribution.as_secs_f64(),
        bound,
        seeder_uploaded,
        leechers_uploaded: up,
        downloaded: down,
        first_done: if first.is_finite() { first } else { 0.0 },
        cpu_seconds: 0.0,
        caps: CapsSummary::default(),
        tcp: TcpSummary::default(),
        flags: String::new(),
    }
}

/// How much more the leechers downloaded than N copies (duplicates, endgame).
fn excess_pct(row: &Row, size: ByteSize) -> f64 {
    let need = row.n as f64 * size.0 as f64;
    100.0 * (row.downloaded as f64 - need) / need
}

/// The CSV: one row per run, with every parameter so a file stands alone.
/// Columns are only ever added at the end, before `flags`, which comes last
/// (space-separated, no commas): read the columns by their header names.
pub fn csv_text(cfg: &DistributionConfig, rows: &[Row]) -> String {
    let mut out = String::from(
        "n,mode,measured_s,bound_s,ratio,size_bytes,upload_bps,server_upload_bps,download_bps,\
         tbf_burst_bytes,tbf_latency_ms,first_done_s,seeder_uploaded_bytes,peers_uploaded_bytes,\
         downloaded_bytes,excess_download_pct,node_cpu_s,tbf_drops_seeder,tbf_drops_peers_up,\
         tbf_drops_peers_down,seeder_uplink_bytes,uplink_bytes,uplink_per_nf,\
         tcp_out_segs_seeder,tcp_retrans_segs_seeder,tcp_out_segs_peers,tcp_retrans_segs_peers,flags\n",
    );
    for r in rows {
        let download = cfg.download.map(|d| d.0.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.3},{:.3},{},{},{},{download},{},{},{:.3},{},{},{},{:.2},{:.2},{},{},{},{},{},{:.3},{},{},{},{},{}",
            r.n,
            r.mode,
            r.measured,
            r.bound,
            r.ratio(),
            cfg.size.0,
            cfg.upload.0,
            cfg.server_upload.0,
            cfg.shaping.burst.0,
            cfg.shaping.latency.as_millis(),
            r.first_done,
            r.seeder_uploaded,
            r.leechers_uploaded,
            r.downloaded,
            excess_pct(r, cfg.size),
            r.cpu_seconds,
            r.caps.seeder_up.dropped,
            r.caps.leechers_up.dropped,
            r.caps.leechers_down.dropped,
            r.caps.seeder_up.sent_bytes,
            r.caps.uplink_bytes(),
            r.uplink_per_nf(cfg.size),
            r.tcp.seeder.out_segs,
            r.tcp.seeder.retrans_segs,
            r.tcp.leechers.out_segs,
            r.tcp.leechers.retrans_segs,
            r.flags.replace(',', ";"),
        );
    }
    out
}

fn write_csv(path: &PathBuf, cfg: &DistributionConfig, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(path, csv_text(cfg, rows))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::TbfStats;
    use crate::tcpstats::TcpCounters;

    #[test]
    fn csv_has_one_line_per_row_with_the_ratio() {
        let cfg = DistributionConfig {
            peers: vec![5],
            modes: vec![Mode::P2p],
            size: ByteSize(16 << 20),
            chunk_size: None,
            node_threads: None,
            upload: Rate(8_000_000),
            server_upload: Rate(32_000_000),
            download: None,
            shaping: Shaping::default(),
            seed: 1,
            timeout: None,
            axis: TimeAxis::Seconds,
        };
        let bound = params(&cfg, 5).p2p();
        let row = Row {
            n: 5,
            mode: Mode::P2p,
            measured: bound * 1.1,
            bound,
            seeder_uploaded: 20 << 20,
            leechers_uploaded: 60 << 20,
            downloaded: 80 << 20,
            first_done: 7.5,
            cpu_seconds: 3.0,
            caps: CapsSummary {
                seeder_up: TbfStats {
                    sent_bytes: 30 << 20,
                    dropped: 1,
                },
                leechers_up: TbfStats {
                    sent_bytes: 70 << 20,
                    dropped: 2,
                },
                leechers_down: TbfStats {
                    sent_bytes: 0,
                    dropped: 3,
                },
            },
            tcp: TcpSummary {
                seeder: TcpCounters {
                    out_segs: 40,
                    retrans_segs: 4,
                },
                leechers: TcpCounters {
                    out_segs: 90,
                    retrans_segs: 9,
                },
            },
            flags: "--threads=1".into(),
        };
        let text = csv_text(&cfg, &[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("n,mode,measured_s,bound_s,ratio,"));
        assert!(
            lines[1]
                .starts_with("5,p2p,10.253,9.321,1.100,16777216,8000000,32000000,,32768,50,7.500,"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with(",0.00,3.00,1,2,3,31457280,104857600,1.250,40,4,90,9,--threads=1"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[0].split(',').count(),
            lines[1].split(',').count(),
            "one value per column"
        );
    }
}

//! `testnet demo`: one file spreading through a loopback swarm, end to end.
//!
//! A bootstrap node, a seeder sharing a generated file, and N leechers
//! fetching it at once; live progress from the nodes' stats files; then the
//! distribution time, who uploaded how much, and a SHA-256 check of every
//! copy against the source.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use protocol::ContentId;

use crate::datagen;
use crate::loopback::{self, Args, NodeFiles};
use crate::procs::{self, ChildId, Supervisor};
use crate::progress::{Progress, Row};
use crate::stats::{NodeStats, StatsFile};
use crate::units::{self, ByteSize};

/// Parameters of a demo run.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Number of leechers started together.
    pub leechers: usize,
    /// Size of the generated file.
    pub size: ByteSize,
    /// Seed of the file's pseudo-random contents.
    pub seed: u64,
    /// `--max-upload` for the seeder (`None`: unlimited).
    pub seed_upload: Option<String>,
    /// `--max-upload` for each leecher (`None`: unlimited).
    pub leecher_upload: Option<String>,
    /// Give up when the leechers are not all done after this long.
    pub timeout: Duration,
    /// Keep the generated file and the downloaded copies after a successful run.
    pub keep_data: bool,
}

/// What a successful demo measured.
#[derive(Debug)]
pub struct Report {
    /// File size.
    pub size: ByteSize,
    /// From starting the leechers until the last one printed its path.
    pub distribution: Duration,
    /// Final stats of the seeder and each leecher (in that order).
    pub nodes: Vec<NodeReport>,
    /// SHA-256 of the generated file.
    pub source_sha256: String,
}

/// One node's share of the work.
#[derive(Debug)]
pub struct NodeReport {
    /// `seeder` or `leecher-<k>`.
    pub name: String,
    /// Last stats it wrote (`None` if it never wrote any).
    pub stats: Option<NodeStats>,
    /// Leechers: when it finished, from the start of the distribution.
    pub done: Option<Duration>,
    /// Leechers: SHA-256 of its copy.
    pub sha256: Option<String>,
}

struct Peer {
    name: String,
    id: ChildId,
    stats: StatsFile,
    out: PathBuf,
    done: Option<(Duration, PathBuf)>,
}

/// Runs the demo in `run` (an empty folder) with nodes under `sup`. Stops the
/// nodes before verifying the copies. Fails if any copy differs from the source.
pub async fn run(sup: &mut Supervisor, run: &Path, cfg: &DemoConfig) -> anyhow::Result<Report> {
    if cfg.size.0 == 0 {
        bail!("--size must be at least 1 byte");
    }
    if cfg.leechers == 0 {
        bail!("--leechers must be at least 1");
    }

    // The content.
    let source_dir = run.join("source");
    std::fs::create_dir_all(&source_dir)
        .with_context(|| format!("cannot create {}", source_dir.display()))?;
    let source = source_dir.join(format!("kadswarm-demo-{}.bin", cfg.size));
    eprintln!(
        "testnet: generating {} test file (seed {})",
        cfg.size, cfg.seed
    );
    let source_sha256 = {
        let (path, size, seed) = (source.clone(), cfg.size.0, cfg.seed);
        tokio::task::spawn_blocking(move || datagen::generate(&path, size, seed)).await??
    };

    // Bootstrap and seeder.
    let (_, boot) = loopback::start_join(sup, run, "bootstrap", None).await?;
    eprintln!("testnet: bootstrap node at {boot}");
    let files = NodeFiles::create(run, "seeder")?;
    let mut args = Args::new([std::ffi::OsString::from("share"), source.clone().into()])
        .loopback(&files, Some(&boot))
        .opt("--stats-file", &files.stats);
    if let Some(rate) = &cfg.seed_upload {
        args = args.opt("--max-upload", rate);
    }
    let seeder = sup.spawn("seeder", args.as_slice(), &files.log)?;
    // Hashing takes time on big files: allow 10 MB/s on top of startup.
    let hashing = Duration::from_secs_f64(cfg.size.0 as f64 / 10e6);
    let deadline = tokio::time::Instant::now() + loopback::STARTUP_TIMEOUT + hashing;
    let line = sup.next_line(seeder, deadline, "the content ID").await?;
    let content_id: ContentId = line
        .text
        .parse()
        .with_context(|| format!("the seeder printed {:?} instead of a content ID", line.text))?;
    eprintln!("testnet: seeder shares {content_id}");
    let mut seeder_stats = StatsFile::new(files.stats.clone());
    wait_connected(sup, &mut seeder_stats).await?;

    // Leechers, all at once.
    let mut peers = Vec::with_capacity(cfg.leechers);
    eprintln!("testnet: starting {} leechers", cfg.leechers);
    let started = Instant::now();
    for k in 1..=cfg.leechers {
        let name = format!("leecher-{k}");
        let files = NodeFiles::create(run, &name)?;
        let out = files.dir.join("out");
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut args = Args::new(["get".to_string(), content_id.to_string()])
            .opt("--out", &out)
            .loopback(&files, Some(&boot))
            .opt("--stats-file", &files.stats);
        if let Some(rate) = &cfg.leecher_upload {
            args = args.opt("--max-upload", rate);
        }
        let id = sup.spawn(&name, args.as_slice(), &files.log)?;
        peers.push(Peer {
            name,
            id,
            stats: StatsFile::new(files.stats),
            out,
            done: None,
        });
    }

    let distribution = watch(sup, &mut seeder_stats, &mut peers, started, cfg.timeout).await?;
    let finished_at = SystemTime::now();
    eprintln!(
        "testnet: all {} leechers done in {}",
        cfg.leechers,
        units::secs(distribution)
    );

    // Let every node write its stats once more so the byte counts are final.
    let stats_deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let all_fresh = std::iter::once(&mut seeder_stats)
            .chain(peers.iter_mut().map(|p| &mut p.stats))
            .all(|s| {
                let _ = s.refresh();
                s.current().is_some_and(|c| c.written > finished_at)
            });
        if all_fresh || Instant::now() > stats_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("testnet: stopping nodes");
    sup.shutdown(procs::GRACE, std::future::pending()).await;

    eprintln!("testnet: verifying {} copies", peers.len());
    let mut nodes = vec![NodeReport {
        name: "seeder".into(),
        stats: seeder_stats.stats().cloned(),
        done: None,
        sha256: None,
    }];
    for p in &peers {
        let Some((done, path)) = p.done.clone() else {
            bail!("{} finished without a path", p.name); // watch() returned, so unreachable
        };
        let sha = tokio::task::spawn_blocking(move || datagen::sha256_file(&path)).await??;
        nodes.push(NodeReport {
            name: p.name.clone(),
            stats: p.stats.stats().cloned(),
            done: Some(done),
            sha256: Some(sha),
        });
    }
    let report = Report {
        size: cfg.size,
        distribution,
        nodes,
        source_sha256,
    };

    if report.mismatches() == 0 && !cfg.keep_data {
        remove_data(&source_dir, peers.iter().map(|p| p.out.as_path()));
    }
    Ok(report)
}

/// Waits (up to 10 s) until the seeder reports a connected peer, so the
/// leechers do not start before it could announce itself.
async fn wait_connected(sup: &mut Supervisor, seeder: &mut StatsFile) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        sup.check_alive()?;
        let _ = seeder.refresh();
        if seeder.stats().is_some_and(|s| s.peers > 0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "testnet: the seeder reports no peers after 10 s (stats in {}); starting leechers anyway",
        seeder.path().display()
    );
    Ok(())
}

/// Shows progress until every leecher printed its path; returns the time
/// from `started` to the last of them.
async fn watch(
    sup: &mut Supervisor,
    seeder: &mut StatsFile,
    peers: &mut [Peer],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_draw = Instant::now();
    loop {
        tick.tick().await;
        for p in peers.iter_mut().filter(|p| p.done.is_none()) {
            if let Some(line) = sup.try_line(p.id) {
                let path = PathBuf::from(line.text.trim());
                if !path.starts_with(&p.out) {
                    bail!(
                        "{} reported its copy at {}, outside its --out dir {}",
                        p.name,
                        path.display(),
                        p.out.display()
                    );
                }
                let at = line.at.saturating_duration_since(started);
                progress.note(&format!(
                    "testnet: {} done after {}",
                    p.name,
                    units::secs(at)
                ));
                p.done = Some((at, path));
            }
        }
        let all_done = peers.iter().all(|p| p.done.is_some());
        if all_done || Instant::now() >= next_draw {
            next_draw += Duration::from_secs(1);
            let _ = seeder.refresh();
            for p in peers.iter_mut() {
                let _ = p.stats.refresh();
            }
            let mut rows = vec![Row {
                name: "seeder",
                stats: seeder.stats(),
                rates: seeder.rates(),
                done: None,
            }];
            rows.extend(peers.iter().map(|p| Row {
                name: &p.name,
                stats: p.stats.stats(),
                rates: p.stats.rates(),
                done: p.done.as_ref().map(|(d, _)| *d),
            }));
            progress.draw(started.elapsed(), &rows);
        }
        if all_done {
            let last = peers
                .iter()
                .filter_map(|p| p.done.as_ref().map(|(d, _)| *d))
                .max();
            return Ok(last.unwrap_or_default());
        }
        sup.check_alive()?;
        if started.elapsed() > timeout {
            let waiting: Vec<String> = peers
                .iter()
                .filter(|p| p.done.is_none())
                .map(|p| match p.stats.stats() {
                    Some(s) => format!("{} ({}/{} chunks)", p.name, s.have, s.total),
                    None => format!("{} (no stats yet)", p.name),
                })
                .collect();
            bail!(
                "timed out after {}: still waiting for {}; the node logs are in the run folder",
                units::secs(timeout),
                waiting.join(", ")
            );
        }
    }
}

/// Deletes the bulk data of a successful run; logs and stats stay.
fn remove_data<'a>(source_dir: &'a Path, outs: impl Iterator<Item = &'a Path>) {
    for dir in std::iter::once(source_dir).chain(outs) {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("testnet: warning: cannot remove {}: {e}", dir.display());
        }
    }
}

impl Report {
    /// Leecher copies whose SHA-256 differs from the source.
    pub fn mismatches(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.sha256.as_ref().is_some_and(|h| *h != self.source_sha256))
            .count()
    }

    /// Renders the summary printed at the end.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let leechers = self.nodes.len().saturating_sub(1);
        let secs = self.distribution.as_secs_f64();
        let aggregate = if secs > 0.0 {
            leechers as f64 * self.size.0 as f64 / secs
        } else {
            0.0
        };
        out.push_str(&format!(
            "Distributed {} to {leechers} leechers in {} (aggregate {} into the swarm).\n\n",
            self.size,
            units::secs(self.distribution),
            units::rate(aggregate),
        ));

        out.push_str(&format!(
            "{:<10}  {:<12}  {:>10}  {:>10}  {:>10}\n",
            "node", "peer", "uploaded", "downloaded", "done after"
        ));
        let (mut up_total, mut down_total, mut seeder_up) = (0u64, 0u64, 0u64);
        for n in &self.nodes {
            let (peer, up, down) = match &n.stats {
                Some(s) => {
                    up_total += s.uploaded;
                    down_total += s.downloaded;
                    if n.done.is_none() {
                        seeder_up += s.uploaded;
                    }
                    (
                        short_peer(&s.peer_id),
                        units::bytes(s.uploaded),
                        units::bytes(s.downloaded),
                    )
                }
                None => ("(no stats)".into(), "-".into(), "-".into()),
            };
            let done = n.done.map(units::secs).unwrap_or_default();
            out.push_str(&format!(
                "{:<10}  {peer:<12}  {up:>10}  {down:>10}  {done:>10}\n",
                n.name
            ));
        }
        out.push_str(&format!(
            "{:<10}  {:<12}  {:>10}  {:>10}\n\n",
            "total",
            "",
            units::bytes(up_total),
            units::bytes(down_total)
        ));
        let p2p = up_total.saturating_sub(seeder_up);
        if up_total > 0 {
            let pct = |n: u64| 100.0 * n as f64 / up_total as f64;
            out.push_str(&format!(
                "The seeder uploaded {} ({:.0}%); the leechers uploaded {} to each other \
                 (P2P share {:.0}%).\n\n",
                units::bytes(seeder_up),
                pct(seeder_up),
                units::bytes(p2p),
                pct(p2p)
            ));
        }

        out.push_str(&format!("{:<10}  {}\n", "source", self.source_sha256));
        for n in &self.nodes {
            if let Some(h) = &n.sha256 {
                let verdict = if *h == self.source_sha256 {
                    "ok"
                } else {
                    "DIFFERS"
                };
                out.push_str(&format!("{:<10}  {h}  {verdict}\n", n.name));
            }
        }
        match self.mismatches() {
            0 => out.push_str(&format!(
                "All {leechers} copies match the source (SHA-256).\n"
            )),
            k => out.push_str(&format!(
                "{k} of {leechers} copies DIFFER from the source.\n"
            )),
        }
        out
    }
}

/// A peer ID's last 8 characters (`..4kx6nXTN`): enough to find it in the logs.
fn short_peer(id: &str) -> String {
    let n = id.chars().count();
    if n <= 12 {
        return id.to_string();
    }
    let tail: String = id.chars().skip(n - 8).collect();
    format!("..{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, up: u64, down: u64, sha: Option<&str>) -> NodeReport {
        NodeReport {
            name: name.into(),
            stats: Some(NodeStats {
                peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
                uploaded: up,
                downloaded: down,
                have: 4,
                total: 4,
                peers: 2,
            }),
            done: sha.map(|_| Duration::from_secs(2)),
            sha256: sha.map(String::from),
        }
    }

    #[test]
    fn report_counts_p2p_share_and_mismatches() {
        let mib = 1 << 20;
        let report = Report {
            size: ByteSize(4 * mib),
            distribution: Duration::from_secs(2),
            nodes: vec![
                node("seeder", 5 * mib, 0, None),
                node("leecher-1", mib, 4 * mib, Some("aa")),
                node("leecher-2", 2 * mib, 4 * mib, Some("bb")),
            ],
            source_sha256: "aa".into(),
        };
        assert_eq!(report.mismatches(), 1);
        let text = report.render();
        assert!(
            text.contains("Distributed 4MiB to 2 leechers in 2.0 s"),
            "{text}"
        );
        assert!(text.contains("The seeder uploaded 5.0 MiB (62%)"), "{text}");
        assert!(
            text.contains("uploaded 3.0 MiB to each other (P2P share 38%)"),
            "{text}"
        );
        assert!(text.contains("leecher-2   bb  DIFFERS"), "{text}");
        assert!(text.contains("1 of 2 copies DIFFER"), "{text}");
    }

    #[test]
    fn short_peer_keeps_the_tail() {
        assert_eq!(
            short_peer("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            "..4kx6nXTN"
        );
        assert_eq!(short_peer("short"), "short");
    }
}

//! Watching one distribution: a seeder and leechers started by the caller,
//! followed through their stdout and stats files until every leecher has
//! printed the path of its verified copy; then final byte counts and a
//! SHA-256 check of every copy. Shared by `demo` (loopback) and
//! `distribution` (namespaces).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;

use crate::datagen;
use crate::procs::{ChildId, Supervisor};
use crate::progress::{Progress, Row};
use crate::report::NodeReport;
use crate::stats::StatsFile;
use crate::timeline::Timeline;
use crate::units;

/// One `get` process being watched.
#[derive(Debug)]
pub struct Leecher {
    /// `leecher-<k>`.
    pub name: String,
    /// Its process.
    pub id: ChildId,
    /// Its `--stats-file`.
    pub stats: StatsFile,
    /// Its `--out` dir; the copy must land inside.
    pub out: PathBuf,
    /// When it printed its path (from the start) and the path.
    pub done: Option<(Duration, PathBuf)>,
}

impl Leecher {
    /// A leecher just started, not done yet.
    pub fn new(name: String, id: ChildId, stats: PathBuf, out: PathBuf) -> Self {
        Self {
            name,
            id,
            stats: StatsFile::new(stats),
            out,
            done: None,
        }
    }
}

/// Waits (up to 10 s) until the seeder reports a connected peer, so the
/// leechers do not start before it could announce itself.
pub async fn wait_connected(sup: &mut Supervisor, seeder: &mut StatsFile) -> anyhow::Result<()> {
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

/// Shows progress until every leecher printed its path, recording every
/// stats snapshot in `timeline`; returns the time from `started` to the last
/// of them.
pub async fn watch(
    sup: &mut Supervisor,
    seeder: &mut StatsFile,
    peers: &mut [Leecher],
    started: Instant,
    timeout: Duration,
    timeline: &mut Timeline,
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
        // Every tick, so the timeline has each snapshot the nodes write.
        if let (Ok(true), Some(s)) = (seeder.refresh(), seeder.stats()) {
            timeline.record("seeder", s);
        }
        for p in peers.iter_mut() {
            if let (Ok(true), Some(s)) = (p.stats.refresh(), p.stats.stats()) {
                timeline.record(&p.name, s);
            }
        }
        if all_done || Instant::now() >= next_draw {
            next_draw += Duration::from_secs(1);
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

/// Lets every node write its stats once more after `finished_at` (up to 3 s)
/// so the byte counts are final.
pub async fn settle_stats(
    seeder: &mut StatsFile,
    leechers: &mut [Leecher],
    finished_at: SystemTime,
) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let all_fresh = std::iter::once(&mut *seeder)
            .chain(leechers.iter_mut().map(|p| &mut p.stats))
            .all(|s| {
                let _ = s.refresh();
                s.current().is_some_and(|c| c.written > finished_at)
            });
        if all_fresh || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seeder's and every leecher's final figures, with the SHA-256 of each copy.
pub async fn collect(seeder: &StatsFile, leechers: &[Leecher]) -> anyhow::Result<Vec<NodeReport>> {
    eprintln!("testnet: verifying {} copies", leechers.len());
    let mut nodes = vec![NodeReport {
        name: "seeder".into(),
        stats: seeder.stats().cloned(),
        done: None,
        sha256: None,
    }];
    for p in leechers {
        let Some((done, path)) = p.done.clone() else {
            bail!("{} finished without a path", p.name);
        };
        let sha = tokio::task::spawn_blocking(move || datagen::sha256_file(&path)).await??;
        nodes.push(NodeReport {
            name: p.name.clone(),
            stats: p.stats.stats().cloned(),
            done: Some(done),
            sha256: Some(sha),
        });
    }
    Ok(nodes)
}

//! `testnet churn` (root): peers come and go. In a namespace testbed like
//! `distribution`'s, leechers arrive as a Poisson process; on finishing one
//! leaves at once (selfish) with probability p or stays T seconds
//! (altruistic); a fraction quit mid-download and come back later with their
//! partial data (same data dir and output dir: the node resumes from its
//! verified chunks); the original seeder leaves once it has uploaded a given
//! number of copies. Every copy is checked against the source's SHA-256,
//! and which chunks the swarm still held when the seeder left (and every
//! second after) is read from the leechers' resume states.

pub mod chart;
pub mod cli;
pub mod held;
pub mod report;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::{Bitfield, ContentId};

use crate::datagen;
use crate::loopback::NodeFiles;
use crate::netns::{Caps, Shaping, Slot, Testbed};
use crate::nsnode::{self, NodeFlags, NodeProc};
use crate::stats::StatsFile;
use crate::units::{self, ByteSize, Rate};

pub use report::{ChurnReport, PeerRow, SeederExit};
use schedule::{Arrival, PlanParams};

/// How long after the seeder left the swarm's holdings are read as "held when it left".
const SETTLE: Duration = Duration::from_millis(2500);

/// Parameters of a churn run.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    /// The arrival plan's inputs (N, rate, p, quitter fraction, seed).
    pub plan: PlanParams,
    /// How long an altruistic leecher stays after finishing (T).
    pub stay: Duration,
    /// A quitter quits once it holds this fraction of the chunks.
    pub quit_at: f64,
    /// How long a quitter stays away.
    pub away: Duration,
    /// The seeder leaves once it has uploaded this many copies of the file.
    pub seeder_copies: f64,
    /// File size F.
    pub size: ByteSize,
    /// Each leecher's upload cap.
    pub upload: Rate,
    /// The seeder's upload cap.
    pub server_upload: Rate,
    /// Each leecher's download cap (`None`: uncapped).
    pub download: Option<Rate>,
    /// tbf burst and latency.
    pub shaping: Shaping,
    /// Seed of the file's contents.
    pub file_seed: u64,
    /// Give up on leechers still downloading this long after the first arrival.
    pub timeout: Duration,
}

/// Where a leecher is in its life.
enum State {
    /// Not arrived yet.
    Waiting,
    /// Downloading (or seeding, once `done` is set).
    Running(NodeProc),
    /// Quit mid-download; comes back at `until` (from the start).
    Away { until: Duration },
    /// Gone for good (left after finishing, or stopped at the end).
    Gone,
}

/// One leecher: its plan, place, files and what happened to it.
struct Peer {
    plan: Arrival,
    slot: Slot,
    files: NodeFiles,
    out: PathBuf,
    stats: StatsFile,
    state: State,
    row: PeerRow,
}

impl Peer {
    fn done(&self) -> bool {
        self.row.done.is_some()
    }
}

/// Runs the experiment with `bin` in the run folder `run`: writes
/// `churn.csv`, `churn.svg` and `churn.png` there and returns the report.
/// Fails on a broken testbed, not on a leecher that does not finish (the
/// report says so).
pub async fn run(bin: &Path, run: &Path, cfg: &ChurnConfig) -> anyhow::Result<ChurnReport> {
    if cfg.plan.leechers == 0 || cfg.plan.rate <= 0.0 || !cfg.plan.rate.is_finite() {
        bail!("--leechers must be at least 1 and --rate above 0");
    }
    if cfg.size.0 == 0 {
        bail!("--size must be at least 1 byte");
    }
    let name = format!("kadswarm-{}.bin", cfg.size);
    let (source_dir, source, source_sha256) =
        datagen::generate_source(run, &name, cfg.size.0, cfg.file_seed).await?;
    // Declared before anything that runs nodes: nodes stop before their namespaces go.
    let mut bed = Testbed::create(cfg.shaping)?;
    let result = churn(bin, &mut bed, run, cfg, &source, &source_sha256).await;
    let teardown = bed.teardown();
    let report = result?;
    teardown?;
    if let Err(e) = std::fs::remove_dir_all(&source_dir) {
        eprintln!(
            "testnet: warning: cannot remove {}: {e}",
            source_dir.display()
        );
    }
    report::write_csv(&run.join("churn.csv"), &report)?;
    chart::write(&run.join("churn"), cfg, &report)?;
    Ok(report)
}

async fn churn(
    bin: &Path,
    bed: &mut Testbed,
    run: &Path,
    cfg: &ChurnConfig,
    source: &Path,
    source_sha256: &str,
) -> anyhow::Result<ChurnReport> {
    let flags = NodeFlags::new();
    let (boot_proc, boot) = nsnode::start_bootstrap(bin, bed, run, &flags).await?;
    let mut seeder = nsnode::start_seeder(
        bin,
        bed,
        run,
        nsnode::Share {
            source,
            size: cfg.size,
            upload: cfg.server_upload,
        },
        &boot,
        &flags,
    )
    .await?;
    let id = seeder.content_id;
    let caps = Caps {
        upload: Some(cfg.upload),
        download: cfg.download,
    };
    let mut peers = Vec::new();
    for a in schedule::plan(&cfg.plan) {
        let slot = bed.add_node(&a.name, caps)?;
        let files = NodeFiles::create(run, &a.name)?;
        let out = nsnode::out_dir(&files)?;
        peers.push(Peer {
            row: PeerRow::new(&a),
            stats: StatsFile::new(files.stats.clone()),
            plan: a,
            slot,
            files,
            out,
            state: State::Waiting,
        });
    }
    eprintln!(
        "testnet: churn: {} leechers arriving at {}/s uploading at {} (seeder {}), F = {}; the seeder leaves after {} copies",
        cfg.plan.leechers, cfg.plan.rate, cfg.upload, cfg.server_upload, cfg.size, cfg.seeder_copies
    );
    let started = Instant::now();
    let mut seeder_proc = Some(seeder.proc);
    let mut exit = SeederExit::default();
    let mut total: u32 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_check = Duration::ZERO;
    let mut short_checks = 0u32;
    let mut next_note = Duration::ZERO;
    let leave_at = (cfg.seeder_copies * cfg.size.0 as f64) as u64;
    loop {
        tick.tick().await;
        let now = started.elapsed();
        // Arrivals and returns.
        for p in peers.iter_mut() {
            let due = match p.state {
                State::Waiting => now >= p.plan.at,
                State::Away { until } => now >= until,
                _ => false,
            };
            if !due {
                continue;
            }
            let args = nsnode::get_args(&p.slot, &p.files, &p.out, &id, &boot, &flags);
            let proc = NodeProc::spawn(bin, &p.slot, &args, &p.files.log)?;
            if matches!(p.state, State::Waiting) {
                p.row.started = Some(now);
                eprintln!("testnet: {:>6.1} s  {} arrives", secs(now), p.plan.name);
            } else {
                p.row.returned = Some(now);
                eprintln!(
                    "testnet: {:>6.1} s  {} comes back to resume",
                    secs(now),
                    p.plan.name
                );
            }
            p.state = State::Running(proc);
        }
        // Finishes, quits, departures.
        for p in peers.iter_mut() {
            let State::Running(proc) = &mut p.state else {
                continue;
            };
            if let Some(line) = proc.try_line() {
                let path = PathBuf::from(line.text.trim());
                if !path.starts_with(&p.out) {
                    bail!(
                        "{} reported its copy at {}, outside its --out dir {}",
                        p.plan.name,
                        path.display(),
                        p.out.display()
                    );
                }
                let at = line.at.saturating_duration_since(started);
                eprintln!(
                    "testnet: {:>6.1} s  {} done after {}",
                    secs(at),
                    p.plan.name,
                    units::secs(at.saturating_sub(p.plan.at))
                );
                p.row.done = Some(at);
                p.row.path = Some(path);
            }
            if let Err(e) = proc.check_alive() {
                // A leecher that gives up (no provider found) is a result, not a testbed failure.
                eprintln!("testnet: {:>6.1} s  {e:#}", secs(now));
                p.row.exited = Some(first_line(&format!("{e:#}")));
                p.row.left = Some(now);
                p.state = State::Gone;
                continue;
            }
            let _ = p.stats.refresh();
            let quit = p.plan.quits
                && p.row.quit.is_none()
                && !p.done()
                && p.stats
                    .stats()
                    .is_some_and(|s| s.total > 0 && s.fraction() >= cfg.quit_at);
            let leave = p
                .row
                .done
                .is_some_and(|d| p.plan.selfish || now >= d + cfg.stay);
            if quit || leave {
                let State::Running(proc) = std::mem::replace(&mut p.state, State::Gone) else {
                    continue;
                };
                proc.stop().await;
                let now = started.elapsed();
                if quit {
                    p.row.quit = Some(now);
                    p.state = State::Away {
                        until: now + cfg.away,
                    };
                    eprintln!(
                        "testnet: {:>6.1} s  {} quits mid-download, back in {}",
                        secs(now),
                        p.plan.name,
                        units::secs(cfg.away)
                    );
                } else {
                    p.row.left = Some(now);
                    eprintln!("testnet: {:>6.1} s  {} leaves", secs(now), p.plan.name);
                }
            }
        }
        // The seeder's departure, and what the swarm held from then on.
        if total == 0 {
            let _ = seeder.stats.refresh();
            total = seeder.stats.stats().map_or(0, |s| s.total as u32);
        }
        if let Some(proc) = &mut seeder_proc {
            proc.check_alive().context("the seeder died")?;
            let _ = seeder.stats.refresh();
            let up = seeder.stats.stats().map_or(0, |s| s.uploaded);
            if up >= leave_at && total > 0 {
                let (present, with_away) = held(&peers, &id, total);
                if let Some(proc) = seeder_proc.take() {
                    proc.stop().await;
                }
                let now = started.elapsed();
                exit = SeederExit {
                    at: Some(now),
                    uploaded: up,
                    total,
                    held_present: present,
                    held_with_away: with_away,
                    min_held_after: with_away,
                    first_gap: None,
                    lost_for_good: false,
                };
                eprintln!(
                    "testnet: {:>6.1} s  the seeder leaves after uploading {:.2} copies; resume states say the swarm holds at least {with_away}/{total} chunks ({present} on peers online)",
                    secs(now),
                    up as f64 / cfg.size.0 as f64
                );
                next_check = now + Duration::from_secs(1);
            }
        } else if now >= next_check && exit.at.is_some() {
            next_check = now + Duration::from_secs(1);
            let (present, with_away) = held(&peers, &id, total);
            let left_at = exit.at.unwrap_or_default();
            if now < left_at + SETTLE {
                // Resume states lag by up to a save interval, and chunks the
                // seeder sent last may still be landing: no new distinct chunk
                // enters the swarm after it left, so the best reading of this
                // window is what the swarm held.
                exit.held_present = exit.held_present.max(present);
                exit.held_with_away = exit.held_with_away.max(with_away);
                exit.min_held_after = exit.held_with_away;
            } else {
                exit.min_held_after = exit.min_held_after.min(with_away);
                if with_away < total && exit.first_gap.is_none() {
                    exit.first_gap = Some(now);
                    eprintln!(
                        "testnet: {:>6.1} s  the swarm holds only {with_away}/{total} chunks",
                        secs(now)
                    );
                }
                // Nobody away can bring the missing chunks back: no leecher
                // still downloading can finish, so waiting for the timeout
                // would only measure the timeout.
                let none_away = !peers.iter().any(|p| matches!(p.state, State::Away { .. }));
                short_checks = if with_away < total && none_away {
                    short_checks + 1
                } else {
                    0
                };
                if short_checks >= 3 {
                    eprintln!(
                        "testnet: {:>6.1} s  the swarm lost {} chunks for good (no holder online or away); ending the run",
                        secs(now),
                        total - with_away
                    );
                    exit.lost_for_good = true;
                    break;
                }
            }
        }
        let finished = peers.iter().all(|p| p.done() || p.row.exited.is_some());
        if finished {
            break;
        }
        if now >= next_note {
            next_note = now + Duration::from_secs(10);
            let done = peers.iter().filter(|p| p.done()).count();
            eprintln!(
                "testnet: {:>6.1} s  {done}/{} leechers done",
                secs(now),
                peers.len()
            );
        }
        if now > cfg.timeout {
            eprintln!(
                "testnet: timed out after {}; leechers not done are reported as such",
                units::secs(cfg.timeout)
            );
            break;
        }
    }
    let ended = started.elapsed();
    // Everyone still online leaves now; their final stats are on disk.
    for p in peers.iter_mut() {
        if let State::Running(proc) = std::mem::replace(&mut p.state, State::Gone) {
            proc.stop().await;
            p.row.online_at_end = true;
        }
    }
    if let Some(proc) = seeder_proc.take() {
        proc.stop().await;
    }
    boot_proc.stop().await;
    let _ = seeder.stats.refresh();
    let seeder_uploaded = seeder.stats.stats().map_or(0, |s| s.uploaded);
    eprintln!("testnet: verifying copies");
    for p in peers.iter_mut() {
        let _ = p.stats.refresh();
        p.row.uploaded = p.stats.stats().map_or(0, |s| s.uploaded);
        p.row.downloaded = p.stats.stats().map_or(0, |s| s.downloaded);
        if let Some(path) = p.row.path.clone() {
            let sha = tokio::task::spawn_blocking(move || datagen::sha256_file(&path)).await??;
            p.row.verified = Some(sha == source_sha256);
        }
    }
    let report = ChurnReport {
        config: cfg.clone(),
        peers: peers.into_iter().map(|p| p.row).collect(),
        seeder: exit,
        seeder_uploaded,
        ended,
    };
    // Copies are bulky; keep them only when one is wrong.
    if report.peers.iter().all(|r| r.verified != Some(false)) {
        for r in &report.peers {
            if let Some(path) = &r.path {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    Ok(report)
}

/// Chunks the swarm holds: on leechers online now, and counting the saved
/// data of those away (they come back with it).
fn held(peers: &[Peer], id: &ContentId, total: u32) -> (u32, u32) {
    let mut online: Vec<Bitfield> = Vec::new();
    let mut away: Vec<Bitfield> = Vec::new();
    for p in peers {
        let set = || {
            if p.done() {
                Bitfield::full(total)
            } else {
                held::partial(&p.out, id, total)
            }
        };
        match p.state {
            State::Running(_) => online.push(set()),
            State::Away { .. } => away.push(set()),
            State::Waiting | State::Gone => {}
        }
    }
    (
        held::union_count(total, &online),
        held::union_count(total, online.iter().chain(&away)),
    )
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

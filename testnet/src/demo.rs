//! `testnet demo`: one file spreading through a loopback swarm, end to end.
//!
//! A bootstrap node, a seeder sharing a generated file, and N leechers
//! fetching it at once; live progress from the nodes' stats files; then the
//! distribution time, who uploaded how much, and a SHA-256 check of every
//! copy against the source.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use protocol::ContentId;

use crate::datagen;
use crate::loopback::{self, Args, NodeFiles};
use crate::procs::{self, Supervisor};
use crate::stats::StatsFile;
use crate::swarm::{self, Leecher};
use crate::timeline::Timeline;
use crate::units::{self, ByteSize};

pub use crate::report::{NodeReport, Report};

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
    let name = format!("kadswarm-demo-{}.bin", cfg.size);
    let (source_dir, source, source_sha256) =
        datagen::generate_source(run, &name, cfg.size.0, cfg.seed).await?;

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
    swarm::wait_connected(sup, &mut seeder_stats).await?;

    // Leechers, all at once.
    let mut peers = Vec::with_capacity(cfg.leechers);
    eprintln!("testnet: starting {} leechers", cfg.leechers);
    let started = Instant::now();
    let mut timeline = Timeline::create(&run.join("timeline.csv"), started)?;
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
        peers.push(Leecher::new(name, id, files.stats, out));
    }

    let distribution = swarm::watch(
        sup,
        &mut seeder_stats,
        &mut peers,
        started,
        cfg.timeout,
        &mut timeline,
    )
    .await?;
    let finished_at = SystemTime::now();
    eprintln!(
        "testnet: all {} leechers done in {}",
        cfg.leechers,
        units::secs(distribution)
    );
    swarm::settle_stats(&mut seeder_stats, &mut peers, finished_at).await;

    eprintln!("testnet: stopping nodes");
    sup.shutdown(procs::GRACE, std::future::pending()).await;

    let nodes = swarm::collect(&seeder_stats, &peers).await?;
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

/// Deletes the bulk data of a successful run; logs and stats stay.
fn remove_data<'a>(source_dir: &'a Path, outs: impl Iterator<Item = &'a Path>) {
    for dir in std::iter::once(source_dir).chain(outs) {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("testnet: warning: cannot remove {}: {e}", dir.display());
        }
    }
}

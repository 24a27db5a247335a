//! `testnet incentives` (root): does tit-for-tat reward uploaders? In a
//! namespace testbed like `distribution`'s, leechers in upload classes (tc
//! caps, e.g. ¼ at 2, ½ at 8, ¼ at 32 Mbit/s) plus free riders (`node
//! --no-upload`) fetch one file from a seeder, all starting together; the
//! swarm runs once per choking policy (`node --choke`, every node), and
//! again for `--runs` rounds. Every copy is checked against the source's
//! SHA-256; download times go to a CSV, mean times per class and policy to a
//! chart.

pub mod chart;
pub mod cli;
pub mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::datagen;
use crate::loopback::NodeFiles;
use crate::netns::{Caps, Shaping, Testbed};
use crate::nsnode::{self, NodeFlags};
use crate::procs::{self, Supervisor};
use crate::swarm::{self, Leecher};
use crate::timeline::Timeline;
use crate::units::{ByteSize, Rate};

pub use report::{ClassMean, LeecherRow};

/// One upload class: how many leechers and their upload cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Leechers in the class.
    pub count: usize,
    /// Their upload cap.
    pub upload: Rate,
}

/// Parameters of the experiment.
#[derive(Clone, Debug)]
pub struct IncentivesConfig {
    /// The upload classes.
    pub classes: Vec<Class>,
    /// Free riders (`--no-upload`: they send no chunks).
    pub free_riders: usize,
    /// The free riders' uplink cap: it carries their requests and TCP
    /// acknowledgements, which an uncapped uplink would speed up unfairly.
    pub free_rider_upload: Rate,
    /// The seeder's upload cap.
    pub server_upload: Rate,
    /// File size F.
    pub size: ByteSize,
    /// Choking policies to run, as `node --choke` spells them.
    pub policies: Vec<String>,
    /// Rounds: each runs every policy once.
    pub runs: usize,
    /// Leechers exit on finishing (`get --no-seed`) instead of seeding on.
    pub leave_when_done: bool,
    /// tbf burst and latency.
    pub shaping: Shaping,
    /// Seed of the file's contents.
    pub seed: u64,
    /// Give up a run after this long.
    pub timeout: Duration,
}

impl IncentivesConfig {
    /// Every leecher's class label and upload class, free riders last
    /// (`None`, label `free rider`; their link cap is `free_rider_upload`).
    pub fn leechers(&self) -> Vec<(String, Option<Rate>)> {
        let mut out = Vec::new();
        for c in &self.classes {
            for _ in 0..c.count {
                out.push((class_label(Some(c.upload)), Some(c.upload)));
            }
        }
        for _ in 0..self.free_riders {
            out.push((class_label(None), None));
        }
        out
    }
}

/// `8 Mbit/s`, or `free rider`.
pub fn class_label(upload: Option<Rate>) -> String {
    upload.map_or("free rider".to_string(), |u| u.to_string())
}

/// Runs every round and policy with `bin` in `run`, rewriting
/// `incentives.csv` and the chart after each; returns every leecher's row.
pub async fn run(
    bin: &Path,
    run: &Path,
    cfg: &IncentivesConfig,
) -> anyhow::Result<Vec<LeecherRow>> {
    if cfg.leechers().is_empty() {
        bail!("no leechers: give --classes and/or --free-riders");
    }
    let name = format!("kadswarm-{}.bin", cfg.size);
    let (source_dir, source, sha) =
        datagen::generate_source(run, &name, cfg.size.0, cfg.seed).await?;
    let mut rows = Vec::new();
    for round in 1..=cfg.runs {
        for policy in &cfg.policies {
            let dir = run.join(format!("run{round}-{policy}"));
            std::fs::create_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            eprintln!("testnet: round {round} of {}, --choke {policy}", cfg.runs);
            let mut bed = Testbed::create(cfg.shaping)?;
            let result = one(bin, &mut bed, &dir, cfg, policy, round, &source, &sha).await;
            let teardown = bed.teardown();
            let got = result.with_context(|| {
                format!(
                    "round {round} --choke {policy} failed (logs in {})",
                    dir.display()
                )
            })?;
            teardown?;
            rows.extend(got);
            report::write_csv(&run.join("incentives.csv"), cfg, &rows)?;
            chart::write(&run.join("incentives"), cfg, &report::means(cfg, &rows))?;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&source_dir) {
        eprintln!(
            "testnet: warning: cannot remove {}: {e}",
            source_dir.display()
        );
    }
    Ok(rows)
}

/// One swarm under one policy; every copy must verify.
#[allow(clippy::too_many_arguments)]
async fn one(
    bin: &Path,
    bed: &mut Testbed,
    dir: &Path,
    cfg: &IncentivesConfig,
    policy: &str,
    round: usize,
    source: &Path,
    sha: &str,
) -> anyhow::Result<Vec<LeecherRow>> {
    let flags: NodeFlags = vec![("--choke".to_string(), policy.to_string())];
    let (boot_proc, boot) = nsnode::start_bootstrap(bin, bed, dir, &flags).await?;
    let mut seeder = nsnode::start_seeder(
        bin,
        bed,
        dir,
        nsnode::Share {
            source,
            size: cfg.size,
            upload: cfg.server_upload,
        },
        &boot,
        &flags,
    )
    .await?;
    let plan = cfg.leechers();
    let mut slots = Vec::with_capacity(plan.len());
    for (k, (_, cap)) in plan.iter().enumerate() {
        let caps = Caps {
            upload: Some(cap.unwrap_or(cfg.free_rider_upload)),
            download: None,
        };
        slots.push(bed.add_node(&format!("leecher-{}", k + 1), caps)?);
    }
    let mut sup = Supervisor::new(bin.to_path_buf());
    let mut leechers = Vec::with_capacity(plan.len());
    let started = Instant::now();
    let mut timeline = Timeline::create(&dir.join("timeline.csv"), started)?;
    for (slot, (_, cap)) in slots.iter().zip(&plan) {
        let files = NodeFiles::create(dir, &slot.name)?;
        let out = nsnode::out_dir(&files)?;
        let mut args = nsnode::get_args(slot, &files, &out, &seeder.content_id, &boot, &flags);
        if cap.is_none() {
            args = args.flag("--no-upload");
        }
        if cfg.leave_when_done {
            args = args.flag("--no-seed");
        }
        let id = sup.spawn_in_netns(&slot.name, &slot.netns, args.as_slice(), &files.log)?;
        leechers.push(Leecher::new(slot.name.clone(), id, files.stats, out));
    }
    let result = if cfg.leave_when_done {
        watch_leaving(&mut sup, &mut leechers, started, cfg.timeout).await
    } else {
        swarm::watch(
            &mut sup,
            &mut seeder.stats,
            &mut leechers,
            started,
            cfg.timeout,
            &mut timeline,
        )
        .await
    };
    sup.shutdown(procs::GRACE, std::future::pending()).await;
    seeder.proc.stop().await;
    boot_proc.stop().await;
    let last = result?;
    eprintln!(
        "testnet: all {} leechers done in {:.1} s",
        leechers.len(),
        last.as_secs_f64()
    );
    // Final byte counts: every node rewrites its stats file on the way out.
    let _ = seeder.stats.refresh();
    for l in leechers.iter_mut() {
        let _ = l.stats.refresh();
    }
    let nodes = swarm::collect(&seeder.stats, &leechers).await?;
    let mut rows = Vec::new();
    for ((n, l), (class, cap)) in nodes.iter().skip(1).zip(&leechers).zip(&plan) {
        let verified = n.sha256.as_deref() == Some(sha);
        if !verified {
            bail!(
                "{}'s copy differs from the source (kept in {})",
                n.name,
                l.out.display()
            );
        }
        rows.push(LeecherRow {
            round,
            policy: policy.to_string(),
            name: n.name.clone(),
            class: class.clone(),
            upload: *cap,
            download_s: n.done.unwrap_or_default().as_secs_f64(),
            uploaded: n.stats.as_ref().map_or(0, |s| s.uploaded),
            downloaded: n.stats.as_ref().map_or(0, |s| s.downloaded),
            verified,
        });
        let _ = std::fs::remove_dir_all(&l.out);
    }
    Ok(rows)
}

/// Like [`swarm::watch`] for leechers that exit on finishing: each one's
/// printed path is its finish; its exit afterwards is expected.
async fn watch_leaving(
    sup: &mut Supervisor,
    peers: &mut [Leecher],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for p in peers.iter_mut().filter(|p| p.done.is_none()) {
            if let Some(line) = sup.try_line(p.id) {
                let path = std::path::PathBuf::from(line.text.trim());
                if !path.starts_with(&p.out) {
                    bail!("{} reported its copy outside its --out dir", p.name);
                }
                let at = line.at.saturating_duration_since(started);
                eprintln!("testnet: {} done after {:.1} s", p.name, at.as_secs_f64());
                p.done = Some((at, path));
            }
        }
        if peers.iter().all(|p| p.done.is_some()) {
            return Ok(peers
                .iter()
                .filter_map(|p| p.done.as_ref().map(|d| d.0))
                .max()
                .unwrap_or_default());
        }
        if started.elapsed() > timeout {
            let waiting: Vec<&str> = peers
                .iter()
                .filter(|p| p.done.is_none())
                .map(|p| p.name.as_str())
                .collect();
            bail!("timed out waiting for {}", waiting.join(", "));
        }
    }
}

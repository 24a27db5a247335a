//! `testnet nat`: its flags, and the loop over topologies and trials that
//! writes `nat.csv` and prints the summary.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::report::{self, Csv};
use super::trial::{self, Row, TrialConfig};
use super::Topology;
use crate::datagen;
use crate::netns;
use crate::units::ByteSize;

/// Flags of `testnet nat`.
#[derive(Clone, Debug, clap::Args)]
pub struct NatArgs {
    /// Trials per topology, each with fresh namespaces and processes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub trials: u32,
    /// Topologies to run, in order: cone-cone, cone-symmetric,
    /// symmetric-symmetric, swarm (seeder's NAT first).
    #[arg(long, value_delimiter = ',', num_args = 1..,
          default_values_t = Topology::ALL.to_vec())]
    pub topology: Vec<Topology>,
    /// Size of the shared file.
    #[arg(long, default_value = "4MiB")]
    pub size: ByteSize,
    /// NATed leechers in the swarm topology (cone and symmetric by turns);
    /// one public leecher joins them.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=40))]
    pub swarm_leechers: u16,
    /// Seconds the leechers of one trial may take before they count as failed.
    /// (The node's own provider search gives up after 60 s.)
    #[arg(long, default_value_t = 75, value_name = "SECS")]
    pub timeout: u64,
    /// Seed of the file's contents.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs every trial of every chosen topology in `run_dir` with the node
/// binary `bin`; exit 1 when a copy did not arrive intact.
pub async fn run(bin: &Path, run_dir: &Path, args: &NatArgs) -> anyhow::Result<ExitCode> {
    if !netns::is_root() {
        bail!("`testnet nat` needs root: it creates network namespaces and nftables NAT routers");
    }
    let source = run_dir.join("source.bin");
    let (s, size, seed) = (source.clone(), args.size.0, args.seed);
    let sha = tokio::task::spawn_blocking(move || datagen::generate(&s, size, seed))
        .await
        .context("generating the source file failed")??;
    let cfg = TrialConfig {
        source,
        source_sha256: sha,
        size: args.size,
        swarm_nated: usize::from(args.swarm_leechers),
        timeout: Duration::from_secs(args.timeout),
    };
    let csv_path = run_dir.join("nat.csv");
    let mut csv = Csv::create(&csv_path)?;
    let mut rows: Vec<Row> = Vec::new();
    let result = trials(bin, run_dir, args, &cfg, &mut csv, &mut rows).await;
    let table = report::render(&report::summarize(&rows));
    println!("\n{table}");
    let summary = run_dir.join("summary.txt");
    if let Err(e) = std::fs::write(&summary, &table) {
        eprintln!("testnet: warning: cannot write {}: {e}", summary.display());
    }
    eprintln!(
        "testnet: rows in {}; logs in {}",
        csv_path.display(),
        run_dir.display()
    );
    result?;
    let failed = rows.iter().filter(|r| !r.transfer_ok).count();
    if failed > 0 {
        eprintln!(
            "testnet: {failed} of {} copies did not arrive intact",
            rows.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn trials(
    bin: &Path,
    run_dir: &Path,
    args: &NatArgs,
    cfg: &TrialConfig,
    csv: &mut Csv,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    for &topology in &args.topology {
        for k in 1..=args.trials {
            let dir = run_dir.join(topology.as_str()).join(format!("trial-{k}"));
            let outcome = trial::run(bin, &dir, topology, k, cfg)
                .await
                .with_context(|| format!("{topology} trial {k} (files in {})", dir.display()))?;
            for r in &outcome.rows {
                eprintln!(
                    "testnet: {topology} {k}/{}: {} ({}) reserved={} direct={}{} copy={}{}",
                    args.trials,
                    r.leecher,
                    r.leecher_nat,
                    r.reserved,
                    r.direct,
                    r.time_to_direct_ms
                        .map_or(String::new(), |ms| format!(" after {ms} ms")),
                    if r.transfer_ok { "ok" } else { "FAILED" },
                    if r.error.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.error.lines().next().unwrap_or(""))
                    }
                );
            }
            csv.append(&outcome.rows)?;
            rows.extend(outcome.rows);
        }
    }
    Ok(())
}

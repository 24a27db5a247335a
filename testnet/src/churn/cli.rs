//! The `testnet churn` command line: flags to a [`ChurnConfig`], the run, the printed report.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::netns::Shaping;
use crate::units::{ByteSize, Rate};

use super::schedule::{self, PlanParams};
use super::ChurnConfig;

/// Flags of `testnet churn`.
#[derive(Debug, Args)]
pub struct ChurnArgs {
    /// Number of leechers (arrivals).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub leechers: u16,
    /// Poisson arrival rate, leechers per second.
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// Probability p that a leecher leaves as soon as its copy is verified
    /// (selfish); the others stay --stay seconds (altruistic).
    #[arg(long, default_value_t = 0.5)]
    pub selfish: f64,
    /// How long an altruistic leecher stays after finishing (T, seconds).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub stay: u64,
    /// Fraction of leechers that quit mid-download once and come back with
    /// their partial data (rounded to a count).
    #[arg(long, default_value_t = 0.25)]
    pub quitters: f64,
    /// A quitter quits once it holds this fraction of the chunks.
    #[arg(long, default_value_t = 0.5)]
    pub quit_at: f64,
    /// How long a quitter stays away (seconds).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub away: u64,
    /// The seeder leaves once it has uploaded this many copies of the file.
    #[arg(long, default_value_t = 1.25)]
    pub seeder_copies: f64,
    /// File size F.
    #[arg(long, default_value = "16MiB")]
    pub size: ByteSize,
    /// Upload cap of every leecher (tc tbf).
    #[arg(long, default_value = "8mbit", value_name = "RATE")]
    pub upload: Rate,
    /// Upload cap of the seeder.
    #[arg(long, default_value = "32mbit", value_name = "RATE")]
    pub server_upload: Rate,
    /// Download cap of every leecher. Default: uncapped.
    #[arg(long, value_name = "RATE")]
    pub download: Option<Rate>,
    /// Seed of the arrival plan (same seed, same arrivals, behaviours and quitters).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up on leechers still downloading this many seconds after the
    /// start. Default: the last arrival + --away + 120 s.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

impl ChurnArgs {
    /// The run these flags describe.
    pub fn config(&self) -> anyhow::Result<ChurnConfig> {
        for (name, v) in [
            ("--selfish", self.selfish),
            ("--quitters", self.quitters),
            ("--quit-at", self.quit_at),
        ] {
            if !(0.0..=1.0).contains(&v) {
                anyhow::bail!("{name} must be between 0 and 1, got {v}");
            }
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            anyhow::bail!("--rate must be above 0, got {}", self.rate);
        }
        if !(self.seeder_copies > 0.0 && self.seeder_copies.is_finite()) {
            anyhow::bail!("--seeder-copies must be above 0");
        }
        let plan = PlanParams {
            leechers: usize::from(self.leechers),
            rate: self.rate,
            selfish: self.selfish,
            quitters: self.quitters,
            seed: self.seed,
        };
        let last = schedule::plan(&plan)
            .last()
            .map_or(Duration::ZERO, |a| a.at);
        let timeout = match self.timeout {
            Some(s) => Duration::from_secs(s),
            None => last + Duration::from_secs(self.away + 120),
        };
        Ok(ChurnConfig {
            plan,
            stay: Duration::from_secs(self.stay),
            quit_at: self.quit_at,
            away: Duration::from_secs(self.away),
            seeder_copies: self.seeder_copies,
            size: self.size,
            upload: self.upload,
            server_upload: self.server_upload,
            download: self.download,
            shaping: Shaping::default(),
            file_seed: 1,
            timeout,
        })
    }
}

/// Runs `testnet churn` and prints its report; exit 1 if any copy differs
/// or the swarm held every chunk and still left a leecher without a copy.
pub async fn run(bin: &Path, run: &Path, args: &ChurnArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let report = super::run(bin, run, &cfg).await?;
    print!("\n{}", report.render());
    eprintln!(
        "testnet: wrote {}, {} and {}",
        run.join("churn.csv").display(),
        run.join("churn.svg").display(),
        run.join("churn.png").display()
    );
    let broken = report.seeder.swarm_held_everything() && !report.survived();
    if report.mismatches() > 0 || broken {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! The `testnet incentives` command line: flags to an [`IncentivesConfig`], the runs, the table.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::netns::Shaping;
use crate::units::{ByteSize, Rate};

use super::{Class, IncentivesConfig};

/// Flags of `testnet incentives`.
#[derive(Debug, Args)]
pub struct IncentivesArgs {
    /// Upload classes as COUNT:RATE, comma-separated (tc caps on the leechers' uplinks).
    #[arg(long, default_value = "3:2mbit,6:8mbit,3:32mbit", value_delimiter = ',', value_parser = parse_class)]
    pub classes: Vec<Class>,
    /// Free riders: leechers run with `node --no-upload`.
    #[arg(long, default_value_t = 2)]
    pub free_riders: usize,
    /// The free riders' uplink cap (it carries their requests and TCP
    /// acknowledgements, not chunks).
    #[arg(long, default_value = "8mbit", value_name = "RATE")]
    pub free_rider_upload: Rate,
    /// The seeder's upload cap.
    #[arg(long, default_value = "16mbit", value_name = "RATE")]
    pub server_upload: Rate,
    /// File size F.
    #[arg(long, default_value = "16MiB")]
    pub size: ByteSize,
    /// Choking policies to compare (`node --choke`, given to every node).
    #[arg(long, value_delimiter = ',', default_values_t = ["tit-for-tat".to_string(), "unchoke-all".to_string()],
          value_parser = ["tit-for-tat", "unchoke-all"])]
    pub choke: Vec<String>,
    /// Rounds: each runs every policy once; the table and chart show the
    /// median of the rounds' class means.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub runs: u16,
    /// Leechers exit once their copy is verified (`get --no-seed`) instead
    /// of seeding on: finished peers then stop serving everyone alike.
    #[arg(long)]
    pub leave_when_done: bool,
    /// Seed of the file's contents.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up a run after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
}

/// `COUNT:RATE`, e.g. `3:8mbit`.
fn parse_class(s: &str) -> Result<Class, String> {
    let (n, r) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not COUNT:RATE (e.g. 3:8mbit)"))?;
    let count: usize = n
        .trim()
        .parse()
        .map_err(|e| format!("bad count in {s:?}: {e}"))?;
    let upload: Rate = r
        .trim()
        .parse()
        .map_err(|e| format!("bad rate in {s:?}: {e}"))?;
    Ok(Class { count, upload })
}

impl IncentivesArgs {
    /// The experiment these flags describe.
    pub fn config(&self) -> IncentivesConfig {
        IncentivesConfig {
            classes: self.classes.clone(),
            free_riders: self.free_riders,
            free_rider_upload: self.free_rider_upload,
            server_upload: self.server_upload,
            size: self.size,
            policies: self.choke.clone(),
            runs: usize::from(self.runs),
            leave_when_done: self.leave_when_done,
            shaping: Shaping::default(),
            seed: self.seed,
            timeout: Duration::from_secs(self.timeout),
        }
    }
}

/// Runs `testnet incentives` and prints the table (any copy that differs fails the run).
pub async fn run(bin: &Path, run: &Path, args: &IncentivesArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config();
    let rows = super::run(bin, run, &cfg).await?;
    let means = super::report::means(&cfg, &rows);
    print!("\n{}", super::report::render(&cfg, &means));
    println!(
        "{} copies, all verified against the source's SHA-256",
        rows.len()
    );
    eprintln!(
        "testnet: wrote {}, {} and {}",
        run.join("incentives.csv").display(),
        run.join("incentives.svg").display(),
        run.join("incentives.png").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_as_count_and_rate() {
        assert_eq!(
            parse_class("3:8mbit"),
            Ok(Class {
                count: 3,
                upload: Rate(8_000_000)
            })
        );
        assert!(parse_class("8mbit").is_err());
        assert!(parse_class("x:8mbit").is_err());
        assert!(parse_class("3:fast").is_err());
    }
}

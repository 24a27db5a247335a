//! The `testnet sim` command line: flags to a [`SimConfig`] per run, the runs,
//! and their files (per-peer CSVs, a sweep CSV and a chart over N).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use protocol::choker::ChokePolicy;
use protocol::picker::PickPolicy;

use crate::units::{ByteSize, Rate};

use super::chart::{self, Series};
use super::config::{Arrivals, Class, Departure, SimConfig};
use super::report;

/// Piece-picking policy, as spelled on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pick {
    /// Rarest first (the node's policy).
    RarestFirst,
    /// Uniformly at random.
    Random,
    /// Lowest index first.
    Sequential,
}

impl From<Pick> for PickPolicy {
    fn from(p: Pick) -> Self {
        match p {
            Pick::RarestFirst => PickPolicy::RarestFirst,
            Pick::Random => PickPolicy::Random,
            Pick::Sequential => PickPolicy::Sequential,
        }
    }
}

/// Choking policy, as spelled on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Choke {
    /// Tit-for-tat with an optimistic unchoke (the node's policy).
    TitForTat,
    /// Unchoke every interested peer.
    UnchokeAll,
}

impl From<Choke> for ChokePolicy {
    fn from(c: Choke) -> Self {
        match c {
            Choke::TitForTat => ChokePolicy::TitForTat,
            Choke::UnchokeAll => ChokePolicy::UnchokeAll,
        }
    }
}

/// Flags of `testnet sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Swarm sizes N (leechers besides the seeder); several run one after another
    /// and are charted against N, e.g. `--peers 10,30,100,300,1000,3000,10000`.
    #[arg(long, value_name = "N", num_args = 1.., value_delimiter = ',', default_values_t = [10_000usize])]
    pub peers: Vec<usize>,
    /// File size F.
    #[arg(long, default_value = "16MiB")]
    pub size: ByteSize,
    /// Chunk size. Default: the node's choice for F (32 KiB for 16 MiB).
    #[arg(long)]
    pub chunk_size: Option<ByteSize>,
    /// Upload cap u of every leecher (unless --classes is given).
    #[arg(long, default_value = "8mbit", value_name = "RATE")]
    pub upload: Rate,
    /// Upload classes instead of one u: `weight:rate` pairs, e.g. `1:2mbit,2:8mbit,1:32mbit`.
    #[arg(long, value_name = "CLASSES", value_delimiter = ',', num_args = 1..)]
    pub classes: Vec<String>,
    /// Fraction of leechers that are free riders (uploads disabled, as `node --no-upload`).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub free_riders: f64,
    /// Seeder upload u_s. Default: 10 × the mean leecher upload.
    #[arg(long, value_name = "RATE")]
    pub server_upload: Option<Rate>,
    /// Download cap of every leecher. Default: uncapped.
    #[arg(long, value_name = "RATE")]
    pub download: Option<Rate>,
    /// One-way latency of every message and chunk, in milliseconds.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub latency_ms: u64,
    /// Extra bytes each chunk costs its uploader's link, per payload byte:
    /// TCP/IP/Ethernet headers and the receiver's ACKs. 0 is the textbook's
    /// fluid model; 0.068 is TCP over a 1500-byte MTU as on the namespace
    /// testbed (66 B per 1448 B segment, plus a 66 B ACK per two segments).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub wire_overhead: f64,
    /// Peers each leecher dials on arrival, besides the seeder (the node's wanted_peers).
    #[arg(long, default_value_t = node::engine::config::EngineConfig::default().wanted_peers)]
    pub neighbours: usize,
    /// Leechers arrive as a Poisson process at this rate (per second) instead of all at once.
    #[arg(long, value_name = "PER_SEC")]
    pub arrival_rate: Option<f64>,
    /// Chance that a finished leecher leaves at once (otherwise it stays --stay seconds).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub leave_prob: f64,
    /// Seconds a finished leecher that does not leave at once keeps seeding. Default: to the end.
    #[arg(long, value_name = "SECS")]
    pub stay: Option<f64>,
    /// Piece-picking policies to run (each a separate run).
    #[arg(long, value_enum, num_args = 1.., value_delimiter = ',', default_values_t = [Pick::RarestFirst])]
    pub pick: Vec<Pick>,
    /// Choking policies to run (each a separate run).
    #[arg(long, value_enum, num_args = 1.., value_delimiter = ',', default_values_t = [Choke::TitForTat])]
    pub choke: Vec<Choke>,
    /// Seed of every random choice: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop a run at this virtual time (seconds).
    #[arg(long, default_value_t = 86_400.0, value_name = "SECS")]
    pub time_limit: f64,
    /// Folder for the CSVs and the chart.
    #[arg(long, default_value = "sim-results", value_name = "DIR")]
    pub out: PathBuf,
    /// Simulate nothing: redraw <out>/sim.svg from <out>/sim-sweep.csv (for
    /// the bounds, give the same --size, --upload and --server-upload).
    #[arg(long)]
    pub chart_only: bool,
}

impl SimArgs {
    /// The run for `peers` leechers with policies `pick` and `choke`.
    pub fn config(&self, peers: usize, pick: Pick, choke: Choke) -> anyhow::Result<SimConfig> {
        let mut config = SimConfig::flash_crowd(peers);
        config.size = self.size.0;
        config.chunk_size = match self.chunk_size {
            Some(c) => Some(u32::try_from(c.0).context("--chunk-size is too large")?),
            None => None,
        };
        config.classes = if self.classes.is_empty() {
            vec![Class {
                weight: 1.0,
                upload: Some(self.upload),
            }]
        } else {
            self.classes
                .iter()
                .map(|c| parse_class(c))
                .collect::<anyhow::Result<_>>()?
        };
        anyhow::ensure!(
            (0.0..1.0).contains(&self.free_riders),
            "--free-riders must be a fraction in [0, 1)"
        );
        if self.free_riders > 0.0 {
            let others: f64 = config.classes.iter().map(|c| c.weight).sum();
            config.classes.push(Class {
                weight: others * self.free_riders / (1.0 - self.free_riders),
                upload: None,
            });
        }
        config.server_upload = self
            .server_upload
            .unwrap_or(Rate((10.0 * config.mean_upload()).round() as u64));
        config.download = self.download;
        config.latency = Duration::from_millis(self.latency_ms);
        anyhow::ensure!(
            (0.0..1.0).contains(&self.wire_overhead),
            "--wire-overhead must be a fraction in [0, 1)"
        );
        config.wire_overhead = self.wire_overhead;
        config.neighbours = self.neighbours;
        if let Some(per_sec) = self.arrival_rate {
            anyhow::ensure!(per_sec > 0.0, "--arrival-rate must be positive");
            config.arrivals = Arrivals::Poisson { per_sec };
        }
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.leave_prob),
            "--leave-prob must be in [0, 1]"
        );
        config.departure = Departure {
            leave_prob: self.leave_prob,
            stay: self.stay.map(Duration::from_secs_f64),
        };
        config.pick = pick.into();
        config.choke = choke.into();
        config.seed = self.seed;
        config.time_limit = Duration::from_secs_f64(self.time_limit.max(0.0));
        Ok(config)
    }
}

/// `weight:rate`, e.g. `2:8mbit`.
fn parse_class(s: &str) -> anyhow::Result<Class> {
    let (w, r) = s
        .split_once(':')
        .with_context(|| format!("upload class {s:?}: expected weight:rate, e.g. 2:8mbit"))?;
    let weight: f64 = w
        .trim()
        .parse()
        .with_context(|| format!("upload class {s:?}: weight {w:?} is not a number"))?;
    let upload: Rate = r
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("upload class {s:?}: rate {r:?}: {e}"))?;
    Ok(Class {
        weight,
        upload: Some(upload),
    })
}

/// Runs every requested simulation, prints a summary line each, writes the files.
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if args.chart_only {
        redraw(args)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output folder {}", args.out.display()))?;
    let mut sweep = String::from(
        "n,pick,choke,distribution_s,p2p_bound_s,cs_bound_s,ratio,mean_download_s,finished\n",
    );
    let mut series: Vec<Series> = Vec::new();
    let mut all_finished = true;
    let mut first_params = None;
    for &pick in &args.pick {
        for &choke in &args.choke {
            let mut points = Vec::new();
            for &n in &args.peers {
                let config = args.config(n, pick, choke)?;
                let started = Instant::now();
                let outcome = super::run(&config)?;
                let wall = started.elapsed();
                let csv_path = args.out.join(file_name(n, pick, choke));
                write(&csv_path, &report::csv(&config, &outcome))?;
                println!("{}", report::summary(&config, &outcome));
                println!("  {}", report::uplink_summary(&outcome));
                let uplinks_path = csv_path.with_extension("uplinks.csv");
                write(&uplinks_path, &report::uplinks_csv(&outcome))?;
                if config.classes.len() > 1 {
                    for (label, count, mean) in report::mean_by_class(&config, &outcome) {
                        let mean = mean.map_or("-".into(), |m| format!("{m:.3} s"));
                        println!("  class {label}: {count} peers, mean download time {mean}");
                    }
                }
                let c = &outcome.counters;
                eprintln!(
                    "testnet sim: N={n} took {:.2} s of wall time ({} events: {} haves, {} requests, {} timers; {} chunks stored, {} duplicates, {} choked, {} refused); per-peer CSV in {}",
                    wall.as_secs_f64(),
                    c.events,
                    c.haves,
                    c.requests,
                    c.timers,
                    c.stored,
                    c.duplicates,
                    c.choked,
                    c.refused,
                    csv_path.display()
                );
                let params = report::bound(&config);
                first_params.get_or_insert(params);
                let finished = outcome.peers.iter().filter(|p| p.finish.is_some()).count();
                all_finished &= finished == n;
                let d = report::distribution_time(&outcome);
                let mean = report::mean_download(&outcome);
                let fmt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
                let _ = writeln!(
                    sweep,
                    "{n},{},{},{},{:.6},{:.6},{},{},{finished}",
                    pick_name(pick),
                    choke_name(choke),
                    fmt(d),
                    params.p2p(),
                    params.client_server(),
                    fmt(d.map(|d| d / params.p2p())),
                    fmt(mean),
                );
                if let Some(d) = d {
                    points.push((n, d));
                }
            }
            series.push(Series {
                label: format!("simulated: {}, {}", pick_name(pick), choke_name(choke)),
                points,
            });
        }
    }
    if args.peers.len() > 1 || args.pick.len() * args.choke.len() > 1 {
        write(&args.out.join("sim-sweep.csv"), &sweep)?;
    }
    if args.peers.len() > 1 {
        if let Some(params) = first_params {
            let n_min = args.peers.iter().copied().min().unwrap_or(1);
            let n_max = args.peers.iter().copied().max().unwrap_or(1);
            let svg = args.out.join("sim.svg");
            chart::write_svg(&svg, params, n_min, n_max, &series)?;
            eprintln!("testnet sim: chart in {}", svg.display());
        }
    }
    Ok(if all_finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Redraws the chart from a sweep CSV this command wrote earlier.
fn redraw(args: &SimArgs) -> anyhow::Result<()> {
    let path = args.out.join("sim-sweep.csv");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; run a sweep into --out first",
            path.display()
        )
    })?;
    let mut series: Vec<Series> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(n), Some(pick), Some(choke), Some(d)) = (f.first(), f.get(1), f.get(2), f.get(3))
        else {
            anyhow::bail!("{}: malformed line {line:?}", path.display());
        };
        let (Ok(n), Ok(d)) = (n.parse::<usize>(), d.parse::<f64>()) else {
            continue; // an unfinished run has no distribution time
        };
        let label = format!("simulated: {pick}, {choke}");
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push((n, d)),
            None => series.push(Series {
                label,
                points: vec![(n, d)],
            }),
        }
    }
    let ns = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (n_min, n_max) = (ns.clone().min().unwrap_or(1), ns.max().unwrap_or(2));
    let config = args.config(n_min, Pick::RarestFirst, Choke::TitForTat)?;
    let svg = args.out.join("sim.svg");
    chart::write_svg(&svg, report::bound(&config), n_min, n_max, &series)?;
    eprintln!("testnet sim: chart in {}", svg.display());
    Ok(())
}

fn pick_name(p: Pick) -> &'static str {
    match p {
        Pick::RarestFirst => "rarest-first",
        Pick::Random => "random",
        Pick::Sequential => "sequential",
    }
}

fn choke_name(c: Choke) -> &'static str {
    match c {
        Choke::TitForTat => "tit-for-tat",
        Choke::UnchokeAll => "unchoke-all",
    }
}

fn file_name(n: usize, pick: Pick, choke: Choke) -> String {
    format!("sim-n{n}-{}-{}.csv", pick_name(pick), choke_name(choke))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn config_of(args: &[&str]) -> anyhow::Result<SimConfig> {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))?;
        cli.sim.config(10, Pick::RarestFirst, Choke::TitForTat)
    }

    #[test]
    fn wire_overhead_outside_zero_to_one_is_refused() {
        for bad in ["1", "1.5", "-0.1", "NaN", "inf"] {
            let flag = format!("--wire-overhead={bad}");
            let err = config_of(&[&flag]).expect_err(bad);
            assert!(err.to_string().contains("--wire-overhead"), "{bad}: {err}");
        }
        assert_eq!(config_of(&[]).unwrap().wire_overhead, 0.0);
        let c = config_of(&["--wire-overhead", "0.068"]).unwrap();
        assert!((c.wire_overhead - 0.068).abs() < 1e-12);
    }
}

//! `testnet`: run many kadswarm nodes on one machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use testnet::chart::TimeAxis;
use testnet::demo::{self, DemoConfig};
use testnet::distribution::{self, DistributionConfig};
use testnet::netns::{self, Shaping};
use testnet::nsrun::Mode;
use testnet::procs::{self, Signals, Supervisor};
use testnet::units::{ByteSize, Rate};
use testnet::{loopback, nodebin, rundir};

/// Run many kadswarm nodes on one machine: loopback swarms (no root needed),
/// a demo of one file spreading through a swarm, and the distribution-time
/// experiment in network namespaces (root).
///
/// Every node is a real `node` process with its own data dir, log (its
/// stderr) and stats file in a run folder. Loopback nodes listen on 127.0.0.1
/// only; namespace nodes only on private addresses inside namespaces testnet
/// creates. Processes are stopped by PID, namespaces deleted, on exit, error,
/// Ctrl-C and panic.
#[derive(Debug, Parser)]
#[command(name = "testnet", version)]
struct Cli {
    /// The kadswarm node binary. Default: `node` next to this executable,
    /// built with `cargo build --release -p node` when missing (and
    /// refreshed that way under `cargo run`). Never looked up on PATH,
    /// where `node` is usually Node.js.
    #[arg(long, global = true, value_name = "PATH")]
    node_bin: Option<PathBuf>,

    /// Folder for this run's node data dirs, logs and stats files; must be
    /// absent or empty. Default: a new testnet-runs/<UTC time>-<command>/.
    #[arg(long, global = true, value_name = "DIR")]
    run_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a bootstrap node and N nodes joined to it on 127.0.0.1, print
    /// their addresses (`<name> <multiaddr>`, also saved to addresses.txt in
    /// the run folder) and keep them running until Ctrl-C.
    Up {
        /// Number of nodes besides the bootstrap node.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=200))]
        nodes: u16,
        /// Milliseconds between two nodes' starts (a node that has not
        /// reached the bootstrap node yet holds the next one back). 0 starts
        /// them back to back.
        #[arg(long, default_value_t = loopback::JOIN_INTERVAL.as_millis() as u64, value_name = "MS")]
        join_interval: u64,
    },
    /// Spread a generated file from one seeder to N leechers on 127.0.0.1 and
    /// report the distribution time, the bytes each node uploaded and
    /// downloaded, and the SHA-256 of every copy (exit 1 if any differs).
    Demo {
        /// Number of leechers, started together.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=100))]
        leechers: u16,
        /// Size of the generated file (e.g. 64MiB, 500k, 1GiB).
        #[arg(long, default_value = "64MiB")]
        size: ByteSize,
        /// Upload cap of the seeder, passed to `node --max-upload` (e.g. 8mbit, 2MiB). Default: unlimited.
        #[arg(long, value_name = "RATE", value_parser = node_rate)]
        seed_upload: Option<String>,
        /// Upload cap of each leecher, passed to `node --max-upload`. Default: unlimited.
        #[arg(long, value_name = "RATE", value_parser = node_rate)]
        leecher_upload: Option<String>,
        /// Seed of the file's pseudo-random contents (same seed, same bytes).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up if the leechers are not all done after this many seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
        /// Keep the generated file and the downloaded copies (by default they
        /// are deleted after a successful run; logs and stats always stay).
        #[arg(long)]
        keep_data: bool,
    },
    /// Measure distribution time against the textbook bounds (root: Linux
    /// network namespaces, `tc tbf` caps).
    ///
    /// For each N, a bootstrap node, a seeder capped at --server-upload and N
    /// leechers capped at --upload (and --download) run, each in its own
    /// network namespace on one private bridge, once in P2P mode and once in
    /// client-server mode (leechers run with --no-upload). The time runs from
    /// starting the leechers until all N have printed their verified copy;
    /// every copy's SHA-256 is checked. Bounds (F in bits):
    /// D_cs = max(N·F/u_s, F/d_min), D_p2p = max(F/u_s, F/d_min, N·F/(u_s + N·u)).
    /// Writes distribution.csv, distribution.svg and distribution.png to the
    /// run folder and prints measured/bound per run.
    ///
    /// Example (the benchmark, bound 9.32 s):
    /// testnet distribution --n 5 --modes p2p --size 16MiB --upload 8mbit --server-upload 32mbit
    ///
    /// The textbook figure (u_s = 10u, N up to 35, time in units of F/u):
    /// testnet distribution --textbook
    Distribution {
        /// Swarm sizes N (leechers), e.g. `--n 1 2 4 8` or `--n 5`.
        /// Default: 1 2 4 8 16 24 32; with --textbook 1 2 3 4 5 7 10 15 20 25 30 35.
        #[arg(long = "n", value_name = "N", num_args = 1.., value_delimiter = ',')]
        peers: Option<Vec<usize>>,
        /// The textbook figure: u_s = 10u (so --server-upload is refused),
        /// N up to 35, and a chart whose time axis is in units of F/u (the
        /// time one peer takes to upload the file; an hour in the book).
        #[arg(long, conflicts_with = "server_upload")]
        textbook: bool,
        /// Modes to run for each N, in order: p2p, cs (client-server).
        #[arg(long, value_name = "MODE", num_args = 1.., value_delimiter = ',',
              default_values_t = [Mode::P2p, Mode::ClientServer])]
        modes: Vec<Mode>,
        /// File size F (e.g. 16MiB, 64MiB).
        #[arg(long, default_value = "16MiB")]
        size: ByteSize,
        /// Chunk size, passed to `node share --chunk-size` (a power of two,
        /// e.g. 256KiB). Default: the node's choice.
        #[arg(long)]
        chunk_size: Option<ByteSize>,
        /// Runtime worker threads of each node (`node --threads`), for
        /// experiments. Default: the node's own choice (no flag passed); 0
        /// means the same. Whatever a run passes shows in the CSV's `flags`.
        #[arg(long, value_name = "N")]
        node_threads: Option<u16>,
        /// Upload cap u of every leecher (tc tbf; e.g. 8mbit, 1MiB).
        #[arg(long, default_value = "8mbit", value_name = "RATE")]
        upload: Rate,
        /// Upload cap u_s of the seeder.
        #[arg(long, default_value = "32mbit", value_name = "RATE")]
        server_upload: Rate,
        /// Download cap d_min of every leecher. Default: uncapped.
        #[arg(long, value_name = "RATE")]
        download: Option<Rate>,
        /// tbf bucket size: bytes that may pass at line rate after an idle
        /// spell. Must exceed a packet; larger values let short bursts beat the cap.
        #[arg(long, default_value = "32KiB")]
        tbf_burst: ByteSize,
        /// tbf latency in ms: how long a packet may queue behind the cap
        /// (queue limit = rate·latency + burst).
        #[arg(long, default_value_t = 50, value_name = "MS")]
        tbf_latency: u64,
        /// Seed of the file's pseudo-random contents.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up a run after this many seconds. Default: 4 × its bound + 60.
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Remove network namespaces left behind by testnet runs that died
    /// without cleaning up (root). Runs still alive are left alone.
    Sweep,
    /// Measure what hostile peers cost on 127.0.0.1 (no root): for each
    /// attack, 3 attacker processes against a seeder while an honest getter
    /// downloads; prints the honest time against the no-attack baseline,
    /// the seeder's peak RSS and its RSS after the attackers left, with
    /// PASS/FAIL per attack, and writes hostile.csv to the run folder.
    Hostile(testnet::hostile::cli::MeasureArgs),
    /// Measure NAT traversal (root: network namespaces, nftables): per
    /// trial, fresh namespaces with a relay/bootstrap node on an "internet"
    /// segment and every peer behind a NAT router of its own; a NATed seeder
    /// shares a file, leechers fetch it. Writes nat.csv; prints per topology
    /// direct connections x/K, copies verified, median time to direct and
    /// the share of bytes that went direct.
    ///
    /// Example: testnet nat --trials 20 --topology cone-cone,symmetric-symmetric
    Nat(testnet::nat::cli::NatArgs),
    /// Simulate a swarm in virtual time (no root, no nodes): every peer runs
    /// the real protocol Transfer, picker and choker over a fluid bandwidth
    /// model. Prints distribution time, the P2P bound and their ratio; writes
    /// per-peer CSVs (and a chart over N) to --out. Same --seed, same bytes.
    ///
    /// Example (the target): testnet sim --peers 10000
    Sim(testnet::sim::cli::SimArgs),
    /// Peers come and go (root: network namespaces, tc caps): leechers
    /// arrive as a Poisson process, leave on finishing (selfish, probability
    /// p) or stay T seconds, some quit mid-download and come back to resume,
    /// and the seeder leaves after uploading --seeder-copies copies. Prints
    /// every arrival's download time, how many finished with a verified
    /// copy, what the swarm held when the seeder left; writes churn.csv,
    /// churn.svg and churn.png. Exit 1 if a copy differs, or if the swarm
    /// held every chunk and a leecher still ended without a copy.
    ///
    /// Example: testnet churn --leechers 12 --rate 0.5 --selfish 0.5 --stay 30
    Churn(testnet::churn::cli::ChurnArgs),
    /// Does tit-for-tat reward uploaders? (root: network namespaces, tc
    /// caps). Leechers in upload classes plus free riders (--no-upload)
    /// fetch a file from a seeder, all starting together, once per choking
    /// policy (`node --choke`, every node) and --runs rounds. Prints the
    /// median over rounds of each class's mean download time per policy;
    /// writes incentives.csv, incentives.svg and incentives.png.
    ///
    /// Example: testnet incentives --classes 3:2mbit,6:8mbit,3:32mbit --free-riders 2
    Incentives(testnet::incentives::cli::IncentivesArgs),
    /// One adversarial peer as its own process (used by `hostile`).
    #[command(hide = true)]
    HostilePeer(testnet::hostile::cli::PeerArgs),
}

impl Command {
    fn label(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Demo { .. } => "demo",
            Command::Distribution { .. } => "distribution",
            Command::Sweep => "sweep",
            Command::Hostile(_) => "hostile",
            Command::Sim(_) => "sim",
            Command::Nat(_) => "nat",
            Command::Churn(_) => "churn",
            Command::Incentives(_) => "incentives",
            Command::HostilePeer(_) => "hostile-peer",
        }
    }
}

/// A rate passed on to `node --max-upload` as written, checked here with
/// the node's own parser so a typo fails before any node starts.
fn node_rate(s: &str) -> Result<String, testnet::units::ParseError> {
    node::units::parse_rate(s).map(|_| s.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread is plenty to supervise processes, and spawning from the
    // main thread keeps PR_SET_PDEATHSIG tied to the life of testnet itself.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("testnet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testnet: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Sweep = cli.command {
        for name in netns::sweep_stale()? {
            println!("removed {name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Sim(args) = &cli.command {
        return testnet::sim::cli::run(args);
    }
    if let Command::HostilePeer(args) = &cli.command {
        return testnet::hostile::cli::run_peer(args).await;
    }
    if matches!(cli.command, Command::Distribution { .. }) && !netns::is_root() {
        anyhow::bail!(
            "`testnet distribution` needs root: it creates network namespaces and tc caps"
        );
    }
    if matches!(cli.command, Command::Nat(_)) && !netns::is_root() {
        anyhow::bail!(
            "`testnet nat` needs root: it creates network namespaces and nftables NAT routers"
        );
    }
    if matches!(cli.command, Command::Churn(_) | Command::Incentives(_)) && !netns::is_root() {
        anyhow::bail!("`testnet churn` and `testnet incentives` need root: they create network namespaces and tc caps");
    }
    let bin = nodebin::resolve(cli.node_bin.as_deref()).await?;
    let run_dir = rundir::create(cli.run_dir.as_deref(), cli.command.label())?;
    let mut signals = Signals::install()?;
    let mut sup = Supervisor::new(bin);
    eprintln!("testnet: run folder {}", run_dir.display());

    let outcome = match &cli.command {
        Command::Up {
            nodes,
            join_interval,
        } => {
            let interval = Duration::from_millis(*join_interval);
            let work = serve(&mut sup, &run_dir, usize::from(*nodes), interval);
            tokio::select! {
                r = work => r.map(|never| match never {}),
                sig = signals.recv() => interrupted(sig),
            }
        }
        Command::Demo {
            leechers,
            size,
            seed_upload,
            leecher_upload,
            seed,
            timeout,
            keep_data,
        } => {
            let cfg = DemoConfig {
                leechers: usize::from(*leechers),
                size: *size,
                seed: *seed,
                seed_upload: seed_upload.clone(),
                leecher_upload: leecher_upload.clone(),
                timeout: Duration::from_secs(*timeout),
                keep_data: *keep_data,
            };
            tokio::select! {
                r = demo::run(&mut sup, &run_dir, &cfg) => r.map(|report| {
                    print!("\n{}", report.render());
                    eprintln!("testnet: logs and stats in {}", run_dir.display());
                    if report.mismatches() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("testnet: the copies are kept in the run folder for inspection");
                        ExitCode::FAILURE
                    }
                }),
                sig = signals.recv() => interrupted(sig),
            }
        }
        Command::Distribution {
            peers,
            textbook,
            modes,
            size,
            chunk_size,
            node_threads,
            upload,
            server_upload,
            download,
            tbf_burst,
            tbf_latency,
            seed,
            timeout,
        } => {
            let (default_peers, server_upload, axis) = if *textbook {
                let Some(us) = upload.0.checked_mul(distribution::TEXTBOOK_SERVER_FACTOR) else {
                    anyhow::bail!("--upload {upload} is too large for --textbook's u_s = 10u");
                };
                (
                    &distribution::TEXTBOOK_PEERS[..],
                    Rate(us),
                    TimeAxis::FileTimes,
                )
            } else {
                (
                    &distribution::DEFAULT_PEERS[..],
                    *server_upload,
                    TimeAxis::Seconds,
                )
            };
            let cfg = DistributionConfig {
                peers: peers.clone().unwrap_or_else(|| default_peers.to_vec()),
                modes: modes.clone(),
                size: *size,
                chunk_size: *chunk_size,
                node_threads: node_threads.filter(|&n| n > 0),
                upload: *upload,
                server_upload,
                download: *download,
                shaping: Shaping {
                    burst: *tbf_burst,
                    latency: Duration::from_millis(*tbf_latency),
                },
                seed: *seed,
                timeout: timeout.map(Duration::from_secs),
                axis,
            };
            let file_time = distribution::params(&cfg, 1).file_time();
            // Dropping the run on a signal tears its testbed down.
            tokio::select! {
                r = distribution::run(sup.bin(), &run_dir, &cfg) => r.map(|rows| {
                    println!("\n{:>4}  {:<4}  {:>10}  {:>9}  {:>6}  {:>12}", "N", "mode", "measured", "bound", "ratio", "measured F/u");
                    for r in &rows {
                        println!(
                            "{:>4}  {:<4}  {:>8.2} s  {:>7.2} s  {:>6.2}  {:>12.3}",
                            r.n, r.mode.as_str(), r.measured, r.bound, r.ratio(), r.measured / file_time
                        );
                    }
                    if axis == TimeAxis::FileTimes {
                        println!("(textbook scale: F/u = {file_time:.2} s stands for the book's 1 hour)");
                    }
                    ExitCode::SUCCESS
                }),
                sig = signals.recv() => interrupted(sig),
            }
        }
        Command::Hostile(args) => tokio::select! {
            r = testnet::hostile::cli::run_measure(&mut sup, &run_dir, args) => r,
            sig = signals.recv() => interrupted(sig),
        },
        // Dropping the run on a signal stops its nodes and removes its namespaces.
        Command::Nat(args) => tokio::select! {
            r = testnet::nat::cli::run(sup.bin(), &run_dir, args) => r,
            sig = signals.recv() => interrupted(sig),
        },
        // Dropping the run on a signal stops its nodes and removes its namespaces.
        Command::Churn(args) => tokio::select! {
            r = testnet::churn::cli::run(sup.bin(), &run_dir, args) => r,
            sig = signals.recv() => interrupted(sig),
        },
        Command::Incentives(args) => tokio::select! {
            r = testnet::incentives::cli::run(sup.bin(), &run_dir, args) => r,
            sig = signals.recv() => interrupted(sig),
        },
        // Returned before any node was built or started.
        Command::Sweep | Command::HostilePeer(_) | Command::Sim(_) => Ok(ExitCode::SUCCESS),
    };

    if let Err(e) = &outcome {
        eprintln!("testnet: error: {e:#}");
    }
    if sup.running() > 0 {
        eprintln!("testnet: stopping {} node process(es)", sup.running());
        sup.shutdown(procs::GRACE, async {
            signals.recv().await;
        })
        .await;
    }
    match outcome {
        Ok(code) => Ok(code),
        Err(_) => {
            eprintln!("testnet: node logs are in {}", run_dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `testnet up`: starts the swarm, then runs until a signal; a node dying is an error.
async fn serve(
    sup: &mut Supervisor,
    run_dir: &std::path::Path,
    nodes: usize,
    interval: Duration,
) -> anyhow::Result<std::convert::Infallible> {
    for (name, addr) in loopback::up(sup, run_dir, nodes, interval).await? {
        println!("{name} {addr}");
    }
    eprintln!(
        "testnet: {nodes} nodes up (+ bootstrap); logs in {}; Ctrl-C to stop",
        run_dir.display()
    );
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sup.check_alive()?;
    }
}

fn interrupted(sig: &str) -> anyhow::Result<ExitCode> {
    eprintln!("\ntestnet: {sig} received; shutting down (again to force)");
    Ok(ExitCode::from(130))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution_args(args: &[&str]) -> Result<Command, clap::Error> {
        let argv = ["testnet", "distribution"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| cli.command)
    }

    #[test]
    fn textbook_refuses_a_server_upload_of_its_own() {
        // u_s = 10u is the figure's premise; a second value would be silently ignored.
        let err = distribution_args(&["--textbook", "--server-upload", "32mbit"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        match distribution_args(&["--textbook", "--n", "3"]).unwrap() {
            Command::Distribution {
                textbook, peers, ..
            } => {
                assert!(textbook);
                assert_eq!(peers, Some(vec![3]));
            }
            _ => panic!("not a distribution command"),
        }
    }
}

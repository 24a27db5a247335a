//! `testnet`: run many kadswarm nodes on one machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use testnet::demo::{self, DemoConfig};
use testnet::procs::{self, Signals, Supervisor};
use testnet::units::ByteSize;
use testnet::{loopback, nodebin, rundir};

/// Run many kadswarm nodes on one machine: loopback swarms (no root needed)
/// and a demo of one file spreading through a swarm.
///
/// Every node is a real `node` process listening on 127.0.0.1 only, with its
/// own data dir, log (its stderr) and stats file in a run folder. All of them
/// are stopped by PID on exit, error or Ctrl-C.
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
        #[arg(long, value_name = "RATE")]
        seed_upload: Option<String>,
        /// Upload cap of each leecher, passed to `node --max-upload`. Default: unlimited.
        #[arg(long, value_name = "RATE")]
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
}

impl Command {
    fn label(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Demo { .. } => "demo",
        }
    }
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
    let bin = nodebin::resolve(cli.node_bin.as_deref()).await?;
    let run_dir = rundir::create(cli.run_dir.as_deref(), cli.command.label())?;
    let mut signals = Signals::install()?;
    let mut sup = Supervisor::new(bin);
    eprintln!("testnet: run folder {}", run_dir.display());

    let outcome = match &cli.command {
        Command::Up { nodes } => {
            let work = serve(&mut sup, &run_dir, usize::from(*nodes));
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
) -> anyhow::Result<std::convert::Infallible> {
    for (name, addr) in loopback::up(sup, run_dir, nodes).await? {
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
